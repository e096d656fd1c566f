//! order-service: HTTP order intake -> topic `orders`. Settings: `order-service --help`
//! ([`order_service::config::Args`]).

use std::sync::Arc;

use anyhow::Context;
use order_service::catalogue::{self, SharedCatalogue};
use order_service::config::Args;
use order_service::{api, publisher::KafkaPublisher, AppMetrics};
use orderflow_runtime::{
    config, http::OpsServer, shutdown, supervise, telemetry, topics, Health, KafkaConfig,
};
use prometheus_client::registry::Registry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = config::from_env()?;
    telemetry::init("order-service", &args.log);
    let kafka = KafkaConfig::from(&args.kafka);
    let token = shutdown::on_signal();

    let mut registry = Registry::default();
    let metrics = AppMetrics::register(&mut registry);
    let health = Health::new();

    let publisher = KafkaPublisher::new(&kafka, args.publish_settings())
        .context("creating the Kafka producers")?;
    let publisher = Arc::new(publisher);
    // HTTP is served at once (`/healthz`, and `/readyz` saying why it is not ready); in the
    // background the service waits for Kafka as long as it takes and creates the topics
    // locally (under Strimzi they exist already: KafkaTopic resources), then keeps `/readyz`
    // honest. Orders posted meanwhile get a 503 after PUBLISH_TIMEOUT_MS. Once connected, the
    // catalogue (the items inventory knows) is read from inventory-ledger and followed.
    let catalogue = SharedCatalogue::default();
    let (p, h, t, c) = (
        publisher.clone(),
        health.clone(),
        token.clone(),
        catalogue.clone(),
    );
    let worker = async move {
        if topics::connect(&kafka, &h, &t).await? {
            let (ck, cc, ct) = (kafka.clone(), c.clone(), t.clone());
            let follower = tokio::task::spawn_blocking(move || catalogue::follow(&ck, &cc, &ct));
            order_service::publisher::watch_readiness(p, c, h, t).await;
            if let Err(e) = follower.await {
                tracing::warn!(error = %e, "the catalogue reader ended abnormally");
            }
        }
        Ok::<(), topics::TopicError>(())
    };

    // A request waits for a catalogue not read yet no longer than for Kafka's acknowledgement:
    // with Kafka unreachable, POST /orders answers 503 after PUBLISH_TIMEOUT_MS either way.
    let catalogue_wait =
        std::time::Duration::from_millis(args.publish_timeout_ms).min(catalogue::CATALOGUE_WAIT);
    let app = api::router(
        api::AppState::new(publisher.clone(), metrics, args.bulk_max, catalogue)
            .with_catalogue_wait(catalogue_wait),
    );
    let server = OpsServer::new(health, registry)
        .drain(args.shutdown.drain())
        .serve(args.http_addr, app, token.clone());
    supervise::worker_and_server(token, worker, server).await?;
    publisher.flush();
    tracing::info!("order-service stopped");
    Ok(())
}
