//! The fakes' shadow-replay parts: full Deployment objects in the fake API server (the
//! copy is created and deleted), and the shadow's groups and state topics in the fake Kafka.

use std::collections::HashMap;
use std::sync::Mutex;

use orderflowctl::{CommittedOffset, GroupError, OffsetChange, ResetTo};
use serde_json::{json, Value};

use super::{Call, FakeApi};
use crate::kafka::AdminError;
use crate::shadow::StateMetrics;

/// A shadow replay of group analytics (deployment analytics) on orders to earliest.
pub fn shadow_spec() -> Value {
    json!({"consumerGroup": "analytics", "deployment": "analytics",
           "topics": ["orders"], "resetTo": "earliest", "strategy": "Shadow"})
}

/// Deployment `name` with `replicas`, whose container sets CONSUMER_GROUP to `group` (none
/// when `group` is `None`).
pub fn live_deployment(name: &str, replicas: i32, group: Option<&str>) -> Value {
    let env: Vec<Value> = group
        .map(|g| json!({"name": "CONSUMER_GROUP", "value": g}))
        .into_iter()
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": name, "image": "orderflow/x", "env": env}]}}}})
}

/// The Services, pods and EndpointSlices of the namespace, as lists the API server returns
/// whatever the label selector (the controller filters the pods again).
#[derive(Clone, Default)]
pub struct Routing {
    pub services: Vec<Value>,
    pub pods: Vec<Value>,
    pub slices: Vec<Value>,
}

impl Routing {
    /// Service `name` selecting `app: <app>`, in front of `pods` (name, labels), of which
    /// the EndpointSlice lists `ready` as ready endpoints.
    pub fn service(name: &str, app: &str, pods: &[(&str, Value)], ready: &[&str]) -> Self {
        let endpoints: Vec<Value> = ready
            .iter()
            .map(|p| {
                json!({"addresses": ["10.0.0.9"], "conditions": {"ready": true},
                            "targetRef": {"kind": "Pod", "name": p}})
            })
            .collect();
        Routing {
            services: vec![json!({"metadata": {"name": name}, "spec": {"selector": {"app": app}}})],
            pods: pods
                .iter()
                .map(|(n, l)| json!({"metadata": {"name": n, "labels": l}}))
                .collect(),
            slices: vec![json!({"metadata": {"name": format!("{name}-abc"),
                                             "labels": {"kubernetes.io/service-name": name}},
                                "addressType": "IPv4", "endpoints": endpoints})],
        }
    }

    /// GET of the lists; `None`: not such a call.
    pub(super) fn list(&self, method: &str, path: &str) -> Option<(u16, Value)> {
        let (api, kind, items) = match (method, path) {
            ("GET", "/api/v1/namespaces/default/services") => ("v1", "ServiceList", &self.services),
            ("GET", "/api/v1/namespaces/default/pods") => ("v1", "PodList", &self.pods),
            ("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices") => {
                ("discovery.k8s.io/v1", "EndpointSliceList", &self.slices)
            }
            _ => return None,
        };
        Some((
            200,
            json!({"apiVersion": api, "kind": kind, "metadata": {}, "items": items}),
        ))
    }
}

/// Add Deployment `d`, rolled out at once: generation 1, every replica available.
pub(super) fn add(s: &mut FakeApi, mut d: Value) {
    let name = d["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
    d["metadata"]["generation"] = json!(1);
    d["status"] = rolled_out(1, replicas);
    s.deployments.insert(name.clone(), replicas);
    s.objects.insert(name, d);
}

fn rolled_out(generation: i64, replicas: i32) -> Value {
    json!({"observedGeneration": generation, "replicas": replicas,
           "updatedReplicas": replicas, "availableReplicas": replicas})
}

/// GET, POST and DELETE of whole Deployments; `None`: not such a call.
pub(super) fn deployments(
    s: &mut FakeApi,
    method: &str,
    path: &str,
    body: &Value,
) -> Option<(u16, Value)> {
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let status = |code: u16, reason: &str| {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": reason, "code": code, "message": reason})
    };
    if method == "POST" && path == base {
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if s.objects.contains_key(&name) {
            return Some((409, status(409, "AlreadyExists")));
        }
        let mut d = body.clone();
        d["metadata"]["uid"] = json!(format!("uid-{name}"));
        add(s, d);
        s.calls.push(Call::Created(name.clone()));
        return Some((201, s.objects[&name].clone()));
    }
    let name = path.strip_prefix(&format!("{base}/"))?;
    if name.contains('/') {
        return None; // the scale subresource
    }
    match method {
        "GET" => Some(match s.objects.get(name) {
            Some(d) => (200, d.clone()),
            None => (404, status(404, "NotFound")),
        }),
        "PATCH" => Some(match s.objects.get_mut(name) {
            // a merge patch of the pod labels: a new generation, rolled out at once
            Some(d) => {
                if let Some(labels) = body["spec"]["template"]["metadata"]["labels"].as_object() {
                    for (k, v) in labels {
                        d["spec"]["template"]["metadata"]["labels"][k] = v.clone();
                    }
                }
                let generation = d["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
                d["metadata"]["generation"] = json!(generation);
                d["status"] = rolled_out(generation, if s.stalled { 0 } else { replicas });
                s.calls.push(Call::Patched(name.to_string()));
                (200, d.clone())
            }
            None => (404, status(404, "NotFound")),
        }),
        "DELETE" => Some(match s.objects.remove(name) {
            Some(d) => {
                s.deployments.remove(name);
                s.calls.push(Call::Deleted(name.to_string()));
                (200, d)
            }
            None => (404, status(404, "NotFound")),
        }),
        _ => None,
    }
}

/// The fake Kafka's shadow side.
#[derive(Default)]
pub struct ShadowKafka {
    /// Members per shadow group (0 when not listed).
    pub members: Mutex<HashMap<String, usize>>,
    /// Committed offsets per shadow group: orders[0] (offset, metadata).
    pub commits: Mutex<HashMap<String, (i64, String)>>,
    /// Every topic on the broker (state topics are found by prefix).
    pub topics: Mutex<Vec<String>>,
    /// Checkpoint numbers per group.
    pub checkpoints: Mutex<HashMap<String, StateMetrics>>,
    /// What was done, in order: resets, copies, deletions.
    pub log: Mutex<Vec<String>>,
}

impl ShadowKafka {
    pub(super) fn members(&self, group: &str) -> usize {
        self.members
            .lock()
            .unwrap()
            .get(group)
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn done(&self, what: String) {
        self.log.lock().unwrap().push(what);
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub(super) fn committed(&self, group: &str) -> Vec<CommittedOffset> {
        self.commits
            .lock()
            .unwrap()
            .get(group)
            .map(|(o, m)| CommittedOffset {
                topic: "orders".into(),
                partition: 0,
                offset: Some(*o),
                metadata: m.clone(),
            })
            .into_iter()
            .collect()
    }

    /// A reset of a shadow group: to the explicit offsets the controller planned on the live
    /// group, tagged with `by`.
    pub(super) fn reset(&self, group: &str, to: &ResetTo, by: &str) -> Vec<OffsetChange> {
        let offset = match to {
            ResetTo::ToOffsets(list) => list.first().map_or(0, |o| o.offset),
            _ => 0,
        };
        let mark = orderflow_events::CommitMark::reset_by(chrono::Utc::now(), by, None);
        self.commits
            .lock()
            .unwrap()
            .insert(group.to_string(), (offset, mark.to_string()));
        self.done(format!("reset {group} to {offset} by {by}"));
        vec![OffsetChange {
            topic: "orders".into(),
            partition: 0,
            from: None,
            to: offset,
            history_truncated: None,
        }]
    }

    pub(super) fn topics(&self, group: &str) -> Vec<String> {
        let prefix = format!("{group}-");
        let mut t: Vec<String> = self
            .topics
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.starts_with(&prefix))
            .cloned()
            .collect();
        t.sort();
        t
    }

    pub(super) fn delete_group(&self, group: &str) -> Result<bool, AdminError> {
        if self.members(group) > 0 {
            return Err(AdminError::Group(GroupError::RefusedByKafka {
                group: group.to_string(),
                code: "NON_EMPTY_GROUP".into(),
            }));
        }
        let existed = self.commits.lock().unwrap().remove(group).is_some();
        self.done(format!("delete group {group}"));
        Ok(existed)
    }

    pub(super) fn delete_topics(&self, topics: &[String]) {
        self.topics.lock().unwrap().retain(|t| !topics.contains(t));
        self.done(format!("delete topics {}", topics.join(",")));
    }

    pub(super) fn checkpoint(&self, group: &str) -> Option<StateMetrics> {
        self.checkpoints.lock().unwrap().get(group).cloned()
    }
}
