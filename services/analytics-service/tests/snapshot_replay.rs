//! A replay after the snapshots: analytics is stopped, Kafka has deleted the first half of
//! the history (DeleteRecords), and group `analytics` is reset to the earliest offsets with
//! orderflowctl's library (commit metadata `orderflow.reset=...`, no analytics run). The
//! restarted analytics starts EMPTY at the new offsets, as before the snapshots: it counts
//! exactly what Kafka still holds, under a new run, and the old run's minutes are deleted
//! from `analytics-snapshots` (tombstones), so a later restart restores the replayed totals.

mod common;

use std::time::Duration;

use orderflow_events::{SnapshotRecord, GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_testkit::probes::analytics_caught_up;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{Broker, Service, ServiceKind};
use orderflowctl::ResetTo;
use rdkafka::producer::FutureProducer;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_starts_empty_and_recomputes_what_kafka_holds() -> anyhow::Result<()> {
    let dir = test_dir("analytics-snapshot-replay");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("snapshot-replay-test").create()?;
    let logs = dir.join("logs");

    // Two halves with their own minutes: DeleteRecords of the first half of every
    // partition removes exactly the older one (each item's orders are on one partition).
    produce(&producer, 2000, 30, 60).await?;
    produce(&producer, 2000, 30, 0).await?;
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let first = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(120)).await?;
    assert_eq!(first["orders_total"], 4000);
    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );

    delete_first_half(&kafka, TOPIC_ORDERS).await?;
    delete_first_half(&kafka, TOPIC_INVENTORY_EVENTS).await?;
    let held = oracle(&kafka)?;
    assert_eq!(held["orders_total"], 2000, "the older half is gone");
    let k = kafka.clone();
    let changes = tokio::task::spawn_blocking(move || {
        orderflowctl::reset(
            &k,
            GROUP_ANALYTICS,
            &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
            ResetTo::Earliest,
            Duration::from_secs(10),
        )
    })
    .await??;
    assert_eq!(changes.len(), 6);

    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let replayed = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(120)).await?;
    assert_eq!(replayed["restored_from_snapshot"], false);
    assert_ne!(replayed["run"], first["run"], "a replay is a new run");
    assert_eq!(
        data(&replayed),
        held,
        "started empty: exactly what Kafka still holds, nothing of the old run"
    );
    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );

    // Only the new run is left in the snapshot topic, and a restart restores it.
    let snaps = read_snapshots(&kafka)?;
    let run = replayed["run"].as_str().unwrap_or_default();
    let minutes = snaps
        .latest
        .values()
        .filter(|r| matches!(r, SnapshotRecord::MinuteSnapshot(_)))
        .count();
    assert!(
        snaps.latest.values().all(|r| r.run() == run),
        "stale records of the old run"
    );
    assert_eq!(
        minutes,
        held["orders_per_minute"].as_array().map_or(0, Vec::len)
    );
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let again = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(60)).await?;
    assert_eq!(again["restored_from_snapshot"], true);
    assert_eq!(data(&again), held);

    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
