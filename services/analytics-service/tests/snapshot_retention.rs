//! Retention, for real: 10,000 orders and their 10,000 decisions over three hours of event
//! time; analytics counts them and saves its state to `analytics-snapshots`. Kafka's
//! DeleteRecords then removes the first half of every partition of `orders` and
//! `inventory-events` (what 7-day retention does to old records) and analytics is
//! restarted: `GET /api/metrics` has the same totals and minutes as before, restored from
//! the snapshot with no record of the history read again. On the way, the upgrade from
//! before the snapshots (commits with only `orderflow.analytics.base`) rebuilds from the log
//! once and saves the state; the two restart times are printed.

mod common;

use std::time::{Duration, Instant};

use orderflow_events::{
    CommitMark, SnapshotRecord, GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::probes::analytics_caught_up;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{wait, Broker, Service, ServiceKind};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

use common::*;

const N: usize = 10_000;
const MORE: usize = 1_000;
const TOPICS: [&str; 2] = [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS];

/// Commit the group's offsets as analytics did before its snapshots: `positions` with
/// `orderflow.analytics.base=0` (its state began at the start of every partition).
fn commit_as_before_the_snapshots(
    kafka: &KafkaConfig,
    metrics: &serde_json::Value,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka.consumer(GROUP_ANALYTICS, "snapshot-test").create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in TOPICS {
        for (p, next) in metrics["consumed"][topic].as_object().into_iter().flatten() {
            let mut e = tpl.add_partition(topic, p.parse()?);
            e.set_offset(Offset::Offset(next.as_i64().unwrap_or(0)))?;
            e.set_metadata(CommitMark::AnalyticsBase(0).to_string());
        }
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}

/// Whether every committed partition of the group carries a run (a snapshot was saved).
async fn committed_with_a_run(kafka: &KafkaConfig) -> anyhow::Result<()> {
    let k = kafka.clone();
    wait::until(
        "analytics' commits to carry its run",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let k = k.clone();
            async move {
                let c = orderflowctl::committed_offsets(
                    &k,
                    GROUP_ANALYTICS,
                    &TOPICS,
                    Duration::from_secs(5),
                )
                .ok()?;
                c.iter()
                    .all(|c| {
                        matches!(
                            CommitMark::of(&c.metadata),
                            Some(CommitMark::AnalyticsRun { .. })
                        )
                    })
                    .then_some(())
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_after_retention_deleted_half_of_the_history_keeps_the_totals() -> anyhow::Result<()>
{
    let dir = test_dir("analytics-snapshot-retention");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("snapshot-retention-test").create()?;
    let logs = dir.join("logs");

    produce(&producer, N, 180, 0).await?;
    let want = oracle(&kafka)?;
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let before = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(120)).await?;
    assert_eq!(data(&before), want, "analytics counts every record once");
    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    let minutes = before["orders_per_minute"].as_array().map_or(0, Vec::len);
    assert!(minutes >= 180, "{minutes} minutes");

    // The upgrade from before the snapshots: the log is read once, the state saved.
    commit_as_before_the_snapshots(&kafka, &before)?;
    let started = Instant::now();
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let from_the_log = started.elapsed();
    let upgraded = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(120)).await?;
    assert_eq!(data(&upgraded), want);
    assert_eq!(upgraded["restored_from_snapshot"], false);
    assert_eq!(upgraded["rebuilt_records"], (2 * N) as u64, "{upgraded}");
    let log_start = last_start(&svc.log);
    committed_with_a_run(&kafka).await?;
    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );

    let snaps = read_snapshots(&kafka)?;
    let minute_records = snaps
        .latest
        .values()
        .filter(|r| matches!(r, SnapshotRecord::MinuteSnapshot(_)))
        .count();
    assert_eq!(minute_records, minutes, "one record per minute");
    assert!(
        snaps.largest < 4096,
        "a snapshot record stays small: {} bytes",
        snaps.largest
    );
    let Some(SnapshotRecord::SnapshotCheckpoint(c)) = snaps.latest.get("#checkpoint") else {
        anyhow::bail!("no checkpoint in analytics-snapshots");
    };
    assert_eq!(c.orders_total, N as u64);
    assert_eq!(c.run, upgraded["run"].as_str().unwrap_or_default());

    let orders_lows = delete_first_half(&kafka, TOPIC_ORDERS).await?;
    let events_lows = delete_first_half(&kafka, TOPIC_INVENTORY_EVENTS).await?;
    let left = oracle(&kafka)?;
    assert!(
        left["orders_total"].as_u64() <= Some(N as u64 / 2 + 3),
        "DeleteRecords left {}",
        left["orders_total"]
    );

    let started = Instant::now();
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let from_the_snapshot = started.elapsed();
    let after = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(60)).await?;
    assert_eq!(
        data(&after),
        data(&before),
        "the totals outlive the retention"
    );
    assert_eq!(after["consumed"], before["consumed"]);
    assert_eq!(after["restored_from_snapshot"], true);
    assert_eq!(after["rebuilt_records"], 0, "no history read again");
    assert_eq!(after["run"], upgraded["run"]);
    let snapshot_start = last_start(&svc.log);

    // It goes on counting on top of the restored totals.
    produce(&producer, MORE, 2, 0).await?;
    let more = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(60)).await?;
    let total = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    assert_eq!(total(&more, "orders_total"), (N + MORE) as u64);
    assert_eq!(
        total(&more, "failed_total"),
        total(&before, "failed_total") + (MORE / 4) as u64
    );
    assert_eq!(
        total(&more, "reserved_total"),
        total(&before, "reserved_total") + (MORE - MORE / 4) as u64
    );
    eprintln!(
        "DeleteRecords: orders lows {orders_lows:?}, inventory-events lows {events_lows:?}; \
         restart to ready: from the log (before the snapshots) {from_the_log:?} ({log_start}), \
         from the snapshot {from_the_snapshot:?} ({snapshot_start}); {} snapshot records written, largest {} bytes",
        snaps.records, snaps.largest
    );

    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
