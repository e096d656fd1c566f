//! Test support for orderflow's integration and whole-system tests (a dev-dependency only):
//! the lab's local processes and waits ([`procs`], [`wait`]: Apache Kafka and the service
//! binaries, killed by PID when dropped), [`probes`] of the running system, [`topics`] read
//! back for assertions, the [`oracle`] that computes from those records what analytics must
//! report, the local control plane ([`envtest`]: kube-apiserver + etcd, with the stand-in
//! [`kubelet`]), the test bed's kind cluster ([`kind`]), and headless Chromium ([`browser`]).
//!
//! The whole-system tests that use it live in services/system-tests.

pub mod browser;
pub mod envtest;
pub mod kind;
pub mod kubelet;
pub mod oracle;
pub mod probes;
pub mod procs;
pub mod progress;
pub mod topics;

pub use orderflow_lab::wait;
pub use procs::{Broker, Service, ServiceKind};
