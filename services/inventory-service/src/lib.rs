//! inventory-service internals: settings ([`config`]), the stock ledger ([`ledger`]), the
//! consume-decide-produce-commit loop ([`worker`]), readiness ([`ready`]), `GET /stock`
//! ([`api`]) and metrics.

pub mod api;
pub mod config;
pub mod ledger;
pub mod logs;
pub mod metrics;
pub mod ready;
pub mod worker;
