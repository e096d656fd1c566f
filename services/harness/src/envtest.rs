//! A real Kubernetes API server for tests: etcd + kube-apiserver on 127.0.0.1, started by the
//! project's scripts/envtest (installed once into the cache). No kubelet runs, so nothing
//! acts on a Deployment's spec; [`StandIn`] plays that part for one Deployment by running the
//! matching service binary while its `spec.replicas` is above 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::procs::{free_port, repo_root, run_checked as run, Service, ServiceKind};

/// etcd + kube-apiserver, stopped (by PID, through scripts/envtest/down.sh) on drop.
pub struct ControlPlane {
    pub run_dir: PathBuf,
    pub kubeconfig: PathBuf,
}

fn script(name: &str) -> PathBuf {
    repo_root().join("scripts/envtest").join(name)
}

/// A port `p` with `p + 1` free too (etcd's peer port).
fn free_port_pair() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let p = free_port()?;
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    bail!("no two adjacent free ports on 127.0.0.1")
}

impl ControlPlane {
    /// Install the API server when missing (scripts/envtest/install-apiserver.sh, a one-time
    /// build of several minutes; cached), then start a fresh one with its data in `run_dir`.
    pub fn start(run_dir: &Path) -> anyhow::Result<Self> {
        run(
            Command::new("bash").arg(script("install-apiserver.sh")),
            "scripts/envtest/install-apiserver.sh",
        )?;
        let _ = std::fs::remove_dir_all(run_dir);
        std::fs::create_dir_all(run_dir)?;
        let cp = Self {
            run_dir: run_dir.to_path_buf(),
            kubeconfig: run_dir.join("kubeconfig"),
        };
        run(
            Command::new("bash")
                .arg(script("up.sh"))
                .arg(run_dir)
                .env("API_PORT", free_port()?.to_string())
                .env("ETCD_PORT", free_port_pair()?.to_string()),
            "scripts/envtest/up.sh",
        )?;
        Ok(cp)
    }

    /// A client for this API server (admin token).
    pub async fn client(&self) -> anyhow::Result<Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// `kubectl` against this API server, returning stdout (fails with stderr).
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(
            Command::new("kubectl")
                .args(args)
                .env("KUBECONFIG", &self.kubeconfig),
            &format!("kubectl {}", args.join(" ")),
        )
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("down.sh"))
            .arg(&self.run_dir)
            .stdin(Stdio::null())
            .output();
    }
}

/// Plays the kubelet for one Deployment: watches its `spec.replicas` and runs one process of
/// `kind` while it is above 0 (stopped with SIGTERM, as Kubernetes stops pods, when it goes
/// to 0). Records every `spec.replicas` value it sees, in order.
pub struct StandIn {
    pub replicas_seen: Arc<Mutex<Vec<i32>>>,
    /// Base URL of the running process (`None` while scaled to 0).
    url: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StandIn {
    pub fn spawn(
        client: Client,
        namespace: &str,
        deployment: &str,
        kind: ServiceKind,
        bootstrap: String,
        env: Vec<(&'static str, String)>,
        log_dir: PathBuf,
    ) -> Self {
        let api: Api<Deployment> = Api::namespaced(client, namespace);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let url = Arc::new(Mutex::new(None));
        let (s, t, u) = (seen.clone(), stop.clone(), url.clone());
        let cfg = watcher::Config::default().fields(&format!("metadata.name={deployment}"));
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, cfg).boxed();
            let mut running: Option<Service> = None;
            loop {
                let ev = tokio::select! {
                    _ = t.cancelled() => break,
                    ev = events.next() => ev,
                };
                let Some(Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d))) = ev else {
                    continue;
                };
                let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(1);
                if let Ok(mut v) = s.lock() {
                    if v.last() != Some(&replicas) {
                        v.push(replicas);
                    }
                }
                match (replicas > 0, running.take()) {
                    (true, None) => {
                        let env: Vec<(&str, String)> =
                            env.iter().map(|(k, v)| (*k, v.clone())).collect();
                        match Service::start(kind, &bootstrap, &env, &log_dir).await {
                            Ok(svc) => running = Some(svc),
                            Err(e) => eprintln!("stand-in: starting {}: {e:#}", kind.binary()),
                        }
                    }
                    (false, Some(svc)) => {
                        let _ = svc.stop(Duration::from_secs(15)).await;
                    }
                    (_, keep) => running = keep,
                }
                if let Ok(mut u) = u.lock() {
                    *u = running.as_ref().map(|svc| svc.url.clone());
                }
            }
            if let Some(svc) = running {
                let _ = svc.stop(Duration::from_secs(15)).await;
            }
        });
        Self {
            replicas_seen: seen,
            url,
            stop,
            task: Some(task),
        }
    }

    pub fn seen(&self) -> Vec<i32> {
        self.replicas_seen
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The running process's base URL (`None` while the deployment is at 0 replicas).
    pub fn url(&self) -> Option<String> {
        self.url.lock().ok().and_then(|u| u.clone())
    }

    /// Stop watching and stop the process.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // The task's Service guard kills the process when the task is dropped.
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
