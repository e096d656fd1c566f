//! The controller against a real kube-apiserver v1.33 + etcd (scripts/envtest) and the real local
//! broker: the generated CRD applied, Deployments created, ReplayRequests applied, and the
//! results read back from Kubernetes (spec.replicas, status, Events) and Kafka (offsets).
//!
//! No kubelet runs here, so a Deployment's spec.replicas starts nothing by itself. The tests
//! stand in for it (testkit `StandIn`): while the analytics / inventory Deployment has
//! replicas > 0 they run one real analytics-service / inventory-service process, and stop it
//! with SIGTERM (as Kubernetes stops a pod) when the controller scales it to 0. The real
//! kubelet runs the chart's pods in `make e2e` (services/system-tests/tests/kind, on the kind
//! bed); here the controller is under test, and its kill tests need service processes that
//! start and stop in milliseconds beside a broker on the host.

#[path = "../common/mod.rs"]
mod common;
mod history;

use std::time::Duration;

use common::{
    apply_rr, create_deployment, event_reasons, event_reasons_with, failed_reason, log_ends,
    metrics_when, phase, replicas, rr, setup, stand_ins, start_controller, stray_consumer,
    wait_group_members, wait_rr, waiting_for_stray,
};
use kube::api::{Api, DeleteParams};
use orderflow_testkit::{wait, Service, ServiceKind};
use replay_controller::crd::{Phase, ReplayRequest};
use serde_json::json;

/// The users' flow: replay analytics to earliest with lag on inventory, with the
/// controller SIGKILLed and restarted while it holds inventory down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_with_lag_completes_once_across_a_controller_crash() -> anyhow::Result<()> {
    let env = setup("flow").await?;
    let (c, ns) = (env.client.clone(), "default");
    let kafka = env.broker.kafka();
    create_deployment(&c, ns, "analytics", 1).await?;
    create_deployment(&c, ns, "inventory", 2).await?;
    let logs = env.dir.join("logs");
    let (analytics, inventory) = stand_ins(&env, ns, &logs);
    let order = Service::start(ServiceKind::Order, &env.broker.bootstrap, &[], &logs).await?;
    let (status, _) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 2000}),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(status, 200);
    let before = metrics_when(&analytics, "analytics to count 2000 decided orders", |m| {
        m["orders_total"] == 2000
            && m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0)
                == 2000
    })
    .await?;
    // analytics has applied every record: when it is stopped it commits the log ends, and
    // the reset must report them as `from`
    let ends_before = log_ends(&kafka).await?;

    let mut ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;
    apply_rr(
        &c,
        ns,
        rr(
            "replay-1",
            json!({"consumerGroup": "analytics", "deployment": "analytics",
                   "topics": ["orders", "inventory-events"], "resetTo": "earliest",
                   "lag": {"deployment": "inventory", "replicas": 0, "holdSeconds": 20, "sampleSeconds": 1}}),
        ),
    )
    .await?;
    let holding = wait_rr(
        &c,
        ns,
        "replay-1",
        "HoldingLag",
        Duration::from_secs(60),
        |o| phase(o) == Phase::HoldingLag,
    )
    .await?;
    // while inventory is held at 0 (and its stand-in process has stopped), orders pile up: lag
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
    let (status, _) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 1000}),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(status, 200);
    wait_rr(
        &c,
        ns,
        "replay-1",
        "a lag sample of 1000",
        Duration::from_secs(30),
        |o| {
            o.status
                .as_ref()
                .and_then(|s| s.lag.as_ref())
                .is_some_and(|l| l.peak >= 1000)
        },
    )
    .await?;
    // crash in the middle of the request, then start again
    assert_eq!(replicas(&c, ns, "inventory").await?, 0);
    ctl.kill();
    ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;

    let done = wait_rr(
        &c,
        ns,
        "replay-1",
        "Succeeded",
        Duration::from_secs(120),
        |o| phase(o).is_final(),
    )
    .await?;
    let st = done.status.clone().unwrap_or_default();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    assert!(st.restore.is_empty());

    // spec.replicas went down and back, in this order, once each
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);
    assert_eq!(replicas(&c, ns, "inventory").await?, 2);
    wait::until(
        "stand-ins to see the restored replicas",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let ok = analytics.seen().last() == Some(&1) && inventory.seen().last() == Some(&2);
            async move { ok.then_some(()) }
        },
    )
    .await?;
    assert_eq!(analytics.seen(), vec![1, 0, 1]);
    assert_eq!(inventory.seen(), vec![2, 0, 2]);

    // every partition of both topics, from what analytics had committed, to earliest (0)
    assert_eq!(st.offsets.len(), 6);
    for o in &st.offsets {
        assert_eq!(o.to, 0, "{o:?}");
        let end = ends_before
            .iter()
            .find(|p| p.topic == o.topic && p.partition == o.partition)
            .map(|p| p.high_watermark);
        assert_eq!(o.from, end, "{o:?}");
    }
    let lag = st.lag.clone().unwrap_or_default();
    assert!(lag.peak >= 1000, "peak {}", lag.peak);
    assert!(lag.drained_after_seconds.is_some(), "{lag:?}");
    assert!(lag.samples.iter().any(|s| s.lag >= 1000));
    assert_eq!(lag.samples.last().map(|s| s.lag), Some(0));
    assert!(holding.status.and_then(|s| s.lag).is_some());

    // one Event per phase; the crash did not repeat the reset
    let reasons = event_reasons_with(&c, ns, "replay-1", "Succeeded").await?;
    assert_eq!(
        reasons,
        [
            "ScalingDown",
            "Resetting",
            "Restoring",
            "CatchingUp",
            "HoldingLag",
            "Succeeded"
        ],
        "{reasons:?}"
    );

    // the replay: analytics rebuilt from offset 0 and counts all 3000 orders
    let after = metrics_when(&analytics, "analytics to count 3000 decided orders", |m| {
        m["orders_total"] == 3000
            && m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0)
                == 3000
    })
    .await?;
    assert!(before["consumed"].is_object() && after["consumed"].is_object());

    // the controller's own metrics
    let m = reqwest::get(format!("{}/metrics", ctl.url))
        .await?
        .text()
        .await?;
    assert!(m.contains("orderflow_replay_reconciles_total"), "{m}");
    assert!(
        m.contains("orderflow_replay_phase_transitions_total{phase=\"Succeeded\"} 1"),
        "{m}"
    );

    ctl.stop(Duration::from_secs(10)).await?;
    analytics.shutdown().await;
    inventory.shutdown().await;
    drop(order);
    env.passed();
    Ok(())
}

/// Refusals, waiting, one request per group at a time, deletion mid-flight, timeouts and an
/// unreachable Kafka: every path ends with the deployments at their previous replica counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_queueing_deletion_and_timeouts_restore_the_deployments() -> anyhow::Result<()> {
    let env = setup("safety").await?;
    let (c, ns) = (env.client.clone(), "default");
    let kafka = env.broker.kafka();
    create_deployment(&c, ns, "analytics", 1).await?;
    create_deployment(&c, ns, "inventory", 3).await?;

    // 1. the CRD schema refuses what it can (kubectl, as a user would apply it)
    for (bad, why) in [
        ("resetTo: yesterday", "Unsupported value: \"yesterday\""),
        (
            "resetTo: earliest\n  lag: {deployment: inventory, replicas: -1, holdSeconds: 5}",
            "should be greater than or equal to 0",
        ),
        ("resetTo: timestamp\n  timestamp: not-a-time", "timestamp"),
        // the CEL rule (x-kubernetes-validations), both ways
        (
            "resetTo: timestamp",
            "spec.timestamp is required when spec.resetTo is timestamp",
        ),
        (
            "resetTo: earliest\n  timestamp: \"2026-11-22T10:00:00Z\"",
            "spec.timestamp is required when spec.resetTo is timestamp",
        ),
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

    let ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;

    // 2. what the schema cannot say ends Failed with a reason, deployments untouched
    apply_rr(&c, ns, rr("no-deploy", json!({"consumerGroup": "analytics", "deployment": "analytix", "topics": ["orders"], "resetTo": "earliest"}))).await?;
    let o = wait_rr(
        &c,
        ns,
        "no-deploy",
        "Failed",
        Duration::from_secs(30),
        |o| phase(o) == Phase::Failed,
    )
    .await?;
    assert_eq!(failed_reason(&o), "DeploymentNotFound");
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);

    // 3. a consumer outside the deployment keeps the group busy: the request waits,
    //    saying so; a second request for the same group queues behind it
    let (stop_stray, stray) = stray_consumer(&kafka)?;
    wait_group_members(&kafka, 1).await?;
    apply_rr(&c, ns, rr("first", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "latest"}))).await?;
    let o = wait_rr(
        &c,
        ns,
        "first",
        "waiting for the group",
        Duration::from_secs(30),
        waiting_for_stray,
    )
    .await?;
    assert_eq!(o.status.map(|s| s.restore.len()), Some(1));
    assert_eq!(replicas(&c, ns, "analytics").await?, 0);
    apply_rr(&c, ns, rr("second", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "earliest", "timeoutSeconds": 3}))).await?;
    wait_rr(
        &c,
        ns,
        "second",
        "queued behind first",
        Duration::from_secs(30),
        |o| {
            phase(o) == Phase::Pending
                && o.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.contains("waiting for ReplayRequest first"))
        },
    )
    .await?;

    // 4. deleting the first mid-flight restores analytics (finalizer) and lets it go
    Api::<ReplayRequest>::namespaced(c.clone(), ns)
        .delete("first", &DeleteParams::default())
        .await?;
    wait::until(
        "first to be gone",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let api = Api::<ReplayRequest>::namespaced(c.clone(), ns);
            async move { matches!(api.get_opt("first").await, Ok(None)).then_some(()) }
        },
    )
    .await?;

    // 5. the second starts, the stray consumer is still there: after timeoutSeconds it
    //    fails and analytics is back at 1
    let o = wait_rr(&c, ns, "second", "Failed", Duration::from_secs(60), |o| {
        phase(o) == Phase::Failed
    })
    .await?;
    assert_eq!(failed_reason(&o), "GroupNotEmpty");
    assert!(o
        .status
        .and_then(|s| s.message)
        .unwrap_or_default()
        .contains("restored analytics to 1"));
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);
    let reasons = event_reasons(&c, ns, "first").await?;
    assert!(reasons.contains(&"Deleted".to_string()), "{reasons:?}");
    stop_stray.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stray.join();

    // 6. Kafka unreachable: retried with backoff and shown in the status, then Failed at
    //    the timeout with the deployment restored (a controller for namespace "other",
    //    pointed at a port nothing listens on)
    env.cp.kubectl(&["create", "namespace", "other"])?;
    create_deployment(&c, "other", "analytics", 2).await?;
    let dead = orderflow_testkit::procs::free_port()?;
    let ctl2 = start_controller(
        &env,
        &[
            ("WATCH_NAMESPACE", "other".to_string()),
            ("KAFKA_BOOTSTRAP", format!("127.0.0.1:{dead}")),
            ("KAFKA_TIMEOUT_MS", "500".to_string()),
        ],
    )
    .await?;
    apply_rr(&c, "other", rr("offline", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "earliest", "timeoutSeconds": 5}))).await?;
    let o = wait_rr(
        &c,
        "other",
        "offline",
        "Kafka retries in the status",
        Duration::from_secs(30),
        |o| {
            o.status.as_ref().is_some_and(|s| {
                s.retries >= 1
                    && s.message
                        .as_deref()
                        .unwrap_or("")
                        .contains("Kafka unavailable")
            })
        },
    )
    .await?;
    let progressing = o.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .cloned()
    });
    assert_eq!(
        progressing.and_then(|c| c.reason).as_deref(),
        Some("KafkaUnavailable")
    );
    let o = wait_rr(
        &c,
        "other",
        "offline",
        "Failed",
        Duration::from_secs(60),
        |o| phase(o) == Phase::Failed,
    )
    .await?;
    assert_eq!(failed_reason(&o), "KafkaUnavailable");
    assert_eq!(replicas(&c, "other", "analytics").await?, 2);
    assert!(event_reasons(&c, "other", "offline")
        .await?
        .contains(&"KafkaUnavailable".to_string()));

    ctl2.stop(Duration::from_secs(10)).await?;
    ctl.stop(Duration::from_secs(10)).await?;
    env.passed();
    Ok(())
}
