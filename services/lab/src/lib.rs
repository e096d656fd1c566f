//! What users run on their machine: `make demo` ([`demo`], the `orderflow-demo` binary) and
//! `make bench` ([`bench`], the `orderflow-bench` binary). Both start Apache Kafka and
//! orderflow's services as real local processes ([`procs`], killed by PID when dropped), watch
//! them through [`probes`] polled with a deadline ([`wait`]), and draw their charts as SVG
//! ([`chart`]).
//!
//! The tests use the same process handling through `orderflow-testkit`, which adds what only
//! tests need (topic readers, the oracle, the local control plane, the browser).

pub mod bench;
pub mod chart;
pub mod demo;
pub mod probes;
pub mod procs;
pub mod wait;

pub use procs::{Broker, Service, ServiceKind};
