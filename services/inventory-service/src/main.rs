//! inventory-service: `orders` -> stock decision -> `inventory-events`. Settings:
//! `inventory-service --help` ([`inventory_service::config::Args`]).

use std::sync::Arc;
use std::time::Duration;

use inventory_service::config::Args;
use inventory_service::metrics::InventoryMetrics;
use inventory_service::{api, worker};
use orderflow_events::GROUP_INVENTORY;
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::{config, shutdown, supervise, telemetry, Health, KafkaConfig, OpsServer};
use prometheus_client::registry::Registry;

/// How long the end of the process waits for blocking Kafka calls still running: a call past
/// its bound (`worker::bounded`, e.g. a `send_offsets_to_transaction` that librdkafka never
/// returns from after a coordinator died) is abandoned, not waited for at exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    outcome
}

async fn run() -> anyhow::Result<()> {
    let args: Args = config::from_env()?;
    telemetry::init("inventory-service", &args.log);
    let kafka = KafkaConfig::from(&args.kafka);
    let settings = args.settings();
    tracing::info!(
        bootstrap = %kafka.bootstrap,
        throttle_ms = args.throttle_ms,
        batch_max = settings.batch_max,
        stock = ?settings.stock.items().collect::<Vec<_>>(),
        "starting"
    );
    let token = shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = InventoryMetrics::register(&mut registry);
    let health = Health::new();
    let ledgers = worker::Ledgers::default();

    let dlq = Dlq::new(GROUP_INVENTORY, &mut registry);
    let app = api::router(Arc::new(settings.stock.clone()), ledgers.clone());
    let worker = worker::run(
        kafka,
        settings,
        ledgers,
        health.clone(),
        metrics,
        dlq,
        token.clone(),
    );
    let server = OpsServer::new(health, registry)
        .drain(args.shutdown.drain())
        .serve(args.http_addr, app, token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("inventory-service stopped");
    Ok(())
}
