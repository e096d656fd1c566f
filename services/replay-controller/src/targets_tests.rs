//! The spec's target checks (the CEL rules' mirror), undo's offsets and the retention guard's
//! words.

use chrono::{TimeZone, Utc};
use orderflowctl::{HistoryTruncated, OffsetChange, ResetTo, TargetOffset};
use serde_json::{json, Value};

use super::*;
use crate::crd::ReplayRequest;

fn spec(extra: Value) -> ReplayRequestSpec {
    let mut v = json!({"consumerGroup": "analytics", "deployment": "analytics",
                       "topics": ["orders"]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn every_target_from_its_fields() {
    assert_eq!(
        target(&spec(json!({"resetTo": "earliest"}))),
        Ok(Target::Reset(ResetTo::Earliest))
    );
    assert_eq!(
        target(&spec(json!({"resetTo": "byDuration", "duration": "PT1H"}))),
        Ok(Target::Reset(ResetTo::ByDuration(chrono::Duration::hours(
            1
        ))))
    );
    assert_eq!(
        target(&spec(json!({"resetTo": "shiftBy", "shiftBy": -100}))),
        Ok(Target::Reset(ResetTo::ShiftBy(-100)))
    );
    assert_eq!(
        target(&spec(json!({"resetTo": "toOffsets",
                            "offsets": [{"topic": "orders", "partition": 1, "offset": 7}]}))),
        Ok(Target::Reset(ResetTo::ToOffsets(vec![TargetOffset {
            topic: "orders".into(),
            partition: 1,
            offset: 7
        }])))
    );
    assert_eq!(
        target(&spec(json!({"undoOf": "replay-1"}))),
        Ok(Target::Undo("replay-1".into()))
    );
}

#[test]
fn invalid_combinations_name_the_field() {
    for (extra, why) in [
        (
            json!({"resetTo": "shiftBy", "shiftBy": 3, "timestamp": "2026-11-22T10:00:00Z"}),
            "spec.timestamp is only allowed with spec.resetTo: timestamp",
        ),
        (
            json!({"resetTo": "toOffsets", "duration": "PT1H",
                   "offsets": [{"topic": "orders", "partition": 0, "offset": 1}]}),
            "spec.duration is only allowed with spec.resetTo: byDuration",
        ),
        (
            json!({"resetTo": "earliest", "undoOf": "replay-1"}),
            "spec.undoOf is not allowed with spec.resetTo",
        ),
        (json!({}), "spec.resetTo (or spec.undoOf) is required"),
        (
            json!({"resetTo": "byDuration"}),
            "spec.duration is required when spec.resetTo is byDuration",
        ),
        (
            json!({"resetTo": "shiftBy"}),
            "spec.shiftBy is required when spec.resetTo is shiftBy",
        ),
        (
            json!({"resetTo": "latest", "shiftBy": 1}),
            "spec.shiftBy is only allowed with spec.resetTo: shiftBy",
        ),
        (
            json!({"resetTo": "toOffsets"}),
            "spec.offsets is required when spec.resetTo is toOffsets",
        ),
        (
            json!({"resetTo": "toOffsets", "offsets": []}),
            "spec.offsets must list at least one partition",
        ),
        (
            json!({"resetTo": "toOffsets",
                   "offsets": [{"topic": "payments", "partition": 0, "offset": 1}]}),
            "spec.offsets[0].topic payments is not in spec.topics",
        ),
        (
            json!({"resetTo": "toOffsets",
                   "offsets": [{"topic": "orders", "partition": 0, "offset": 1},
                               {"topic": "orders", "partition": 0, "offset": 2}]}),
            "spec.offsets[1]: orders[0] is listed twice",
        ),
        (
            json!({"resetTo": "byDuration", "duration": "PT"}),
            "spec.duration: invalid duration \"PT\"",
        ),
        (
            json!({"undoOf": "replay-1", "timestamp": "2026-11-22T10:00:00Z"}),
            "spec.timestamp is only allowed",
        ),
        (
            json!({"resetTo": "timestamp"}),
            "spec.resetTo/spec.timestamp: reset to timestamp needs a timestamp",
        ),
    ] {
        let err = target(&spec(extra.clone())).unwrap_err();
        assert!(err.contains(why), "{extra}: {err}");
    }
}

#[test]
fn labels() {
    let l = |extra| label(&spec(extra));
    assert_eq!(l(json!({"resetTo": "earliest"})), "earliest");
    assert_eq!(
        l(json!({"resetTo": "byDuration", "duration": "PT1H"})),
        "byDuration PT1H"
    );
    assert_eq!(
        l(json!({"resetTo": "shiftBy", "shiftBy": -3})),
        "shiftBy -3"
    );
    assert_eq!(l(json!({"undoOf": "replay-1"})), "undo of replay-1");
}

fn undone(phase: &str, offsets: Value, topics: Value) -> ReplayRequest {
    serde_json::from_value(json!({
        "apiVersion": "orderflow.io/v1alpha1", "kind": "ReplayRequest",
        "metadata": {"name": "replay-1", "namespace": "default"},
        "spec": {"consumerGroup": "analytics", "deployment": "analytics",
                 "topics": topics, "resetTo": "earliest"},
        "status": {"phase": phase, "offsets": offsets}
    }))
    .unwrap()
}

#[test]
fn an_undo_restores_the_recorded_from_offsets_or_says_why_not() {
    let me = spec(json!({"undoOf": "replay-1"}));
    let recorded = json!([{"topic": "orders", "partition": 0, "from": 40, "to": 0},
                          {"topic": "orders", "partition": 1, "from": 12, "to": 0}]);
    let ok = undone("Succeeded", recorded.clone(), json!(["orders"]));
    assert_eq!(
        undo_offsets(&me, Some(&ok), "replay-1"),
        Ok(ResetTo::ToOffsets(vec![
            TargetOffset {
                topic: "orders".into(),
                partition: 0,
                offset: 40
            },
            TargetOffset {
                topic: "orders".into(),
                partition: 1,
                offset: 12
            },
        ]))
    );
    let (reason, msg) = undo_offsets(&me, None, "replay-1").unwrap_err();
    assert_eq!(reason, UNDO_NOT_FOUND);
    assert!(msg.contains("ReplayRequest replay-1 not found"), "{msg}");
    let running = undone("Resetting", json!([]), json!(["orders"]));
    let (reason, msg) = undo_offsets(&me, Some(&running), "replay-1").unwrap_err();
    assert_eq!(reason, UNDO_NOT_SUCCEEDED);
    assert!(msg.contains("replay-1 is Resetting"), "{msg}");
    let failed = undone("Failed", json!([]), json!(["orders"]));
    assert_eq!(
        undo_offsets(&me, Some(&failed), "replay-1").unwrap_err().0,
        UNDO_NOT_SUCCEEDED
    );
    let other_topics = undone("Succeeded", recorded, json!(["orders", "inventory-events"]));
    let (reason, msg) = undo_offsets(&me, Some(&other_topics), "replay-1").unwrap_err();
    assert_eq!(reason, "InvalidSpec");
    assert!(msg.contains("spec.topics (orders) must be those"), "{msg}");
    let never = undone(
        "Succeeded",
        json!([{"topic": "orders", "partition": 0, "from": 40, "to": 0},
               {"topic": "orders", "partition": 2, "to": 0}]),
        json!(["orders"]),
    );
    let (reason, msg) = undo_offsets(&me, Some(&never), "replay-1").unwrap_err();
    assert_eq!(reason, UNDO_NOT_EXACT);
    assert!(
        msg.contains("no committed offset of group analytics on orders[2]"),
        "{msg}"
    );
}

#[test]
fn the_retention_guard_names_partitions_and_oldest_times() {
    let s = spec(json!({"resetTo": "timestamp", "timestamp": "2026-11-22T10:00:00Z"}));
    let at = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap();
    assert!(guarded(&s, &ResetTo::Timestamp(at)));
    assert!(guarded(
        &s,
        &ResetTo::ByDuration(chrono::Duration::hours(1))
    ));
    assert!(!guarded(&s, &ResetTo::Earliest));
    assert!(!guarded(&s, &ResetTo::ShiftBy(-1)));
    let allowed = spec(
        json!({"resetTo": "timestamp", "timestamp": "2026-11-22T10:00:00Z",
                              "allowTruncated": true}),
    );
    assert!(!guarded(&allowed, &ResetTo::Timestamp(at)));
    let change = |partition, h: Option<HistoryTruncated>| OffsetChange {
        topic: "orders".into(),
        partition,
        from: Some(9),
        to: 5,
        history_truncated: h,
    };
    let plan = [
        change(0, None),
        change(
            1,
            Some(HistoryTruncated {
                log_start_offset: 5,
                records_deleted: None,
                oldest_record_at: Some(at),
            }),
        ),
        change(
            2,
            Some(HistoryTruncated {
                log_start_offset: 10,
                records_deleted: None,
                oldest_record_at: None,
            }),
        ),
    ];
    assert_eq!(
        before_retention("analytics", "timestamp 2026-11-22T10:00:00Z", &plan).unwrap(),
        "the reset of analytics to timestamp 2026-11-22T10:00:00Z lies before the oldest record \
         Kafka still holds on orders[1] (oldest record 2026-11-22T11:00:00.000Z, log start \
         offset 5), orders[2] (no record held, log start offset 10): refused, nothing changed \
         (set spec.allowTruncated: true to start those partitions at their earliest offset \
         instead)"
    );
    assert_eq!(before_retention("analytics", "x", &plan[..1]), None);
}
