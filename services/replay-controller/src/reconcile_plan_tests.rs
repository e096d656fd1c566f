//! Reconcile tests of the phases and reasons of issue 19, on the same fakes as
//! [`crate::reconcile_tests`]: a dry run (Planned), the plan made again when spec.dryRun
//! becomes false, CatchingUp's progress and CatchUpTimeout, and AutoscalerConflict.

use chrono::{SecondsFormat, Utc};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use crate::crd::Phase;
use crate::fixtures::{ev, harness, replay_spec, request, status, Call, FakeKafka};
use crate::reconcile::Settings;

fn ago(secs: i64) -> String {
    (Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn dry_spec() -> Value {
    let mut s = replay_spec();
    s["dryRun"] = json!(true);
    s
}

fn failed_reason(st: &crate::crd::ReplayRequestStatus) -> Option<String> {
    st.conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .and_then(|c| c.reason.clone())
}

#[tokio::test]
async fn a_dry_run_measures_the_rate_then_ends_planned_touching_nothing() {
    let h = harness(
        request(dry_spec(), None),
        &[("analytics", 3)],
        FakeKafka::default(),
    );
    h.kafka.set_position(50, 120);
    // first read of the committed offsets, kept in the status; nothing else
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(Settings::default().rate_window));
    assert_eq!(h.calls(), vec![status(Phase::Pending, &[])]);
    let st = h.status();
    assert_eq!(st.rate_sample.as_ref().and_then(|r| r.committed), Some(50));
    // woken early (its own status write): it waits out the window, writing nothing
    assert_ne!(h.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(h.calls().len(), 1);

    // 5 s later the group has committed 50 more records: 10 records/s
    let mut st = serde_json::to_value(h.status()).unwrap();
    st["rateSample"]["at"] = json!(ago(5));
    h.set_status(st);
    h.kafka.set_position(100, 120);
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(
        h.calls()[1..],
        [
            status(Phase::Planned, &[]),
            ev("Planned"),
            // nothing to restore: a planned dry run holds no finalizer
            Call::Finalizers(vec![]),
        ]
    );
    assert!(h.kafka.resets.lock().unwrap().is_empty());
    assert_eq!(h.replicas("analytics"), 3);
    // planned work is not a replay in progress
    assert_eq!(h.in_progress("analytics"), None);
    let st = h.status();
    assert!(st.rate_sample.is_none());
    let plan = st.plan.unwrap();
    let p = &plan.partitions[0];
    // orders[0]: committed 40 (the fake's plan), target 0, high watermark 120
    assert_eq!(
        (
            p.current,
            p.target,
            p.high_watermark,
            p.records_to_reprocess
        ),
        (Some(40), 0, 120, 120)
    );
    assert_eq!(plan.totals.records_to_reprocess, 120);
    let rate = plan.consume_rate.unwrap();
    assert!((9.0..=10.1).contains(&rate), "{rate}");
    let est = plan.estimated_catch_up_seconds.unwrap();
    assert!((11.8..=13.4).contains(&est), "{est}");
    assert!(plan.estimate_missing_reason.is_none());
    let msg = st.message.unwrap();
    assert!(
        msg.contains("120 record(s) to reprocess on 1 partition(s)"),
        "{msg}"
    );
    let progressing = st.conditions.iter().find(|c| c.type_ == "Progressing");
    assert_eq!(progressing.map(|c| c.status.as_str()), Some("False"));
}

#[tokio::test]
async fn an_idle_group_has_no_estimate_and_says_why() {
    let st = json!({"phase": "Pending", "rateSample": {"at": ago(6), "committed": 40}});
    let h = harness(
        request(dry_spec(), Some(st)),
        &[("analytics", 1)],
        FakeKafka::default(),
    );
    h.reconcile().await.unwrap();
    let plan = h.status().plan.unwrap();
    assert_eq!(h.status().phase, Phase::Planned);
    assert!(plan.estimated_catch_up_seconds.is_none() && plan.consume_rate.is_none());
    let why = plan.estimate_missing_reason.unwrap();
    assert!(
        why.contains("group analytics committed nothing in the") && why.contains("idle"),
        "{why}"
    );
}

#[tokio::test]
async fn a_planned_dry_run_is_left_alone_and_executes_with_a_new_plan_when_dry_run_is_false() {
    // the dry run saw orders[0] at 30 with 60 records to reprocess, at 10 records/s
    let planned = json!({"phase": "Planned", "plan": {
        "madeAt": ago(60),
        "partitions": [{"topic": "orders", "partition": 0, "current": 30, "target": 0,
                        "highWatermark": 60, "recordsToReprocess": 60}],
        "totals": {"partitions": 1, "recordsToReprocess": 60},
        "consumeRate": 10.0, "rateMeasuredOverSeconds": 5.0, "estimatedCatchUpSeconds": 6.0}});
    let mut rr = request(dry_spec(), Some(planned));
    rr["metadata"]["finalizers"] = json!([]);
    let h = harness(rr, &[("analytics", 2)], FakeKafka::default());
    // still a dry run: nothing at all
    assert_eq!(h.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(h.calls(), vec![]);
    assert_eq!(*h.kafka.plans.lock().unwrap(), 0);

    // kubectl patch rr replay-1 --type merge -p '{"spec":{"dryRun":false}}'
    h.patch_spec(json!({"dryRun": false}));
    h.kafka.set_position(40, 40);
    // the finalizer comes back first (kube-runtime's `finalizer`; the change wakes us again)
    h.reconcile().await.unwrap();
    h.reconcile().await.unwrap();
    let calls = h.calls();
    // before anything is scaled, then the usual order
    assert_eq!(
        calls[0],
        Call::Finalizers(vec![crate::reconcile::FINALIZER.into()])
    );
    assert_eq!(calls[1], status(Phase::ScalingDown, &[("analytics", 2)]));
    assert!(calls.contains(&Call::Scale("analytics".into(), 0)));
    assert_eq!(h.kafka.resets.lock().unwrap().len(), 1);
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    // both plans: the one executed (40 records now) and the dry run's (60)
    let plan = st.plan.unwrap();
    assert_eq!(plan.totals.records_to_reprocess, 40);
    assert_eq!(plan.estimated_catch_up_seconds, Some(4.0));
    let previous = st.previous_plan.unwrap();
    assert_eq!(previous.totals.records_to_reprocess, 60);
    assert_eq!(h.replicas("analytics"), 2);
}

#[tokio::test]
async fn the_same_plan_at_execution_is_kept_once() {
    let planned = json!({"phase": "Planned", "plan": {
        "madeAt": ago(60),
        "partitions": [{"topic": "orders", "partition": 0, "current": 40, "target": 0,
                        "highWatermark": 40, "recordsToReprocess": 40}],
        "totals": {"partitions": 1, "recordsToReprocess": 40},
        "estimateMissingReason": "idle"}});
    let h = harness(
        request(replay_spec(), Some(planned)),
        &[("analytics", 1)],
        FakeKafka::default(),
    );
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    assert!(st.previous_plan.is_none());
    assert_eq!(
        st.plan.unwrap().estimate_missing_reason.as_deref(),
        Some("idle")
    );
}

fn catching_up(entered: String, timeout: Option<u32>) -> (Value, Value) {
    let st = json!({"phase": "CatchingUp", "startedAt": ago(30), "phaseStartedAt": entered,
        "offsets": [{"topic": "orders", "partition": 0, "from": 40, "to": 0}],
        "catchUp": {"partitions": [{"topic": "orders", "partition": 0, "from": 0, "target": 40}],
                    "recordsTotal": 40, "recordsDone": 0, "recordsLeft": 40}});
    let mut spec = replay_spec();
    if let Some(t) = timeout {
        spec["catchUpTimeoutSeconds"] = json!(t);
    }
    (spec, st)
}

#[tokio::test]
async fn catching_up_reports_progress_then_succeeds_once_the_group_passed_the_watermarks() {
    let (spec, st) = catching_up(ago(10), None);
    let h = harness(
        request(spec, Some(st)),
        &[("analytics", 1)],
        FakeKafka::default(),
    );
    // 10 of 40 records done in the 10 s since the restore; the log end moved on (60), the
    // target did not
    h.kafka.set_position(10, 60);
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(Settings::default().catch_up_poll));
    let cu = h.status().catch_up.unwrap();
    assert_eq!((cu.records_done, cu.records_left), (10, 30));
    // a replay in progress on analytics, for alerting
    assert_eq!(h.in_progress("analytics"), Some(1));
    let rate = cu.records_per_second.unwrap();
    assert!((0.9..=1.1).contains(&rate), "{rate}");
    assert!(cu.eta.is_some() && cu.caught_up_at.is_none());
    let msg = h.status().message.unwrap();
    assert!(msg.contains("is past 10 of 40 record(s), 30 left"), "{msg}");
    assert_eq!(h.calls(), vec![status(Phase::CatchingUp, &[])]);
    // read again within progress_every: no status write
    h.kafka.set_position(12, 60);
    h.reconcile().await.unwrap();
    assert_eq!(h.calls().len(), 1);

    h.kafka.set_position(41, 60);
    let before = Utc::now();
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    let cu = st.catch_up.unwrap();
    assert_eq!((cu.records_done, cu.records_left), (40, 0));
    let at = chrono::DateTime::parse_from_rfc3339(&cu.caught_up_at.unwrap()).unwrap();
    assert!(at >= before - chrono::Duration::milliseconds(1) && at <= Utc::now());
    assert!(st
        .message
        .unwrap()
        .contains("group analytics caught up (40 record(s)"));
    assert_eq!(
        h.calls()[1..],
        [
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
            Call::Finalizers(vec![])
        ]
    );
}

#[tokio::test]
async fn a_group_that_does_not_catch_up_in_time_fails_with_the_deployment_left_restored() {
    let (spec, st) = catching_up(ago(61), Some(60));
    let h = harness(
        request(spec, Some(st)),
        &[("analytics", 1)],
        FakeKafka::default(),
    );
    h.kafka.set_position(5, 40);
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(failed_reason(&st).as_deref(), Some("CatchUpTimeout"));
    let msg = st.message.unwrap();
    assert!(
        msg.contains("did not catch up within 60 s (spec.catchUpTimeoutSeconds): 5 of 40 record(s) done, 35 left"),
        "{msg}"
    );
    // nothing scaled: analytics stays at its restored count
    assert!(!h.calls().iter().any(|c| matches!(c, Call::Scale(..))));
    assert_eq!(h.replicas("analytics"), 1);
}

#[tokio::test]
async fn kafka_unreachable_past_the_catch_up_timeout_ends_it_too() {
    let (spec, st) = catching_up(ago(61), Some(60));
    let h = harness(
        request(spec, Some(st)),
        &[("analytics", 1)],
        FakeKafka {
            unreachable: true,
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(failed_reason(&st).as_deref(), Some("CatchUpTimeout"));
    assert!(st.message.unwrap().contains("Kafka unavailable"));
    assert!(!h.calls().iter().any(|c| matches!(c, Call::Scale(..))));
}

#[tokio::test]
async fn a_deployment_scaled_by_an_hpa_is_refused_before_anything_is_scaled() {
    let h = harness(
        request(replay_spec(), None),
        &[("analytics", 2)],
        FakeKafka::default(),
    );
    h.add_hpa("analytics-cpu", "analytics");
    h.add_hpa("other", "inventory");
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(failed_reason(&st).as_deref(), Some("AutoscalerConflict"));
    let msg = st.message.unwrap();
    assert!(
        msg.contains("HorizontalPodAutoscaler default/analytics-cpu scales deployment analytics (spec.deployment)"),
        "{msg}"
    );
    assert!(!h.calls().iter().any(|c| matches!(c, Call::Scale(..))));
    assert!(h.kafka.resets.lock().unwrap().is_empty());
    assert_eq!(h.replicas("analytics"), 2);
    assert!(h.calls().contains(&ev("Failed")));
}
