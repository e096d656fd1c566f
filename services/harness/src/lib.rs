//! Test and demo harness: starts Apache Kafka and orderflow's services as real local
//! processes (killed by PID when dropped), talks to them over HTTP, reads topics back for
//! assertions, and runs the lab's scenario for `make demo` and the integration tests.

pub mod bench;
pub mod browser;
pub mod chart;
pub mod e2e;
pub mod envtest;
pub mod kubelet;
pub mod oracle;
pub mod procs;
pub mod scenario;
pub mod topics;
pub mod wait;

pub use procs::{Broker, Service, ServiceKind};
