//! Drills on the fake API server and the scripted Kafka ([`crate::fixtures`]): `resetTo: none`
//! scales only spec.lag's deployment and never resets (the fake records every reset call),
//! and `spec.lag.maxDrainSeconds` ends in the condition, status field and Event of its
//! verdict, with the drain time measured.

use chrono::{Duration, SecondsFormat, Utc};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use crate::crd::{DrillVerdict, Phase, ReplayRequest};
use crate::fixtures::{ev, harness, request, status, Call, FakeKafka};
use crate::kafka::GroupLag;
use crate::reconcile::blocker;

fn drill_spec(hold: u32, max_drain: u32) -> Value {
    json!({"resetTo": "none",
           "lag": {"deployment": "inventory", "replicas": 0, "holdSeconds": hold,
                   "sampleSeconds": 1, "maxDrainSeconds": max_drain}})
}

fn lags(samples: &[(i64, Option<f64>)]) -> FakeKafka {
    let k = FakeKafka::default();
    k.lags
        .lock()
        .unwrap()
        .extend(samples.iter().map(|(records, seconds)| GroupLag {
            records: *records,
            seconds: *seconds,
        }));
    k
}

#[tokio::test]
async fn a_drill_without_a_reset_scales_only_the_lag_deployment_and_never_resets() {
    let h = harness(
        request(drill_spec(60, 30), None),
        &[("inventory", 2), ("analytics", 1)],
        lags(&[(120, Some(4.5))]),
    );
    let action = h.reconcile().await.unwrap();
    assert_ne!(action, Action::await_change());
    assert_eq!(
        h.calls(),
        vec![
            // straight from Pending to HoldingLag, the count to restore written first
            status(Phase::HoldingLag, &[("inventory", 2)]),
            ev("HoldingLag"),
            Call::Scale("inventory".into(), 0),
            // the first sample
            status(Phase::HoldingLag, &[("inventory", 2)]),
        ]
    );
    assert!(h.kafka.resets.lock().unwrap().is_empty(), "a drill reset");
    assert_eq!(*h.kafka.plans.lock().unwrap(), 0);
    assert_eq!(h.replicas("analytics"), 1);
    let st = h.status();
    assert!(st.offsets.is_empty());
    let lag = st.lag.unwrap();
    assert_eq!((lag.peak, lag.peak_seconds), (120, Some(4.5)));
    assert_eq!(lag.samples[0].seconds, Some(4.5));
    assert_eq!(lag.drill, None);
    assert!(
        st.message
            .unwrap()
            .contains("lag of inventory 120 (4.5 s behind)"),
        "the message says how far behind"
    );
}

/// A request holding lag whose deployment was restored `ago` seconds before now.
fn draining(ago: i64, max_drain: u32) -> Value {
    let restored =
        (Utc::now() - Duration::seconds(ago)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let st = json!({"phase": "HoldingLag", "startedAt": "2026-11-22T10:00:00.000Z",
                    "lag": {"consumerGroup": "inventory", "peak": 300, "peakSeconds": 20.0,
                            "holdUntil": "2026-11-22T10:00:05.000Z",
                            "restoredAt": restored, "samples": []}});
    request(drill_spec(5, max_drain), Some(st))
}

fn drill_condition(h: &crate::fixtures::Harness) -> (String, Option<String>) {
    let st = h.status();
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "DrillPassed")
        .expect("a DrillPassed condition");
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn a_drain_slower_than_max_drain_seconds_fails_the_drill() {
    let h = harness(
        draining(12, 5),
        &[("inventory", 2)],
        lags(&[(0, Some(0.0))]),
    );
    h.reconcile().await.unwrap();
    let st = h.status();
    // the request did its work: Succeeded, the verdict is the drill's
    assert_eq!(st.phase, Phase::Succeeded);
    let lag = st.lag.clone().unwrap();
    assert_eq!(lag.drill, Some(DrillVerdict::Failed));
    let drained = lag.drained_after_seconds.unwrap();
    assert!((12.0..20.0).contains(&drained), "{drained}");
    assert_eq!(
        drill_condition(&h),
        ("False".to_string(), Some("DrillFailed".to_string()))
    );
    let msg = st.message.unwrap();
    assert!(
        msg.contains("more than spec.lag.maxDrainSeconds 5")
            && msg.contains("20.0 s behind at most"),
        "{msg}"
    );
    assert_eq!(
        h.calls(),
        vec![
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
            ev("DrillFailed"),
            Call::Finalizers(vec![]),
        ]
    );
    assert!(h.kafka.resets.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_drain_within_max_drain_seconds_passes_the_drill() {
    let h = harness(
        draining(3, 60),
        &[("inventory", 2)],
        lags(&[(0, Some(0.0))]),
    );
    h.reconcile().await.unwrap();
    let lag = h.status().lag.unwrap();
    assert_eq!(lag.drill, Some(DrillVerdict::Passed));
    assert!(lag.drained_after_seconds.is_some_and(|s| s < 60.0));
    assert_eq!(
        drill_condition(&h),
        ("True".to_string(), Some("DrillPassed".to_string()))
    );
    assert!(h.calls().contains(&ev("DrillPassed")));
    assert!(!h.calls().contains(&ev("DrillFailed")));
}

#[tokio::test]
async fn a_drill_that_does_not_drain_by_the_drain_timeout_fails() {
    let mut rr = draining(30, 60);
    rr["spec"]["lag"]["drainTimeoutSeconds"] = json!(20);
    let h = harness(rr, &[("inventory", 2)], lags(&[(40, Some(9.0))]));
    h.reconcile().await.unwrap();
    let lag = h.status().lag.unwrap();
    assert_eq!(lag.drill, Some(DrillVerdict::Failed));
    assert_eq!(lag.drained_after_seconds, None);
    assert!(h.status().message.unwrap().contains("did not drain"));
    assert!(h.calls().contains(&ev("DrillFailed")));
}

#[tokio::test]
async fn lag_without_max_drain_seconds_has_no_verdict() {
    let mut rr = draining(3, 60);
    rr["spec"]["lag"]
        .as_object_mut()
        .unwrap()
        .remove("maxDrainSeconds");
    let h = harness(rr, &[("inventory", 2)], lags(&[(0, Some(0.0))]));
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!(st.lag.unwrap().drill, None);
    assert!(!st.conditions.iter().any(|c| c.type_ == "DrillPassed"));
    assert!(!h
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Event(r) if r.starts_with("Drill"))));
}

#[tokio::test]
async fn reset_to_none_without_lag_is_refused_and_touches_nothing() {
    let h = harness(
        request(json!({"resetTo": "none"}), None),
        &[("inventory", 2)],
        FakeKafka::default(),
    );
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .message
        .unwrap()
        .starts_with("spec.lag is required with spec.resetTo none"));
    assert_eq!(
        h.calls(),
        vec![
            status(Phase::Failed, &[]),
            ev("Failed"),
            Call::Finalizers(vec![])
        ]
    );
    assert!(h.kafka.resets.lock().unwrap().is_empty());
}

#[test]
fn drills_queue_only_behind_requests_on_their_lag_deployment() {
    let mk = |name: &str, spec: Value, phase: &str| -> ReplayRequest {
        let mut v = request(spec, Some(json!({"phase": phase})));
        v["metadata"]["name"] = json!(name);
        v["metadata"]["uid"] = json!(format!("uid-{name}"));
        serde_json::from_value(v).unwrap()
    };
    let on = |deployment: &str| {
        json!({"resetTo": "none",
               "lag": {"deployment": deployment, "replicas": 0, "holdSeconds": 5}})
    };
    let drill = mk("drill", on("inventory"), "Pending");
    let other_drill = mk("other", on("analytics"), "HoldingLag");
    // two drills name no group: the empty names do not make them overlap
    assert!(blocker(&drill, &[other_drill]).is_none());
    let same = mk("same", on("inventory"), "HoldingLag");
    assert_eq!(
        blocker(&drill, std::slice::from_ref(&same)).map(|r| r.metadata.name.clone().unwrap()),
        Some("same".to_string())
    );
    let replay_holding_inventory = mk(
        "replay",
        json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"],
               "resetTo": "earliest",
               "lag": {"deployment": "inventory", "replicas": 0, "holdSeconds": 5}}),
        "Resetting",
    );
    assert!(blocker(&drill, &[replay_holding_inventory]).is_some());
}
