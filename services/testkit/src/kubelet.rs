//! A stand-in kubelet, for tests only. It exists because no kubelet runs on the machines where
//! the tests run: the local control plane is kube-apiserver + etcd (scripts/envtest), so a
//! Deployment's `spec.replicas` starts nothing by itself. [`Kubelet`] watches Deployments and
//! keeps `spec.replicas` local processes of the matching orderflow service running for each:
//! it starts the missing ones and stops the extra ones with SIGTERM (SIGKILL after the pod's
//! grace period), as the kubelet does with pods.
//!
//! It also writes each Deployment's status (generation seen, replicas running) as the
//! deployment controller would, since none runs either.
//!
//! It serves the controller's envtests only (through [`crate::envtest::StandIn`]): the chart's
//! own pods run on a real kubelet in `make e2e` (the kind test bed, services/system-tests/tests/kind).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::procs::Service;

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
            let status_api = api.clone();
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
                            status_api.clone(),
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

/// Write the Deployment's status as the deployment controller would once its pods run:
/// the generation seen, and `running` processes (each started and answering) as updated,
/// ready and available replicas. The controller waits on it (a shadow's rollout).
async fn report(api: &Api<Deployment>, name: &str, d: &Deployment, running: usize) {
    let n = i32::try_from(running).unwrap_or(i32::MAX);
    let patch = serde_json::json!({"status": {
        "observedGeneration": d.metadata.generation,
        "replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
    }});
    let pp = kube::api::PatchParams::default();
    if let Err(e) = api
        .patch_status(name, &pp, &kube::api::Patch::Merge(&patch))
        .await
    {
        eprintln!("kubelet: status of {name}: {e}");
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
    api: Api<Deployment>,
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
        if let Some(d) = &current {
            report(&api, &name, d, running.len()).await;
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
