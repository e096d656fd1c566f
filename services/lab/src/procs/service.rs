//! orderflow's service binaries as local processes, and their HTTP answers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use super::{bin_dir, free_port};
use crate::wait;

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
