//! Plumbing every orderflow service shares, so no service pastes its own copy:
//! configuration (clap, from the environment), Kafka client settings, topic creation, the DLQ,
//! the ops HTTP server (`/healthz`, `/readyz`, `/metrics`), tracing and shutdown.

pub mod config;
pub mod dlq;
pub mod fetch_watch;
pub mod http;
pub mod kafka;
pub mod read;
pub mod session;
pub mod shutdown;
pub mod supervise;
pub mod telemetry;
pub mod topics;

pub use config::ConfigError;
pub use http::{Health, HttpMetrics, OpsServer};
pub use kafka::{KafkaArgs, KafkaConfig};
pub use shutdown::ShutdownArgs;
pub use telemetry::LogArgs;

/// Every binary that links this crate allocates with mimalloc. With glibc's malloc, librdkafka's
/// threads and the tokio workers contended on the arena locks: a profile of a 1M-record
/// `POST /orders/bulk` spent about 15% in `_int_malloc` and lock waits (see `make bench`, P1).
///
/// The `system-alloc` feature leaves the system allocator in place, for heap profilers that
/// hook `malloc` (heaptrack, valgrind): `scripts/heap-profile.sh`.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
