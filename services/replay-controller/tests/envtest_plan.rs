//! Plan, then execute, then follow the replay (issue 19), on the real kube-apiserver and
//! broker of envtest/main.rs (stand-in kubelets run the analytics and inventory processes):
//! - a dry run leaves the replicas and the committed offsets as they were; its plan is the one
//!   Kafka's own `kafka-consumer-groups --reset-offsets --to-earliest --dry-run` prints, and
//!   its estimate comes from the consume rate measured while analytics consumed;
//! - set to execute, the plan is made again (both kept when they differ), and CatchingUp
//!   reports `caughtUpAt` within 1 s of when the group's committed offsets really passed the
//!   high watermarks read at reset time (polled by the test);
//! - a deployment a HorizontalPodAutoscaler scales is refused (AutoscalerConflict).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{
    apply_rr, create_deployment, delete_records, event_reasons_with, log_ends, metrics_when, phase,
    replicas, rr, setup, stand_ins, start_controller, wait_rr,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, Patch, PatchParams, PostParams};
use orderflow_testkit::{wait, Service, ServiceKind};
use replay_controller::crd::{Phase, ReplayRequest};
use serde_json::json;

const NS: &str = "default";

/// `(topic, partition, new offset)` rows of `kafka-consumer-groups --reset-offsets
/// --to-earliest --dry-run` on `topics` (`scripts/kafka.sh tool`), sorted.
fn kafka_dry_run(bootstrap: &str, group: &str, topics: &[&str]) -> Vec<(String, i32, i64)> {
    let script = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../../scripts/kafka.sh");
    let mut args = vec![
        "tool",
        "kafka-consumer-groups",
        "--bootstrap-server",
        bootstrap,
        "--group",
        group,
        "--reset-offsets",
        "--to-earliest",
        "--dry-run",
    ];
    for t in topics {
        args.extend(["--topic", t]);
    }
    let out = Command::new("bash")
        .arg(script)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/kafka.sh runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kafka-consumer-groups failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // GROUP TOPIC PARTITION NEW-OFFSET
    let mut rows: Vec<(String, i32, i64)> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.len() == 4 && r[0] == group)
        .map(|r| {
            (
                r[1].to_string(),
                r[2].parse().expect("a partition"),
                r[3].parse().expect("an offset"),
            )
        })
        .collect();
    rows.sort();
    assert!(!rows.is_empty(), "no plan in {text}");
    rows
}

async fn scale(c: &kube::Client, name: &str, n: i32) -> anyhow::Result<()> {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.clone(), NS)
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": n}})),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_plans_like_kafka_and_the_executed_replay_reports_when_it_caught_up(
) -> anyhow::Result<()> {
    let env = setup("plan").await?;
    let c = env.client.clone();
    let kafka = env.broker.kafka();
    create_deployment(&c, NS, "analytics", 1).await?;
    create_deployment(&c, NS, "inventory", 1).await?;
    let logs = env.dir.join("logs");
    let (analytics, inventory) = stand_ins(&env, NS, &logs);
    let order = Service::start(ServiceKind::Order, &env.broker.bootstrap, &[], &logs).await?;
    let bulk = |n: u64| {
        let order = &order;
        async move {
            let (status, _) = order
                .post_json(
                    "/orders/bulk",
                    &json!({"count": n}),
                    Duration::from_secs(60),
                )
                .await?;
            anyhow::ensure!(status == 200, "bulk {n}: {status}");
            anyhow::Ok(())
        }
    };
    bulk(1500).await?;
    metrics_when(&analytics, "analytics to count 1500 orders", |m| {
        m["orders_total"] == 1500
    })
    .await?;
    // orders[1] lost its oldest records (retention): earliest is 3 there
    assert_eq!(delete_records(&kafka, "orders", 1, 3).await?, 3);
    let ctl = start_controller(&env, &[("WATCH_NAMESPACE", NS.to_string())]).await?;
    let topics = ["orders", "inventory-events"];
    let spec = |dry: bool| {
        json!({"consumerGroup": "analytics", "deployment": "analytics",
               "topics": topics, "resetTo": "earliest", "dryRun": dry})
    };

    // 1. a dry run while analytics consumes: the rate is measured, nothing is touched
    apply_rr(&c, NS, rr("plan-live", spec(true))).await?;
    wait_rr(
        &c,
        NS,
        "plan-live",
        "measuring",
        Duration::from_secs(30),
        |o| o.status.as_ref().is_some_and(|s| s.rate_sample.is_some()),
    )
    .await?;
    bulk(1000).await?;
    let o = wait_rr(
        &c,
        NS,
        "plan-live",
        "Planned",
        Duration::from_secs(30),
        |o| phase(o) == Phase::Planned,
    )
    .await?;
    let plan = o.status.and_then(|s| s.plan).unwrap_or_default();
    let rate = plan.consume_rate.unwrap_or(0.0);
    assert!(rate > 0.0, "{plan:?}");
    assert!(plan.estimated_catch_up_seconds.is_some(), "{plan:?}");
    assert_eq!(analytics.seen(), vec![1]);
    assert_eq!(replicas(&c, NS, "analytics").await?, 1);

    // 2. the group stopped (by hand): a dry run has no rate, and plans what Kafka's tool plans
    scale(&c, "analytics", 0).await?;
    wait::until(
        "the analytics stand-in to stop",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let stopped = analytics.url().is_none();
            async move { stopped.then_some(()) }
        },
    )
    .await?;
    let before = log_ends(&kafka).await?;
    apply_rr(&c, NS, rr("plan-idle", spec(true))).await?;
    let o = wait_rr(
        &c,
        NS,
        "plan-idle",
        "Planned",
        Duration::from_secs(30),
        |o| phase(o) == Phase::Planned,
    )
    .await?;
    let st = o.status.clone().unwrap_or_default();
    let dry_plan = st.plan.clone().unwrap_or_default();
    let ours: Vec<(String, i32, i64)> = {
        let mut v: Vec<_> = dry_plan
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.target))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ours,
        kafka_dry_run(&env.broker.bootstrap, "analytics", &topics)
    );
    for p in &dry_plan.partitions {
        let now = before
            .iter()
            .find(|b| b.topic == p.topic && b.partition == p.partition)
            .expect("every partition");
        assert_eq!(
            (p.current, p.high_watermark, p.records_to_reprocess),
            (
                now.committed,
                now.high_watermark,
                now.high_watermark - p.target
            ),
            "{p:?}"
        );
    }
    assert!(ours.contains(&("orders".to_string(), 1, 3)), "{ours:?}");
    assert!(dry_plan.estimated_catch_up_seconds.is_none());
    let why = dry_plan.estimate_missing_reason.clone().unwrap_or_default();
    assert!(why.contains("committed nothing"), "{why}");
    // nothing moved: the committed offsets are as they were, the replicas too
    let after: Vec<_> = log_ends(&kafka).await?;
    assert_eq!(after, before);
    assert_eq!(replicas(&c, NS, "analytics").await?, 0);

    // 3. analytics back, more orders, then execute: the plan is made again and differs
    scale(&c, "analytics", 1).await?;
    bulk(500).await?;
    let rrs: Api<ReplayRequest> = Api::namespaced(c.clone(), NS);
    rrs.patch(
        "plan-idle",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"dryRun": false}})),
    )
    .await?;
    // the targets, as soon as the status has them (written with Restoring), then the truth:
    // when every committed offset is at or past its target, polled every 20 ms
    let targets = wait::until(
        "plan-idle: the catch-up targets",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let rrs = rrs.clone();
            async move {
                let o = rrs.get("plan-idle").await.ok()?;
                o.status?.catch_up.map(|c| c.partitions)
            }
        },
    )
    .await?;
    let truth: DateTime<Utc> = wait::until(
        "the group to pass the targets",
        Duration::from_secs(120),
        Duration::from_millis(20),
        || {
            let (kafka, targets) = (kafka.clone(), targets.clone());
            async move {
                let now = log_ends(&kafka).await.ok()?;
                let passed = targets.iter().all(|t| {
                    now.iter().any(|p| {
                        p.topic == t.topic
                            && p.partition == t.partition
                            && p.committed.is_some_and(|c| c >= t.target)
                    })
                });
                passed.then(Utc::now)
            }
        },
    )
    .await?;
    let o = wait_rr(&c, NS, "plan-idle", "final", Duration::from_secs(60), |o| {
        phase(o).is_final()
    })
    .await?;
    let st = o.status.unwrap_or_default();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    let cu = st.catch_up.clone().unwrap_or_default();
    let caught: DateTime<Utc> = cu
        .caught_up_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("caughtUpAt");
    let off = (caught - truth).num_milliseconds().abs();
    eprintln!(
        "caughtUpAt {caught}, group seen past the targets at {truth}: {off} ms apart; {} record(s)",
        cu.records_total
    );
    assert!(off <= 1000, "caughtUpAt {caught} vs {truth}: {off} ms");
    assert_eq!((cu.records_left, cu.records_done), (0, cu.records_total));
    // the records it caught up on: reset offsets to the watermarks at reset time
    let total: i64 = cu.partitions.iter().map(|p| p.target - p.from).sum();
    assert_eq!(cu.records_total, total);
    // both plans: executed (with the 500 new orders) and the dry run's
    let executed = st.plan.clone().unwrap_or_default();
    let previous = st.previous_plan.clone().expect("the dry run's plan kept");
    assert_eq!(previous, dry_plan);
    assert!(
        executed.totals.records_to_reprocess > previous.totals.records_to_reprocess,
        "{executed:?} / {previous:?}"
    );
    let reasons = event_reasons_with(&c, NS, "plan-idle", "Succeeded").await?;
    assert_eq!(
        reasons,
        [
            "Planned",
            "ScalingDown",
            "Resetting",
            "Restoring",
            // orders[1] was truncated to 3
            "HistoryTruncated",
            "CatchingUp",
            "Succeeded"
        ]
    );
    // finished: no in-progress series left for it
    let m = reqwest::get(format!("{}/metrics", ctl.url))
        .await?
        .text()
        .await?;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("orderflow_replay_in_progress{") && l.contains("plan-idle")),
        "{m}"
    );

    // 4. an HPA scales analytics: refused before anything is scaled
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "analytics-cpu"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "analytics"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                              "target": {"type": "Utilization", "averageUtilization": 80}}}]}
    }))?;
    Api::<HorizontalPodAutoscaler>::namespaced(c.clone(), NS)
        .create(&PostParams::default(), &hpa)
        .await?;
    let seen = analytics.seen();
    apply_rr(&c, NS, rr("with-hpa", spec(false))).await?;
    let o = wait_rr(&c, NS, "with-hpa", "Failed", Duration::from_secs(30), |o| {
        phase(o) == Phase::Failed
    })
    .await?;
    assert_eq!(common::failed_reason(&o), "AutoscalerConflict");
    let msg = o.status.and_then(|s| s.message).unwrap_or_default();
    assert!(
        msg.contains("HorizontalPodAutoscaler default/analytics-cpu scales deployment analytics"),
        "{msg}"
    );
    assert_eq!(replicas(&c, NS, "analytics").await?, 1);
    assert_eq!(analytics.seen(), seen);

    ctl.stop(Duration::from_secs(10)).await?;
    analytics.shutdown().await;
    inventory.shutdown().await;
    drop(order);
    env.passed();
    Ok(())
}
