//! The test bed's kind cluster (scripts/k8s/kind-bed.sh: Kubernetes v1.33 built here, a real
//! kubelet with containerd): `kubectl` 1.33 and `helm` against it. The cluster, the images and
//! their `kind load` are made by the scripts before the tests run (`make e2e-kind`); the tests
//! only talk to the cluster.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::envtest::helm_binary;
use crate::procs::{repo_root, run_checked};

/// kubectl and helm for the bed's cluster, in one namespace.
pub struct Bed {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub namespace: String,
    helm: PathBuf,
}

/// `KEY=VALUE` pairs of `export A=1 B=2` (the output of `kind-bed.sh env`).
fn exports(text: &str) -> Vec<(String, String)> {
    text.split_whitespace()
        .filter(|w| *w != "export")
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Bed {
    /// The running bed cluster (its kubeconfig and kubectl from `scripts/k8s/kind-bed.sh env`);
    /// fails when the cluster's API server does not answer.
    pub fn connect(namespace: &str) -> anyhow::Result<Self> {
        let env = run_checked(
            Command::new("bash")
                .arg(repo_root().join("scripts/k8s/kind-bed.sh"))
                .arg("env"),
            "scripts/k8s/kind-bed.sh env",
        )?;
        let vars = exports(&env);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let kubeconfig =
            PathBuf::from(get("KUBECONFIG").context("kind-bed.sh env: no KUBECONFIG")?);
        // PATH=<kind bin>:<kubernetes bin>:$PATH
        let path = get("PATH").context("kind-bed.sh env: no PATH")?;
        let k8s_bin = path
            .split(':')
            .nth(1)
            .context("kind-bed.sh env: PATH without the Kubernetes bin")?;
        let bed = Self {
            kubeconfig,
            kubectl: PathBuf::from(k8s_bin).join("kubectl"),
            namespace: namespace.to_string(),
            helm: helm_binary()?,
        };
        bed.kubectl(&["get", "--raw", "/readyz"])
            .context("the bed's cluster does not answer: scripts/k8s/kind-bed.sh up")?;
        Ok(bed)
    }

    fn command(&self, bin: &PathBuf, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args).env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// `kubectl ARGS` (no namespace added), returning stdout; fails with stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        run_checked(
            &mut self.command(&self.kubectl, args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// `kubectl -n <namespace> ARGS`.
    pub fn kubectl_ns(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.namespace.as_str()];
        all.extend_from_slice(args);
        self.kubectl(&all)
    }

    /// `kubectl -n <namespace> ARGS` with `stdin`; returns (success, stdout, stderr) so that a
    /// refusal can be inspected.
    pub fn kubectl_stdin(
        &self,
        args: &[&str],
        stdin: &str,
    ) -> anyhow::Result<(bool, String, String)> {
        let mut all = vec!["-n", self.namespace.as_str()];
        all.extend_from_slice(args);
        let mut child = self
            .command(&self.kubectl, &all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting kubectl")?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// `helm ARGS` against the cluster, returning stdout.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        run_checked(
            &mut self.command(&self.helm, args),
            &format!("helm {}", args.join(" ")),
        )
    }

    /// Delete the namespace and wait until it is gone (a clean start or the end of a test).
    pub fn delete_namespace(&self) -> anyhow::Result<()> {
        self.kubectl(&[
            "delete",
            "namespace",
            &self.namespace,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
        ])
        .map(|_| ())
    }

    /// The JSON lines of `kubectl logs <target>` (every line must be one JSON object).
    pub fn json_logs(&self, target: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let text = self.kubectl_ns(&["logs", target, "--tail=-1"])?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .with_context(|| format!("kubectl logs {target}: not a JSON line: {l}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::exports;

    #[test]
    fn parses_the_env_line() {
        let v = exports("export KUBECONFIG=/c/kubeconfig DOCKER_HOST=unix:///run/d.sock PATH=/k/bin:/k8s/bin:$PATH\n");
        assert_eq!(
            v[0],
            ("KUBECONFIG".to_string(), "/c/kubeconfig".to_string())
        );
        assert_eq!(v[2].1, "/k/bin:/k8s/bin:$PATH");
    }
}
