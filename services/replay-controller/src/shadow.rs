//! Shadow replays (`spec.strategy: Shadow`), the pure part: the names of a shadow, the copy
//! of the live Deployment that runs it, and the status types (re-exported by [`crate::crd`]).
//! The steps are in `reconcile::shadow`.
//!
//! The contract with the consumer (the chart's analytics keeps it): it takes its consumer
//! group id from the environment variable [`GROUP_ENV`], and every topic it keeps state in
//! is named `<group>-<suffix>` (as Kafka Streams names its internal topics after the
//! application id). A Deployment whose containers do not set [`GROUP_ENV`] to
//! spec.consumerGroup is refused (reason `ShadowUnsupported`): its copy would join the live
//! group, or produce next to it.
//!
//! The copy ([`copy_deployment`]):
//! - is named `<deployment>-shadow-<request>`, owned by the request (a cluster's garbage
//!   collector removes it with the request; the controller deletes it itself anyway);
//! - runs one replica with [`GROUP_ENV`] set to `<group>-shadow-<request>`;
//! - has the live pod labels except those the live Deployment selects on, plus
//!   [`SHADOW_LABEL`]: no Service that routes to the live pods (they select on the same
//!   labels as the Deployment) routes to the copy, so the live API keeps serving live
//!   numbers. At promotion the copy gets those labels back ([`serving_patch`]) and serves
//!   while the live deployment restarts on the shadow's state.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The environment variable a shadow-capable consumer takes its group id from.
pub const GROUP_ENV: &str = "CONSUMER_GROUP";
/// The label on a shadow's pods (value: the request's name); the copy selects on it.
pub const SHADOW_LABEL: &str = "orderflow.io/shadow-of";
/// Kubernetes names (and label values) are at most this long.
const MAX_NAME: usize = 63;

/// How a request replays.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Strategy {
    /// Stop the consumers, reset their group, start them again (the default).
    #[default]
    InPlace,
    /// Leave the live consumers running; replay in a copy under its own group, and move the
    /// live group to it on spec.promote.
    Shadow,
}

impl Strategy {
    pub fn is_default(&self) -> bool {
        *self == Self::InPlace
    }
}

/// `<group>-shadow-<request>` and `<deployment>-shadow-<request>`.
pub fn names(group: &str, deployment: &str, request: &str) -> (String, String) {
    (
        format!("{group}-shadow-{request}"),
        format!("{deployment}-shadow-{request}"),
    )
}

/// Refusals of a live Deployment that cannot be shadowed: why, for the request's message.
pub fn check(live: &Deployment, group: &str, copy_name: &str) -> Result<(), String> {
    if copy_name.len() > MAX_NAME {
        return Err(format!(
            "the shadow deployment's name {copy_name} is longer than {MAX_NAME} characters: use a shorter request name"
        ));
    }
    let containers = live
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default();
    let sets_group = |c: &k8s_openapi::api::core::v1::Container| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.name == GROUP_ENV && e.value.as_deref() == Some(group))
    };
    if containers.is_empty() || !containers.iter().any(sets_group) {
        return Err(format!(
            "deployment {} does not take its consumer group from {GROUP_ENV}={group}: a copy would join the live group {group} (a shadow needs a consumer that keeps the {GROUP_ENV} contract, docs/replay-controller.md)",
            live.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    Ok(())
}

/// The shadow copy of `live` (see the module docs), for request `request` (name, uid).
pub fn copy_deployment(
    live: &Deployment,
    copy_name: &str,
    shadow_group: &str,
    request: (&str, &str),
) -> Deployment {
    let (rr_name, rr_uid) = request;
    let mut spec = live.spec.clone().unwrap_or_default();
    let selected: Vec<String> = spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    let mut labels = spec
        .template
        .metadata
        .clone()
        .unwrap_or_default()
        .labels
        .unwrap_or_default();
    labels.retain(|k, _| !selected.contains(k));
    labels.insert(SHADOW_LABEL.to_string(), rr_name.to_string());
    spec.selector = LabelSelector {
        match_labels: Some([(SHADOW_LABEL.to_string(), rr_name.to_string())].into()),
        match_expressions: None,
    };
    let mut tmeta = spec.template.metadata.clone().unwrap_or_default();
    tmeta.labels = Some(labels.clone());
    spec.template.metadata = Some(tmeta);
    for c in spec
        .template
        .spec
        .iter_mut()
        .flat_map(|p| p.containers.iter_mut())
    {
        for e in c.env.iter_mut().flatten() {
            if e.name == GROUP_ENV {
                e.value = Some(shadow_group.to_string());
            }
        }
    }
    spec.replicas = Some(1);
    let mut meta_labels = live.metadata.labels.clone().unwrap_or_default();
    meta_labels.insert(SHADOW_LABEL.to_string(), rr_name.to_string());
    Deployment {
        metadata: ObjectMeta {
            name: Some(copy_name.to_string()),
            namespace: live.metadata.namespace.clone(),
            labels: Some(meta_labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "orderflow.io/v1alpha1".to_string(),
                kind: "ReplayRequest".to_string(),
                name: rr_name.to_string(),
                uid: rr_uid.to_string(),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The merge patch that gives the copy's pods the labels `live` selects on (with their
/// live values): Services in front of the live pods then route to the copy too. The copy's
/// own selector (its [`SHADOW_LABEL`]) is unchanged.
pub fn serving_patch(live: &Deployment) -> serde_json::Value {
    let selected = live
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    serde_json::json!({"spec": {"template": {"metadata": {"labels": selected}}}})
}

/// Whether `d`'s newest rollout is done with at least `replicas` available: the status is
/// of the current generation, and its updated and available replicas reach `replicas`.
pub fn available(d: &Deployment, replicas: i32) -> bool {
    let Some(st) = &d.status else {
        return false;
    };
    let current = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    current
        && st.updated_replicas.unwrap_or(0) >= replicas
        && st.available_replicas.unwrap_or(0) >= replicas
}

/// Where analytics running as `group` keeps its snapshots: `<group>-snapshots`.
pub fn snapshot_topic(group: &str) -> String {
    format!("{group}-snapshots")
}

/// The numbers of a checkpoint record of analytics' snapshot topic (`None`: not one).
pub fn metrics_of(value: &[u8]) -> Option<StateMetrics> {
    let key = orderflow_events::SNAPSHOT_CHECKPOINT_KEY.as_bytes();
    let orderflow_events::SnapshotRecord::SnapshotCheckpoint(c) =
        orderflow_events::decode_snapshot(Some(key), value).ok()?
    else {
        return None;
    };
    let decided = c.reserved_total + c.failed_total;
    Some(StateMetrics {
        orders_total: c.orders_total,
        reserved_total: c.reserved_total,
        failed_total: c.failed_total,
        failure_rate: (decided > 0).then(|| c.failed_total as f64 / decided as f64),
        minutes: c.minutes,
        checkpoint_at: Some(
            c.updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    })
}

/// One consumer's numbers, read from its state's latest checkpoint.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateMetrics {
    pub orders_total: u64,
    pub reserved_total: u64,
    pub failed_total: u64,
    /// failed / (reserved + failed); absent before the first decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Minutes of orders the state holds.
    pub minutes: u64,
    /// When the consumer wrote the checkpoint, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_at: Option<String>,
}

/// The shadow's and the live consumer's numbers side by side.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowMetrics {
    /// When they were read, RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<StateMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<StateMetrics>,
}

/// A shadow replay: its group and copy, and what became of them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// The shadow's consumer group, `<group>-shadow-<request>`.
    pub consumer_group: String,
    /// The copy of the live Deployment, `<deployment>-shadow-<request>`.
    pub deployment: String,
    /// When the shadow group's offsets were set to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<String>,
    /// When the copy was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Promoting: when the copy, with the live pods' labels, was available (serving the live
    /// Services' traffic beside them, then alone while the live deployment restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_at: Option<String>,
    /// When the shadow passed the high watermarks read at its reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_at: Option<String>,
    /// When the live group and state were moved to the shadow's (spec.promote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
    /// When the copy, its group and its state topics were deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
    /// State topics copied onto the live ones at promotion: `<shadow>-x -> <live>-x`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copied: Vec<String>,
    /// The shadow's numbers beside the live consumer's, refreshed while the shadow runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ShadowMetrics>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "analytics", "namespace": "shop", "uid": "d-1",
                         "resourceVersion": "7", "labels": {"app": "analytics", "team": "x"}},
            "spec": {"replicas": 3,
                     "selector": {"matchLabels": {"app": "analytics", "release": "of"}},
                     "template": {"metadata": {"labels": {"app": "analytics", "release": "of", "tier": "a"}},
                                  "spec": {"containers": [{"name": "analytics", "image": "orderflow/analytics",
                                            "env": [{"name": "CONSUMER_GROUP", "value": "analytics"},
                                                    {"name": "HTTP_ADDR", "value": ":8082"}]}]}}},
            "status": {"replicas": 3}
        }))
        .unwrap()
    }

    #[test]
    fn the_copy_runs_the_shadow_group_where_no_live_service_selects_it() {
        let (group, name) = names("analytics", "analytics", "s1");
        assert_eq!(
            (group.as_str(), name.as_str()),
            ("analytics-shadow-s1", "analytics-shadow-s1")
        );
        let copy = copy_deployment(&live(), &name, &group, ("s1", "uid-1"));
        let v = serde_json::to_value(&copy).unwrap();
        assert_eq!(v["metadata"]["name"], "analytics-shadow-s1");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert!(v["metadata"].get("resourceVersion").is_none() && v.get("status").is_none());
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(
            v["spec"]["selector"],
            json!({"matchLabels": {SHADOW_LABEL: "s1"}})
        );
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"],
            json!({"tier": "a", SHADOW_LABEL: "s1"})
        );
        let env = &v["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env[0],
            json!({"name": "CONSUMER_GROUP", "value": "analytics-shadow-s1"})
        );
        assert_eq!(env[1], json!({"name": "HTTP_ADDR", "value": ":8082"}));
    }

    #[test]
    fn a_deployment_without_the_group_contract_is_refused() {
        assert_eq!(check(&live(), "analytics", "analytics-shadow-s1"), Ok(()));
        let e = check(&live(), "inventory", "x").unwrap_err();
        assert!(e.contains("CONSUMER_GROUP=inventory"), "{e}");
        let long = "a".repeat(64);
        assert!(check(&live(), "analytics", &long)
            .unwrap_err()
            .contains("longer than 63"));
    }
}
