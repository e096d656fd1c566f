//! Reconcile tests with the Kubernetes API mocked (tower-test, as kube-rs/controller-rs's
//! ApiServerVerifier) and Kafka faked ([`crate::fixtures`]): every API call the reconciler
//! makes is answered by a small in-memory API server that records it, so the tests assert the
//! calls and their order (status written before a deployment is scaled, scale patches,
//! Events).

use kube::runtime::controller::Action;
use kube::ResourceExt;
use orderflowctl::CommittedOffset;
use serde_json::json;

use crate::crd::{Phase, ReplayRequest};
use crate::fixtures::{ev, harness, replay_spec, request, status, Call, FakeKafka, UID};
use crate::reconcile::{backoff, blocker, Settings, FINALIZER};

#[tokio::test]
async fn a_new_request_records_the_replicas_before_scaling_then_resets_and_restores() {
    let h = harness(
        request(replay_spec(), None),
        &[("analytics", 3)],
        FakeKafka::default(),
    );
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(
        h.calls(),
        vec![
            // the count to restore is in the status before analytics is touched
            status(Phase::ScalingDown, &[("analytics", 3)]),
            ev("ScalingDown"),
            Call::Scale("analytics".into(), 0),
            status(Phase::Resetting, &[("analytics", 3)]),
            ev("Resetting"),
            status(Phase::Restoring, &[("analytics", 3)]),
            ev("Restoring"),
            Call::Scale("analytics".into(), 3),
            // the group has passed the high watermarks read at reset time
            status(Phase::CatchingUp, &[]),
            ev("CatchingUp"),
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
            // finished: nothing left to restore, the finalizer goes
            Call::Finalizers(vec![]),
        ]
    );
    assert_eq!(
        *h.kafka.resets.lock().unwrap(),
        vec![format!("earliest by {UID}")]
    );
    let st = h.status();
    assert_eq!(st.offsets.len(), 1);
    assert_eq!((st.offsets[0].from, st.offsets[0].to), (Some(40), 0));
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(h.replicas("analytics"), 3);
}

#[tokio::test]
async fn a_reset_made_before_a_crash_is_not_made_again() {
    // the controller died after committing the reset, before writing Restoring
    let st = json!({"phase": "Resetting", "startedAt": "2026-11-22T10:00:00.000Z",
                    "restore": [{"deployment": "analytics", "replicas": 1}]});
    let committed = vec![CommittedOffset {
        topic: "orders".to_string(),
        partition: 0,
        offset: Some(0),
        metadata: format!("orderflow.reset=2026-11-22T10:00:01.000Z by={UID} from=57"),
    }];
    let h = harness(
        request(replay_spec(), Some(st)),
        &[("analytics", 0)],
        FakeKafka {
            committed,
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    assert!(h.kafka.resets.lock().unwrap().is_empty(), "reset twice");
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!((st.offsets[0].from, st.offsets[0].to), (Some(57), 0));
    assert_eq!(
        h.calls(),
        vec![
            status(Phase::Restoring, &[("analytics", 1)]),
            ev("Restoring"),
            Call::Scale("analytics".into(), 1),
            status(Phase::CatchingUp, &[]),
            ev("CatchingUp"),
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
            // finished: nothing left to restore, the finalizer goes
            Call::Finalizers(vec![]),
        ]
    );
    assert_eq!(h.replicas("analytics"), 1);
}

fn truncated_at(lso: i64) -> orderflowctl::HistoryTruncated {
    orderflowctl::HistoryTruncated {
        log_start_offset: lso,
        records_deleted: Some(lso),
        oldest_record_at: None,
    }
}

#[tokio::test]
async fn a_reset_before_the_oldest_record_held_is_in_the_status_and_a_warning_event() {
    let h = harness(
        request(replay_spec(), None),
        &[("analytics", 2)],
        FakeKafka {
            truncated: Some(truncated_at(25)),
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    assert_eq!(
        h.calls(),
        vec![
            status(Phase::ScalingDown, &[("analytics", 2)]),
            ev("ScalingDown"),
            Call::Scale("analytics".into(), 0),
            status(Phase::Resetting, &[("analytics", 2)]),
            ev("Resetting"),
            // the reset is made all the same; the status says where, then the Warning
            status(Phase::Restoring, &[("analytics", 2)]),
            ev("Restoring"),
            ev("HistoryTruncated"),
            Call::Scale("analytics".into(), 2),
            status(Phase::CatchingUp, &[]),
            ev("CatchingUp"),
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
            Call::Finalizers(vec![]),
        ]
    );
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!((st.offsets[0].from, st.offsets[0].to), (Some(40), 25));
    assert_eq!(st.history_truncated.len(), 1);
    let t = &st.history_truncated[0];
    assert_eq!(
        (
            t.topic.as_str(),
            t.partition,
            t.log_start_offset,
            t.records_deleted
        ),
        ("orders", 0, 25, Some(25))
    );
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.contains("to earliest; history truncated: orders[0] from log start offset 25 (25 record(s) deleted)"),
        "{msg}"
    );
    // one Warning only: the later status writes keep the list and emit nothing more
    let warnings = h
        .calls()
        .iter()
        .filter(|c| **c == ev("HistoryTruncated"))
        .count();
    assert_eq!(warnings, 1);
}

#[tokio::test]
async fn a_reset_found_after_a_crash_asks_again_what_history_is_gone() {
    let st = json!({"phase": "Resetting", "startedAt": "2026-11-22T10:00:00.000Z",
                    "restore": [{"deployment": "analytics", "replicas": 1}]});
    let committed = vec![CommittedOffset {
        topic: "orders".to_string(),
        partition: 0,
        offset: Some(25),
        metadata: format!("orderflow.reset=2026-11-22T10:00:01.000Z by={UID} from=57"),
    }];
    let h = harness(
        request(replay_spec(), Some(st)),
        &[("analytics", 0)],
        FakeKafka {
            committed,
            truncated: Some(truncated_at(25)),
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    assert!(h.kafka.resets.lock().unwrap().is_empty(), "reset twice");
    assert_eq!(*h.kafka.plans.lock().unwrap(), 1);
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!(st.history_truncated.len(), 1);
    assert_eq!(st.history_truncated[0].log_start_offset, 25);
    assert!(h.calls().contains(&ev("HistoryTruncated")));
}

#[tokio::test]
async fn a_whole_history_says_nothing() {
    let h = harness(
        request(replay_spec(), None),
        &[("analytics", 1)],
        FakeKafka::default(),
    );
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    assert!(st.history_truncated.is_empty());
    assert!(!st.message.unwrap_or_default().contains("history"));
    assert!(!h.calls().contains(&ev("HistoryTruncated")));
}

#[tokio::test]
async fn an_invalid_spec_fails_without_touching_deployments() {
    let spec = json!({"consumerGroup": "analytics", "deployment": "analytics",
                      "topics": ["orders"], "resetTo": "timestamp"});
    let h = harness(
        request(spec, None),
        &[("analytics", 1)],
        FakeKafka::default(),
    );
    assert_eq!(h.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(
        h.calls(),
        vec![
            status(Phase::Failed, &[]),
            ev("Failed"),
            Call::Finalizers(vec![])
        ]
    );
    let st = h.status();
    let failed = st.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_deref()),
        ("True", Some("InvalidSpec"))
    );
    // a final request is left alone afterwards, and its finalizer not added back
    assert_eq!(h.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(h.calls().len(), 3);
    assert_eq!(h.finalizers(), json!([]));
}

#[tokio::test]
async fn an_unknown_deployment_fails_the_request() {
    let h = harness(request(replay_spec(), None), &[], FakeKafka::default());
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .message
        .unwrap()
        .contains("deployment default/analytics not found"));
}

#[tokio::test]
async fn kafka_unreachable_is_retried_with_backoff_and_shown() {
    let h = harness(
        request(replay_spec(), None),
        &[("analytics", 1)],
        FakeKafka {
            unreachable: true,
            ..FakeKafka::default()
        },
    );
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(Settings::default().retry_base));
    let st = h.status();
    assert_eq!((st.phase, st.retries), (Phase::ScalingDown, 1));
    assert!(st.next_attempt_at.is_some());
    assert!(st.message.unwrap().contains("Kafka unavailable"));
    let progressing = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("KafkaUnavailable"));
    assert!(h.calls().contains(&ev("KafkaUnavailable")));
    // woken at once by its own status write, it waits for the backoff instead of retrying
    let n = h.calls().len();
    let again = h.reconcile().await.unwrap();
    assert_ne!(again, Action::await_change());
    assert_eq!(h.calls().len(), n);
}

#[tokio::test]
async fn a_group_still_busy_at_the_deadline_fails_and_restores() {
    let st = json!({"phase": "ScalingDown", "startedAt": "2026-11-22T10:00:00.000Z",
                    "restore": [{"deployment": "analytics", "replicas": 2}]});
    let h = harness(
        request(replay_spec(), Some(st)),
        &[("analytics", 0)],
        FakeKafka {
            members: 1,
            ..FakeKafka::default()
        },
    );
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st.restore.is_empty());
    assert_eq!(h.replicas("analytics"), 2);
    let failed = st.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("GroupNotEmpty"));
}

#[tokio::test]
async fn a_finished_request_still_holding_its_finalizer_after_a_crash_lets_it_go() {
    // the controller died after writing Succeeded, before removing the finalizer; another
    // party's finalizer is kept
    let st = json!({"phase": "Succeeded", "startedAt": "2026-11-22T10:00:00.000Z",
                    "completedAt": "2026-11-22T10:00:05.000Z", "restore": []});
    let mut rr = request(replay_spec(), Some(st));
    rr["metadata"]["finalizers"] = json!(["example.com/keep", FINALIZER]);
    let h = harness(rr, &[("analytics", 1)], FakeKafka::default());
    assert_eq!(h.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(
        h.calls(),
        vec![Call::Finalizers(vec!["example.com/keep".into()])]
    );
    assert_eq!(h.finalizers(), json!(["example.com/keep"]));
    // nothing more: not scaled, no Event, the finalizer not added back
    h.reconcile().await.unwrap();
    assert_eq!(h.calls().len(), 1);
    assert_eq!(h.finalizers(), json!(["example.com/keep"]));
    assert_eq!(h.status().phase, Phase::Succeeded);
}

#[tokio::test]
async fn a_terminal_request_with_deployments_still_to_restore_keeps_its_finalizer() {
    let st = json!({"phase": "Failed", "startedAt": "2026-11-22T10:00:00.000Z",
                    "restore": [{"deployment": "analytics", "replicas": 2}]});
    let h = harness(
        request(replay_spec(), Some(st)),
        &[("analytics", 0)],
        FakeKafka::default(),
    );
    assert_eq!(h.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(h.calls(), vec![]);
    assert_eq!(h.finalizers(), json!([FINALIZER]));
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let s = Settings::default();
    assert_eq!(backoff(&s, 1), s.retry_base);
    assert_eq!(backoff(&s, 2), s.retry_base * 2);
    assert_eq!(backoff(&s, 30), s.retry_max);
}

#[test]
fn requests_for_the_same_group_queue_by_age() {
    let mk = |name: &str, created: &str, phase: Option<&str>| -> ReplayRequest {
        let mut v = request(replay_spec(), phase.map(|p| json!({"phase": p})));
        v["metadata"]["name"] = json!(name);
        v["metadata"]["uid"] = json!(format!("uid-{name}"));
        v["metadata"]["creationTimestamp"] = json!(created);
        serde_json::from_value(v).unwrap()
    };
    let a = mk("a", "2026-11-22T10:00:00Z", None);
    let b = mk("b", "2026-11-22T10:00:05Z", None);
    let all = vec![a.clone(), b.clone()];
    assert!(blocker(&a, &all).is_none());
    assert_eq!(blocker(&b, &all).map(|r| r.name_any()), Some("a".into()));
    // a running request blocks even a younger-created one; finished ones block nothing
    let running = mk("r", "2026-11-22T11:00:00Z", Some("Resetting"));
    let done = mk("d", "2026-11-22T09:00:00Z", Some("Succeeded"));
    assert_eq!(
        blocker(&a, &[running.clone(), done.clone()]).map(|r| r.name_any()),
        Some("r".into())
    );
    assert!(blocker(&a, &[done]).is_none());
}
