//! A stand-in kubelet, for tests only. It exists because no kubelet runs on the machines where
//! the tests run: the local control plane is kube-apiserver + etcd (scripts/envtest), so a
//! Deployment's `spec.replicas` starts nothing by itself. [`Kubelet`] watches Deployments and
//! keeps `spec.replicas` local processes of the matching orderflow service running for each:
//! it starts the missing ones and stops the extra ones with SIGTERM (SIGKILL after the pod's
//! grace period), as the kubelet does with pods.
//!
//! [`Kubelet::for_chart`] derives each process from the Deployment's pod template, as a pod
//! would be: the binary from the container's name, the environment from the container's `env`
//! (values, and the `metadata.namespace` / `metadata.name` field references), and for a pod
//! with a service account a token for that account from the API server (TokenRequest), so the
//! process acts with exactly the permissions the chart's RBAC grants. Only `HTTP_ADDR` differs:
//! every process gets its own free port on 127.0.0.1, since the processes share one network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::procs::{Service, ServiceKind};

/// Starts process number `index` (0-based) of a Deployment.
pub type Launch =
    Arc<dyn Fn(Deployment, usize) -> BoxFuture<'static, anyhow::Result<Service>> + Send + Sync>;

#[derive(Default)]
struct Shared {
    /// Every `spec.replicas` value seen per Deployment, in order (repeats collapsed).
    seen: HashMap<String, Vec<i32>>,
    /// Base URLs of the running processes per Deployment.
    urls: HashMap<String, Vec<String>>,
    /// The last start-up failure per Deployment (cleared by a successful start).
    errors: HashMap<String, String>,
}

/// Keeps local processes in step with Deployments' `spec.replicas` (see the module docs).
/// Dropping it kills the processes; [`Kubelet::shutdown`] stops them gracefully.
pub struct Kubelet {
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Kubelet {
    /// Watch the Deployments `cfg` selects in `api` and run up to `max_per_deployment`
    /// processes of each (`launch` starts one).
    pub fn spawn(
        api: Api<Deployment>,
        cfg: watcher::Config,
        launch: Launch,
        max_per_deployment: usize,
    ) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = CancellationToken::new();
        let (sh, st) = (shared.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, cfg).boxed();
            let mut followers: HashMap<String, watch::Sender<Option<Deployment>>> = HashMap::new();
            let mut tasks = JoinSet::new();
            loop {
                let ev = tokio::select! {
                    _ = st.cancelled() => break,
                    ev = events.next() => ev,
                };
                let (d, present) = match ev {
                    Some(Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d))) => (d, true),
                    Some(Ok(watcher::Event::Delete(d))) => (d, false),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        eprintln!("kubelet: watching Deployments: {e}");
                        continue;
                    }
                    None => break,
                };
                let Some(name) = d.metadata.name.clone() else {
                    continue;
                };
                let replicas = if present { replicas_of(&d) } else { 0 };
                if let Ok(mut s) = sh.lock() {
                    let v = s.seen.entry(name.clone()).or_default();
                    if v.last() != Some(&replicas) {
                        v.push(replicas);
                    }
                }
                let value = present.then_some(d);
                match followers.get(&name) {
                    Some(tx) => {
                        let _ = tx.send(value);
                    }
                    None => {
                        let (tx, rx) = watch::channel(value);
                        followers.insert(name.clone(), tx);
                        tasks.spawn(follow(
                            name,
                            rx,
                            launch.clone(),
                            max_per_deployment,
                            sh.clone(),
                            st.clone(),
                        ));
                    }
                }
            }
            // cancelled: every follower stops its processes
            st.cancel();
            while tasks.join_next().await.is_some() {}
        });
        Self {
            shared,
            stop,
            task: Some(task),
        }
    }

    /// Play the kubelet for the Deployments of `namespace` labelled `selector` (e.g.
    /// `app.kubernetes.io/name=orderflow`), each process built from its pod template (module
    /// docs). Pods with a service account get a kubeconfig with a token for it, next to the
    /// API server named in `admin_kubeconfig`. Logs go to `log_dir/<deployment>-<n>.log`.
    pub fn for_chart(
        client: Client,
        namespace: &str,
        selector: &str,
        admin_kubeconfig: &Path,
        log_dir: PathBuf,
    ) -> Self {
        let ns = namespace.to_string();
        let admin = admin_kubeconfig.to_path_buf();
        let c = client.clone();
        let launch: Launch = Arc::new(move |d, index| {
            let (c, ns, admin, log_dir) = (c.clone(), ns.clone(), admin.clone(), log_dir.clone());
            Box::pin(async move {
                let pod = pod_plan(&d, &ns, index)?;
                let mut env = pod.env.clone();
                if let Some(sa) = &pod.service_account {
                    let path = log_dir.join(format!("{}.kubeconfig", pod.name));
                    std::fs::create_dir_all(&log_dir)?;
                    write_token_kubeconfig(&c, &ns, sa, &admin, &path).await?;
                    env.push(("KUBECONFIG".into(), path.display().to_string()));
                }
                let env: Vec<(&str, String)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                let bootstrap = env
                    .iter()
                    .find(|(k, _)| *k == "KAFKA_BOOTSTRAP")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                Service::start_logged(
                    pod.kind,
                    &bootstrap,
                    &env,
                    log_dir.join(format!("{}.log", pod.name)),
                )
                .await
            })
        });
        let cfg = watcher::Config::default().labels(selector);
        Self::spawn(Api::namespaced(client, namespace), cfg, launch, usize::MAX)
    }

    /// Every `spec.replicas` seen for `deployment`, in order.
    pub fn seen(&self, deployment: &str) -> Vec<i32> {
        self.with(|s| s.seen.get(deployment).cloned().unwrap_or_default())
    }

    /// Base URLs of `deployment`'s running processes.
    pub fn urls(&self, deployment: &str) -> Vec<String> {
        self.with(|s| s.urls.get(deployment).cloned().unwrap_or_default())
    }

    /// The last start-up failure of `deployment`, if its newest start failed.
    pub fn error(&self, deployment: &str) -> Option<String> {
        self.with(|s| s.errors.get(deployment).cloned())
    }

    fn with<T>(&self, f: impl FnOnce(&Shared) -> T) -> T {
        match self.shared.lock() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// Stop watching and stop every process gracefully.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        // The followers' Service guards kill their processes when the tasks are dropped.
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn grace_of(d: &Deployment) -> Duration {
    let secs = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(secs.clamp(1, 300) as u64)
}

/// One Deployment: keep `min(spec.replicas, max)` processes running until cancelled.
async fn follow(
    name: String,
    mut rx: watch::Receiver<Option<Deployment>>,
    launch: Launch,
    max: usize,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
) {
    let mut running: Vec<Service> = Vec::new();
    let mut grace = Duration::from_secs(30);
    loop {
        let current = rx.borrow_and_update().clone();
        let want = current
            .as_ref()
            .map(|d| usize::try_from(replicas_of(d)).unwrap_or(0).min(max))
            .unwrap_or(0);
        if let Some(d) = &current {
            grace = grace_of(d);
        }
        let mut failed = false;
        while running.len() < want {
            let Some(d) = current.clone() else { break };
            match launch(d, running.len()).await {
                Ok(svc) => {
                    running.push(svc);
                    if let Ok(mut s) = shared.lock() {
                        s.errors.remove(&name);
                    }
                }
                Err(e) => {
                    eprintln!("kubelet: starting {name}: {e:#}");
                    if let Ok(mut s) = shared.lock() {
                        s.errors.insert(name.clone(), format!("{e:#}"));
                    }
                    failed = true;
                    break;
                }
            }
        }
        if running.len() > want {
            let extra = running.split_off(want);
            futures::future::join_all(extra.into_iter().map(|svc| svc.stop(grace))).await;
        }
        if let Ok(mut s) = shared.lock() {
            s.urls.insert(
                name.clone(),
                running.iter().map(|p| p.url.clone()).collect(),
            );
        }
        // a failed start is retried after a pause, like a pod in back-off
        let retry = async {
            if failed {
                tokio::time::sleep(Duration::from_secs(2)).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
            _ = retry => {}
        }
    }
    futures::future::join_all(running.into_iter().map(|svc| svc.stop(grace))).await;
    if let Ok(mut s) = shared.lock() {
        s.urls.remove(&name);
    }
}

/// What a pod of a Deployment would run, for a local process.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    /// `<deployment>-<index>`, the pod name (also its `metadata.name` field reference).
    pub name: String,
    pub kind: ServiceKind,
    /// The container's environment, field references resolved, `HTTP_ADDR` left out.
    pub env: Vec<(String, String)>,
    /// The service account whose token the pod gets mounted, if any.
    pub service_account: Option<String>,
}

/// Translate pod `index` of Deployment `d` (namespace `ns`) into a local process plan.
pub fn pod_plan(d: &Deployment, ns: &str, index: usize) -> anyhow::Result<PodPlan> {
    let deployment = d.metadata.name.clone().unwrap_or_default();
    let pod = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| anyhow!("Deployment {deployment} has no pod template spec"))?;
    let container = pod
        .containers
        .first()
        .ok_or_else(|| anyhow!("Deployment {deployment} has no container"))?;
    let kind = ServiceKind::from_binary(&container.name).ok_or_else(|| {
        anyhow!(
            "Deployment {deployment}: container {} is not an orderflow service",
            container.name
        )
    })?;
    let name = format!("{deployment}-{index}");
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        if var.name == "HTTP_ADDR" {
            continue;
        }
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.namespace") => ns.to_string(),
                Some("metadata.name") => name.clone(),
                _ => bail!(
                    "Deployment {deployment}: env {} uses a valueFrom this stand-in does not resolve",
                    var.name
                ),
            },
            (Some(v), None) => v.clone(),
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    let service_account = match (
        &pod.service_account_name,
        pod.automount_service_account_token,
    ) {
        (Some(sa), mount) if mount != Some(false) => Some(sa.clone()),
        _ => None,
    };
    Ok(PodPlan {
        name,
        kind,
        env,
        service_account,
    })
}

/// Write a kubeconfig for service account `sa` (a fresh token from the TokenRequest API) that
/// reaches the API server named in `admin` (also for tests that run a binary as that account).
pub async fn write_token_kubeconfig(
    client: &Client,
    ns: &str,
    sa: &str,
    admin: &Path,
    path: &Path,
) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("requesting a token for service account {ns}/{sa}"))?
        .status
        .map(|s| s.token)
        .ok_or_else(|| anyhow!("the token request for {ns}/{sa} returned no token"))?;
    let kc = Kubeconfig::read_from(admin)?;
    let cluster = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| anyhow!("{} names no cluster", admin.display()))?;
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.server,
            "certificate-authority": cluster.certificate_authority,
        }}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": sa, "namespace": ns}}],
        "current-context": "pod",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn pod_plan_follows_the_template() {
        let d = deployment(json!({
            "metadata": {"name": "replay-controller"},
            "spec": {
                "replicas": 1,
                "selector": {},
                "template": {"spec": {
                    "serviceAccountName": "replay-controller",
                    "automountServiceAccountToken": true,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "replay-controller", "env": [
                        {"name": "KAFKA_BOOTSTRAP", "value": "127.0.0.1:9"},
                        {"name": "HTTP_ADDR", "value": "0.0.0.0:8083"},
                        {"name": "WATCH_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ]}]
                }}
            }
        }));
        let p = pod_plan(&d, "orderflow", 0).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(p.name, "replay-controller-0");
        assert_eq!(p.kind, ServiceKind::ReplayController);
        assert_eq!(p.service_account.as_deref(), Some("replay-controller"));
        assert_eq!(
            p.env,
            vec![
                ("KAFKA_BOOTSTRAP".to_string(), "127.0.0.1:9".to_string()),
                ("WATCH_NAMESPACE".to_string(), "orderflow".to_string()),
                ("POD_NAME".to_string(), "replay-controller-0".to_string()),
            ]
        );
        assert_eq!(grace_of(&d), Duration::from_secs(5));
    }

    #[test]
    fn pod_plan_refuses_what_it_cannot_run() {
        let other = deployment(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "nginx"}]}}}
        }));
        let e = pod_plan(&other, "ns", 0).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("Deployment web: container nginx is not an orderflow service")
        );
        let secret = deployment(json!({
            "metadata": {"name": "inventory"},
            "spec": {"selector": {}, "template": {"spec": {
                "automountServiceAccountToken": false,
                "serviceAccountName": "x",
                "containers": [{"name": "inventory-service", "env": [
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                ]}]
            }}}
        }));
        let e = pod_plan(&secret, "ns", 1).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("env PASSWORD uses a valueFrom")));
        assert_eq!(replicas_of(&secret), 1);
    }
}
