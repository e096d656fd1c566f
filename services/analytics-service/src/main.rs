//! analytics-service: `orders` + `inventory-events` -> metrics over HTTP, the consumer-lag
//! exporter, and the live dashboard at `/`. Settings: `analytics-service --help`
//! ([`analytics_service::config::Args`]).
//!
//! Runs as ONE replica per consumer group: its state is in the process, saved to the
//! compacted `<group>-snapshots` (`analytics-snapshots`) at every commit and restored from
//! it at start-up.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use analytics_service::config::Args;
use analytics_service::dashboard::{self, DashboardState};
use analytics_service::group::OwnNames;
use analytics_service::lag::{self, LagBoard, LagMetrics};
use analytics_service::{api, consumer, metrics::AnalyticsMetrics, replays};
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::{config, shutdown, supervise, telemetry, Health, KafkaConfig, OpsServer};
use prometheus_client::registry::Registry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::from_env()?;
    telemetry::init("analytics-service", &args.log);
    let kafka = KafkaConfig::from(&args.kafka);
    let lag_every = args.lag_every();
    let replay_mode = args.replay_mode(std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref());
    let names = OwnNames::new(&args.consumer_group);
    tracing::info!(group = %names.group, snapshots = %names.snapshots, "consumer group");
    let token = shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = AnalyticsMetrics::register(&mut registry);
    let lag_metrics = LagMetrics::register(&mut registry);
    let health = Health::new();
    let shared = consumer::Shared::default();
    let watched = lag::watched(&names.group);
    let board = Arc::new(RwLock::new(LagBoard::new(
        args.lag_history,
        lag_every,
        lag::group_names(&watched),
    )));
    let replay_view = replays::SharedReplays::default();

    // Only the group `analytics` reports bad inventory-events: a shadow steps over them.
    let dlq = Dlq::new(names.group.clone(), &mut registry);
    // Side tasks: they stop with the token and never stop the service.
    tokio::spawn(lag::run(
        kafka.clone(),
        watched,
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
        consumer::Options {
            commit_every: args.commit_every(),
            names,
        },
    );
    let app = api::router(shared.clone()).merge(dashboard::router(DashboardState {
        shared,
        lag: board,
        replays: replay_view,
    }));
    let server = OpsServer::new(health, registry)
        .drain(args.shutdown.drain())
        .serve(args.http_addr, app, token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("analytics-service stopped");
    Ok(())
}
