//! SIGKILL between a snapshot and its commit: analytics is stopped by its test hook
//! (`TEST_PAUSE_AFTER_SNAPSHOT`) right after a flush's checkpoint is acknowledged and before
//! the group's offsets are committed, seen there (the checkpoint is ahead of the committed
//! offsets), and killed. Restarted, it restores the snapshot, steps over the records
//! between the committed offsets and the snapshot, and its totals equal a count of every
//! record on the topics: nothing counted twice, nothing lost.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use orderflow_events::{SnapshotRecord, GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::probes::analytics_caught_up;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{wait, Broker, Service, ServiceKind};
use rdkafka::producer::FutureProducer;

use common::*;

const TOPICS: [&str; 2] = [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS];

/// (topic, partition) -> committed offset of group `analytics`.
fn committed(kafka: &KafkaConfig) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    Ok(
        orderflowctl::committed_offsets(kafka, GROUP_ANALYTICS, &TOPICS, Duration::from_secs(5))?
            .into_iter()
            .filter_map(|c| Some(((c.topic, c.partition), c.offset?)))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_between_a_snapshot_and_its_commit_counts_each_record_once() -> anyhow::Result<()> {
    let dir = test_dir("analytics-snapshot-crash");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("snapshot-crash-test").create()?;
    let logs = dir.join("logs");
    let env = |pause: bool| {
        let mut env = vec![
            ("COMMIT_INTERVAL_MS", "200".to_string()),
            // a dynamic member: the killed one is expired after 6 s
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_string()),
        ];
        if pause {
            env.push(("TEST_PAUSE_AFTER_SNAPSHOT", "1".to_string()));
        }
        env
    };

    // A first run saves and commits the first records, and stops.
    produce(&producer, 2000, 30, 0).await?;
    let svc = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &env(false),
        &logs,
    )
    .await?;
    let k = kafka.clone();
    wait::until(
        "the first records committed",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let k = k.clone();
            async move {
                committed(&k)
                    .ok()
                    .filter(|c| c.len() == 6 && c.values().sum::<i64>() == 4000)
            }
        },
    )
    .await?;
    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );

    // The next run restores that, counts more records, and stops after its first snapshot,
    // before committing.
    produce(&producer, 2000, 30, 0).await?;
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &env(true), &logs).await?;
    let paused = log_line(
        &svc.log,
        "test hook: paused after the snapshot, before the commit (TEST_PAUSE_AFTER_SNAPSHOT)",
    )
    .await?;

    // The kill lands where it should: the checkpoint ahead of the committed offsets.
    let snaps = read_snapshots(&kafka)?;
    let Some(SnapshotRecord::SnapshotCheckpoint(c)) = snaps.latest.get("#checkpoint") else {
        anyhow::bail!("no checkpoint at the pause");
    };
    let commits = committed(&kafka)?;
    let saved: i64 = c.positions.values().flat_map(|p| p.values()).sum();
    let committed_sum: i64 = commits.values().sum();
    assert_eq!(committed_sum, 4000, "the first run's commits");
    assert!(
        saved > committed_sum,
        "the snapshot should be ahead of the commit (snapshot {saved}, committed {committed_sum})"
    );
    eprintln!("paused at {paused}: the snapshot counts {} orders at positions summing to {saved}, the commits sum to {committed_sum}", c.orders_total);
    svc.kill(); // SIGKILL

    let svc = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &env(false),
        &logs,
    )
    .await?;
    produce(&producer, 1000, 30, 0).await?;
    let after = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(120)).await?;
    assert_eq!(after["restored_from_snapshot"], true, "{after}");
    assert_eq!(data(&after), oracle(&kafka)?, "each record counted once");
    assert_eq!(after["orders_total"], 5000);

    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
