//! analytics-service internals: settings ([`config`]), the names derived from its consumer
//! group ([`group`]), the event-time aggregates ([`state`]), the Kafka consumer
//! that feeds them ([`consumer`]), their snapshots in the compacted `<group>-snapshots`
//! ([`snapshot`], pure; [`store`], its Kafka side) and the start-up that restores them
//! ([`startup`]), the HTTP API ([`api`]), the
//! consumer-lag exporter ([`lag`]), the ReplayRequests panel ([`replays`]) and the live
//! dashboard page ([`dashboard`]).

pub mod api;
pub mod config;
pub mod consumer;
pub mod dashboard;
pub mod group;
pub mod lag;
pub mod metrics;
pub mod replays;
pub mod snapshot;
pub mod startup;
pub mod state;
pub mod store;
