//! inventory-service internals: the stock ledger ([`ledger`]), the consume-decide-produce-
//! commit loop ([`worker`]), `GET /stock` ([`api`]) and metrics.

pub mod api;
pub mod ledger;
pub mod metrics;
pub mod worker;
