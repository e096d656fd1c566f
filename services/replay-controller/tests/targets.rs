//! The reset targets beyond earliest / latest / a timestamp, and undo, against a real
//! kube-apiserver v1.33 + etcd (scripts/envtest) and Apache Kafka 4.3.1 (see envtest/main.rs for
//! the bed): the CRD's CEL rules refuse invalid combinations (kubectl apply); toOffsets,
//! shiftBy and byDuration requests end on the offsets Kafka's own tool plans for the same
//! group (`kafka-consumer-groups --reset-offsets --from-file / --shift-by / --by-duration
//! --dry-run`), read back from Kafka; an undo restores exactly the offsets the undone request
//! recorded as `from`; an undo of a request that is missing fails clearly.
//!
//! No stand-in runs the analytics Deployment here: the group has no members, and the
//! controller's scale-down / restore still happens on the Deployment (checked).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    apply_rr, create_deployment, failed_reason, phase, replicas, rr, setup, start_controller,
    wait_rr,
};
use orderflow_runtime::KafkaConfig;
use replay_controller::crd::{Phase, ReplayRequestStatus};
use serde_json::{json, Value};

const NS: &str = "default";
const GROUP: &str = "analytics";

/// 10 records on each partition of orders; record i written `105 - 10 i` minutes ago (a
/// duration of a round number of minutes never falls on a record, whatever the seconds
/// between the tool's plan and the controller's).
async fn produce_minutes_apart(kafka: &KafkaConfig) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = kafka.producer("rc-test").create()?;
    let now = chrono::Utc::now().timestamp_millis();
    for p in 0..3 {
        for i in 0..10i64 {
            let payload = format!("{{\"p\":{p},\"i\":{i}}}");
            let record = FutureRecord::<(), _>::to("orders")
                .partition(p)
                .payload(&payload)
                .timestamp(now - (105 - 10 * i) * 60_000);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)?;
        }
    }
    Ok(())
}

/// `kafka-consumer-groups --reset-offsets --group analytics --dry-run ARGS`: its plan as
/// `(partition, new offset)`, sorted.
fn tool_plan(bootstrap: &str, args: &[&str]) -> anyhow::Result<Vec<(i32, i64)>> {
    let script = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../../scripts/kafka.sh");
    let out = Command::new("bash")
        .arg(script)
        .args([
            "tool",
            "kafka-consumer-groups",
            "--bootstrap-server",
            bootstrap,
        ])
        .args(["--reset-offsets", "--group", GROUP, "--dry-run"])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "kafka-consumer-groups {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // GROUP TOPIC PARTITION NEW-OFFSET
    let mut plan = Vec::new();
    for row in stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
    {
        if row.first() == Some(&GROUP) && row.len() >= 4 {
            plan.push((row[2].parse()?, row[3].parse()?));
        }
    }
    plan.sort_unstable();
    anyhow::ensure!(!plan.is_empty(), "no plan in {stdout}");
    Ok(plan)
}

/// The group's committed offsets on orders, read from Kafka.
async fn committed(kafka: &KafkaConfig) -> anyhow::Result<Vec<(i32, i64)>> {
    let k = kafka.clone();
    let c = tokio::task::spawn_blocking(move || {
        orderflowctl::committed_offsets(&k, GROUP, &["orders"], Duration::from_secs(10))
    })
    .await??;
    Ok(c.iter()
        .map(|c| (c.partition, c.offset.unwrap_or(-1)))
        .collect())
}

fn spec(extra: Value) -> Value {
    let mut v = json!({"consumerGroup": GROUP, "deployment": "analytics", "topics": ["orders"]});
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v
}

/// Apply request `name` with `extra` spec fields and wait until it is final. No analytics
/// process runs here, so once the request follows the group (CatchingUp) the test does what
/// the consumers would: it commits the high watermarks the request recorded; once the request
/// is final, it commits the group back to where the reset put it (read from Kafka at
/// CatchingUp), so that the next step starts from the reset's offsets, as the tool's plans
/// and the assertions below expect.
async fn run(
    c: &kube::Client,
    kafka: &KafkaConfig,
    name: &str,
    extra: Value,
) -> anyhow::Result<ReplayRequestStatus> {
    apply_rr(c, NS, rr(name, spec(extra))).await?;
    let o = wait_rr(
        c,
        NS,
        name,
        "CatchingUp or final",
        Duration::from_secs(60),
        |o| phase(o) == Phase::CatchingUp || phase(o).is_final(),
    )
    .await?;
    let o = if phase(&o) == Phase::CatchingUp {
        let at_reset: Vec<(String, i32, i64)> = committed(kafka)
            .await?
            .into_iter()
            .filter(|(_, o)| *o >= 0)
            .map(|(p, o)| ("orders".to_string(), p, o))
            .collect();
        let ends: Vec<(String, i32, i64)> = o
            .status
            .and_then(|s| s.catch_up)
            .unwrap_or_default()
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.target))
            .collect();
        common::commit_offsets(kafka, GROUP, &ends)?;
        let o = wait_rr(c, NS, name, "final", Duration::from_secs(60), |o| {
            phase(o).is_final()
        })
        .await?;
        common::commit_offsets(kafka, GROUP, &at_reset)?;
        o
    } else {
        o
    };
    let reason = failed_reason(&o);
    let st = o.status.unwrap_or_default();
    anyhow::ensure!(
        st.phase == Phase::Succeeded || !reason.is_empty(),
        "{name}: {:?}",
        st.message
    );
    Ok(st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_targets_end_where_kafkas_tool_says_and_an_undo_restores_the_offsets_before(
) -> anyhow::Result<()> {
    let env = setup("targets").await?;
    let (c, b) = (env.client.clone(), env.broker.bootstrap.clone());
    let kafka = env.broker.kafka();
    create_deployment(&c, NS, "analytics", 2).await?;
    produce_minutes_apart(&kafka).await?;

    // 1. the CEL rules refuse what no target can mean (kubectl, as a user applies it)
    for (bad, why) in [
        (
            "resetTo: shiftBy\n  shiftBy: -5\n  timestamp: \"2026-11-22T10:00:00Z\"",
            "spec.timestamp is required when spec.resetTo is timestamp, and allowed only then",
        ),
        (
            "resetTo: toOffsets\n  duration: PT1H\n  offsets: [{topic: orders, partition: 0, offset: 1}]",
            "spec.duration is required when spec.resetTo is byDuration, and allowed only then",
        ),
        (
            "resetTo: earliest\n  undoOf: replay-1",
            "exactly one of spec.resetTo and spec.undoOf is required",
        ),
        (
            "resetTo: byDuration",
            "spec.duration is required when spec.resetTo is byDuration",
        ),
        (
            "resetTo: shiftBy",
            "spec.shiftBy is required when spec.resetTo is shiftBy",
        ),
        (
            "resetTo: toOffsets",
            "spec.offsets is required when spec.resetTo is toOffsets",
        ),
        (
            "allowTruncated: true",
            "exactly one of spec.resetTo and spec.undoOf is required",
        ),
        ("resetTo: byDuration\n  duration: 1h", "spec.duration"),
        ("resetTo: shiftby\n  shiftBy: 1", "Unsupported value: \"shiftby\""),
    ] {
        let yaml = format!(
            "apiVersion: orderflow.io/v1alpha1\nkind: ReplayRequest\nmetadata: {{name: bad}}\nspec:\n  consumerGroup: analytics\n  deployment: analytics\n  topics: [orders]\n  {bad}\n"
        );
        let file = env.dir.join("bad.yaml");
        std::fs::write(&file, yaml)?;
        let err = env
            .cp
            .kubectl(&["apply", "-f", &file.display().to_string()])
            .expect_err(bad);
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }

    let ctl = start_controller(&env, &[("WATCH_NAMESPACE", NS.to_string())]).await?;

    // 2. toOffsets: the offsets Kafka's --from-file plans on the same group
    let csv = env.dir.join("offsets.csv");
    std::fs::write(&csv, "orders,0,5\norders,1,6\norders,2,7\n")?;
    let theirs = tool_plan(&b, &["--from-file", &csv.display().to_string()])?;
    let st = run(
        &c,
        &kafka,
        "to-offsets",
        json!({"resetTo": "toOffsets", "offsets": [
            {"topic": "orders", "partition": 0, "offset": 5},
            {"topic": "orders", "partition": 1, "offset": 6},
            {"topic": "orders", "partition": 2, "offset": 7}]}),
    )
    .await?;
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    assert_eq!(committed(&kafka).await?, theirs);
    assert_eq!(theirs, vec![(0, 5), (1, 6), (2, 7)]);
    assert_eq!(replicas(&c, NS, "analytics").await?, 2);

    // 3. shiftBy: back 6 records, kept at the log start as the tool does
    let theirs = tool_plan(&b, &["--topic", "orders", "--shift-by", "-6"])?;
    let shift = run(
        &c,
        &kafka,
        "shift",
        json!({"resetTo": "shiftBy", "shiftBy": -6}),
    )
    .await?;
    assert_eq!(shift.phase, Phase::Succeeded, "{:?}", shift.message);
    assert_eq!(committed(&kafka).await?, theirs);
    assert_eq!(theirs, vec![(0, 0), (1, 0), (2, 1)]);
    let moves: Vec<(i32, Option<i64>, i64)> = shift
        .offsets
        .iter()
        .map(|o| (o.partition, o.from, o.to))
        .collect();
    assert_eq!(
        moves,
        vec![(0, Some(5), 0), (1, Some(6), 0), (2, Some(7), 1)]
    );

    // 4. byDuration: the first record written in the last 30 minutes (record 8)
    let theirs = tool_plan(&b, &["--topic", "orders", "--by-duration", "PT30M"])?;
    let st = run(
        &c,
        &kafka,
        "by-duration",
        json!({"resetTo": "byDuration", "duration": "PT30M"}),
    )
    .await?;
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    assert_eq!(committed(&kafka).await?, theirs);
    assert_eq!(theirs, vec![(0, 8), (1, 8), (2, 8)]);

    // 5. undo of "shift": exactly the offsets before it (5, 6, 7), read back from Kafka,
    //    through the same scale-down and restore
    let undo = run(&c, &kafka, "undo-shift", json!({"undoOf": "shift"})).await?;
    assert_eq!(undo.phase, Phase::Succeeded, "{:?}", undo.message);
    assert_eq!(committed(&kafka).await?, vec![(0, 5), (1, 6), (2, 7)]);
    let moves: Vec<(i32, Option<i64>, i64)> = undo
        .offsets
        .iter()
        .map(|o| (o.partition, o.from, o.to))
        .collect();
    assert_eq!(
        moves,
        vec![(0, Some(8), 5), (1, Some(8), 6), (2, Some(8), 7)]
    );
    assert!(
        undo.message
            .unwrap_or_default()
            .contains("to undo of shift"),
        "message names the undone request"
    );
    assert_eq!(replicas(&c, NS, "analytics").await?, 2);

    // 6. an undo of a request that does not exist fails clearly, nothing touched
    let st = run(&c, &kafka, "undo-nothing", json!({"undoOf": "nope"})).await?;
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(
        st.message.as_deref(),
        Some("spec.undoOf: ReplayRequest nope not found in this namespace")
    );
    let o = wait_rr(
        &c,
        NS,
        "undo-nothing",
        "Failed",
        Duration::from_secs(5),
        |o| failed_reason(o) == "UndoTargetNotFound",
    )
    .await;
    assert!(o.is_ok());
    assert_eq!(committed(&kafka).await?, vec![(0, 5), (1, 6), (2, 7)]);

    ctl.stop(Duration::from_secs(10)).await?;
    env.passed();
    Ok(())
}
