//! The consumer-lag exporter (like kafka-lag-exporter): every `LAG_INTERVAL_MS` it reads, for
//! the groups `inventory` (on `orders`) and `analytics` (on `orders` and `inventory-events`),
//! each partition's committed offset and high watermark, and exports
//!
//! - `orderflow_consumergroup_committed_offset{group,topic,partition}` (absent while the
//!   group never committed on the partition),
//! - `orderflow_consumergroup_high_watermark{group,topic,partition}`,
//! - `orderflow_consumergroup_lag{group,topic,partition}` (high watermark - committed; from
//!   the low watermark when nothing is committed: the same rule as `orderflowctl lag`),
//! - `orderflow_consumergroup_lag_sum{group}`, and
//! - `orderflow_lag_exporter_errors_total{group}` for samples that failed.
//!
//! It also keeps the last `LAG_HISTORY` totals per group in a ring buffer for the dashboard
//! (`GET /api/dashboard`, `lag.history`). The broker work is orderflowctl's [`LagProbe`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use orderflow_events::{GROUP_ANALYTICS, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflowctl::{LagProbe, LagSample};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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

/// The groups whose lag is exported, with the topics each consumes.
pub const WATCHED: [(&str, &[&str]); 2] = [
    (GROUP_INVENTORY, &[TOPIC_ORDERS]),
    (GROUP_ANALYTICS, &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS]),
];

/// The lag gauges.
#[derive(Clone, Default)]
pub struct LagMetrics {
    committed: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    lag: Family<PartitionLabels, Gauge>,
    lag_sum: Family<GroupLabels, Gauge>,
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
        }
        self.lag_sum
            .get_or_create(&group_label(group))
            .set(sample.total);
    }

    pub fn failed(&self, group: &str) {
        self.errors.get_or_create(&group_label(group)).inc();
    }
}

/// One point of the lag history: total lag per group at `at_ms` (Unix ms). A group whose
/// sample failed is missing from that point.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LagPoint {
    pub at_ms: i64,
    pub groups: BTreeMap<String, i64>,
}

/// The latest lag of one partition of one group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartitionRow {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub high_watermark: i64,
    pub lag: i64,
}

/// What the dashboard shows of the lag: `GET /api/dashboard`'s `lag`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LagView {
    pub interval_ms: u64,
    pub groups: Vec<String>,
    pub history: Vec<LagPoint>,
    pub latest: Vec<PartitionRow>,
    /// The last sample's errors, per group.
    pub errors: BTreeMap<String, String>,
}

/// The ring buffer of lag samples and the latest per-partition figures.
#[derive(Debug, Clone)]
pub struct LagBoard {
    capacity: usize,
    interval_ms: u64,
    history: VecDeque<LagPoint>,
    latest: BTreeMap<String, Vec<PartitionRow>>,
    errors: BTreeMap<String, String>,
}

impl LagBoard {
    pub fn new(capacity: usize, interval: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            history: VecDeque::new(),
            latest: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Record one round of samples taken at `at_ms`: `(group, sample or error)`.
    pub fn record(&mut self, at_ms: i64, round: &[(String, Result<LagSample, String>)]) {
        let mut point = LagPoint {
            at_ms,
            groups: BTreeMap::new(),
        };
        for (group, result) in round {
            match result {
                Ok(s) => {
                    point.groups.insert(group.clone(), s.total);
                    self.errors.remove(group);
                    let rows = s
                        .partitions
                        .iter()
                        .map(|p| PartitionRow {
                            group: group.clone(),
                            topic: p.topic.clone(),
                            partition: p.partition,
                            committed: p.committed,
                            high_watermark: p.high_watermark,
                            lag: p.lag,
                        })
                        .collect();
                    self.latest.insert(group.clone(), rows);
                }
                Err(e) => {
                    self.errors.insert(group.clone(), e.clone());
                }
            }
        }
        if self.history.len() == self.capacity {
            self.history.pop_front();
        }
        self.history.push_back(point);
    }

    pub fn view(&self) -> LagView {
        LagView {
            interval_ms: self.interval_ms,
            groups: WATCHED.iter().map(|(g, _)| g.to_string()).collect(),
            history: self.history.iter().cloned().collect(),
            latest: self.latest.values().flatten().cloned().collect(),
            errors: self.errors.clone(),
        }
    }
}

pub type SharedLag = Arc<RwLock<LagBoard>>;

/// Sample every watched group once, keeping each group's probe open between rounds (a probe
/// that failed is opened afresh next time).
fn sample_all(
    kafka: &KafkaConfig,
    probes: &mut HashMap<&'static str, LagProbe>,
    timeout: Duration,
) -> Vec<(String, Result<LagSample, String>)> {
    let mut round = Vec::with_capacity(WATCHED.len());
    for (group, topics) in WATCHED {
        if !probes.contains_key(group) {
            match LagProbe::open(kafka, group, topics, timeout) {
                Ok(p) => {
                    probes.insert(group, p);
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

/// Sample every `interval` until `token` is cancelled; each round updates `metrics` and
/// `board`. Broker requests run on the blocking pool, each bounded by `timeout`.
pub async fn run(
    kafka: KafkaConfig,
    metrics: LagMetrics,
    board: SharedLag,
    interval: Duration,
    timeout: Duration,
    token: CancellationToken,
) {
    let mut probes: HashMap<&'static str, LagProbe> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let k = kafka.clone();
        let taken = tokio::task::spawn_blocking(move || {
            let round = sample_all(&k, &mut probes, timeout);
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
    use orderflowctl::PartitionLag;

    fn sample(total_per_partition: &[(Option<i64>, i64)]) -> LagSample {
        LagSample::new(
            1,
            total_per_partition
                .iter()
                .enumerate()
                .map(|(i, (c, h))| PartitionLag::new("orders", i as i32, *c, 0, *h))
                .collect(),
        )
    }

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
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
    fn board_is_a_ring_buffer_of_totals() {
        let mut b = LagBoard::new(3, Duration::from_millis(2000));
        for i in 0..5 {
            b.record(
                i,
                &[
                    ("inventory".to_string(), Ok(sample(&[(Some(0), i)]))),
                    ("analytics".to_string(), Err("broker down".to_string())),
                ],
            );
        }
        let v = b.view();
        assert_eq!(v.interval_ms, 2000);
        assert_eq!(
            v.history.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(v.history[2].groups.get("inventory"), Some(&4));
        assert_eq!(v.history[2].groups.get("analytics"), None);
        assert_eq!(
            v.errors.get("analytics").map(String::as_str),
            Some("broker down")
        );
        assert_eq!(v.latest.len(), 1);
        assert_eq!(v.latest[0].lag, 4);
        assert_eq!(v.groups, vec!["inventory", "analytics"]);
        // the group recovers: its error is gone
        b.record(9, &[("analytics".to_string(), Ok(sample(&[(Some(1), 1)])))]);
        assert!(b.view().errors.is_empty());
    }
}
