//! A real Kubernetes API server for tests: etcd + kube-apiserver on 127.0.0.1, started by the
//! project's scripts/envtest (installed once into the cache). No kubelet runs, so nothing
//! acts on a Deployment's spec; [`StandIn`] plays that part for one Deployment by running the
//! matching service binary while its `spec.replicas` is above 0 (and [`Kubelet`] for all of a
//! chart's Deployments).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

use crate::kubelet::{Kubelet, Launch};

use crate::procs::{free_port, repo_root, run_checked as run, Service, ServiceKind};

/// etcd + kube-apiserver, stopped (by PID, through scripts/envtest/down.sh) on drop.
pub struct ControlPlane {
    pub run_dir: PathBuf,
    pub kubeconfig: PathBuf,
}

fn script(name: &str) -> PathBuf {
    repo_root().join("scripts/envtest").join(name)
}

/// The helm binary, installed by scripts/k8s/tools.sh when missing (one time, cached).
pub fn helm_binary() -> anyhow::Result<PathBuf> {
    let tools = repo_root().join("scripts/k8s/tools.sh");
    let out = run(
        Command::new("bash").arg("-c").arg(format!(
            "source '{}' && install_helm >&2 && echo \"$HELM\"",
            tools.display()
        )),
        "scripts/k8s/tools.sh (helm)",
    )?;
    Ok(PathBuf::from(out.trim()))
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
        Self::start_with(run_dir, "AlwaysAllow")
    }

    /// [`ControlPlane::start`] with RBAC enforced, as in a real cluster (the admin token is
    /// in system:masters; everyone else gets what their Roles grant).
    pub fn start_rbac(run_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(run_dir, "RBAC")
    }

    fn start_with(run_dir: &Path, authorization_mode: &str) -> anyhow::Result<Self> {
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
                .env("ETCD_PORT", free_port_pair()?.to_string())
                .env("ENVTEST_AUTHORIZATION_MODE", authorization_mode),
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

    /// `kubectl` with `stdin` as its standard input (e.g. `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let what = format!("kubectl {}", args.join(" "));
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("running {what}: {e}"))?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `helm` (installed once by scripts/k8s/tools.sh into the cache) against this API server.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let helm = helm_binary()?;
        run(
            Command::new(helm)
                .args(args)
                .env("KUBECONFIG", &self.kubeconfig),
            &format!("helm {}", args.join(" ")),
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

/// Plays the kubelet for one Deployment (see [`Kubelet`]): runs one process of `kind`, with
/// the given environment, while its `spec.replicas` is above 0, and stops it with SIGTERM (as
/// Kubernetes stops a pod) when it goes to 0. Records every `spec.replicas` value it sees.
pub struct StandIn {
    deployment: String,
    kubelet: Kubelet,
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
        let launch: Launch = Arc::new(move |_, _| {
            let (bootstrap, env, log_dir) = (bootstrap.clone(), env.clone(), log_dir.clone());
            Box::pin(async move { Service::start(kind, &bootstrap, &env, &log_dir).await })
        });
        let cfg = watcher::Config::default().fields(&format!("metadata.name={deployment}"));
        Self {
            deployment: deployment.to_string(),
            kubelet: Kubelet::spawn(Api::namespaced(client, namespace), cfg, launch, 1),
        }
    }

    pub fn seen(&self) -> Vec<i32> {
        self.kubelet.seen(&self.deployment)
    }

    /// The running process's base URL (`None` while the deployment is at 0 replicas).
    pub fn url(&self) -> Option<String> {
        self.kubelet.urls(&self.deployment).into_iter().next()
    }

    /// Stop watching and stop the process.
    pub async fn shutdown(self) {
        self.kubelet.shutdown().await
    }
}

/// Write a kubeconfig for service account `sa` (a fresh token from the TokenRequest API) that
/// reaches the API server named in `admin` (for tests that run a binary as that account).
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
