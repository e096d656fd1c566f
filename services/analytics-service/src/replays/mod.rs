//! The dashboard's "latest ReplayRequests" panel. In Kubernetes (`REPLAY_NAMESPACE` set, as
//! the Helm chart does, or `KUBERNETES_SERVICE_HOST` set) analytics lists the ReplayRequests
//! of its namespace every few seconds, with its ServiceAccount's get/list/watch on
//! `replayrequests` (the chart's Role `analytics`), and shows each one's name, phase, message
//! and times; a shadow replay also its shadow ([`shadow`]: group, progress, and the shadow's
//! and the live analytics' numbers the controller recorded). Outside Kubernetes the panel says
//! it is not available.
//!
//! The objects are read as untyped JSON (no dependency on the controller's crate), so every
//! rule is in [`summarize`], tested without a cluster.

pub mod shadow;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use shadow::ShadowSummary;

/// How many requests the panel shows (the newest first).
pub const SHOWN: usize = 10;

/// Whether (and where) to look for ReplayRequests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Not in Kubernetes: the reason shown on the panel.
    Off(String),
    /// List in this namespace (`None`: the client's default, i.e. the pod's namespace).
    On(Option<String>),
}

/// The mode from `REPLAY_NAMESPACE` and `KUBERNETES_SERVICE_HOST`.
pub fn mode(replay_namespace: Option<&str>, kubernetes_service_host: Option<&str>) -> Mode {
    let set = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    match (set(replay_namespace), set(kubernetes_service_host)) {
        (Some(ns), _) => Mode::On(Some(ns)),
        (None, Some(_)) => Mode::On(None),
        (None, None) => Mode::Off(
            "not running in Kubernetes (set REPLAY_NAMESPACE to list ReplayRequests)".into(),
        ),
    }
}

/// One ReplayRequest as the panel shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplaySummary {
    pub name: String,
    pub namespace: String,
    pub consumer_group: String,
    pub reset_to: String,
    pub phase: String,
    pub message: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// `spec.strategy`: `InPlace` (absent) or `Shadow`.
    pub strategy: String,
    /// A shadow replay's shadow (`None` for `InPlace`).
    pub shadow: Option<ShadowSummary>,
}

/// The panel: `GET /api/dashboard`'s `replays`.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ReplayView {
    pub available: bool,
    /// Why the panel is empty (not in Kubernetes, or the last listing failed).
    pub reason: Option<String>,
    pub namespace: Option<String>,
    pub items: Vec<ReplaySummary>,
    /// When the list was last read (Unix ms).
    pub updated_at_ms: Option<i64>,
}

pub type SharedReplays = Arc<RwLock<ReplayView>>;

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str().map(String::from)
}

/// The newest `limit` ReplayRequests of `objects` (by creation time, then name), summarised.
/// A request the controller has not picked up yet shows phase `Pending`.
pub fn summarize(objects: &[Value], limit: usize) -> Vec<ReplaySummary> {
    let mut out: Vec<ReplaySummary> = objects
        .iter()
        .map(|o| ReplaySummary {
            name: text(o, &["metadata", "name"]).unwrap_or_default(),
            namespace: text(o, &["metadata", "namespace"]).unwrap_or_default(),
            consumer_group: text(o, &["spec", "consumerGroup"]).unwrap_or_default(),
            reset_to: text(o, &["spec", "resetTo"]).unwrap_or_default(),
            phase: text(o, &["status", "phase"]).unwrap_or_else(|| "Pending".into()),
            message: text(o, &["status", "message"]).unwrap_or_default(),
            created_at: text(o, &["metadata", "creationTimestamp"]).unwrap_or_default(),
            started_at: text(o, &["status", "startedAt"]),
            completed_at: text(o, &["status", "completedAt"]),
            strategy: shadow::strategy(o),
            shadow: shadow::summarize(o),
        })
        .collect();
    // RFC 3339 UTC timestamps sort as text
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.name.cmp(&b.name))
    });
    out.truncate(limit);
    out
}

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("orderflow.io", "v1alpha1", "ReplayRequest"),
        "replayrequests",
    )
}

async fn list(api: &Api<DynamicObject>) -> Result<Vec<Value>, kube::Error> {
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// Keep `view` current until `token` is cancelled: with [`Mode::Off`] it only says why it
/// is not available; with [`Mode::On`] it lists every `every`.
pub async fn run(mode: Mode, view: SharedReplays, every: Duration, token: CancellationToken) {
    let namespace = match mode {
        Mode::Off(reason) => {
            if let Ok(mut v) = view.write() {
                *v = ReplayView {
                    reason: Some(reason),
                    ..ReplayView::default()
                };
            }
            return;
        }
        Mode::On(ns) => ns,
    };
    let mut api: Option<Api<DynamicObject>> = None;
    let mut last_error: Option<String> = None;
    loop {
        if api.is_none() {
            match kube::Client::try_default().await {
                Ok(client) => {
                    let ar = resource();
                    api = Some(match &namespace {
                        Some(ns) => Api::namespaced_with(client, ns, &ar),
                        None => Api::default_namespaced_with(client, &ar),
                    });
                }
                Err(e) => set_error(
                    &view,
                    &namespace,
                    &mut last_error,
                    format!("no Kubernetes client: {e}"),
                ),
            }
        }
        if let Some(a) = &api {
            match list(a).await {
                Ok(objects) => {
                    if last_error.take().is_some() {
                        tracing::info!("listing ReplayRequests works again");
                    }
                    if let Ok(mut v) = view.write() {
                        *v = ReplayView {
                            available: true,
                            reason: None,
                            namespace: namespace.clone(),
                            items: summarize(&objects, SHOWN),
                            updated_at_ms: Some(chrono::Utc::now().timestamp_millis()),
                        };
                    }
                }
                Err(e) => set_error(
                    &view,
                    &namespace,
                    &mut last_error,
                    format!("listing ReplayRequests failed: {e}"),
                ),
            }
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Show `error` on the panel (keeping the last list), logging it once per change.
fn set_error(
    view: &SharedReplays,
    namespace: &Option<String>,
    last: &mut Option<String>,
    error: String,
) {
    if last.as_deref() != Some(error.as_str()) {
        tracing::warn!(error = %error, "ReplayRequests panel (retrying)");
    }
    if let Ok(mut v) = view.write() {
        v.available = false;
        v.namespace = namespace.clone();
        v.reason = Some(error.clone());
    }
    *last = Some(error);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mode_from_environment() {
        assert_eq!(
            mode(Some("orderflow"), None),
            Mode::On(Some("orderflow".into()))
        );
        assert_eq!(mode(None, Some("10.0.0.1")), Mode::On(None));
        assert_eq!(mode(Some(" "), Some("10.0.0.1")), Mode::On(None));
        assert!(
            matches!(mode(None, None), Mode::Off(r) if r.contains("not running in Kubernetes"))
        );
        assert!(matches!(mode(Some(""), Some("")), Mode::Off(_)));
    }

    pub(super) fn rr(name: &str, created: &str, status: Option<Value>) -> Value {
        let mut v = json!({
            "apiVersion": "orderflow.io/v1alpha1",
            "kind": "ReplayRequest",
            "metadata": {"name": name, "namespace": "orderflow", "creationTimestamp": created},
            "spec": {"consumerGroup": "analytics", "deployment": "analytics",
                     "topics": ["orders"], "resetTo": "earliest"}
        });
        if let Some(s) = status {
            v["status"] = s;
        }
        v
    }

    #[test]
    fn newest_first_with_phase_message_and_times() {
        let objects = vec![
            rr(
                "replay-1",
                "2026-11-22T10:00:00Z",
                Some(
                    json!({"phase": "Succeeded", "message": "reset analytics on 6 partition(s)",
                            "startedAt": "2026-11-22T10:00:01Z", "completedAt": "2026-11-22T10:00:05Z"}),
                ),
            ),
            rr("replay-3", "2026-11-22T10:09:00Z", None),
            rr(
                "replay-2",
                "2026-11-22T10:05:00Z",
                Some(json!({"phase": "Failed", "message": "topic nope does not exist"})),
            ),
        ];
        let s = summarize(&objects, 2);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "replay-3");
        assert_eq!(s[0].phase, "Pending", "not picked up by the controller yet");
        assert_eq!(s[1].name, "replay-2");
        assert_eq!(s[1].phase, "Failed");
        assert_eq!(s[1].message, "topic nope does not exist");
        let all = summarize(&objects, 10);
        assert_eq!(all[2].name, "replay-1");
        assert_eq!(all[2].completed_at.as_deref(), Some("2026-11-22T10:00:05Z"));
        assert_eq!(all[2].consumer_group, "analytics");
        assert_eq!(all[2].reset_to, "earliest");
        assert_eq!(all[2].namespace, "orderflow");
        assert_eq!(all[2].strategy, "InPlace", "no spec.strategy");
        assert_eq!(all[2].shadow, None);
    }

    #[tokio::test]
    async fn outside_kubernetes_the_panel_says_why() {
        let view = SharedReplays::default();
        run(
            mode(None, None),
            view.clone(),
            Duration::from_secs(1),
            CancellationToken::new(),
        )
        .await;
        let v = view.read().unwrap().clone();
        assert!(!v.available);
        assert!(v.reason.unwrap().contains("not running in Kubernetes"));
        assert!(v.items.is_empty());
    }
}
