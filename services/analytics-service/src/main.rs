//! analytics-service: `orders` + `inventory-events` -> metrics over HTTP.
//!
//! Environment (defaults in brackets):
//! - `KAFKA_BOOTSTRAP` [127.0.0.1:9092]
//! - `HTTP_ADDR` [:8082]
//! - `COMMIT_INTERVAL_MS` [1000]: how often applied positions are committed
//! - `LOG_FORMAT` [text]: `json` for JSON lines; `RUST_LOG` filters
//!
//! Runs as ONE replica: its state is in the process (rebuilt from the log at start-up).

use std::time::Duration;

use analytics_service::{api, consumer, metrics::AnalyticsMetrics};
use anyhow::Context;
use orderflow_events::GROUP_ANALYTICS;
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::{config, shutdown, supervise, telemetry, Health, KafkaConfig, OpsServer};
use prometheus_client::registry::Registry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("analytics-service");
    let kafka = KafkaConfig::from_env()?;
    let addr = config::http_addr(":8082")?;
    let commit_ms: u64 = config::env_parse("COMMIT_INTERVAL_MS", 1000)?;
    let token = shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = AnalyticsMetrics::register(&mut registry);
    let health = Health::new();
    let shared = consumer::Shared::default();

    let producer = kafka
        .producer("analytics-service")
        .create()
        .context("creating the DLQ producer")?;
    let dlq = Dlq::new(producer, GROUP_ANALYTICS, &mut registry);
    let worker = consumer::run(
        kafka,
        shared.clone(),
        health.clone(),
        metrics,
        dlq,
        token.clone(),
        Duration::from_millis(commit_ms.max(100)),
    );
    let server = OpsServer::new(health, registry).serve(addr, api::router(shared), token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("analytics-service stopped");
    Ok(())
}
