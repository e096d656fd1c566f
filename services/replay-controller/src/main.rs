//! replay-controller: carries out ReplayRequests (orderflow.io/v1alpha1). Settings:
//! `replay-controller --help` ([`replay_controller::config::Args`]).
//!
//! Kubernetes access: in-cluster service account, else KUBECONFIG / ~/.kube/config.

use std::sync::Arc;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};
use orderflow_runtime::{config, shutdown, supervise, telemetry, Health, KafkaConfig, OpsServer};
use prometheus_client::registry::Registry;
use replay_controller::config::Args;
use replay_controller::controller;
use replay_controller::kafka::KafkaAdmin;
use replay_controller::metrics::Metrics;
use replay_controller::reconcile::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::from_env()?;
    telemetry::init("replay-controller", &args.log);
    let kafka = KafkaConfig::from(&args.kafka);
    let token = shutdown::on_signal();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let health = Health::new();

    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account, or KUBECONFIG)")?;
    let reporter = Reporter {
        controller: "replay-controller".to_string(),
        instance: args.pod_name.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        admin: Arc::new(KafkaAdmin {
            kafka,
            timeout: args.kafka_timeout(),
        }),
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        settings: args.settings(),
    });
    let worker = controller::run(
        client,
        args.watch_namespace.clone(),
        ctx,
        health.clone(),
        token.clone(),
    );
    let server =
        OpsServer::new(health, registry).serve(args.http_addr, axum::Router::new(), token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("replay-controller stopped");
    Ok(())
}
