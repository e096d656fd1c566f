//! SIGKILL between a snapshot and its commit, with no test hook in the product. The broker
//! is made to refuse every offset commit: `__consumer_offsets`' `max.message.bytes` set to 1,
//! an AlterConfigs any operator could make (the group coordinator can no longer append a
//! commit). analytics' snapshots are still acknowledged, its commits fail ("offset commit
//! failed" in its log), so the checkpoint on `analytics-snapshots` runs ahead of the
//! committed offsets. The test sees exactly that, kills analytics there, gives the topic its
//! settings back, and restarts it: it restores the snapshot, steps over the records between
//! the committed offsets and the snapshot, and its totals equal a count of every record on
//! the topics: nothing counted twice, nothing lost.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use orderflow_events::{SnapshotRecord, GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::probes::analytics_caught_up;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{wait, Broker, Service, ServiceKind};
use rdkafka::admin::ConfigSource;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;

use common::*;

const TOPICS: [&str; 2] = [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS];
const OFFSETS_TOPIC: &str = "__consumer_offsets";

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
    let env = [
        ("COMMIT_INTERVAL_MS", "200".to_string()),
        // a dynamic member: the killed one is expired after 6 s
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_string()),
    ];

    // A first run saves and commits the first records, and stops.
    produce(&producer, 2000, 30, 0).await?;
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &env, &logs).await?;
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

    // The next run restores that and joins the group (the join is written to
    // `__consumer_offsets` too). Then the broker refuses every commit, and more records come.
    produce(&producer, 2000, 30, 0).await?;
    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &env, &logs).await?;
    let k = kafka.clone();
    wait::until(
        "analytics to join its group",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let k = k.clone();
            async move {
                orderflowctl::describe_group(&k, GROUP_ANALYTICS, Duration::from_secs(5))
                    .ok()
                    .filter(|g| g.state == "Stable" && g.members == 1)
            }
        },
    )
    .await?;
    let settings = dynamic_settings(&kafka, OFFSETS_TOPIC).await?;
    let mut refusing = settings.clone();
    refusing.push(("max.message.bytes".to_string(), "1".to_string()));
    alter_topic(&kafka, OFFSETS_TOPIC, &refusing).await?;
    let failures_before = log_lines(&svc.log, "offset commit failed; will retry").len();
    produce(&producer, 1000, 30, 0).await?;
    let log = svc.log.clone();
    let k = kafka.clone();
    let paused = wait::until(
        "a snapshot acknowledged ahead of a refused commit",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let (log, k) = (log.clone(), k.clone());
            async move {
                let failed = log_lines(&log, "offset commit failed; will retry");
                if failed.len() <= failures_before {
                    return None;
                }
                let snaps = read_snapshots(&k).ok()?;
                let Some(SnapshotRecord::SnapshotCheckpoint(c)) = snaps.latest.get("#checkpoint")
                else {
                    return None;
                };
                let saved: i64 = c.positions.values().flat_map(|p| p.values()).sum();
                let committed_sum: i64 = committed(&k).ok()?.values().sum();
                (saved > committed_sum).then(|| failed.last().cloned())
            }
        },
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
    assert!(
        committed_sum >= 4000,
        "the first run's commits at least ({committed_sum})"
    );
    assert!(
        saved > committed_sum,
        "the snapshot should be ahead of the commit (snapshot {saved}, committed {committed_sum})"
    );
    eprintln!("refused commit {paused:?}: the snapshot counts {} orders at positions summing to {saved}, the commits sum to {committed_sum}", c.orders_total);
    svc.kill(); // SIGKILL
    alter_topic(&kafka, OFFSETS_TOPIC, &settings).await?;

    let svc = Service::start(ServiceKind::Analytics, &broker.bootstrap, &env, &logs).await?;
    produce(&producer, 1000, 30, 0).await?;
    let after = analytics_caught_up(&kafka, &svc.url, Duration::from_secs(120)).await?;
    assert_eq!(after["restored_from_snapshot"], true, "{after}");
    assert_eq!(data(&after), oracle(&kafka)?, "each record counted once");
    assert_eq!(after["orders_total"], 6000);

    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The settings `topic` was given (its dynamic topic configuration), to give them back.
async fn dynamic_settings(
    kafka: &KafkaConfig,
    topic: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let mut out = Vec::new();
    for r in admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await?
    {
        let resource = r.map_err(|e| anyhow::anyhow!("DescribeConfigs {topic}: {e}"))?;
        out.extend(
            resource
                .entries
                .into_iter()
                .filter(|e| e.source == ConfigSource::DynamicTopic)
                .filter_map(|e| Some((e.name, e.value?))),
        );
    }
    anyhow::ensure!(
        out.iter()
            .any(|(k, v)| k == "cleanup.policy" && v == "compact"),
        "{topic}'s settings as read: {out:?}"
    );
    Ok(out)
}

/// Replace `topic`'s dynamic configuration with `settings` (AlterConfigs replaces the whole
/// set, so what stays is repeated).
async fn alter_topic(
    kafka: &KafkaConfig,
    topic: &str,
    settings: &[(String, String)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let config = settings.iter().fold(
        AlterConfig::new(ResourceSpecifier::Topic(topic)),
        |c, (k, v)| c.set(k, v),
    );
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.alter_configs(&[config], &opts).await? {
        if let Err((resource, code)) = r {
            anyhow::bail!("AlterConfigs {resource:?}: {code}");
        }
    }
    Ok(())
}
