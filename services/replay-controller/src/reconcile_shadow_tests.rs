//! Shadow replays (spec.strategy Shadow) against the mocked API server and the fake Kafka:
//! every phase, reason and removal, with the calls in order.

use serde_json::json;

use crate::crd::{Phase, StateMetrics};
use crate::fixtures::shadow::{live_deployment, Routing};
use crate::fixtures::{ev, harness, request, shadow_spec, status, Call, FakeKafka, Harness, UID};

const GROUP: &str = "analytics-shadow-replay-1";

/// A harness holding the live analytics deployment (3 replicas, CONSUMER_GROUP=analytics),
/// and the live state topic on the broker.
fn shadow_harness(spec: serde_json::Value) -> Harness {
    let h = harness(request(spec, None), &[], FakeKafka::default());
    h.add_deployment(live_deployment("analytics", 3, Some("analytics")));
    h.kafka
        .shadow
        .topics
        .lock()
        .unwrap()
        .push("analytics-snapshots".into());
    h
}

fn numbers(orders: u64) -> StateMetrics {
    StateMetrics {
        orders_total: orders,
        reserved_total: orders - 1,
        failed_total: 1,
        failure_rate: Some(1.0 / orders as f64),
        minutes: 2,
        checkpoint_at: None,
    }
}

#[tokio::test]
async fn a_shadow_runs_beside_the_untouched_live_deployment_until_promoted() {
    let h = shadow_harness(shadow_spec());
    h.kafka
        .shadow
        .checkpoints
        .lock()
        .unwrap()
        .insert("analytics".into(), numbers(10));
    h.reconcile().await.unwrap();
    assert_eq!(
        h.calls(),
        vec![
            // the names are in the status before anything exists
            status(Phase::ShadowStarting, &[]),
            ev("ShadowStarting"),
            // the shadow group's reset is recorded before the copy is created
            status(Phase::ShadowStarting, &[]),
            Call::Created(GROUP.into()),
            status(Phase::ShadowCatchingUp, &[]),
            ev("ShadowCatchingUp"),
            status(Phase::Shadowing, &[]),
            ev("Shadowing"),
        ],
        "the live deployment is never scaled"
    );
    assert_eq!(
        h.kafka.shadow.log(),
        vec![format!("reset {GROUP} to 0 by {UID}")]
    );
    assert!(
        h.kafka.resets.lock().unwrap().is_empty(),
        "the live group is not reset"
    );
    let copy = h.deployment(GROUP).unwrap();
    assert_eq!(
        copy["spec"]["template"]["spec"]["containers"][0]["env"][0],
        json!({"name": "CONSUMER_GROUP", "value": GROUP})
    );
    assert_eq!(copy["metadata"]["ownerReferences"][0]["uid"], UID);
    let st = h.status();
    let sh = st.shadow.clone().unwrap();
    assert_eq!(
        (sh.consumer_group.as_str(), sh.deployment.as_str()),
        (GROUP, GROUP)
    );
    assert!(sh.reset_at.is_some() && sh.created_at.is_some() && sh.caught_up_at.is_some());
    let m = sh.metrics.unwrap();
    assert_eq!((m.shadow, m.live), (None, Some(numbers(10))));
    // alerting: the shadow's group replays, the live one does not
    assert_eq!(h.in_progress(GROUP), Some(1));
    assert_ne!(h.in_progress("analytics"), Some(1));
    assert_eq!(h.finalizers(), json!([crate::reconcile::FINALIZER]));

    // the shadow's numbers are refreshed while it runs
    h.kafka
        .shadow
        .checkpoints
        .lock()
        .unwrap()
        .insert(GROUP.into(), numbers(7));
    h.reconcile().await.unwrap();
    let m = h.status().shadow.unwrap().metrics.unwrap();
    assert_eq!((m.shadow, m.live), (Some(numbers(7)), Some(numbers(10))));

    // promotion
    h.kafka
        .shadow
        .topics
        .lock()
        .unwrap()
        .push(format!("{GROUP}-snapshots"));
    h.patch_spec(json!({"promote": true}));
    let before = h.calls().len();
    h.reconcile().await.unwrap();
    assert_eq!(
        h.calls()[before..].to_vec(),
        vec![
            status(Phase::Promoting, &[("analytics", 3)]),
            ev("Promoting"),
            // the copy takes the live pods' labels and serves beside them first
            Call::Patched(GROUP.into()),
            status(Phase::Promoting, &[("analytics", 3)]),
            Call::Scale("analytics".into(), 0),
            // commits and state moved, recorded with Restoring
            status(Phase::Restoring, &[("analytics", 3)]),
            ev("Restoring"),
            Call::Scale("analytics".into(), 3),
            status(Phase::CatchingUp, &[]),
            ev("CatchingUp"),
            // the live group caught up and analytics is available: the copy goes
            Call::Deleted(GROUP.into()),
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
            Call::Finalizers(vec![]),
        ]
    );
    assert_eq!(
        h.kafka.shadow.log()[1..].to_vec(),
        vec![
            format!("copy commits {GROUP} -> analytics"),
            format!("copy state {GROUP}-snapshots -> analytics-snapshots"),
            format!("delete group {GROUP}"),
            format!("delete topics {GROUP}-snapshots"),
        ]
    );
    let copy_labels = &h.status();
    assert!(copy_labels.shadow.as_ref().unwrap().serving_at.is_some());
    let sh = h.status().shadow.unwrap();
    assert!(sh.promoted_at.is_some() && sh.removed_at.is_some());
    assert_eq!(sh.copied.len(), 1);
    assert!(h.deployment(GROUP).is_none());
}

#[tokio::test]
async fn a_deployment_without_the_group_contract_is_refused() {
    let h = harness(request(shadow_spec(), None), &[], FakeKafka::default());
    h.add_deployment(live_deployment("analytics", 3, None));
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    let failed = st.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("ShadowUnsupported"));
    assert!(st.message.unwrap().contains("CONSUMER_GROUP=analytics"));
    assert!(h
        .calls()
        .iter()
        .all(|c| !matches!(c, Call::Created(_) | Call::Scale(..))));
    assert!(h.kafka.shadow.log().is_empty());
}

#[tokio::test]
async fn a_shadow_group_with_members_is_refused() {
    let h = shadow_harness(shadow_spec());
    h.kafka
        .shadow
        .members
        .lock()
        .unwrap()
        .insert(GROUP.into(), 1);
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .conditions
        .iter()
        .any(|c| c.reason.as_deref() == Some("ShadowGroupInUse")));
}

#[tokio::test]
async fn shadow_with_a_lag_experiment_is_an_invalid_spec() {
    let mut spec = shadow_spec();
    spec["lag"] = json!({"deployment": "inventory", "replicas": 0, "holdSeconds": 1});
    let h = shadow_harness(spec);
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .conditions
        .iter()
        .any(|c| c.reason.as_deref() == Some("InvalidSpec")));
}

#[tokio::test]
async fn a_shadow_reset_made_before_a_crash_is_not_made_again() {
    let h = shadow_harness(shadow_spec());
    // the controller wrote ShadowStarting, reset the shadow group, and died before the write
    h.set_status(
        json!({"phase": "ShadowStarting", "startedAt": "2026-11-22T10:00:00.000Z",
                        "phaseStartedAt": "2026-11-22T10:00:00.000Z",
                        "shadow": {"consumerGroup": GROUP, "deployment": GROUP}}),
    );
    let mark = orderflow_events::CommitMark::reset_by(chrono::Utc::now(), UID, None);
    h.kafka
        .shadow
        .commits
        .lock()
        .unwrap()
        .insert(GROUP.into(), (12, mark.to_string()));
    h.reconcile().await.unwrap();
    assert!(h.kafka.shadow.log().is_empty(), "no second reset");
    let st = h.status();
    assert_eq!(st.phase, Phase::Shadowing);
    assert_eq!(st.offsets[0].to, 12);
    assert!(h.deployment(GROUP).is_some());
}

#[tokio::test]
async fn a_copy_created_before_a_crash_is_taken_as_made() {
    let h = shadow_harness(shadow_spec());
    h.reconcile().await.unwrap();
    // the status is back at ShadowStarting with the reset recorded: the create was lost
    let mut st = serde_json::to_value(h.status()).unwrap();
    st["phase"] = json!("ShadowStarting");
    st["shadow"]["createdAt"] = json!(null);
    h.set_status(st);
    let before = h.calls().len();
    h.reconcile().await.unwrap();
    assert_eq!(h.status().phase, Phase::Shadowing);
    assert!(
        h.calls()[before..]
            .iter()
            .all(|c| !matches!(c, Call::Created(_))),
        "AlreadyExists of its own copy is not an error"
    );
    assert_eq!(h.kafka.shadow.log().len(), 1, "one reset only");
}

#[tokio::test]
async fn a_promotion_takes_no_pod_away_before_the_services_route_to_the_others() {
    let h = shadow_harness(shadow_spec());
    h.reconcile().await.unwrap();
    let live = ("analytics-7f-a", json!({"app": "analytics"}));
    let copy = (
        "copy-9c-b",
        json!({"app": "analytics", "orderflow.io/shadow-of": "replay-1"}),
    );
    // the copy is available with the live labels, but the Service lists only the live pod
    h.set_routing(Routing::service(
        "analytics",
        "analytics",
        &[live.clone(), copy.clone()],
        &[live.0],
    ));
    h.patch_spec(json!({"promote": true}));
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Promoting);
    assert!(
        st.message
            .unwrap()
            .contains("waiting for Service(s) analytics to list its pod as a ready endpoint"),
        "{:?}",
        h.status().message
    );
    assert!(st.shadow.unwrap().serving_at.is_none());
    assert_eq!(h.replicas("analytics"), 3, "the live pods stay until then");
    // routed to the copy: the live deployment goes to 0 and comes back; the Service lists
    // only the copy meanwhile, so the copy stays
    h.set_routing(Routing::service(
        "analytics",
        "analytics",
        std::slice::from_ref(&copy),
        &[copy.0],
    ));
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::CatchingUp);
    assert!(
        st.message.as_deref().unwrap_or_default().contains(
            "waiting for Service(s) analytics to list a pod of deployment analytics as a ready endpoint"
        ),
        "{:?}",
        st.message
    );
    assert!(h.deployment(GROUP).is_some(), "the copy still serves");
    assert!(st.shadow.unwrap().removed_at.is_none());
    // a live pod is a ready endpoint again: the copy goes
    let back = ("analytics-7f-c", json!({"app": "analytics"}));
    h.set_routing(Routing::service(
        "analytics",
        "analytics",
        &[back.clone(), copy],
        &[back.0],
    ));
    h.reconcile().await.unwrap();
    assert_eq!(h.status().phase, Phase::Succeeded);
    assert!(h.deployment(GROUP).is_none());
}

#[tokio::test]
async fn the_shadow_is_removed_once_its_group_is_empty() {
    let h = shadow_harness(shadow_spec());
    h.reconcile().await.unwrap();
    // the copy's pod still stops when the live group has caught up
    h.kafka
        .shadow
        .members
        .lock()
        .unwrap()
        .insert(GROUP.into(), 1);
    h.patch_spec(json!({"promote": true}));
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::CatchingUp);
    assert!(st
        .message
        .unwrap()
        .contains(&format!("waiting for shadow group {GROUP}")));
    assert!(st.shadow.unwrap().removed_at.is_none());
    assert_eq!(h.replicas("analytics"), 3, "analytics restored meanwhile");
    h.kafka.shadow.members.lock().unwrap().clear();
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Succeeded);
    assert!(st.shadow.unwrap().removed_at.is_some());
}

#[tokio::test]
async fn deleting_a_running_shadow_removes_the_copy_its_group_and_state_topics() {
    let h = shadow_harness(shadow_spec());
    h.reconcile().await.unwrap();
    h.kafka
        .shadow
        .topics
        .lock()
        .unwrap()
        .push(format!("{GROUP}-snapshots"));
    h.mark_deleted();
    let before = h.calls().len();
    h.reconcile().await.unwrap();
    let calls = h.calls()[before..].to_vec();
    assert_eq!(calls[0], Call::Deleted(GROUP.into()));
    assert!(calls.contains(&ev("Deleted")));
    assert_eq!(
        h.kafka.shadow.log()[1..].to_vec(),
        vec![
            format!("delete group {GROUP}"),
            format!("delete topics {GROUP}-snapshots"),
        ]
    );
    assert_eq!(
        h.replicas("analytics"),
        3,
        "the live deployment was never touched"
    );
}

#[tokio::test]
async fn a_failed_shadow_stops_its_copy_and_keeps_the_finalizer_for_the_group() {
    let mut spec = shadow_spec();
    spec["catchUpTimeoutSeconds"] = json!(1);
    let h = shadow_harness(spec);
    h.kafka.set_position(0, 40);
    h.reconcile().await.unwrap();
    assert_eq!(h.status().phase, Phase::ShadowCatchingUp);
    // a previous phase start long ago: the catch-up deadline has passed
    let mut st = serde_json::to_value(h.status()).unwrap();
    st["phaseStartedAt"] = json!("2026-01-01T00:00:00.000Z");
    h.set_status(st);
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .conditions
        .iter()
        .any(|c| c.reason.as_deref() == Some("CatchUpTimeout")));
    assert!(h.deployment(GROUP).is_none(), "the copy is deleted");
    assert_eq!(h.finalizers(), json!([crate::reconcile::FINALIZER]));
}

#[tokio::test]
async fn a_deployment_of_the_copys_name_that_is_not_ours_is_refused() {
    let h = shadow_harness(shadow_spec());
    let mut other = live_deployment(GROUP, 1, Some("someone"));
    other["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "not-ours"}]);
    h.add_deployment(other);
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .conditions
        .iter()
        .any(|c| c.reason.as_deref() == Some("ShadowNameInUse")));
    assert!(
        h.deployment(GROUP).is_some(),
        "someone else's deployment is left alone"
    );
}

#[tokio::test]
async fn a_copy_deleted_before_promotion_fails_it_without_touching_the_live_deployment() {
    let h = shadow_harness(shadow_spec());
    h.reconcile().await.unwrap();
    h.delete_deployment(GROUP);
    h.patch_spec(json!({"promote": true}));
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .conditions
        .iter()
        .any(|c| c.reason.as_deref() == Some("ShadowNotFound")));
    assert_eq!(h.replicas("analytics"), 3);
    assert!(
        h.calls().iter().all(|c| !matches!(c, Call::Scale(_, 0))),
        "never scaled down"
    );
}

#[tokio::test]
async fn a_copy_that_never_serves_fails_the_promotion_before_the_live_deployment_is_touched() {
    let mut spec = shadow_spec();
    spec["timeoutSeconds"] = json!(1);
    let h = shadow_harness(spec);
    h.reconcile().await.unwrap();
    h.stall_rollouts();
    h.patch_spec(json!({"promote": true}));
    h.reconcile().await.unwrap();
    assert_eq!(h.status().phase, Phase::Promoting, "waiting for the copy");
    // the promotion started long ago: its deadline has passed
    let mut st = serde_json::to_value(h.status()).unwrap();
    st["phaseStartedAt"] = json!("2026-01-01T00:00:00.000Z");
    h.set_status(st);
    h.reconcile().await.unwrap();
    let st = h.status();
    assert_eq!(st.phase, Phase::Failed);
    assert!(st
        .conditions
        .iter()
        .any(|c| c.reason.as_deref() == Some("ShadowNotServing")));
    assert_eq!(h.replicas("analytics"), 3);
    assert!(
        h.calls().iter().all(|c| !matches!(c, Call::Scale(_, 0))),
        "never scaled down"
    );
    assert!(h.deployment(GROUP).is_none(), "the copy is stopped");
}
