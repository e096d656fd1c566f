//! The local Apache Kafka (scripts/kafka.sh), or an external one, and Kafka's own tools.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail};
use orderflow_runtime::KafkaConfig;

use super::{repo_root, run_checked};

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

    /// Start a fresh one-node Kafka (data under `state_dir`, wiped first) on a free port
    /// (kafka.sh draws it, and draws again should another process take it first).
    pub fn start_local(state_dir: &Path) -> anyhow::Result<Self> {
        Self::start_nodes(state_dir, 1, None)
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
