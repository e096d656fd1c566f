//! Reconcile tests of the reset targets, the retention guard and undo, with the Kubernetes API
//! mocked and Kafka faked ([`crate::fixtures`]): the reasons a request fails (InvalidSpec for
//! a combination the CEL rules refuse, BeforeRetention, an undo of a request that does not
//! exist or has not Succeeded) before any deployment is touched, allowTruncated's Warning
//! (condition and Event), and an undo committing exactly the offsets the undone request
//! recorded as `from`.

use chrono::{TimeZone, Utc};
use orderflowctl::{HistoryTruncated, ResetTo, TargetOffset};
use serde_json::{json, Value};

use crate::crd::Phase;
use crate::fixtures::{ev, harness, request, status, Call, FakeKafka, UID};

/// orders[0] lost its history: log start offset 25, the oldest record held written at 11:00.
fn gone() -> HistoryTruncated {
    HistoryTruncated {
        log_start_offset: 25,
        records_deleted: None,
        oldest_record_at: Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).single(),
    }
}

fn spec(extra: Value) -> Value {
    let mut v = json!({"consumerGroup": "analytics", "deployment": "analytics",
                       "topics": ["orders"]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// The request failed with `reason` before any deployment was touched; its message.
fn failed_untouched(h: &crate::fixtures::Harness, reason: &str) -> String {
    assert_eq!(
        h.calls(),
        vec![
            status(Phase::Failed, &[]),
            ev("Failed"),
            Call::Finalizers(vec![])
        ]
    );
    assert!(h.kafka.resets.lock().unwrap().is_empty());
    let st = h.status();
    let failed = st.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_deref()),
        ("True", Some(reason))
    );
    st.message.unwrap_or_default()
}

#[tokio::test]
async fn combinations_the_cel_rules_refuse_fail_as_invalid_spec() {
    for (extra, why) in [
        (
            json!({"resetTo": "shiftBy", "shiftBy": -5, "timestamp": "2026-11-22T10:00:00Z"}),
            "spec.timestamp is only allowed with spec.resetTo: timestamp",
        ),
        (
            json!({"resetTo": "toOffsets", "duration": "PT1H",
                   "offsets": [{"topic": "orders", "partition": 0, "offset": 3}]}),
            "spec.duration is only allowed with spec.resetTo: byDuration",
        ),
        (
            json!({"resetTo": "earliest", "undoOf": "replay-0"}),
            "spec.undoOf is not allowed with spec.resetTo",
        ),
        (
            json!({"resetTo": "byDuration", "duration": "P"}),
            "spec.duration: invalid duration",
        ),
    ] {
        let h = harness(
            request(spec(extra.clone()), None),
            &[("analytics", 2)],
            FakeKafka::default(),
        );
        h.reconcile().await.unwrap();
        let msg = failed_untouched(&h, "InvalidSpec");
        assert!(msg.contains(why), "{extra}: {msg}");
        assert_eq!(h.replicas("analytics"), 2);
    }
}

#[tokio::test]
async fn a_timestamp_before_the_oldest_record_held_is_refused_before_scaling() {
    let h = harness(
        request(
            spec(json!({"resetTo": "timestamp", "timestamp": "2026-11-22T10:00:00Z"})),
            None,
        ),
        &[("analytics", 2)],
        FakeKafka {
            truncated: Some(gone()),
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    let msg = failed_untouched(&h, "BeforeRetention");
    assert_eq!(
        msg,
        "the reset of analytics to timestamp 2026-11-22T10:00:00Z lies before the oldest record \
         Kafka still holds on orders[0] (oldest record 2026-11-22T11:00:00.000Z, log start \
         offset 25): refused, nothing changed (set spec.allowTruncated: true to start those \
         partitions at their earliest offset instead)"
    );
    assert_eq!(*h.kafka.plans.lock().unwrap(), 1);
    assert_eq!(h.replicas("analytics"), 2);
}

#[tokio::test]
async fn a_duration_before_the_oldest_record_held_is_refused_in_resetting_too() {
    // Pending found the history whole; retention deleted it before the reset: refused there,
    // the deployment restored
    let st = json!({"phase": "Resetting", "startedAt": "2026-11-22T10:00:00.000Z",
                    "restore": [{"deployment": "analytics", "replicas": 3}]});
    let h = harness(
        request(
            spec(json!({"resetTo": "byDuration", "duration": "PT1H"})),
            Some(st),
        ),
        &[("analytics", 0)],
        FakeKafka {
            truncated: Some(gone()),
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    assert_eq!(
        h.calls(),
        vec![
            Call::Scale("analytics".into(), 3),
            status(Phase::Failed, &[]),
            ev("Failed"),
            Call::Finalizers(vec![])
        ]
    );
    assert!(h.kafka.resets.lock().unwrap().is_empty());
    let msg = h.status().message.unwrap_or_default();
    assert!(
        msg.starts_with("the reset of analytics to byDuration PT1H lies before")
            && msg.ends_with("(restored analytics to 3 replica(s))"),
        "{msg}"
    );
}

#[tokio::test]
async fn allow_truncated_goes_on_with_a_warning_condition_and_event() {
    let h = harness(
        request(
            spec(
                json!({"resetTo": "timestamp", "timestamp": "2026-11-22T10:00:00Z",
                        "allowTruncated": true}),
            ),
            None,
        ),
        &[("analytics", 2)],
        FakeKafka {
            truncated: Some(gone()),
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    assert_eq!((st.offsets[0].from, st.offsets[0].to), (Some(40), 25));
    assert_eq!(st.history_truncated.len(), 1);
    assert_eq!(
        st.history_truncated[0].oldest_record_at.as_deref(),
        Some("2026-11-22T11:00:00.000Z")
    );
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "HistoryTruncated")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some("AllowTruncated"))
    );
    assert_eq!(
        c.message.as_deref(),
        Some(
            "spec.allowTruncated: the target lay before the oldest record Kafka still holds; \
             history truncated: orders[0] from log start offset 25"
        )
    );
    let warnings = h
        .calls()
        .iter()
        .filter(|c| **c == ev("HistoryTruncated"))
        .count();
    assert_eq!(warnings, 1);
    assert_eq!(h.replicas("analytics"), 2);
}

/// replay-0, Succeeded: it moved orders[0] from 40 and orders[1] from 12 to 0.
fn undone(phase: &str) -> Value {
    let mut v = request(
        spec(json!({"resetTo": "earliest"})),
        Some(json!({"phase": phase,
            "offsets": [{"topic": "orders", "partition": 0, "from": 40, "to": 0},
                        {"topic": "orders", "partition": 1, "from": 12, "to": 0}]})),
    );
    v["metadata"]["name"] = json!("replay-0");
    v["metadata"]["uid"] = json!("uid-0");
    v
}

#[tokio::test]
async fn an_undo_restores_the_recorded_from_offsets_through_the_same_steps() {
    let h = harness(
        request(spec(json!({"undoOf": "replay-0"})), None),
        &[("analytics", 2)],
        FakeKafka::default(),
    );
    h.add_request(undone("Succeeded"));
    h.reconcile().await.unwrap();
    assert_eq!(
        h.calls(),
        vec![
            status(Phase::ScalingDown, &[("analytics", 2)]),
            ev("ScalingDown"),
            Call::Scale("analytics".into(), 0),
            status(Phase::Resetting, &[("analytics", 2)]),
            ev("Resetting"),
            status(Phase::Restoring, &[("analytics", 2)]),
            ev("Restoring"),
            Call::Scale("analytics".into(), 2),
            status(Phase::CatchingUp, &[]),
            ev("CatchingUp"),
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
            Call::Finalizers(vec![]),
        ]
    );
    let at = |partition, offset| TargetOffset {
        topic: "orders".into(),
        partition,
        offset,
    };
    assert_eq!(
        *h.kafka.targets.lock().unwrap(),
        vec![ResetTo::ToOffsets(vec![at(0, 40), at(1, 12)])]
    );
    assert_eq!(
        *h.kafka.resets.lock().unwrap(),
        vec![format!("offsets (2 partition(s)) by {UID}")]
    );
    let st = h.status();
    assert!(st
        .message
        .unwrap_or_default()
        .contains("to undo of replay-0"),);
}

#[tokio::test]
async fn an_undo_of_a_request_missing_or_not_succeeded_fails_clearly() {
    let h = harness(
        request(spec(json!({"undoOf": "replay-0"})), None),
        &[("analytics", 2)],
        FakeKafka::default(),
    );
    h.reconcile().await.unwrap();
    let msg = failed_untouched(&h, "UndoTargetNotFound");
    assert_eq!(
        msg,
        "spec.undoOf: ReplayRequest replay-0 not found in this namespace"
    );

    let h = harness(
        request(spec(json!({"undoOf": "replay-0"})), None),
        &[("analytics", 2)],
        FakeKafka::default(),
    );
    h.add_request(undone("Failed"));
    h.reconcile().await.unwrap();
    let msg = failed_untouched(&h, "UndoTargetNotSucceeded");
    assert!(
        msg.contains("ReplayRequest replay-0 is Failed")
            && msg.contains("only a Succeeded request's offsets can be restored"),
        "{msg}"
    );
    assert_eq!(h.replicas("analytics"), 2);
}

#[tokio::test]
async fn an_undo_made_before_a_crash_is_not_made_again() {
    // the controller died after committing the undo's offsets, before writing Restoring
    let st = json!({"phase": "Resetting", "startedAt": "2026-11-22T10:00:00.000Z",
                    "restore": [{"deployment": "analytics", "replicas": 1}]});
    let mark = |offset, from| orderflowctl::CommittedOffset {
        topic: "orders".to_string(),
        partition: if offset == 40 { 0 } else { 1 },
        offset: Some(offset),
        metadata: format!("orderflow.reset=2026-11-22T10:00:01.000Z by={UID} from={from}"),
    };
    let h = harness(
        request(spec(json!({"undoOf": "replay-0"})), Some(st)),
        &[("analytics", 0)],
        FakeKafka {
            committed: vec![mark(40, 0), mark(12, 0)],
            ..FakeKafka::default()
        },
    );
    h.add_request(undone("Succeeded"));
    h.reconcile().await.unwrap();
    assert!(h.kafka.resets.lock().unwrap().is_empty(), "undone twice");
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    let moves: Vec<(i32, Option<i64>, i64)> = st
        .offsets
        .iter()
        .map(|o| (o.partition, o.from, o.to))
        .collect();
    assert_eq!(moves, vec![(0, Some(0), 40), (1, Some(0), 12)]);
    assert_eq!(h.replicas("analytics"), 1);
}
