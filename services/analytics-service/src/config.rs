//! analytics-service's settings (`analytics-service --help`;
//! docs/reference/configuration.md).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use orderflow_events::{analytics_snapshots_topic, GROUP_ANALYTICS};
use orderflow_runtime::config::{http_addr, trimmed};
use orderflow_runtime::{KafkaArgs, LogArgs, ShutdownArgs};

use crate::replays;

/// analytics-service: `orders` + `inventory-events` -> metrics over HTTP, the consumer-lag
/// exporter, and the live dashboard at `/`.
///
/// Runs as ONE replica: its state is in the process, saved to the compacted
/// `<group>-snapshots` (`analytics-snapshots`) at every commit and restored from it at
/// start-up.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "analytics-service", version)]
pub struct Args {
    /// The consumer group analytics consumes, commits and samples the lag of as its own.
    /// Its state topic is `<group>-snapshots` (created compacted when missing) and its
    /// readers' group ids begin with `<group>-`: a shadow replay runs a copy as
    /// `analytics-shadow-<request>` beside the live one. Letters, digits, `.`, `_`, `-`;
    /// at most 200 characters.
    #[arg(long, env = "CONSUMER_GROUP", default_value = GROUP_ANALYTICS, value_parser = consumer_group)]
    pub consumer_group: String,

    /// Listen address (`:port`: all interfaces).
    #[arg(long, env = "HTTP_ADDR", default_value = ":8082", value_parser = http_addr)]
    pub http_addr: SocketAddr,

    /// How often applied positions are committed, in milliseconds (at least 100).
    #[arg(long, env = "COMMIT_INTERVAL_MS", default_value_t = 1000, value_parser = trimmed::<u64>)]
    pub commit_interval_ms: u64,

    /// How often the lag exporter samples groups `inventory` and `CONSUMER_GROUP`, in
    /// milliseconds (at least 100).
    #[arg(long, env = "LAG_INTERVAL_MS", default_value_t = 3000, value_parser = trimmed::<u64>)]
    pub lag_interval_ms: u64,

    /// Lag samples kept for the dashboard's chart (600 x 3 s = 30 minutes).
    #[arg(long, env = "LAG_HISTORY", default_value_t = 600, value_parser = trimmed::<usize>)]
    pub lag_history: usize,

    /// List this namespace's ReplayRequests for the dashboard (the Helm chart sets the
    /// release namespace). Unset: only when KUBERNETES_SERVICE_HOST is set (in a pod), else
    /// the panel says it is not available.
    #[arg(long, env = "REPLAY_NAMESPACE")]
    pub replay_namespace: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// The longest consumer group accepted: the group's topics (`<group>-snapshots`) must stay
/// within Kafka's 249 characters of a topic name.
pub const MAX_GROUP_LEN: usize = 200;

/// A consumer group usable in topic names: non-empty, at most [`MAX_GROUP_LEN`] characters
/// of `[a-zA-Z0-9._-]`.
pub fn consumer_group(raw: &str) -> Result<String, String> {
    let g = raw.trim();
    if g.is_empty() {
        return Err("the consumer group is empty".into());
    }
    if g.len() > MAX_GROUP_LEN {
        return Err(format!(
            "the consumer group has {} characters, at most {MAX_GROUP_LEN} are allowed",
            g.len()
        ));
    }
    if let Some(c) = g
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed in a consumer group (letters, digits, '.', '_', '-' only: \
             its topics are named after it)"
        ));
    }
    Ok(g.to_string())
}

impl Args {
    /// The compacted topic this analytics keeps its state in: `<group>-snapshots`.
    pub fn snapshot_topic(&self) -> String {
        analytics_snapshots_topic(&self.consumer_group)
    }

    pub fn commit_every(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms.max(100))
    }

    pub fn lag_every(&self) -> Duration {
        Duration::from_millis(self.lag_interval_ms.max(100))
    }

    /// Whether and where the dashboard lists ReplayRequests, given the value of
    /// `KUBERNETES_SERVICE_HOST` (set by Kubernetes in every pod).
    pub fn replay_mode(&self, kubernetes_service_host: Option<&str>) -> replays::Mode {
        replays::mode(self.replay_namespace.as_deref(), kubernetes_service_host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_runtime::config::parse_vars;

    fn parse(vars: &[(&str, &str)]) -> Result<Args, orderflow_runtime::ConfigError> {
        parse_vars("analytics-service", vars)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.http_addr.to_string(), "0.0.0.0:8082");
        assert_eq!(a.commit_every(), Duration::from_millis(1000));
        assert_eq!(a.lag_every(), Duration::from_millis(3000));
        assert_eq!(a.lag_history, 600);
        assert_eq!(a.replay_namespace, None);
        assert_eq!(a.consumer_group, "analytics");
        assert_eq!(a.snapshot_topic(), "analytics-snapshots");
        assert_eq!(a.kafka.kafka_linger_ms, 5);
        assert!(matches!(a.replay_mode(None), replays::Mode::Off(_)));
        assert!(matches!(
            a.replay_mode(Some("10.0.0.1")),
            replays::Mode::On(None)
        ));
    }

    #[test]
    fn variables() {
        let a = parse(&[
            ("COMMIT_INTERVAL_MS", "10"),
            ("LAG_INTERVAL_MS", "250"),
            ("LAG_HISTORY", "5"),
            ("REPLAY_NAMESPACE", "orderflow"),
        ])
        .unwrap();
        assert_eq!(
            a.commit_every(),
            Duration::from_millis(100),
            "at least 100 ms"
        );
        assert_eq!(a.lag_every(), Duration::from_millis(250));
        assert_eq!(a.lag_history, 5);
        assert_eq!(
            a.replay_mode(None),
            replays::Mode::On(Some("orderflow".into()))
        );
        let e = parse(&[("LAG_HISTORY", "-1")]).unwrap_err().to_string();
        assert!(e.contains("LAG_HISTORY=\"-1\""), "{e}");
    }

    #[test]
    fn consumer_group_from_the_environment() {
        let a = parse(&[("CONSUMER_GROUP", "analytics-shadow-s1")]).unwrap();
        assert_eq!(a.consumer_group, "analytics-shadow-s1");
        assert_eq!(a.snapshot_topic(), "analytics-shadow-s1-snapshots");
        let a = parse(&[("CONSUMER_GROUP", " ")]).unwrap();
        assert_eq!(a.consumer_group, "analytics", "blank is unset");
        let longest = "g".repeat(MAX_GROUP_LEN);
        assert_eq!(
            parse(&[("CONSUMER_GROUP", &longest)])
                .unwrap()
                .consumer_group,
            longest
        );
    }

    #[test]
    fn consumer_group_must_be_usable_in_topic_names() {
        for (bad, why) in [
            ("analytics/shadow", "'/' is not allowed"),
            ("ana lytics", "' ' is not allowed"),
            ("analytics:1", "':' is not allowed"),
        ] {
            let e = parse(&[("CONSUMER_GROUP", bad)]).unwrap_err().to_string();
            assert!(
                e.contains("CONSUMER_GROUP=") && e.contains(why),
                "{bad}: {e}"
            );
        }
        let long = "g".repeat(MAX_GROUP_LEN + 1);
        let e = parse(&[("CONSUMER_GROUP", &long)]).unwrap_err().to_string();
        assert!(e.contains("201 characters, at most 200"), "{e}");
        assert_eq!(
            consumer_group(""),
            Err("the consumer group is empty".into())
        );
    }
}
