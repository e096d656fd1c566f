//! The lab's local processes (Apache Kafka via scripts/kafka.sh, the service binaries, the
//! `orderflowctl` CLI, HTTP helpers), plus what only tests need.

use std::path::PathBuf;

pub use orderflow_lab::procs::*;

/// A scratch directory for integration test `name` (unique per test process).
pub fn test_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("orderflow-test-{name}-{}", std::process::id()))
}
