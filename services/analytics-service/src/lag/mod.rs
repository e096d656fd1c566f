//! The consumer-lag exporter (like kafka-lag-exporter): every `LAG_INTERVAL_MS` it reads, for
//! the groups `inventory` (on `orders`) and analytics' own (`CONSUMER_GROUP`, default
//! `analytics`; on `orders` and `inventory-events`: [`watched`]),
//! each partition's committed offset and high watermark, and exports
//!
//! - `orderflow_consumergroup_committed_offset{group,topic,partition}` (absent while the
//!   group never committed on the partition),
//! - `orderflow_consumergroup_high_watermark{group,topic,partition}`,
//! - `orderflow_consumergroup_lag{group,topic,partition}` (high watermark - committed; from
//!   the low watermark when nothing is committed: the same rule as `orderflowctl lag`),
//! - `orderflow_consumergroup_lag_sum{group}`,
//! - `orderflow_consumergroup_lag_seconds{group,topic,partition}`: now minus the timestamp of
//!   the record at the committed offset (read, not interpolated: exact during a replay too),
//!   0 when caught up; absent while it is not known (the record did not arrive in time),
//! - `orderflow_consumergroup_max_lag_seconds{group}`: the largest of those, and
//! - `orderflow_lag_exporter_errors_total{group}` for samples that failed.
//!
//! It also keeps the last `LAG_HISTORY` samples per group (total records, largest seconds)
//! in a ring buffer for the dashboard ([`board`]: `GET /api/dashboard`, `lag.history`). The
//! broker work is orderflowctl's [`LagProbe`]: one client per group kept open between
//! rounds; a round reads one record per lagging partition (caught-up ones are not read),
//! so its cost is bounded by the partitions behind, each round by the request timeout.

mod board;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use orderflow_events::{GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflowctl::{LagProbe, LagSample};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use board::{LagBoard, LagPoint, LagView, PartitionRow, SharedLag};

/// `{group="...",topic="...",partition="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// `{group="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

/// A group whose lag is exported, with the topics it consumes.
pub type Watched = (String, &'static [&'static str]);

/// The groups whose lag is exported by an analytics consuming as `own_group`: `inventory`
/// and `own_group`.
pub fn watched(own_group: &str) -> Vec<Watched> {
    vec![
        (GROUP_INVENTORY.to_string(), &[TOPIC_ORDERS]),
        (
            own_group.to_string(),
            &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
        ),
    ]
}

/// The names of the `watched` groups, in order (the dashboard's `lag.groups`).
pub fn group_names(watched: &[Watched]) -> Vec<String> {
    watched.iter().map(|(g, _)| g.clone()).collect()
}

/// The lag gauges.
#[derive(Clone, Default)]
pub struct LagMetrics {
    committed: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    lag: Family<PartitionLabels, Gauge>,
    lag_sum: Family<GroupLabels, Gauge>,
    lag_seconds: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    max_lag_seconds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    errors: Family<GroupLabels, Counter>,
}

fn group_label(group: &str) -> GroupLabels {
    GroupLabels {
        group: group.to_string(),
    }
}

impl LagMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "orderflow_consumergroup_committed_offset",
            "The consumer group's committed offset (next record to read), per partition",
            m.committed.clone(),
        );
        registry.register(
            "orderflow_consumergroup_high_watermark",
            "The partition's high watermark (log-end offset)",
            m.high_watermark.clone(),
        );
        registry.register(
            "orderflow_consumergroup_lag",
            "Records of the partition the group has not committed yet (high watermark - committed offset)",
            m.lag.clone(),
        );
        registry.register(
            "orderflow_consumergroup_lag_sum",
            "The group's lag summed over its partitions",
            m.lag_sum.clone(),
        );
        registry.register(
            "orderflow_consumergroup_lag_seconds",
            "How far behind the group is in time on the partition: now minus the timestamp of the record at its committed offset (0 when caught up)",
            m.lag_seconds.clone(),
        );
        registry.register(
            "orderflow_consumergroup_max_lag_seconds",
            "The group's largest lag in seconds over its partitions",
            m.max_lag_seconds.clone(),
        );
        registry.register(
            "orderflow_lag_exporter_errors",
            "Lag samples of a group that failed (broker unreachable, topic missing, ...)",
            m.errors.clone(),
        );
        m
    }

    /// Set the gauges of `group` from `sample`.
    pub fn set(&self, group: &str, sample: &LagSample) {
        for p in &sample.partitions {
            let labels = PartitionLabels {
                group: group.to_string(),
                topic: p.topic.clone(),
                partition: p.partition,
            };
            match p.committed {
                Some(c) => {
                    self.committed.get_or_create(&labels).set(c);
                }
                None => {
                    self.committed.remove(&labels);
                }
            }
            self.high_watermark
                .get_or_create(&labels)
                .set(p.high_watermark);
            self.lag.get_or_create(&labels).set(p.lag);
            set_or_remove(&self.lag_seconds, &labels, p.lag_seconds);
        }
        self.lag_sum
            .get_or_create(&group_label(group))
            .set(sample.total);
        set_or_remove(
            &self.max_lag_seconds,
            &group_label(group),
            sample.max_lag_seconds,
        );
    }

    pub fn failed(&self, group: &str) {
        self.errors.get_or_create(&group_label(group)).inc();
    }
}

/// Set the gauge of `labels` to `v`, or remove it while `v` is not known (a stale value
/// would look like a measurement).
fn set_or_remove<L>(family: &Family<L, Gauge<f64, AtomicU64>>, labels: &L, v: Option<f64>)
where
    L: Clone + std::hash::Hash + Eq,
{
    match v {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    }
}

/// Sample every watched group once, keeping each group's probe open between rounds (a probe
/// that failed is opened afresh next time).
fn sample_all(
    kafka: &KafkaConfig,
    watched: &[Watched],
    probes: &mut HashMap<String, LagProbe>,
    timeout: Duration,
) -> Vec<(String, Result<LagSample, String>)> {
    let mut round = Vec::with_capacity(watched.len());
    for (group, topics) in watched {
        if !probes.contains_key(group) {
            match LagProbe::open(kafka, group, topics, timeout) {
                Ok(p) => {
                    probes.insert(group.clone(), p);
                }
                Err(e) => {
                    round.push((group.to_string(), Err(e.to_string())));
                    continue;
                }
            }
        }
        let result = probes.get(group).map(|p| p.sample());
        match result {
            Some(Ok(s)) => round.push((group.to_string(), Ok(s))),
            Some(Err(e)) => {
                probes.remove(group);
                round.push((group.to_string(), Err(e.to_string())));
            }
            None => {}
        }
    }
    round
}

/// Sample the `watched` groups every `interval` until `token` is cancelled; each round
/// updates `metrics` and `board`. Broker requests run on the blocking pool, each bounded by
/// `timeout`.
pub async fn run(
    kafka: KafkaConfig,
    watched: Vec<Watched>,
    metrics: LagMetrics,
    board: SharedLag,
    interval: Duration,
    timeout: Duration,
    token: CancellationToken,
) {
    let mut probes: HashMap<String, LagProbe> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let (k, w) = (kafka.clone(), watched.clone());
        let taken = tokio::task::spawn_blocking(move || {
            let round = sample_all(&k, &w, &mut probes, timeout);
            (probes, round)
        })
        .await;
        let round = match taken {
            Ok((p, round)) => {
                probes = p;
                round
            }
            Err(e) => {
                tracing::warn!(error = %e, "lag sampling task failed");
                probes = HashMap::new();
                continue;
            }
        };
        let at_ms = chrono::Utc::now().timestamp_millis();
        for (group, result) in &round {
            match result {
                Ok(s) => {
                    metrics.set(group, s);
                    if failing.remove(group).is_some() {
                        tracing::info!(group = %group, lag = s.total, "lag sampling works again");
                    }
                }
                Err(e) => {
                    metrics.failed(group);
                    // one line when a group starts failing (or the reason changes), not every tick
                    if failing.get(group) != Some(e) {
                        tracing::warn!(group = %group, error = %e, "cannot sample consumer lag (retrying every interval)");
                        failing.insert(group.clone(), e.clone());
                    }
                }
            }
        }
        if let Ok(mut b) = board.write() {
            b.record(at_ms, &round);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflowctl::timelag::NextRecord;
    use orderflowctl::PartitionLag;

    use super::board::tests::sample;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn inventory_and_the_own_group_are_watched() {
        let w = watched("analytics");
        assert_eq!(group_names(&w), vec!["inventory", "analytics"]);
        assert_eq!(w[1].1, &["orders", "inventory-events"]);
        let w = watched("analytics-shadow-s1");
        assert_eq!(group_names(&w), vec!["inventory", "analytics-shadow-s1"]);
        assert_eq!(w[0].1, &["orders"]);
    }

    #[test]
    fn gauges_per_group_topic_partition() {
        let mut registry = Registry::default();
        let m = LagMetrics::register(&mut registry);
        m.set("inventory", &sample(&[(Some(40), 100), (None, 7)]));
        let t = text(&registry);
        for want in [
            "orderflow_consumergroup_committed_offset{group=\"inventory\",topic=\"orders\",partition=\"0\"} 40",
            "orderflow_consumergroup_high_watermark{group=\"inventory\",topic=\"orders\",partition=\"0\"} 100",
            "orderflow_consumergroup_lag{group=\"inventory\",topic=\"orders\",partition=\"0\"} 60",
            "orderflow_consumergroup_lag{group=\"inventory\",topic=\"orders\",partition=\"1\"} 7",
            "orderflow_consumergroup_lag_sum{group=\"inventory\"} 67",
        ] {
            assert!(t.contains(want), "{want} missing in\n{t}");
        }
        assert!(
            !t.contains("committed_offset{group=\"inventory\",topic=\"orders\",partition=\"1\"}"),
            "no committed offset where none was committed:\n{t}"
        );
        m.set("inventory", &sample(&[(Some(100), 100), (Some(7), 7)]));
        let t = text(&registry);
        assert!(t.contains("orderflow_consumergroup_lag_sum{group=\"inventory\"} 0"));
        assert!(t.contains(
            "orderflow_consumergroup_committed_offset{group=\"inventory\",topic=\"orders\",partition=\"1\"} 7"
        ));
        m.failed("analytics");
        assert!(
            text(&registry).contains("orderflow_lag_exporter_errors_total{group=\"analytics\"} 1")
        );
    }

    #[test]
    fn seconds_gauges_per_partition_and_the_group_maximum() {
        let mut registry = Registry::default();
        let m = LagMetrics::register(&mut registry);
        let now = 1_795_000_000_000;
        let s = LagSample::new(
            now,
            vec![
                PartitionLag::new("orders", 0, Some(3), 0, 10)
                    .with_time(Some(NextRecord::At(now - 42_500)), now),
                PartitionLag::new("orders", 1, Some(9), 0, 9).with_time(None, now),
                PartitionLag::new("orders", 2, Some(1), 0, 9).with_time(None, now),
            ],
        );
        m.set("inventory", &s);
        let t = text(&registry);
        for want in [
            "orderflow_consumergroup_lag_seconds{group=\"inventory\",topic=\"orders\",partition=\"0\"} 42.5",
            // caught up: 0 without a read
            "orderflow_consumergroup_lag_seconds{group=\"inventory\",topic=\"orders\",partition=\"1\"} 0.0",
            "orderflow_consumergroup_max_lag_seconds{group=\"inventory\"} 42.5",
        ] {
            assert!(t.lines().any(|l| l == want), "{want} missing in\n{t}");
        }
        // not read in time: no series rather than a made-up value
        assert!(
            !t.contains("lag_seconds{group=\"inventory\",topic=\"orders\",partition=\"2\"}"),
            "{t}"
        );
        // caught up everywhere: 0
        m.set(
            "inventory",
            &LagSample::new(now, vec![PartitionLag::new("orders", 0, Some(10), 0, 10)]),
        );
        let t = text(&registry);
        assert!(t
            .lines()
            .any(|l| l == "orderflow_consumergroup_max_lag_seconds{group=\"inventory\"} 0.0"));
    }
}
