//! Probes of the running system, polled by the demo, the bench and (through
//! orderflow-testkit's `probes`) the tests: a consumer group's lag, and whether analytics has
//! consumed both topics up to their ends.

use std::time::Duration;

use anyhow::Context;
use orderflow_events::{GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflowctl::PartitionLag;
use serde_json::Value;

use crate::procs::get_json;
use crate::wait;

/// Run `f` on the blocking pool (the consumer-group calls of orderflowctl block).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("blocking task panicked")?
}

/// Lag of `group` on `topics`, read off the async runtime.
pub async fn lag_of(
    kafka: &KafkaConfig,
    group: &'static str,
    topics: &'static [&'static str],
) -> anyhow::Result<Vec<PartitionLag>> {
    let k = kafka.clone();
    blocking(move || {
        Ok(orderflowctl::lag(
            &k,
            group,
            topics,
            Duration::from_secs(5),
        )?)
    })
    .await
}

/// Analytics' metrics if it has consumed both topics up to their current ends, else `None`.
pub async fn caught_up_now(kafka: &KafkaConfig, analytics_url: &str) -> Option<Value> {
    let lags = lag_of(
        kafka,
        GROUP_ANALYTICS,
        &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
    )
    .await
    .ok()?;
    let metrics = get_json(analytics_url, "/api/metrics").await.ok()?;
    let all = lags.iter().all(|l| {
        let consumed = metrics["consumed"][&l.topic][l.partition.to_string()]
            .as_i64()
            .unwrap_or(0);
        consumed >= l.high_watermark
    });
    all.then_some(metrics)
}

/// `Some(())` once `group` has committed the end of every partition of `topics` (and they
/// have partitions): it has consumed everything written so far.
pub async fn committed_to_end(
    kafka: &KafkaConfig,
    group: &'static str,
    topics: &'static [&'static str],
) -> Option<()> {
    let lags = lag_of(kafka, group, topics).await.ok()?;
    let all = lags.iter().all(|l| l.committed == Some(l.high_watermark));
    (all && !lags.is_empty()).then_some(())
}

/// Wait until analytics has consumed both topics up to their current ends, and return its
/// metrics then.
pub async fn analytics_caught_up(
    kafka: &KafkaConfig,
    analytics_url: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let what = "analytics to catch up with orders and inventory-events";
    analytics_caught_up_as(
        kafka,
        analytics_url,
        what,
        timeout,
        Duration::from_millis(200),
    )
    .await
}

/// [`analytics_caught_up`], saying `what` it waits for, asking `every` so often (a
/// benchmark's clock wants it often).
pub async fn analytics_caught_up_as(
    kafka: &KafkaConfig,
    analytics_url: &str,
    what: &str,
    timeout: Duration,
    every: Duration,
) -> anyhow::Result<Value> {
    wait::until(what, timeout, every, || caught_up_now(kafka, analytics_url)).await
}
