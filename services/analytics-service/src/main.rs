//! analytics-service: `orders` + `inventory-events` -> metrics over HTTP, the consumer-lag
//! exporter, and the live dashboard at `/`.
//!
//! Environment (defaults in brackets):
//! - `KAFKA_BOOTSTRAP` [127.0.0.1:9092]
//! - `HTTP_ADDR` [:8082]
//! - `COMMIT_INTERVAL_MS` [1000]: how often applied positions are committed
//! - `LAG_INTERVAL_MS` [3000]: how often the lag of groups `inventory` and `analytics` is sampled
//! - `LAG_HISTORY` [600]: lag samples kept for the dashboard (600 x 3 s = 30 minutes)
//! - `REPLAY_NAMESPACE` [unset]: list this namespace's ReplayRequests for the dashboard (the
//!   Helm chart sets it); without it, only when `KUBERNETES_SERVICE_HOST` is set
//! - `LOG_FORMAT` [text]: `json` for JSON lines; `RUST_LOG` filters
//!
//! Runs as ONE replica: its state is in the process (rebuilt from the log at start-up).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use analytics_service::dashboard::{self, DashboardState};
use analytics_service::lag::{self, LagBoard, LagMetrics};
use analytics_service::{api, consumer, metrics::AnalyticsMetrics, replays};
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
    let lag_every =
        Duration::from_millis(config::env_parse::<u64>("LAG_INTERVAL_MS", 3000)?.max(100));
    let lag_history: usize = config::env_parse("LAG_HISTORY", 600)?;
    let replay_mode = replays::mode(
        std::env::var("REPLAY_NAMESPACE").ok().as_deref(),
        std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref(),
    );
    let token = shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = AnalyticsMetrics::register(&mut registry);
    let lag_metrics = LagMetrics::register(&mut registry);
    let health = Health::new();
    let shared = consumer::Shared::default();
    let board = Arc::new(RwLock::new(LagBoard::new(lag_history, lag_every)));
    let replay_view = replays::SharedReplays::default();

    let dlq = Dlq::new(GROUP_ANALYTICS, &mut registry);
    // Side tasks: they stop with the token and never stop the service.
    tokio::spawn(lag::run(
        kafka.clone(),
        lag_metrics,
        board.clone(),
        lag_every,
        Duration::from_secs(5),
        token.clone(),
    ));
    tokio::spawn(replays::run(
        replay_mode,
        replay_view.clone(),
        Duration::from_secs(5),
        token.clone(),
    ));
    let worker = consumer::run(
        kafka,
        shared.clone(),
        health.clone(),
        metrics,
        dlq,
        token.clone(),
        Duration::from_millis(commit_ms.max(100)),
    );
    let app = api::router(shared.clone()).merge(dashboard::router(DashboardState {
        shared,
        lag: board,
        replays: replay_view,
    }));
    let server = OpsServer::new(health, registry).serve(addr, app, token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("analytics-service stopped");
    Ok(())
}
