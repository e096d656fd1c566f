//! analytics-service internals: settings ([`config`]), the event-time aggregates ([`state`]), the Kafka consumer
//! that feeds them ([`consumer`]), their snapshots in the compacted `analytics-snapshots`
//! ([`snapshot`], pure; [`store`], its Kafka side) and the start-up that restores them
//! ([`startup`]), the HTTP API ([`api`]), the
//! consumer-lag exporter ([`lag`]), the ReplayRequests panel ([`replays`]) and the live
//! dashboard page ([`dashboard`]).

pub mod api;
pub mod config;
pub mod consumer;
pub mod dashboard;
pub mod lag;
pub mod metrics;
pub mod replays;
pub mod snapshot;
pub mod startup;
pub mod state;
pub mod store;
