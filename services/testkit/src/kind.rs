//! The test bed's kind cluster (scripts/k8s/kind-bed.sh: Kubernetes v1.33 built here, a real
//! kubelet with containerd): `kubectl` 1.33 and `helm` against it. The cluster, the images and
//! their `kind load` are made by the scripts before the tests run (`make e2e`); the tests
//! only talk to the cluster.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::envtest::helm_binary;
use crate::procs::{repo_root, run_checked};
use crate::topics::Record;

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

    /// Every committed record of `topic`, read back from the broker inside the cluster:
    /// Apache Kafka's own console consumer (`read_committed`, from the beginning, until no
    /// record came for 5 s) run with `kubectl exec` in `broker` (e.g. `statefulset/orderflow-kafka`,
    /// the chart's `kafka.broker`). Each record is decoded as the services decode it. The tool
    /// ends on its timeout with an ERROR log line, which may reach stdout: lines other than
    /// records are left out, and the tool's own count, when printed, must match.
    pub fn read_topic(&self, broker: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
        let out = self.kubectl_ns(&[
            "exec",
            broker,
            "--",
            "java",
            "-cp",
            "/opt/kafka/libs/*",
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            "localhost:9092",
            "--topic",
            topic,
            "--from-beginning",
            "--isolation-level",
            "read_committed",
            "--timeout-ms",
            "5000",
            "--formatter-property",
            "print.partition=true",
            "--formatter-property",
            "print.offset=true",
        ])?;
        console_records(topic, &out)
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

/// The records in the console consumer's output (see [`Bed::read_topic`]).
fn console_records(topic: &str, out: &str) -> anyhow::Result<Vec<Record>> {
    let records = out
        .lines()
        .filter(|l| l.starts_with("Partition:"))
        .map(|l| console_record(topic, l))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let total = out.lines().find_map(|l| {
        l.strip_prefix("Processed a total of ")?
            .strip_suffix(" messages")?
            .parse::<usize>()
            .ok()
    });
    if let Some(n) = total {
        anyhow::ensure!(
            n == records.len(),
            "console consumer: processed {n} records of {topic}, printed {}",
            records.len()
        );
    }
    Ok(records)
}

/// One line of the console consumer: `Partition:P<TAB>Offset:O<TAB>VALUE`.
fn console_record(topic: &str, line: &str) -> anyhow::Result<Record> {
    let mut parts = line.splitn(3, '\t');
    let mut field = |prefix: &str| -> anyhow::Result<&str> {
        parts
            .next()
            .and_then(|p| p.strip_prefix(prefix))
            .with_context(|| format!("console consumer: no {prefix} in {line:?}"))
    };
    let partition = field("Partition:")?.parse()?;
    let offset = field("Offset:")?.parse()?;
    let raw = parts.next().unwrap_or_default().as_bytes().to_vec();
    Ok(Record {
        partition,
        offset,
        event: orderflow_events::decode_on(topic, &raw).ok(),
        raw,
        ..Record::default()
    })
}

#[cfg(test)]
mod tests {
    use super::{console_record, console_records, exports};

    #[test]
    fn reads_a_console_consumer_line() -> anyhow::Result<()> {
        let r = console_record("orders", "Partition:2\tOffset:41\tnot an order")?;
        assert_eq!((r.partition, r.offset), (2, 41));
        assert_eq!(r.raw, b"not an order");
        assert!(r.event.is_none());
        assert!(console_record("orders", "Offset:1\tPartition:2\tx").is_err());
        Ok(())
    }

    #[test]
    fn keeps_the_records_and_checks_the_tools_count() -> anyhow::Result<()> {
        let out = "Partition:0\tOffset:0\ta\n2026-12-05T22:17:08Z main ERROR Error processing message\nPartition:1\tOffset:0\tb\n";
        assert_eq!(console_records("orders", out)?.len(), 2);
        let counted = format!("{out}Processed a total of 2 messages\n");
        assert_eq!(console_records("orders", &counted)?.len(), 2);
        let short = format!("{out}Processed a total of 3 messages\n");
        assert!(console_records("orders", &short).is_err());
        Ok(())
    }

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
