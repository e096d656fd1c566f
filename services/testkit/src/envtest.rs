//! A real Kubernetes API server for tests: etcd + kube-apiserver on 127.0.0.1, started by the
//! project's scripts/envtest (installed once into the cache). No kubelet runs, so nothing
//! acts on a Deployment's spec; [`StandIn`] plays that part for one Deployment by running the
//! matching service binary while its `spec.replicas` is above 0 (and [`Kubelet`] for all of a
//! chart's Deployments).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::apps::v1::Deployment;
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
    /// Run `kind` with the fixed `env` alone (the Deployment's own env is ignored).
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
        Self::with_launch(client, namespace, deployment, launch)
    }

    /// [`StandIn::spawn`] that, like a kubelet, also gives the process the literal env of the
    /// Deployment's first container as it is when the process starts ([`pod_env`]), over the
    /// fixed `env`: the pod's value wins (but not over the broker and port the stand-in gives
    /// the process, [`SET_BY_THE_STAND_IN`]). E.g. a Deployment copied with
    /// `CONSUMER_GROUP=analytics-shadow-s1` (a shadow replay) runs as that group.
    pub fn spawn_with_pod_env(
        client: Client,
        namespace: &str,
        deployment: &str,
        kind: ServiceKind,
        bootstrap: String,
        env: Vec<(&'static str, String)>,
        log_dir: PathBuf,
    ) -> Self {
        let launch: Launch = Arc::new(move |d: Deployment, _| {
            let (bootstrap, log_dir) = (bootstrap.clone(), log_dir.clone());
            let merged = over(&env, &pod_env(&d));
            Box::pin(async move {
                let env: Vec<(&str, String)> = merged
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                Service::start(kind, &bootstrap, &env, &log_dir).await
            })
        });
        Self::with_launch(client, namespace, deployment, launch)
    }

    fn with_launch(client: Client, namespace: &str, deployment: &str, launch: Launch) -> Self {
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

/// The env a kubelet would give the pods of `deployment`, as far as a test process can have
/// it: the entries of its first container that have a literal `value` (those `valueFrom` a
/// field, Secret or ConfigMap are left out), in order.
pub fn pod_env(deployment: &Deployment) -> Vec<(String, String)> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.env.as_ref())
        .map(|env| {
            env.iter()
                .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Variables the stand-in's process always gets from the test ([`Service::start`]: its broker
/// and a free local port), whatever a Deployment says (e.g. a chart's in-cluster addresses).
pub const SET_BY_THE_STAND_IN: [&str; 2] = ["KAFKA_BOOTSTRAP", "HTTP_ADDR"];

/// `fixed` with `pod` over it: each variable once, the pod's value where both set it, except
/// for [`SET_BY_THE_STAND_IN`].
fn over(fixed: &[(&str, String)], pod: &[(String, String)]) -> Vec<(String, String)> {
    let pod: Vec<&(String, String)> = pod
        .iter()
        .filter(|(k, _)| !SET_BY_THE_STAND_IN.contains(&k.as_str()))
        .collect();
    fixed
        .iter()
        .filter(|(k, _)| !pod.iter().any(|(p, _)| p == k))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .chain(pod.iter().map(|kv| (*kv).clone()))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(containers: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "analytics-shadow-s1"},
            "spec": {"selector": {"matchLabels": {"app": "analytics"}},
                     "template": {"metadata": {"labels": {"app": "analytics"}},
                                  "spec": {"containers": containers}}}
        }))
        .expect("a valid Deployment")
    }

    #[test]
    fn the_first_containers_literal_env() {
        let d = deployment(json!([
            {"name": "analytics", "image": "orderflow",
             "env": [{"name": "CONSUMER_GROUP", "value": "analytics-shadow-s1"},
                     {"name": "REPLAY_NAMESPACE",
                      "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                     {"name": "LAG_INTERVAL_MS", "value": "3000"}]},
            {"name": "sidecar", "image": "x", "env": [{"name": "OTHER", "value": "1"}]}
        ]));
        assert_eq!(
            pod_env(&d),
            vec![
                (
                    "CONSUMER_GROUP".to_string(),
                    "analytics-shadow-s1".to_string()
                ),
                ("LAG_INTERVAL_MS".to_string(), "3000".to_string()),
            ]
        );
        let bare = deployment(json!([{"name": "analytics", "image": "orderflow"}]));
        assert!(pod_env(&bare).is_empty());
    }

    #[test]
    fn the_pods_value_wins_over_the_fixed_one() {
        let fixed = [
            ("CONSUMER_GROUP", "analytics".to_string()),
            ("HTTP_ADDR", "127.0.0.1:0".to_string()),
        ];
        let pod = [
            (
                "CONSUMER_GROUP".to_string(),
                "analytics-shadow-s1".to_string(),
            ),
            ("HTTP_ADDR".to_string(), "0.0.0.0:8082".to_string()),
            ("KAFKA_BOOTSTRAP".to_string(), "kafka:9092".to_string()),
        ];
        assert_eq!(
            over(&fixed, &pod),
            vec![
                ("HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
                (
                    "CONSUMER_GROUP".to_string(),
                    "analytics-shadow-s1".to_string()
                ),
            ],
            "the pod's CONSUMER_GROUP; the stand-in's own address and broker stay"
        );
        assert_eq!(over(&fixed, &[]).len(), 2);
    }
}
