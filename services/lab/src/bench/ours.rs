//! orderflow's own side of P1-P3, used by each run ([`super::one_run`]) and by the N sweep
//! ([`super::sweep`]): each starts the service it measures, times it as the module docs of
//! [`super`] say, checks its result, reads its peak RSS and stops it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use orderflow_events::{GROUP_INVENTORY, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use serde_json::json;

use super::{peak_rss_mib, seed_catalogue};
use crate::probes::{analytics_caught_up_as, committed_to_end};
use crate::procs::{orderflowctl, Broker, Service, ServiceKind};
use crate::wait;

/// Seconds and peak RSS (MiB) of one measured step.
pub(super) struct Step {
    pub secs: f64,
    pub rss_mib: f64,
}

/// Settings of a service's environment (name, value): none, or [`memory_settings`].
pub(super) type Env<'a> = &'a [(&'a str, String)];

/// The documented settings for memory (README, "P5 with settings for memory"): 1 MiB of
/// records fetched ahead, a 1 s idempotency window, inventory's batches of 5000 orders at
/// most, and mimalloc giving freed pages back at once.
pub(super) fn memory_settings() -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_FETCH_QUEUE_KB", "1024".into()),
        ("IDEMPOTENCY_WINDOW_MS", "1000".into()),
        ("BATCH_MAX", "5000".into()),
        ("MIMALLOC_PURGE_DELAY", "0".into()),
    ]
}

/// The P5 subjects measured with [`memory_settings`], in the order of P1-P3's services.
pub(super) const MEMORY_SUBJECTS: [&str; 3] = [
    "order-service (memory settings)",
    "inventory-service (memory settings)",
    "analytics-service (memory settings)",
];

/// How a fresh broker is warmed up before it is measured: kcat produces the orders of this
/// file (the runs' N) into [`super::WARMUP_ORDERS`], unmeasured.
pub(super) type WarmUp<'a> = (&'a super::Tools, &'a Path);

/// P1, P2 and P3 at `n` on a broker of their own under `dir` (warmed up first by `warm_up`),
/// each service started with `env`: the broker (still running, for what is measured after
/// them) and the three steps.
pub(super) async fn p1_to_p3(
    n: u64,
    dir: &Path,
    env: Env<'_>,
    warm_up: Option<WarmUp<'_>>,
) -> anyhow::Result<(Broker, [Step; 3])> {
    let logs = dir.join("logs");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let b = broker.bootstrap.clone();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    if let Some(w) = warm_up {
        warm(&kafka, &b, w).await?;
    }
    seed_catalogue(&b, &logs).await?;
    let p1 = produce(&b, &logs, n, env).await?;
    let p2 = decide(&b, &kafka, &logs, env).await?;
    let p3 = replay(&b, &kafka, &logs, n, env).await?;
    Ok((broker, [p1, p2, p3]))
}

/// Warm a fresh broker up (see [`WarmUp`]).
pub(super) async fn warm(
    kafka: &KafkaConfig,
    b: &str,
    (tools, orders): WarmUp<'_>,
) -> anyhow::Result<()> {
    let topic = super::WARMUP_ORDERS;
    orderflow_runtime::topics::ensure_named_topics(kafka, &[topic]).await?;
    let what = "kcat -P (warm-up, unmeasured)";
    super::peers::kcat_produce(tools, b, topic, orders, what).await?;
    Ok(())
}

/// P1: order-service publishes `n` OrderPlaced through `POST /orders/bulk`.
pub(super) async fn produce(b: &str, logs: &Path, n: u64, env: Env<'_>) -> anyhow::Result<Step> {
    let order = Service::start(ServiceKind::Order, b, env, logs).await?;
    let t = Instant::now();
    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": n}),
            Duration::from_secs(3600),
        )
        .await?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        status == 200 && body["published"].as_u64() == Some(n),
        "POST /orders/bulk answered {status}: {body}"
    );
    let rss_mib = peak_rss_mib(order.pid());
    order.stop(Duration::from_secs(20)).await?;
    Ok(Step { secs, rss_mib })
}

/// P2: inventory-service decides every order on `orders`, from its start until its group's
/// committed offsets are at the ends.
pub(super) async fn decide(
    b: &str,
    kafka: &KafkaConfig,
    logs: &Path,
    env: Env<'_>,
) -> anyhow::Result<Step> {
    let t = Instant::now();
    let mut all = vec![("THROTTLE_MS", "0".to_string())];
    all.extend_from_slice(env);
    let inventory = Service::start(ServiceKind::Inventory, b, &all, logs).await?;
    wait::until(
        "inventory-service to decide every order",
        Duration::from_secs(1800),
        Duration::from_millis(50),
        || committed_to_end(kafka, GROUP_INVENTORY, &[TOPIC_ORDERS]),
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    let rss_mib = peak_rss_mib(inventory.pid());
    inventory.stop(Duration::from_secs(20)).await?;
    Ok(Step { secs, rss_mib })
}

/// P3: analytics-service rebuilds from both topics after its group is reset to the earliest
/// offsets, and counts `n` orders.
pub(super) async fn replay(
    b: &str,
    kafka: &KafkaConfig,
    logs: &Path,
    n: u64,
    env: Env<'_>,
) -> anyhow::Result<Step> {
    let bb = b.to_string();
    let reset =
        tokio::task::spawn_blocking(move || orderflowctl(&bb, &crate::demo::REPLAY_RESET_ARGS))
            .await??;
    ensure!(reset.0 == 0, "orderflowctl reset: {}", reset.2);
    caught_up(b, kafka, logs, n, "analytics-service to rebuild", env).await
}

/// analytics-service from its start until it has consumed both topics to their ends, where
/// it must count `n` orders (P3 after a reset; P7 as it restarts).
pub(super) async fn caught_up(
    b: &str,
    kafka: &KafkaConfig,
    logs: &Path,
    n: u64,
    what: &str,
    env: Env<'_>,
) -> anyhow::Result<Step> {
    let t = Instant::now();
    let analytics = Service::start(ServiceKind::Analytics, b, env, logs).await?;
    let (timeout, every) = (Duration::from_secs(1800), Duration::from_millis(50));
    let metrics = analytics_caught_up_as(kafka, &analytics.url, what, timeout, every).await?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        metrics["orders_total"].as_u64() == Some(n),
        "{what}: it counted {} orders, not {n}",
        metrics["orders_total"]
    );
    let rss_mib = peak_rss_mib(analytics.pid());
    analytics.stop(Duration::from_secs(20)).await?;
    Ok(Step { secs, rss_mib })
}
