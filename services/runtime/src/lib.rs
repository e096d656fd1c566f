//! Plumbing every orderflow service shares, so no service pastes its own copy:
//! configuration from the environment, Kafka client settings, topic creation, the DLQ,
//! the ops HTTP server (`/healthz`, `/readyz`, `/metrics`), tracing and shutdown.

pub mod config;
pub mod dlq;
pub mod http;
pub mod kafka;
pub mod shutdown;
pub mod supervise;
pub mod telemetry;
pub mod topics;

pub use config::{env_or, env_parse, ConfigError};
pub use http::{Health, OpsServer};
pub use kafka::KafkaConfig;
