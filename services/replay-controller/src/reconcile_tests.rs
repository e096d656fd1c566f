//! Reconcile tests with the Kubernetes API mocked (tower-test, as kube-rs/controller-rs's
//! ApiServerVerifier) and Kafka faked: every API call the reconciler makes is answered by a
//! small in-memory API server that records it, so the tests assert the calls and their
//! order (status written before a deployment is scaled, scale patches, Events).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use orderflowctl::{CommittedOffset, GroupError, GroupInfo, OffsetChange, ResetTo};
use serde_json::{json, Value};

use super::*;
use crate::crd::{Phase, ReplayRequestStatus};
use crate::kafka::{AdminError, GroupAdmin};

const UID: &str = "7c1f-uid";

/// What the fake API server saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    /// A status write: phase and the restore list at that moment.
    Status(Phase, Vec<(String, i32)>),
    /// A scale patch: deployment, replicas.
    Scale(String, i32),
    /// An Event: reason.
    Event(String),
}

struct FakeApi {
    rr: Value,
    deployments: HashMap<String, i32>,
    calls: Vec<Call>,
}

/// Serve the mocked API until the client is dropped.
fn api_server(state: Arc<Mutex<FakeApi>>) -> Client {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (code, reply) = answer(&state, parts.method.as_str(), parts.uri.path(), body);
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    Client::new(svc, "default")
}

fn answer(state: &Arc<Mutex<FakeApi>>, method: &str, path: &str, body: Value) -> (u16, Value) {
    let mut s = state.lock().unwrap();
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"});
    let rr_base = "/apis/orderflow.io/v1alpha1/namespaces/default/replayrequests";
    let dep_base = "/apis/apps/v1/namespaces/default/deployments/";
    match (method, path) {
        ("GET", p) if p == format!("{rr_base}/replay-1/status") => (200, s.rr.clone()),
        ("GET", p) if p == rr_base => (
            200,
            json!({"apiVersion": "orderflow.io/v1alpha1", "kind": "ReplayRequestList",
                   "metadata": {}, "items": [s.rr.clone()]}),
        ),
        ("PATCH", p) if p == format!("{rr_base}/replay-1/status") => {
            let status: ReplayRequestStatus =
                serde_json::from_value(body["status"].clone()).unwrap();
            let restore = status
                .restore
                .iter()
                .map(|r| (r.deployment.clone(), r.replicas))
                .collect();
            s.calls.push(Call::Status(status.phase, restore));
            s.rr["status"] = body["status"].clone();
            (200, s.rr.clone())
        }
        ("GET", p) if p.starts_with(dep_base) && p.ends_with("/scale") => {
            let name = p[dep_base.len()..].trim_end_matches("/scale").to_string();
            match s.deployments.get(&name) {
                Some(n) => (200, scale(&name, *n)),
                None => (404, not_found),
            }
        }
        ("PATCH", p) if p.starts_with(dep_base) && p.ends_with("/scale") => {
            let name = p[dep_base.len()..].trim_end_matches("/scale").to_string();
            let n = body["spec"]["replicas"].as_i64().unwrap() as i32;
            if !s.deployments.contains_key(&name) {
                return (404, not_found);
            }
            s.deployments.insert(name.clone(), n);
            s.calls.push(Call::Scale(name.clone(), n));
            (200, scale(&name, n))
        }
        ("POST", "/apis/events.k8s.io/v1/namespaces/default/events") => {
            s.calls.push(Call::Event(
                body["reason"].as_str().unwrap_or("").to_string(),
            ));
            (201, body)
        }
        (m, p) => panic!("unexpected API call {m} {p}"),
    }
}

fn scale(name: &str, n: i32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"replicas": n}, "status": {"replicas": n}})
}

/// Kafka, scripted.
#[derive(Default)]
struct FakeKafka {
    members: usize,
    unreachable: bool,
    committed: Vec<CommittedOffset>,
    resets: Mutex<Vec<String>>,
}

fn down() -> AdminError {
    AdminError::Group(GroupError::Kafka(
        rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
        ),
    ))
}

#[async_trait]
impl GroupAdmin for FakeKafka {
    async fn describe(&self, group: &str) -> Result<GroupInfo, AdminError> {
        if self.unreachable {
            return Err(down());
        }
        Ok(GroupInfo {
            group: group.to_string(),
            state: if self.members > 0 { "Stable" } else { "Empty" }.to_string(),
            members: self.members,
            member_list: Vec::new(),
        })
    }

    async fn committed(
        &self,
        _group: &str,
        _topics: &[String],
    ) -> Result<Vec<CommittedOffset>, AdminError> {
        Ok(self.committed.clone())
    }

    async fn reset(
        &self,
        _group: &str,
        _topics: &[String],
        to: ResetTo,
        by: &str,
    ) -> Result<Vec<OffsetChange>, AdminError> {
        self.resets.lock().unwrap().push(format!("{to} by {by}"));
        Ok(vec![OffsetChange {
            topic: "orders".to_string(),
            partition: 0,
            from: Some(40),
            to: 0,
        }])
    }

    async fn lag(&self, _group: &str, _topics: &[String]) -> Result<i64, AdminError> {
        Ok(0)
    }
}

fn request(spec: Value, status: Option<Value>) -> Value {
    let mut rr = json!({
        "apiVersion": "orderflow.io/v1alpha1", "kind": "ReplayRequest",
        "metadata": {"name": "replay-1", "namespace": "default", "uid": UID,
                     "generation": 1, "resourceVersion": "1",
                     "creationTimestamp": "2026-11-22T10:00:00Z",
                     "finalizers": [FINALIZER]},
        "spec": spec,
    });
    if let Some(s) = status {
        rr["status"] = s;
    }
    rr
}

fn replay_spec() -> Value {
    json!({"consumerGroup": "analytics", "deployment": "analytics",
           "topics": ["orders"], "resetTo": "earliest"})
}

struct Harness {
    state: Arc<Mutex<FakeApi>>,
    kafka: Arc<FakeKafka>,
    ctx: Arc<Context>,
}

fn harness(rr: Value, deployments: &[(&str, i32)], kafka: FakeKafka) -> Harness {
    let state = Arc::new(Mutex::new(FakeApi {
        rr,
        deployments: deployments
            .iter()
            .map(|(n, r)| (n.to_string(), *r))
            .collect(),
        calls: Vec::new(),
    }));
    let client = api_server(state.clone());
    let kafka = Arc::new(kafka);
    let ctx = Arc::new(Context {
        client: client.clone(),
        admin: kafka.clone(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "replay-controller".to_string(),
                instance: None,
            },
        ),
        metrics: Metrics::default(),
        settings: Settings::default(),
    });
    Harness { state, kafka, ctx }
}

impl Harness {
    async fn reconcile(&self) -> Result<Action, Error> {
        let rr: ReplayRequest = serde_json::from_value(self.state.lock().unwrap().rr.clone())
            .expect("a valid ReplayRequest");
        reconcile(Arc::new(rr), self.ctx.clone()).await
    }

    fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    fn status(&self) -> ReplayRequestStatus {
        serde_json::from_value(self.state.lock().unwrap().rr["status"].clone()).unwrap()
    }

    fn replicas(&self, d: &str) -> i32 {
        self.state.lock().unwrap().deployments[d]
    }
}

fn status(phase: Phase, restore: &[(&str, i32)]) -> Call {
    Call::Status(
        phase,
        restore.iter().map(|(d, n)| (d.to_string(), *n)).collect(),
    )
}

fn ev(reason: &str) -> Call {
    Call::Event(reason.to_string())
}

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
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
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
            status(Phase::Succeeded, &[]),
            ev("Succeeded"),
        ]
    );
    assert_eq!(h.replicas("analytics"), 1);
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
    assert_eq!(h.calls(), vec![status(Phase::Failed, &[]), ev("Failed")]);
    let st = h.status();
    let failed = st.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_deref()),
        ("True", Some("InvalidSpec"))
    );
    // a final request is left alone afterwards
    assert_eq!(h.reconcile().await.unwrap(), Action::await_change());
    assert_eq!(h.calls().len(), 2);
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
