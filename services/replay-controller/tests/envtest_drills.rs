//! Drills against the real kube-apiserver v1.33 + etcd and a real broker (as envtest/main.rs):
//! `resetTo: none` holds inventory down (its stand-in process stops), orders pile up, then
//! inventory is restored and drains them slowly (THROTTLE_MS). A maxDrainSeconds smaller
//! than the drain fails the drill, a generous one passes it; the verdict is in the status,
//! the condition DrillPassed, an Event, and the controller's
//! `orderflow_replay_drill_drain_seconds` on /metrics. Nothing is reset; only inventory is
//! scaled. The CRD's CEL rules refuse a drill without spec.lag or with a reset's fields.

mod common;

use std::time::Duration;

use common::{
    apply_rr, create_deployment, event_reasons_with, phase, replicas, rr, setup, start_controller,
    wait_rr,
};
use kube::Client;
use orderflow_events::GROUP_INVENTORY;
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::envtest::StandIn;
use orderflow_testkit::{wait, Service, ServiceKind};
use replay_controller::crd::{DrillVerdict, LagStatus, Phase};
use serde_json::json;

const ORDERS: u64 = 300;

/// Run the drill `name` with `max_drain` seconds: hold inventory at 0 for 8 s, post orders
/// while it is down, wait for the verdict. Returns the final lag status.
async fn drill(
    c: &Client,
    kafka: &KafkaConfig,
    inventory: &StandIn,
    order: &Service,
    name: &'static str,
    max_drain: u32,
) -> anyhow::Result<LagStatus> {
    let ns = "default";
    apply_rr(
        c,
        ns,
        rr(
            name,
            json!({"resetTo": "none",
                   "lag": {"deployment": "inventory", "replicas": 0, "holdSeconds": 8,
                           "sampleSeconds": 1, "maxDrainSeconds": max_drain}}),
        ),
    )
    .await?;
    wait_rr(c, ns, name, "HoldingLag", Duration::from_secs(30), |o| {
        phase(o) == Phase::HoldingLag
    })
    .await?;
    wait::until(
        "the inventory stand-in to stop its process",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let stopped = inventory.url().is_none();
            async move { stopped.then_some(()) }
        },
    )
    .await?;
    // and its consumer has left the group: a process still shutting down could otherwise
    // decide orders posted now, and the lag would not show all of them
    wait::until(
        "group inventory without members",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let k = kafka.clone();
            async move {
                let info = tokio::task::spawn_blocking(move || {
                    orderflowctl::describe_group(&k, GROUP_INVENTORY, Duration::from_secs(5))
                })
                .await
                .ok()?
                .ok()?;
                (info.members == 0).then_some(())
            }
        },
    )
    .await?;
    let (status, _) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": ORDERS}),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(status, 200);
    let done = wait_rr(c, ns, name, "final", Duration::from_secs(120), |o| {
        phase(o).is_final()
    })
    .await?;
    let st = done.status.unwrap_or_default();
    // the drill ran: Succeeded whatever its verdict, inventory back at 1, nothing reset
    assert_eq!(st.phase, Phase::Succeeded, "{name}: {:?}", st.message);
    assert!(st.offsets.is_empty() && st.restore.is_empty(), "{st:?}");
    assert_eq!(replicas(c, ns, "inventory").await?, 1);
    let lag = st.lag.clone().unwrap_or_default();
    assert!(lag.peak >= ORDERS as i64, "{name}: {lag:?}");
    // the lag in seconds was measured while the orders waited
    assert!(lag.peak_seconds.is_some_and(|s| s > 0.0), "{name}: {lag:?}");
    assert!(lag
        .samples
        .iter()
        .any(|s| s.seconds.is_some_and(|s| s > 0.0)));
    assert_eq!(
        lag.samples.last().map(|s| (s.lag, s.seconds)),
        Some((0, Some(0.0)))
    );
    let verdict = lag
        .drill
        .ok_or_else(|| anyhow::anyhow!("{name}: no verdict"))?;
    let cond = st
        .conditions
        .iter()
        .find(|c| c.type_ == "DrillPassed")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{name}: no DrillPassed condition"))?;
    assert_eq!(cond.reason.as_deref(), Some(verdict.reason()));
    assert_eq!(
        cond.status,
        if verdict == DrillVerdict::Passed {
            "True"
        } else {
            "False"
        }
    );
    // no ScalingDown / Resetting / Restoring: straight to holding
    let reasons = event_reasons_with(c, ns, name, verdict.reason()).await?;
    assert_eq!(
        reasons,
        ["HoldingLag", "Succeeded", verdict.reason()],
        "{name}"
    );
    Ok(lag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drills_without_a_reset_get_a_verdict_and_a_metric() -> anyhow::Result<()> {
    let env = setup("drills").await?;
    let (c, ns) = (env.client.clone(), "default");

    // the CEL rules, as a user would apply the request
    for (bad, why) in [
        ("resetTo: none", "spec.lag is required"),
        (
            "resetTo: none\n  deployment: analytics\n  lag: {deployment: inventory, replicas: 0, holdSeconds: 5}",
            "spec.consumerGroup, spec.deployment and spec.topics are not used",
        ),
        (
            "resetTo: earliest\n  topics: [orders]",
            "spec.consumerGroup, spec.deployment and spec.topics are required unless spec.resetTo is none",
        ),
    ] {
        let yaml = format!(
            "apiVersion: orderflow.io/v1alpha1\nkind: ReplayRequest\nmetadata: {{name: bad}}\nspec:\n  {bad}\n"
        );
        let file = env.dir.join("bad.yaml");
        std::fs::write(&file, yaml)?;
        let err = env
            .cp
            .kubectl(&["apply", "-f", &file.display().to_string()])
            .expect_err(bad);
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }

    create_deployment(&c, ns, "inventory", 1).await?;
    let logs = env.dir.join("logs");
    // inventory drains slowly: 20 ms per order, about 6 s for the orders of one drill
    let inventory = StandIn::spawn(
        c.clone(),
        ns,
        "inventory",
        ServiceKind::Inventory,
        env.broker.bootstrap.clone(),
        vec![("THROTTLE_MS", "20".to_string())],
        logs.clone(),
    );
    let order = Service::start(ServiceKind::Order, &env.broker.bootstrap, &[], &logs).await?;
    let ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;
    let kafka = env.broker.kafka();

    let failed = drill(&c, &kafka, &inventory, &order, "drill-tight", 1).await?;
    assert_eq!(failed.drill, Some(DrillVerdict::Failed), "{failed:?}");
    let took = failed.drained_after_seconds.unwrap_or_default();
    assert!(took > 1.0, "drained in {took} s");

    let passed = drill(&c, &kafka, &inventory, &order, "drill-generous", 300).await?;
    assert_eq!(passed.drill, Some(DrillVerdict::Passed), "{passed:?}");
    assert!(passed.drained_after_seconds.is_some_and(|s| s <= 300.0));

    let m = reqwest::get(format!("{}/metrics", ctl.url))
        .await?
        .text()
        .await?;
    for line in [
        "orderflow_replay_drill_drain_seconds_count{group=\"inventory\",verdict=\"failed\"} 1",
        "orderflow_replay_drill_drain_seconds_count{group=\"inventory\",verdict=\"passed\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
    }

    ctl.stop(Duration::from_secs(10)).await?;
    inventory.shutdown().await;
    drop(order);
    env.passed();
    Ok(())
}
