//! Helpers shared by the controller's envtest integration tests (envtest/main.rs, kill_phases/main.rs):
//! a real kube-apiserver + etcd with the generated CRD applied, a local Apache Kafka, Deployments,
//! ReplayRequests, the controller process, and reads of Events and Kafka offsets.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use orderflow_testkit::envtest::{ControlPlane, StandIn};
use orderflow_testkit::{wait, Broker, Service, ServiceKind};
use replay_controller::crd::{Phase, ReplayRequest};
use serde_json::{json, Value};

mod kafka;
pub use kafka::*;

pub fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("orderflow-rc-{name}-{}", std::process::id()))
}

pub struct Env {
    pub cp: ControlPlane,
    pub broker: Broker,
    pub client: Client,
    pub dir: PathBuf,
}

/// The CRD as the chart ships it (crdgen's output), CEL rules (`x-kubernetes-validations`)
/// included: the test API server is the v1.33 build of scripts/envtest.
pub fn shipped_crd() -> anyhow::Result<Value> {
    Ok(serde_yaml::from_str(&replay_controller::crd_yaml()?)?)
}

impl Env {
    /// The test passed: stop the API server and the broker, and remove their directory (a
    /// failed test returns before this and leaves it, logs included, for a look).
    pub fn passed(self) {
        let dir = self.dir.clone();
        drop(self);
        let _ = std::fs::remove_dir_all(dir);
    }
}

pub async fn setup(name: &str) -> anyhow::Result<Env> {
    let dir = out_dir(name);
    let cp = ControlPlane::start(&dir.join("kube"))?;
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    // the new broker's topics in its metadata first: a reset on a topic not (yet) known fails
    // the request (TopicNotFound), as it should for a misspelt one
    wait::until(
        "the broker to know the topics",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { log_ends(&kafka).await.ok().filter(|p| !p.is_empty()) },
    )
    .await?;
    let client = cp.client().await?;
    let crd = shipped_crd()?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "replayrequests.orderflow.io",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    wait::until(
        "the ReplayRequest CRD to be established",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let crds = crds.clone();
            async move {
                let c = crds.get("replayrequests.orderflow.io").await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        },
    )
    .await?;
    Ok(Env {
        cp,
        broker,
        client,
        dir,
    })
}

pub async fn create_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": format!("orderflow/{name}:test")}]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await?;
    Ok(())
}

/// Stand-in kubelets running the `analytics` (committing every 200 ms) and `inventory`
/// Deployments of `ns` as processes, logging under `logs`.
pub fn stand_ins(env: &Env, ns: &str, logs: &std::path::Path) -> (StandIn, StandIn) {
    let spawn = |name: &str, kind, extra: Vec<(&'static str, String)>| {
        StandIn::spawn(
            env.client.clone(),
            ns,
            name,
            kind,
            env.broker.bootstrap.clone(),
            extra,
            logs.to_path_buf(),
        )
    };
    (
        spawn(
            "analytics",
            ServiceKind::Analytics,
            vec![("COMMIT_INTERVAL_MS", "200".to_string())],
        ),
        spawn("inventory", ServiceKind::Inventory, vec![]),
    )
}

pub async fn replicas(client: &Client, ns: &str, name: &str) -> anyhow::Result<i32> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    Ok(d.spec.and_then(|s| s.replicas).unwrap_or(-1))
}

pub async fn apply_rr(client: &Client, ns: &str, body: Value) -> anyhow::Result<()> {
    let rr: ReplayRequest = serde_json::from_value(body)?;
    Api::<ReplayRequest>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rr)
        .await?;
    Ok(())
}

pub fn rr(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "orderflow.io/v1alpha1", "kind": "ReplayRequest",
           "metadata": {"name": name}, "spec": spec})
}

/// Poll the request until `pred` holds on it.
pub async fn wait_rr(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&ReplayRequest) -> bool,
) -> anyhow::Result<ReplayRequest> {
    let api: Api<ReplayRequest> = Api::namespaced(client.clone(), ns);
    let r = wait::until(
        &format!("{name}: {what}"),
        timeout,
        Duration::from_millis(100),
        || {
            let api = api.clone();
            let pred = &pred;
            async move { api.get(name).await.ok().filter(|o| pred(o)) }
        },
    )
    .await;
    if r.is_err() {
        if let Ok(o) = api.get(name).await {
            eprintln!(
                "{name} is now: {}",
                serde_json::to_string_pretty(&o.status)?
            );
        }
    }
    r
}

/// Scaled down and waiting for the one stray member of group `analytics` to leave.
pub fn waiting_for_stray(o: &ReplayRequest) -> bool {
    phase(o) == Phase::ScalingDown
        && o.status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .is_some_and(|m| {
                m.contains("waiting for consumer group analytics to become empty: 1 member(s)")
            })
}

pub fn phase(o: &ReplayRequest) -> Phase {
    o.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

pub fn failed_reason(o: &ReplayRequest) -> String {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Failed"))
        .and_then(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The Events about request `name`, oldest first, as (reason, note).
pub async fn events(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    Ok(list
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect())
}

/// The Warning Events about request `name` with `reason`, as their notes, once there is one.
pub async fn warnings_with(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait::until(
        &format!("{name}: a Warning {reason} Event"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let events = events.clone();
            async move {
                let notes: Vec<String> = events
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                            && e.type_.as_deref() == Some("Warning")
                            && e.reason.as_deref() == Some(reason)
                    })
                    .map(|e| e.note.unwrap_or_default())
                    .collect();
                (!notes.is_empty()).then_some(notes)
            }
        },
    )
    .await
}

/// Reasons of the Events about request `name`, oldest first, once one of them is `reason`
/// (a phase's Event follows its status write, so it may come after the status is seen).
pub async fn event_reasons_with(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<Vec<String>> {
    wait::until(
        &format!("{name}: a {reason} Event"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let r = event_reasons(client, ns, name).await.ok()?;
            r.iter().any(|r| r == reason).then_some(r)
        },
    )
    .await
}

/// Reasons of the Events about request `name`, oldest first.
pub async fn event_reasons(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<String>> {
    Ok(events(client, ns, name)
        .await?
        .into_iter()
        .map(|(reason, _)| reason)
        .collect())
}

pub async fn start_controller(env: &Env, extra: &[(&str, String)]) -> anyhow::Result<Service> {
    let mut vars = vec![
        ("KUBECONFIG", env.cp.kubeconfig.display().to_string()),
        ("POLL_MS", "300".to_string()),
        ("RETRY_BASE_MS", "300".to_string()),
        ("RETRY_MAX_MS", "1000".to_string()),
        ("KAFKA_TIMEOUT_MS", "2000".to_string()),
        ("RUST_LOG", "info,kube=warn".to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    Service::start(
        ServiceKind::ReplayController,
        &env.broker.bootstrap,
        &vars,
        &env.dir.join("logs"),
    )
    .await
}

pub async fn metrics_when(
    standin: &StandIn,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait::until(
        what,
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let url = standin.url();
            let pred = &pred;
            async move {
                let m: Value = reqwest::get(format!("{}/api/metrics", url?))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                pred(&m).then_some(m)
            }
        },
    )
    .await
}

/// Where the probe request lives: a namespace no controller under test watches.
pub const PROBE_NS: &str = "probe";

/// The probe request [`refuse_phase`] checks the schema with.
pub async fn create_probe(env: &Env) -> anyhow::Result<()> {
    env.cp.kubectl(&["create", "namespace", PROBE_NS])?;
    apply_rr(
        &env.client,
        PROBE_NS,
        rr(
            "probe",
            json!({"consumerGroup": "probe", "deployment": "probe", "topics": ["orders"],
                   "resetTo": "earliest"}),
        ),
    )
    .await
}

/// Make the API server refuse (`refuse`) or accept again status writes that enter `phase`.
/// The CRD's schema lists the phases a status may name; without `phase` in that list a
/// status write entering it fails validation (422), as it would behind a refusing admission
/// webhook. The controller then keeps retrying that write (a failed reconcile) with the
/// previous phase persisted: it is held between two phases for as long as the test wants.
/// Returns once a dry-run status write on the probe request gets the expected answer.
pub async fn refuse_phase(env: &Env, phase: Phase, refuse: bool) -> anyhow::Result<()> {
    let mut crd = shipped_crd()?;
    if refuse {
        crd.pointer_mut(
            "/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/phase/enum",
        )
        .and_then(Value::as_array_mut)
        .ok_or_else(|| anyhow::anyhow!("the CRD has no status.phase enum"))?
        .retain(|v| v.as_str() != Some(phase.as_str()));
    }
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    crds.patch(
        "replayrequests.orderflow.io",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let probes: Api<ReplayRequest> = Api::namespaced(env.client.clone(), PROBE_NS);
    let what = if refuse { "refused" } else { "accepted" };
    wait::until(
        &format!("status writes entering {phase} to be {what}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let probes = probes.clone();
            async move {
                let dry = PatchParams {
                    dry_run: true,
                    ..PatchParams::default()
                };
                let body = json!({"status": {"phase": phase.as_str()}});
                match probes
                    .patch_status("probe", &dry, &Patch::Merge(&body))
                    .await
                {
                    Ok(_) => (!refuse).then_some(()),
                    Err(kube::Error::Api(e)) if e.code == 422 => refuse.then_some(()),
                    Err(_) => None,
                }
            }
        },
    )
    .await
}
