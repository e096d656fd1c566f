//! replay-controller's settings (`replay-controller --help`;
//! docs/reference/configuration.md).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use orderflow_runtime::config::{http_addr, switch, trimmed};
use orderflow_runtime::{KafkaArgs, LogArgs, ShutdownArgs};

use crate::reconcile::Settings;

/// replay-controller: carries out ReplayRequests (orderflow.io/v1alpha1): scales a consumer
/// group's deployment to 0, resets the group's offsets, restores the deployment, and
/// optionally holds another deployment down to create consumer lag and records it.
///
/// Kubernetes access: in-cluster service account, else KUBECONFIG / ~/.kube/config.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "replay-controller", version, disable_help_subcommand = true)]
pub struct Args {
    /// Listen address (`:port`: all interfaces) of `/healthz`, `/readyz` (ready once the CRD
    /// is found) and `/metrics`.
    #[arg(long, env = "HTTP_ADDR", default_value = ":8083", value_parser = http_addr)]
    pub http_addr: SocketAddr,

    /// The namespace whose ReplayRequests are handled (the chart sets the release namespace:
    /// its Role is namespaced). Unset: all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Bound on each broker request, in milliseconds.
    #[arg(long, env = "KAFKA_TIMEOUT_MS", default_value_t = 5000, value_parser = trimmed::<u64>)]
    pub kafka_timeout_ms: u64,

    /// How often a waiting request looks again, in milliseconds.
    #[arg(long, env = "POLL_MS", default_value_t = 2000, value_parser = trimmed::<u64>)]
    pub poll_ms: u64,

    /// First retry delay while Kafka is unreachable, in milliseconds; doubled per retry up
    /// to RETRY_MAX_MS.
    #[arg(long, env = "RETRY_BASE_MS", default_value_t = 2000, value_parser = trimmed::<u64>)]
    pub retry_base_ms: u64,

    /// Longest retry delay while Kafka is unreachable, in milliseconds.
    #[arg(long, env = "RETRY_MAX_MS", default_value_t = 60_000, value_parser = trimmed::<u64>)]
    pub retry_max_ms: u64,

    /// Reported as the Events' reporting instance (the chart sets the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// At startup, server-side apply the ReplayRequest CRD of this binary's types (field
    /// manager replay-controller, forced) and wait until it is Established, before watching:
    /// Helm installs a chart's CRDs once and never upgrades them. Needs get, create and patch
    /// on customresourcedefinitions named replayrequests.orderflow.io (the chart grants them
    /// and sets this to true with controller.manageCrd). Off by default: a binary started by
    /// hand, perhaps an older build, must not rewrite a cluster-wide object others rely on.
    #[arg(long, env = "MANAGE_CRD", default_value = "false", value_parser = switch, action = clap::ArgAction::Set)]
    pub manage_crd: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub shutdown: ShutdownArgs,

    /// Without a command: run the controller.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Other things the binary does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Delete every ReplayRequest of WATCH_NAMESPACE and wait until all are gone, i.e. until
    /// the running controller has restored their deployments and released their finalizer
    /// (the chart's pre-delete hook, before `helm uninstall` removes the controller). Exits
    /// non-zero, naming the requests left, after --timeout-seconds (`replay-controller drain
    /// --help`).
    Drain(DrainArgs),
}

/// `replay-controller drain`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DrainArgs {
    /// How long to wait for the requests to be gone, in seconds.
    #[arg(long, default_value_t = 120, value_parser = trimmed::<u64>)]
    pub timeout_seconds: u64,
}

impl Args {
    /// The reconciler's timing.
    pub fn settings(&self) -> Settings {
        Settings {
            poll: Duration::from_millis(self.poll_ms),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            ..Settings::default()
        }
    }

    /// The bound on each broker request.
    pub fn kafka_timeout(&self) -> Duration {
        Duration::from_millis(self.kafka_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_runtime::config::parse_vars;

    fn parse(vars: &[(&str, &str)]) -> Result<Args, orderflow_runtime::ConfigError> {
        parse_vars("replay-controller", vars)
    }

    #[test]
    fn defaults() {
        let a = parse(&[("WATCH_NAMESPACE", " ")]).unwrap();
        assert_eq!(a.http_addr.to_string(), "0.0.0.0:8083");
        assert_eq!(a.watch_namespace, None, "blank is unset: all namespaces");
        assert_eq!(a.kafka_timeout(), Duration::from_secs(5));
        let (s, d) = (a.settings(), Settings::default());
        assert_eq!(
            (s.poll, s.retry_base, s.retry_max),
            (d.poll, d.retry_base, d.retry_max)
        );
        assert_eq!(a.pod_name, None);
        assert!(
            !a.manage_crd,
            "a binary started by hand leaves the CRD alone"
        );
        assert_eq!(a.command, None);
    }

    #[test]
    fn variables() {
        let a = parse(&[
            ("WATCH_NAMESPACE", "orderflow"),
            ("KAFKA_TIMEOUT_MS", "100"),
            ("POLL_MS", "10"),
            ("RETRY_BASE_MS", "20"),
            ("RETRY_MAX_MS", "30"),
            ("POD_NAME", "rc-0"),
        ])
        .unwrap();
        assert_eq!(a.watch_namespace.as_deref(), Some("orderflow"));
        assert_eq!(a.kafka_timeout(), Duration::from_millis(100));
        let s = a.settings();
        assert_eq!(
            (s.poll, s.retry_base, s.retry_max),
            (
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(30)
            )
        );
        assert_eq!(a.pod_name.as_deref(), Some("rc-0"));
        let e = parse(&[("POLL_MS", "2s")]).unwrap_err().to_string();
        assert!(e.contains("POLL_MS=\"2s\""), "{e}");
        assert!(parse(&[("MANAGE_CRD", "true")]).unwrap().manage_crd);
        let e = parse(&[("MANAGE_CRD", "yes")]).unwrap_err().to_string();
        assert!(e.contains("MANAGE_CRD=\"yes\""), "{e}");
    }

    #[test]
    fn drain_is_a_command() {
        use orderflow_runtime::config::parse_from;
        let env = |k: &str| (k == "WATCH_NAMESPACE").then(|| "orderflow".to_string());
        let a: Args = parse_from(["replay-controller", "drain"], env).unwrap();
        assert_eq!(
            a.command,
            Some(Command::Drain(DrainArgs {
                timeout_seconds: 120
            }))
        );
        assert_eq!(a.watch_namespace.as_deref(), Some("orderflow"));
        let a: Args = parse_from(
            ["replay-controller", "drain", "--timeout-seconds", "5"],
            env,
        )
        .unwrap();
        assert_eq!(
            a.command,
            Some(Command::Drain(DrainArgs { timeout_seconds: 5 }))
        );
    }
}
