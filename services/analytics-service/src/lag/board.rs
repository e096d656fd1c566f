//! What the dashboard shows of the lag (`GET /api/dashboard`, `lag`): a ring buffer of the
//! last samples (per group: total lag in records, and the largest lag in seconds) and each
//! partition's latest figures.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use orderflowctl::LagSample;
use serde::Serialize;

/// One point of the lag history at `at_ms` (Unix ms): per group, the total lag in records
/// (`groups`) and the largest lag in seconds over its partitions (`seconds`). A group whose
/// sample failed is missing from both; one whose lag in seconds is not known, from `seconds`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LagPoint {
    pub at_ms: i64,
    pub groups: BTreeMap<String, i64>,
    pub seconds: BTreeMap<String, f64>,
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
    /// Now minus the timestamp of the record at the committed offset; 0 when caught up.
    pub lag_seconds: Option<f64>,
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
    groups: Vec<String>,
    interval_ms: u64,
    history: VecDeque<LagPoint>,
    latest: BTreeMap<String, Vec<PartitionRow>>,
    errors: BTreeMap<String, String>,
}

impl LagBoard {
    /// The board of `groups` (in the order the dashboard shows them), keeping `capacity`
    /// samples taken every `interval`.
    pub fn new(capacity: usize, interval: Duration, groups: Vec<String>) -> Self {
        Self {
            capacity: capacity.max(1),
            groups,
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
            seconds: BTreeMap::new(),
        };
        for (group, result) in round {
            match result {
                Ok(s) => {
                    point.groups.insert(group.clone(), s.total);
                    if let Some(secs) = s.max_lag_seconds {
                        point.seconds.insert(group.clone(), secs);
                    }
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
                            lag_seconds: p.lag_seconds,
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
            groups: self.groups.clone(),
            history: self.history.iter().cloned().collect(),
            latest: self.latest.values().flatten().cloned().collect(),
            errors: self.errors.clone(),
        }
    }
}

pub type SharedLag = Arc<RwLock<LagBoard>>;

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use orderflowctl::timelag::NextRecord;
    use orderflowctl::PartitionLag;

    fn two() -> Vec<String> {
        vec!["inventory".into(), "analytics".into()]
    }

    /// A sample of `orders` partitions 0, 1, ... with these (committed, high watermark).
    pub(in crate::lag) fn sample(total_per_partition: &[(Option<i64>, i64)]) -> LagSample {
        LagSample::new(
            1,
            total_per_partition
                .iter()
                .enumerate()
                .map(|(i, (c, h))| PartitionLag::new("orders", i as i32, *c, 0, *h))
                .collect(),
        )
    }

    #[test]
    fn board_is_a_ring_buffer_of_totals() {
        let mut b = LagBoard::new(3, Duration::from_millis(2000), two());
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

    #[test]
    fn the_history_has_the_largest_lag_in_seconds_per_group() {
        let mut b = LagBoard::new(3, Duration::from_millis(2000), two());
        let now = 1_795_000_000_000;
        let parts = vec![
            PartitionLag::new("orders", 0, Some(3), 0, 10)
                .with_time(Some(NextRecord::At(now - 7_250)), now),
            PartitionLag::new("orders", 1, Some(4), 0, 9)
                .with_time(Some(NextRecord::At(now - 1_000)), now),
            PartitionLag::new("orders", 2, Some(5), 0, 5).with_time(None, now),
        ];
        let unknown = vec![PartitionLag::new("orders", 0, Some(3), 0, 10).with_time(None, now)];
        b.record(
            now,
            &[
                ("inventory".to_string(), Ok(LagSample::new(now, parts))),
                ("analytics".to_string(), Ok(LagSample::new(now, unknown))),
            ],
        );
        let v = b.view();
        assert_eq!(v.history[0].seconds.get("inventory"), Some(&7.25));
        // not known: missing, not 0
        assert_eq!(v.history[0].seconds.get("analytics"), None);
        assert_eq!(v.history[0].groups.get("analytics"), Some(&7));
        let secs: Vec<Option<f64>> = v.latest.iter().map(|r| r.lag_seconds).collect();
        // latest is ordered by group: analytics first
        assert_eq!(secs, vec![None, Some(7.25), Some(1.0), Some(0.0)]);
    }
}
