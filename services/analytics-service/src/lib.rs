//! analytics-service internals: the event-time aggregates ([`state`]), the Kafka consumer
//! that feeds them and survives restarts ([`consumer`]), the HTTP API ([`api`]).

pub mod api;
pub mod consumer;
pub mod metrics;
pub mod state;
