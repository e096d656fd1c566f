//! Test fixtures, as kube-rs/controller-rs keeps them in a `fixtures` module (compiled for
//! tests only): ReplayRequests to reconcile, a Kubernetes API mocked with tower-test by a
//! small in-memory API server that records every call the reconciler makes, in order (status
//! writes, scale patches, Events), and Kafka faked by a scripted [`GroupAdmin`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use serde_json::{json, Value};

use crate::crd::{Phase, ReplayRequest, ReplayRequestStatus};
use crate::metrics::Metrics;
use crate::reconcile::{reconcile, Context, Error, Settings, FINALIZER};

// ReplayRequests

/// The uid of [`request`]'s ReplayRequest (the reset tags commit metadata with it).
pub const UID: &str = "7c1f-uid";

/// ReplayRequest `replay-1` in namespace `default`, created 2026-11-22T10:00:00Z, with the
/// finalizer already added, as the API server holds it (JSON).
pub fn request(spec: Value, status: Option<Value>) -> Value {
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

/// A spec that replays group analytics (deployment analytics) on orders from earliest.
pub fn replay_spec() -> Value {
    json!({"consumerGroup": "analytics", "deployment": "analytics",
           "topics": ["orders"], "resetTo": "earliest"})
}

// The Kubernetes API, faked

/// What the fake API server saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A status write: phase and the restore list at that moment.
    Status(Phase, Vec<(String, i32)>),
    /// A scale patch: deployment, replicas.
    Scale(String, i32),
    /// An Event: reason.
    Event(String),
    /// The request's finalizers written (metadata patch): the list after it.
    Finalizers(Vec<String>),
    /// A Deployment created (a shadow's copy): name.
    Created(String),
    /// A Deployment deleted: name.
    Deleted(String),
    /// A Deployment's pod labels patched (a shadow's copy at promotion): name.
    Patched(String),
}

/// The expected status write: `phase` with `restore` as (deployment, replicas).
pub fn status(phase: Phase, restore: &[(&str, i32)]) -> Call {
    Call::Status(
        phase,
        restore.iter().map(|(d, n)| (d.to_string(), *n)).collect(),
    )
}

/// The expected Event with `reason`.
pub fn ev(reason: &str) -> Call {
    Call::Event(reason.to_string())
}

/// The fake API server's state: the one ReplayRequest, each deployment's replicas, and
/// the calls so far.
struct FakeApi {
    rr: Value,
    /// Other ReplayRequests of the namespace (e.g. the one an undo undoes), by name.
    others: Vec<Value>,
    deployments: HashMap<String, i32>,
    /// HorizontalPodAutoscalers (autoscaling/v2) of the namespace.
    hpas: Vec<Value>,
    /// Full Deployment objects (GET, POST, DELETE), beside their replicas in `deployments`.
    objects: HashMap<String, Value>,
    /// A patched Deployment's new rollout never becomes available.
    stalled: bool,
    /// Services, pods and EndpointSlices (none: no Service in front of any pod).
    routing: shadow::Routing,
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

/// Answer one API call as the API server would, recording the writes in `calls`.
fn answer(state: &Arc<Mutex<FakeApi>>, method: &str, path: &str, body: Value) -> (u16, Value) {
    let mut s = state.lock().unwrap();
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"});
    let rr_base = "/apis/orderflow.io/v1alpha1/namespaces/default/replayrequests";
    let dep_base = "/apis/apps/v1/namespaces/default/deployments/";
    if let Some(reply) = shadow::deployments(&mut s, method, path, &body) {
        return reply;
    }
    if let Some(reply) = s.routing.list(method, path) {
        return reply;
    }
    match (method, path) {
        ("GET", p) if p == format!("{rr_base}/replay-1/status") => (200, s.rr.clone()),
        ("GET", p) if p == rr_base => {
            let mut items = vec![s.rr.clone()];
            items.extend(s.others.iter().cloned());
            (
                200,
                json!({"apiVersion": "orderflow.io/v1alpha1", "kind": "ReplayRequestList",
                       "metadata": {}, "items": items}),
            )
        }
        ("GET", p) if p.starts_with(&format!("{rr_base}/")) && !p.ends_with("/status") => {
            let name = &p[rr_base.len() + 1..];
            match s.others.iter().find(|o| o["metadata"]["name"] == name) {
                Some(o) => (200, o.clone()),
                None => (404, not_found),
            }
        }
        ("PATCH", p) if p == format!("{rr_base}/replay-1") && body.is_array() => {
            // kube-runtime's `finalizer` adding the finalizer: a JSON patch (test, add)
            let mut finalizers: Vec<String> =
                serde_json::from_value(s.rr["metadata"]["finalizers"].clone()).unwrap_or_default();
            for op in body.as_array().into_iter().flatten() {
                match (op["op"].as_str(), op["path"].as_str()) {
                    (Some("add"), Some("/metadata/finalizers")) => {
                        finalizers = serde_json::from_value(op["value"].clone()).unwrap()
                    }
                    (Some("add"), Some("/metadata/finalizers/-")) => {
                        finalizers.push(op["value"].as_str().unwrap().to_string())
                    }
                    _ => {}
                }
            }
            s.calls.push(Call::Finalizers(finalizers.clone()));
            s.rr["metadata"]["finalizers"] = json!(finalizers);
            (200, s.rr.clone())
        }
        ("PATCH", p) if p == format!("{rr_base}/replay-1") => {
            // a merge patch of metadata.finalizers, refused (409) on a stale resourceVersion
            let rv = s.rr["metadata"]["resourceVersion"].clone();
            if body["metadata"]["resourceVersion"] != rv {
                let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "Conflict", "code": 409, "message": "conflict"});
                return (409, conflict);
            }
            let finalizers: Vec<String> =
                serde_json::from_value(body["metadata"]["finalizers"].clone()).unwrap();
            s.calls.push(Call::Finalizers(finalizers.clone()));
            s.rr["metadata"]["finalizers"] = json!(finalizers);
            let next = rv.as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            s.rr["metadata"]["resourceVersion"] = json!(next.to_string());
            (200, s.rr.clone())
        }
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
        ("GET", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers") => (
            200,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList",
                   "metadata": {}, "items": s.hpas.clone()}),
        ),
        ("POST", "/apis/events.k8s.io/v1/namespaces/default/events") => {
            s.calls.push(Call::Event(
                body["reason"].as_str().unwrap_or("").to_string(),
            ));
            (201, body)
        }
        // the Recorder's repeat of an Event it sent before (a series count): no new Event
        ("PATCH", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/default/events/") => {
            (200, body)
        }
        (m, p) => panic!("unexpected API call {m} {p}"),
    }
}

/// A deployment's Scale object (autoscaling/v1).
fn scale(name: &str, n: i32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"replicas": n}, "status": {"replicas": n}})
}

#[path = "fixtures_shadow.rs"]
pub mod shadow;
pub use shadow::{shadow_spec, ShadowKafka};

#[path = "fixtures_kafka.rs"]
mod kafka;
pub use kafka::FakeKafka;

// The reconciler's Context on both fakes

/// A [`Context`] whose client talks to the fake API server and whose Kafka is a
/// [`FakeKafka`], with what both saw.
pub struct Harness {
    state: Arc<Mutex<FakeApi>>,
    pub kafka: Arc<FakeKafka>,
    ctx: Arc<Context>,
}

/// The fake API server holding `rr` and `deployments` (name, replicas), and `kafka`.
pub fn harness(rr: Value, deployments: &[(&str, i32)], kafka: FakeKafka) -> Harness {
    let state = Arc::new(Mutex::new(FakeApi {
        rr,
        others: Vec::new(),
        deployments: deployments
            .iter()
            .map(|(n, r)| (n.to_string(), *r))
            .collect(),
        hpas: Vec::new(),
        objects: HashMap::new(),
        stalled: false,
        routing: shadow::Routing::default(),
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
    pub async fn reconcile(&self) -> Result<Action, Error> {
        let rr: ReplayRequest = serde_json::from_value(self.state.lock().unwrap().rr.clone())
            .expect("a valid ReplayRequest");
        reconcile(Arc::new(rr), self.ctx.clone()).await
    }

    /// Another ReplayRequest in the namespace (JSON as the API server holds it).
    pub fn add_request(&self, rr: Value) {
        self.state.lock().unwrap().others.push(rr);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn status(&self) -> ReplayRequestStatus {
        serde_json::from_value(self.state.lock().unwrap().rr["status"].clone()).unwrap()
    }

    pub fn finalizers(&self) -> Value {
        self.state.lock().unwrap().rr["metadata"]["finalizers"].clone()
    }

    pub fn replicas(&self, d: &str) -> i32 {
        self.state.lock().unwrap().deployments[d]
    }

    /// Deployment `name` as the API server holds it (`None`: there is none).
    pub fn deployment(&self, name: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(name).cloned()
    }

    /// Delete Deployment `name` (as `kubectl delete` would), without recording a call.
    pub fn delete_deployment(&self, name: &str) {
        let mut s = self.state.lock().unwrap();
        s.objects.remove(name);
        s.deployments.remove(name);
    }

    /// From now on a patched Deployment's rollout never becomes available.
    pub fn stall_rollouts(&self) {
        self.state.lock().unwrap().stalled = true;
    }

    /// Add a full Deployment object (with its replicas) to the fake API server.
    pub fn add_deployment(&self, d: Value) {
        shadow::add(&mut self.state.lock().unwrap(), d);
    }

    /// An HPA `name` (autoscaling/v2) scaling Deployment `target` between 1 and 5 replicas.
    /// Set the Services, pods and EndpointSlices the API server lists.
    pub fn set_routing(&self, routing: shadow::Routing) {
        self.state.lock().unwrap().routing = routing;
    }

    pub fn add_hpa(&self, name: &str, target: &str) {
        self.state.lock().unwrap().hpas.push(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "minReplicas": 1, "maxReplicas": 5}
        }));
    }

    /// orderflow_replay_in_progress of request replay-1 (namespace default) on `group`, if
    /// the series exists.
    pub fn in_progress(&self, group: &str) -> Option<i64> {
        let labels = crate::metrics::ReplayLabels {
            group: group.to_string(),
            namespace: "default".to_string(),
            name: "replay-1".to_string(),
        };
        self.ctx.metrics.in_progress.get(&labels).map(|g| g.get())
    }

    /// Change the request's spec (as `kubectl patch` would): merge `patch` into it.
    pub fn patch_spec(&self, patch: Value) {
        let mut s = self.state.lock().unwrap();
        if let (Some(spec), Some(p)) = (s.rr["spec"].as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                spec.insert(k.clone(), v.clone());
            }
        }
        s.rr["metadata"]["generation"] = json!(2);
    }

    /// The request is being deleted (`kubectl delete`: deletionTimestamp set).
    pub fn mark_deleted(&self) {
        self.state.lock().unwrap().rr["metadata"]["deletionTimestamp"] =
            json!("2026-11-22T11:00:00Z");
    }

    /// Set the request's status (as a previous controller left it).
    pub fn set_status(&self, status: Value) {
        self.state.lock().unwrap().rr["status"] = status;
    }
}
