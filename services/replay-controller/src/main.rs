//! replay-controller: carries out ReplayRequests (orderflow.io/v1alpha1); `replay-controller
//! drain` deletes a namespace's requests and waits until they are gone (the chart's
//! pre-delete hook). Settings: `replay-controller --help` ([`replay_controller::config::Args`]).
//!
//! Kubernetes access: in-cluster service account, else KUBECONFIG / ~/.kube/config.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};
use orderflow_runtime::{config, shutdown, supervise, telemetry, Health, KafkaConfig, OpsServer};
use prometheus_client::registry::Registry;
use replay_controller::config::{Args, Command, DrainArgs};
use replay_controller::controller;
use replay_controller::drain::{self, KubeRequests};
use replay_controller::kafka::KafkaAdmin;
use replay_controller::metrics::Metrics;
use replay_controller::reconcile::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::from_env()?;
    telemetry::init("replay-controller", &args.log);
    if let Some(Command::Drain(d)) = &args.command {
        return run_drain(&args, d).await;
    }
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
        args.manage_crd,
        ctx,
        health.clone(),
        token.clone(),
    );
    let server = OpsServer::new(health, registry)
        .drain(args.shutdown.drain())
        .serve(args.http_addr, axum::Router::new(), token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    tracing::info!("replay-controller stopped");
    Ok(())
}

/// `replay-controller drain`: WATCH_NAMESPACE's requests deleted and gone, or an error.
async fn run_drain(args: &Args, d: &DrainArgs) -> anyhow::Result<()> {
    let ns = args.watch_namespace.as_deref().context(
        "drain needs the namespace whose ReplayRequests to delete: WATCH_NAMESPACE (--watch-namespace)",
    )?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account, or KUBECONFIG)")?;
    let timeout = Duration::from_secs(d.timeout_seconds);
    tracing::info!(
        namespace = ns,
        ?timeout,
        "deleting ReplayRequests and waiting until they are gone"
    );
    let n = drain::drain(
        &KubeRequests::new(client, ns),
        timeout,
        Duration::from_secs(1),
    )
    .await?;
    tracing::info!(namespace = ns, deleted = n, "no ReplayRequest left");
    Ok(())
}
