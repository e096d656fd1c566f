//! Local processes: Apache Kafka (via scripts/kafka.sh) and the service binaries, for the demo,
//! the bench and (through orderflow-testkit) the tests. Everything started here is stopped
//! when its guard is dropped, by PID.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use orderflow_runtime::KafkaConfig;

use crate::wait;

/// The repository root (for scripts/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Run `cmd` to completion (stdin closed) and return its stdout; when it fails, the error
/// says `what` failed, with its exit status, stdout and stderr.
pub fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where the service binaries are: `ORDERFLOW_BIN_DIR`, else the directory of the running
/// executable's profile (`target/<profile>/` for tests run by cargo and for the demo binary).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(d) = std::env::var("ORDERFLOW_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("executable has no directory"))?;
    // tests live in target/<profile>/deps, binaries in target/<profile>
    Ok(if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// The local Apache Kafka (scripts/kafka.sh: KRaft nodes on 127.0.0.1, each broker and
/// controller), or an external one named by `KAFKA_BOOTSTRAP`.
pub struct Broker {
    pub bootstrap: String,
    state_dir: Option<PathBuf>,
    nodes: usize,
}

impl Broker {
    /// Use `KAFKA_BOOTSTRAP` when set; otherwise start a fresh one-node Kafka on a free port
    /// with its data under `state_dir`.
    pub fn start_or_external(state_dir: &Path) -> anyhow::Result<Self> {
        match std::env::var("KAFKA_BOOTSTRAP") {
            Ok(b) if !b.is_empty() => Ok(Self {
                bootstrap: b,
                state_dir: None,
                nodes: 0,
            }),
            _ => Self::start_local(state_dir),
        }
    }

    /// Start a fresh one-node Kafka (data under `state_dir`, wiped first) on a free port.
    pub fn start_local(state_dir: &Path) -> anyhow::Result<Self> {
        Self::start_local_on(state_dir, free_port()?)
    }

    /// Start a fresh one-node Kafka (data under `state_dir`, wiped first) on
    /// 127.0.0.1:`port`, e.g. where services were already told to look for it.
    pub fn start_local_on(state_dir: &Path, port: u16) -> anyhow::Result<Self> {
        Self::start_nodes(state_dir, 1, Some(port))
    }

    /// Start a fresh Kafka cluster of `nodes` nodes on free ports (data under `state_dir`,
    /// wiped first). With three or more, topics get replication factor 3 and
    /// `min.insync.replicas` 2 by default.
    pub fn start_cluster(state_dir: &Path, nodes: usize) -> anyhow::Result<Self> {
        Self::start_nodes(state_dir, nodes, None)
    }

    fn start_nodes(state_dir: &Path, nodes: usize, port: Option<u16>) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(state_dir);
        std::fs::create_dir_all(state_dir)?;
        // The guard exists before the start, so a half-started cluster is stopped too.
        let mut broker = Self {
            bootstrap: String::new(),
            state_dir: Some(state_dir.to_path_buf()),
            nodes,
        };
        let mut cmd = broker.script(&["start"])?;
        cmd.env("KAFKA_NODES", nodes.to_string());
        match port {
            Some(p) => cmd.env("KAFKA_PORT", p.to_string()),
            None => cmd.env_remove("KAFKA_PORT"),
        };
        let out = run_checked(&mut cmd, "kafka.sh start")?;
        broker.bootstrap = out
            .lines()
            .find_map(|l| l.strip_prefix("BOOTSTRAP="))
            .map(str::to_string)
            .ok_or_else(|| anyhow!("kafka.sh start printed no BOOTSTRAP=: {out}"))?;
        orderflow_runtime::topics::wait_for_broker(&broker.kafka(), Duration::from_secs(60))?;
        Ok(broker)
    }

    /// `scripts/kafka.sh ARGS` for this broker's state dir.
    fn script(&self, args: &[&str]) -> anyhow::Result<Command> {
        let Some(dir) = &self.state_dir else {
            bail!("the broker at {} is external", self.bootstrap)
        };
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/kafka.sh"))
            .arg(args[0])
            .arg(dir)
            .args(&args[1..]);
        Ok(cmd)
    }

    fn run_script(&self, args: &[&str]) -> anyhow::Result<String> {
        run_checked(
            &mut self.script(args)?,
            &format!("kafka.sh {}", args.join(" ")),
        )
    }

    /// Stop (SIGTERM) and start the broker again on the same ports, keeping its data.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Stop every node (SIGTERM, then SIGKILL after a deadline), keeping the data.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run_script(&["stop"]).map(drop)
    }

    /// SIGKILL every node: a crash, nothing is flushed or shut down cleanly.
    pub fn kill(&self) -> anyhow::Result<()> {
        for n in 1..=self.nodes {
            self.kill_node(n)?;
        }
        Ok(())
    }

    /// SIGKILL node `n` (1-based) of the cluster.
    pub fn kill_node(&self, n: usize) -> anyhow::Result<()> {
        self.run_script(&["kill", &n.to_string()]).map(drop)
    }

    /// Start every stopped or killed node again on its ports and data, and wait until the
    /// cluster answers.
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.run_script(&["start"])?;
        orderflow_runtime::topics::wait_for_broker(&self.kafka(), Duration::from_secs(60))?;
        Ok(())
    }

    /// The client port of node `n` (1-based), from the bootstrap list.
    pub fn node_port(&self, n: usize) -> Option<u16> {
        self.bootstrap
            .split(',')
            .nth(n.checked_sub(1)?)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
    }

    pub fn is_local(&self) -> bool {
        self.state_dir.is_some()
    }

    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig::new(self.bootstrap.clone())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.state_dir.is_some() {
            let _ = self.run_script(&["stop"]);
        }
    }
}

/// One of Kafka's own command-line tools (`scripts/kafka.sh tool NAME ARGS`, e.g.
/// `kafka-consumer-groups`); returns its standard output, fails with its standard error.
pub fn kafka_tool(name: &str, args: &[&str]) -> anyhow::Result<String> {
    run_checked(
        Command::new("bash")
            .arg(repo_root().join("scripts/kafka.sh"))
            .arg("tool")
            .arg(name)
            .args(args),
        &format!("kafka.sh tool {name}"),
    )
}

/// Run the `orderflowctl` CLI against `bootstrap`; returns (exit code, stdout, stderr).
pub fn orderflowctl(bootstrap: &str, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let bin = bin_dir()?.join("orderflowctl");
    let out = Command::new(&bin)
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running {} (build it: cargo build --release --workspace --bins)",
                bin.display()
            )
        })?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// GET a JSON document from the service at `base_url` (fails on a non-2xx answer).
pub async fn get_json(base_url: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let r = reqwest::Client::new()
        .get(format!("{base_url}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    if !status.is_success() {
        bail!("GET {base_url}{path}: {status}: {body}");
    }
    Ok(body)
}

/// The sum of the samples of metric `name` in Prometheus/OpenMetrics `text` whose labels
/// include all of `labels` (0 when there are none).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let has_all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            if !has_all {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// orderflow's service binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Order,
    Inventory,
    Analytics,
    ReplayController,
}

impl ServiceKind {
    pub fn binary(self) -> &'static str {
        match self {
            ServiceKind::Order => "order-service",
            ServiceKind::Inventory => "inventory-service",
            ServiceKind::Analytics => "analytics-service",
            ServiceKind::ReplayController => "replay-controller",
        }
    }

    /// The service a binary (container) name stands for.
    pub fn from_binary(name: &str) -> Option<Self> {
        [
            ServiceKind::Order,
            ServiceKind::Inventory,
            ServiceKind::Analytics,
            ServiceKind::ReplayController,
        ]
        .into_iter()
        .find(|k| k.binary() == name)
    }
}

/// A running service process, with its HTTP base URL. Dropping it kills it.
pub struct Service {
    pub kind: ServiceKind,
    pub url: String,
    child: Child,
    pub log: PathBuf,
}

impl Service {
    /// Start `kind` against `bootstrap` with extra environment `env`, logging to
    /// `log_dir/<binary>.log`, and wait until `/readyz` answers 200.
    pub async fn start(
        kind: ServiceKind,
        bootstrap: &str,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut svc = Self::spawn(kind, bootstrap, env, log_dir)?;
        svc.wait_ready(Duration::from_secs(60)).await?;
        Ok(svc)
    }

    /// [`Service::start`], logging to the file `log` (appended).
    pub async fn start_logged(
        kind: ServiceKind,
        bootstrap: &str,
        env: &[(&str, String)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut svc = Self::spawn_logged(kind, bootstrap, env, log)?;
        svc.wait_ready(Duration::from_secs(60)).await?;
        Ok(svc)
    }

    /// Start `kind` like [`Service::start`] but do not wait for `/readyz` (e.g. while its
    /// Kafka is unreachable on purpose).
    pub fn spawn(
        kind: ServiceKind,
        bootstrap: &str,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let log = log_dir.join(format!("{}.log", kind.binary()));
        Self::spawn_logged(kind, bootstrap, env, log)
    }

    fn spawn_logged(
        kind: ServiceKind,
        bootstrap: &str,
        env: &[(&str, String)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let bin = bin_dir()?.join(kind.binary());
        if !bin.exists() {
            bail!(
                "{} not found; build the services first: cargo build --release --workspace --bins (make demo and make test do)",
                bin.display()
            );
        }
        let port = free_port()?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(&bin);
        cmd.env("KAFKA_BOOTSTRAP", bootstrap)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            kind,
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fail if the process has exited (with its status and where its log is).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); see {}",
                self.kind.binary(),
                self.log.display()
            );
        }
        Ok(())
    }

    /// Wait until `/readyz` answers 200 (fails early if the process exited).
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.url);
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start-up ({status}); see {}",
                    self.kind.binary(),
                    self.log.display()
                );
            }
            if let Ok(r) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "{} not ready after {:?}; see {}",
                    self.kind.binary(),
                    timeout,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then wait for a clean exit (SIGKILL after `grace`). Returns whether the
    /// process exited by itself with status 0.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<bool> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let clean = wait::until(
            &format!("{} to exit", self.kind.binary()),
            grace,
            Duration::from_millis(50),
            || {
                let r = self.child.try_wait();
                async move { r.ok().flatten() }
            },
        )
        .await
        .map(|status| status.success())
        .unwrap_or(false);
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(clean)
    }

    /// SIGKILL: a crash, nothing is flushed or committed.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GET a JSON document from the service.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        get_json(&self.url, path).await
    }

    /// GET `path`, returning status and body text whatever the status.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    /// The sum of the `/metrics` samples of `name` carrying all of `labels` (0 when none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
        let (status, text) = self.get("/metrics").await?;
        if status != 200 {
            bail!("GET {}/metrics: {status}: {text}", self.url);
        }
        Ok(metric_sum(&text, name, labels))
    }

    /// POST a JSON document, returning status and body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(body)
            .timeout(timeout)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_matches_name_and_labels() {
        let text = "# HELP orderflow_dlq_records Records sent\n\
                    orderflow_dlq_records_total{reason=\"not_json\"} 2\n\
                    orderflow_dlq_records_total{reason=\"wrong_type\"} 1\n\
                    orderflow_dlq_records_total_other 9\n\
                    orderflow_up 1\n";
        let name = "orderflow_dlq_records_total";
        assert_eq!(metric_sum(text, name, &[]), 3.0);
        assert_eq!(metric_sum(text, name, &[("reason", "not_json")]), 2.0);
        assert_eq!(metric_sum(text, name, &[("reason", "missing_field")]), 0.0);
        assert_eq!(metric_sum(text, "orderflow_up", &[]), 1.0);
    }
}
