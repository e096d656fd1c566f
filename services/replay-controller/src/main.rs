//! replay-controller: carries out ReplayRequests (orderflow.io/v1alpha1): scales a consumer
//! group's deployment to 0, resets the group's offsets, restores the deployment, and
//! optionally holds another deployment down to create consumer lag and records it.
//!
//! Environment (defaults in brackets):
//! - `KAFKA_BOOTSTRAP` [127.0.0.1:9092] (and the other KAFKA_* settings of orderflow-runtime)
//! - `HTTP_ADDR` [:8083]: /healthz, /readyz, /metrics
//! - `WATCH_NAMESPACE` [all namespaces]: the namespace whose ReplayRequests are handled
//! - `KAFKA_TIMEOUT_MS` [5000]: bound on each broker request
//! - `POLL_MS` [2000]: how often a waiting request looks again
//! - `RETRY_BASE_MS` [2000], `RETRY_MAX_MS` [60000]: backoff while Kafka is unreachable
//! - `POD_NAME`: reported as the Events' reporting instance
//! - `LOG_FORMAT` [text]: `json` for JSON lines; `RUST_LOG` filters
//!
//! Kubernetes access: in-cluster service account, else KUBECONFIG / ~/.kube/config.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};
use orderflow_runtime::{config, shutdown, supervise, telemetry, Health, KafkaConfig, OpsServer};
use prometheus_client::registry::Registry;
use replay_controller::controller;
use replay_controller::kafka::KafkaAdmin;
use replay_controller::metrics::Metrics;
use replay_controller::reconcile::{Context, Settings};

fn millis(name: &str, default: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_millis(config::env_parse(name, default)?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("replay-controller");
    let kafka = KafkaConfig::from_env()?;
    let addr = config::http_addr(":8083")?;
    let namespace = std::env::var("WATCH_NAMESPACE")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let settings = Settings {
        poll: millis("POLL_MS", 2000)?,
        retry_base: millis("RETRY_BASE_MS", 2000)?,
        retry_max: millis("RETRY_MAX_MS", 60_000)?,
        ..Settings::default()
    };
    let timeout = millis("KAFKA_TIMEOUT_MS", 5000)?;
    let token = shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let health = Health::new();

    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account, or KUBECONFIG)")?;
    let reporter = Reporter {
        controller: "replay-controller".to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        admin: Arc::new(KafkaAdmin { kafka, timeout }),
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        settings,
    });
    let worker = controller::run(client, namespace, ctx, health.clone(), token.clone());
    let server = OpsServer::new(health, registry).serve(addr, axum::Router::new(), token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("replay-controller stopped");
    Ok(())
}
