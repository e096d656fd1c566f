//! A shadow replay's analytics: the same binary with `CONSUMER_GROUP=analytics-shadow-t1`,
//! run beside the live one, consumes and commits as its own group, keeps its state in its
//! own compacted `analytics-shadow-t1-snapshots` (created at start-up), samples its own
//! group's lag, and counts what the live one counts; the live group's commits and
//! snapshots stay the live run's.

mod common;

use std::time::Duration;

use orderflow_events::{analytics_snapshots_topic, SnapshotRecord, GROUP_ANALYTICS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::probes::analytics_caught_up;
use orderflow_testkit::procs::{get_json, test_dir};
use orderflow_testkit::{wait, Broker, Service, ServiceKind};
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use serde_json::{json, Value};

use common::*;

const SHADOW: &str = "analytics-shadow-t1";
const TOPICS: [&str; 2] = ["orders", "inventory-events"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_group_counts_beside_the_live_one_with_state_of_its_own() -> anyhow::Result<()> {
    let dir = test_dir("analytics-shadow-group");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("shadow-group-test").create()?;
    produce(&producer, 1000, 10, 0).await?;
    let commit = ("COMMIT_INTERVAL_MS", "200".to_string());
    let shadow_env = [commit.clone(), ("CONSUMER_GROUP", SHADOW.to_string())];
    let (live_logs, shadow_logs) = (dir.join("logs/live"), dir.join("logs/shadow"));

    let live = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &[commit],
        &live_logs,
    )
    .await?;
    let live_view = analytics_caught_up(&kafka, &live.url, Duration::from_secs(120)).await?;
    let shadow = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &shadow_env,
        &shadow_logs,
    )
    .await?;
    let shadow_view = analytics_caught_up(&kafka, &shadow.url, Duration::from_secs(120)).await?;
    let held = oracle(&kafka)?;
    assert_eq!(held["orders_total"], 1000);
    assert_eq!(data(&live_view), held);
    assert_eq!(
        data(&shadow_view),
        held,
        "the shadow counts what the live one counts"
    );
    assert_eq!(
        shadow_view["restored_from_snapshot"], false,
        "nothing of the live state"
    );
    let (live_run, shadow_run) = (run_of(&live_view), run_of(&shadow_view));
    assert_ne!(live_run, shadow_run);

    // Each group commits its own run, up to what it consumed.
    committed_run(&kafka, SHADOW, &shadow_view).await?;
    committed_run(&kafka, GROUP_ANALYTICS, &live_view).await?;

    // The shadow's state topic: created compacted, only the shadow's run in it; the live one
    // has nothing of the shadow.
    let topic = analytics_snapshots_topic(SHADOW);
    assert_eq!(topic, "analytics-shadow-t1-snapshots");
    let settings = dynamic_settings(&kafka, &topic).await?;
    assert!(
        settings.contains(&("cleanup.policy".to_string(), "compact".to_string())),
        "{topic}: {settings:?}"
    );
    let snaps = read_snapshots_of(&kafka, &topic)?;
    assert!(
        snaps
            .latest
            .values()
            .any(|r| matches!(r, SnapshotRecord::SnapshotCheckpoint(_))),
        "a checkpoint in {topic}"
    );
    assert!(snaps.latest.values().all(|r| r.run() == shadow_run));
    let live_snaps = read_snapshots(&kafka)?;
    assert!(!live_snaps.latest.is_empty());
    assert!(live_snaps.latest.values().all(|r| r.run() == live_run));

    // Its dashboard samples inventory and its own group.
    let dash = get_json(&shadow.url, "/api/dashboard").await?;
    assert_eq!(dash["lag"]["groups"], json!(["inventory", SHADOW]));

    assert!(
        shadow.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    // A restart of the shadow restores its own state.
    let shadow = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &shadow_env,
        &shadow_logs,
    )
    .await?;
    let again = analytics_caught_up(&kafka, &shadow.url, Duration::from_secs(60)).await?;
    assert_eq!(again["restored_from_snapshot"], true);
    assert_eq!(run_of(&again), shadow_run);
    assert_eq!(data(&again), held);

    assert!(
        shadow.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    assert!(
        live.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn run_of(view: &Value) -> String {
    view["run"].as_str().unwrap_or_default().to_string()
}

/// Wait until `group` has committed, on every partition, the offset `view` consumed, with
/// `view`'s run in the commit metadata.
async fn committed_run(kafka: &KafkaConfig, group: &str, view: &Value) -> anyhow::Result<()> {
    let run = format!("run={}", run_of(view));
    wait::until(
        &format!("{group} to commit its run"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (k, g, run, view) = (kafka.clone(), group.to_string(), run.clone(), view.clone());
            async move {
                let got = tokio::task::spawn_blocking(move || {
                    orderflowctl::committed_offsets(&k, &g, &TOPICS, Duration::from_secs(5))
                })
                .await
                .ok()?
                .ok()?;
                let all = got.len() == 6
                    && got.iter().all(|c| {
                        let consumed = view["consumed"][&c.topic][c.partition.to_string()].as_i64();
                        c.offset.is_some() && c.offset == consumed && c.metadata.contains(&run)
                    });
                all.then_some(())
            }
        },
    )
    .await
}

/// The dynamic configuration of `topic`.
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
    Ok(out)
}
