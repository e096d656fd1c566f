//! What the tests poll and compare: the lab's probes (a group's lag, analytics caught up), the
//! demo's view of `/api/metrics` data fields, and the tests' own waits on the topics' ends.

use std::time::Duration;

use orderflow_events::{GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;

pub use orderflow_lab::demo::{compare_metrics, data_view, DATA_FIELDS};
pub use orderflow_lab::probes::{analytics_caught_up, caught_up_now, lag_of};

use crate::wait;

/// Sum of the high watermarks of `topics` (0 when they cannot be read): records plus
/// transaction markers, so a measure of progress rather than a count.
pub async fn log_end(kafka: &KafkaConfig, topics: &'static [&'static str]) -> i64 {
    lag_of(kafka, GROUP_INVENTORY, topics)
        .await
        .map(|l| l.iter().map(|p| p.high_watermark).sum())
        .unwrap_or(0)
}

/// Wait until the log end of `inventory-events` reaches `at_least` (e.g. to kill a service
/// while it is deciding).
pub async fn wait_decisions(kafka: &KafkaConfig, at_least: i64) -> anyhow::Result<()> {
    wait::until(
        &format!("inventory-events to reach {at_least}"),
        Duration::from_secs(120),
        Duration::from_millis(20),
        || async { (log_end(kafka, &[TOPIC_INVENTORY_EVENTS]).await >= at_least).then_some(()) },
    )
    .await
}

/// Wait until group `inventory` has committed every record of `orders`, and `orders` holds
/// exactly `produced` records when given (else at least one).
pub async fn inventory_drained(kafka: &KafkaConfig, produced: Option<i64>) -> anyhow::Result<()> {
    wait::until(
        "inventory to commit every order",
        Duration::from_secs(180),
        Duration::from_millis(200),
        || async {
            let lags = lag_of(kafka, GROUP_INVENTORY, &[TOPIC_ORDERS]).await.ok()?;
            let on_orders: i64 = lags.iter().map(|l| l.high_watermark).sum();
            let count_ok = produced.map_or(on_orders > 0, |n| on_orders == n);
            (count_ok && lags.iter().all(|l| l.lag == 0)).then_some(())
        },
    )
    .await
}
