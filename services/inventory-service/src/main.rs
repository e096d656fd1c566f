//! inventory-service: `orders` -> stock decision -> `inventory-events`.
//!
//! Environment (defaults in brackets):
//! - `KAFKA_BOOTSTRAP` [127.0.0.1:9092]
//! - `HTTP_ADDR` [:8081]
//! - `THROTTLE_MS` [0]: pause this long per order (creates consumer lag on purpose)
//! - `INITIAL_STOCK` [every menu item at 2000]: e.g. `burger=2000,pizza=1500`; listed items
//!   override the default or add new ones
//! - `BATCH_MAX` [500]: most orders decided per commit
//! - `LOG_FORMAT` [text]: `json` for JSON lines; `RUST_LOG` filters

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use inventory_service::ledger::Stock;
use inventory_service::metrics::InventoryMetrics;
use inventory_service::{api, worker};
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::{config, shutdown, supervise, telemetry, Health, KafkaConfig, OpsServer};
use prometheus_client::registry::Registry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("inventory-service");
    let kafka = KafkaConfig::from_env();
    let addr = config::http_addr(":8081")?;
    let throttle_ms: u64 = config::env_parse("THROTTLE_MS", 0)?;
    let batch_max: usize = config::env_parse("BATCH_MAX", 500)?;
    let stock = Stock::parse(&config::env_or("INITIAL_STOCK", "")).context("INITIAL_STOCK")?;
    tracing::info!(throttle_ms, batch_max, stock = ?stock.items().collect::<Vec<_>>(), "starting");
    let token = shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = InventoryMetrics::register(&mut registry);
    let health = Health::new();
    let ledgers = worker::Ledgers::default();
    let settings = worker::Settings {
        stock: stock.clone(),
        throttle: Duration::from_millis(throttle_ms),
        batch_max: batch_max.max(1),
    };

    let producer: rdkafka::producer::FutureProducer = kafka
        .producer("inventory-service")
        .create()
        .context("creating the Kafka producer")?;
    let sinks = worker::Sinks {
        dlq: Dlq::new(producer.clone(), &mut registry),
        producer,
    };
    let worker = worker::run(
        kafka,
        settings,
        ledgers.clone(),
        health.clone(),
        metrics,
        sinks,
        token.clone(),
    );
    let app = api::router(Arc::new(stock), ledgers);
    let server = OpsServer::new(health, registry).serve(addr, app, token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("inventory-service stopped");
    Ok(())
}
