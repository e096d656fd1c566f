//! The results of consumer-group work (all serializable to JSON) and the lag arithmetic on
//! them. Nothing here talks to Kafka. Where a reset moves offsets is in [`crate::plan`].

use orderflow_events::CommitMark;
use serde::Serialize;

/// Group states in which nobody consumes, so offsets may be reset (Kafka's rule).
pub const INACTIVE_STATES: [&str; 2] = ["Empty", "Dead"];

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
}

/// State of a consumer group. A group the broker does not know is reported as state
/// `Dead` with no members (like Kafka's DescribeGroups), not as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    pub group: String,
    /// `Stable`, `Empty`, `Dead`, `PreparingRebalance`, `CompletingRebalance`, ...
    pub state: String,
    /// Number of live members.
    pub members: usize,
    pub member_list: Vec<GroupMember>,
}

impl GroupInfo {
    /// No member and an inactive state: offsets may be reset.
    pub fn is_empty(&self) -> bool {
        self.members == 0 && INACTIVE_STATES.contains(&self.state.as_str())
    }
}

/// Lag of a group on one partition, in records and in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (next record to read), `None` when it never committed.
    pub committed: Option<i64>,
    pub low_watermark: i64,
    /// Log-end offset.
    pub high_watermark: i64,
    /// See [`partition_lag`].
    pub lag: i64,
    /// Lag in seconds: now minus the timestamp of the record at the committed offset (the
    /// next one the group reads), 0 when caught up; see [`crate::timelag`]. `None` when it is
    /// not known: [`crate::lag`] reads no record, or the record did not arrive in time.
    pub lag_seconds: Option<f64>,
    /// The timestamp (Unix ms) of that record, when it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_record_ms: Option<i64>,
}

impl PartitionLag {
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        committed: Option<i64>,
        low_watermark: i64,
        high_watermark: i64,
    ) -> Self {
        let lag = partition_lag(committed, low_watermark, high_watermark);
        Self {
            topic: topic.into(),
            partition,
            committed,
            low_watermark,
            high_watermark,
            lag,
            // caught up is 0 s without reading a record
            lag_seconds: crate::timelag::lag_seconds(lag, None, 0),
            next_record_ms: None,
        }
    }
}

/// Records the group still has to read on a partition: `high - committed`, or `high - low`
/// when the group has no committed offset there (it would start at the earliest record).
/// Never negative (a committed offset past the end, e.g. after the topic was recreated,
/// counts as 0).
pub fn partition_lag(committed: Option<i64>, low_watermark: i64, high_watermark: i64) -> i64 {
    let from = committed.unwrap_or(low_watermark);
    (high_watermark - from).max(0)
}

/// Sum of the lag over partitions.
pub fn total_lag(partitions: &[PartitionLag]) -> i64 {
    partitions.iter().map(|p| p.lag).sum()
}

/// The group's lag at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagSample {
    /// When it was taken, Unix milliseconds (the "now" of the lag in seconds).
    pub at_ms: i64,
    pub total: i64,
    /// The largest lag in seconds over the partitions where it is known.
    pub max_lag_seconds: Option<f64>,
    pub partitions: Vec<PartitionLag>,
}

impl LagSample {
    pub fn new(at_ms: i64, partitions: Vec<PartitionLag>) -> Self {
        Self {
            at_ms,
            total: total_lag(&partitions),
            max_lag_seconds: crate::timelag::max_lag_seconds(&partitions),
            partitions,
        }
    }
}

/// A group's committed offset on one partition, with the commit metadata string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// `None` when the group never committed on this partition.
    pub offset: Option<i64>,
    /// Commit metadata (empty when none).
    pub metadata: String,
}

impl CommittedOffset {
    /// What the commit metadata says, if it is one of orderflow's marks.
    pub fn mark(&self) -> Option<CommitMark> {
        CommitMark::of(&self.metadata)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::GroupError;

    pub(crate) fn p(
        topic: &str,
        partition: i32,
        committed: Option<i64>,
        low: i64,
        high: i64,
    ) -> PartitionLag {
        PartitionLag::new(topic, partition, committed, low, high)
    }

    pub(crate) fn current() -> Vec<PartitionLag> {
        vec![
            p("orders", 0, Some(40), 10, 100),
            p("orders", 1, None, 0, 50),
            p("orders", 2, Some(7), 0, 7),
        ]
    }

    #[test]
    fn lag_is_high_minus_committed_or_high_minus_low() {
        assert_eq!(partition_lag(Some(40), 10, 100), 60);
        assert_eq!(partition_lag(None, 10, 100), 90);
        assert_eq!(partition_lag(Some(100), 10, 100), 0);
        assert_eq!(partition_lag(None, 5, 5), 0);
        // committed past the end (topic recreated): no negative lag
        assert_eq!(partition_lag(Some(120), 0, 100), 0);
        // committed before the low watermark (retention deleted records): what is left to read
        // counted from the committed offset, like kafka-consumer-groups
        assert_eq!(partition_lag(Some(2), 10, 100), 98);
    }

    #[test]
    fn total_and_sample_sum_partitions() {
        let c = current();
        assert_eq!(c.iter().map(|x| x.lag).collect::<Vec<_>>(), vec![60, 50, 0]);
        assert_eq!(total_lag(&c), 110);
        assert_eq!(total_lag(&[]), 0);
        let s = LagSample::new(1_700_000_000_000, c);
        assert_eq!(s.total, 110);
        assert_eq!(s.at_ms, 1_700_000_000_000);
    }

    #[test]
    fn group_is_empty_only_without_members_in_an_inactive_state() {
        let g = |state: &str, members: usize| GroupInfo {
            group: "g".into(),
            state: state.into(),
            members,
            member_list: vec![],
        };
        assert!(g("Empty", 0).is_empty());
        assert!(g("Dead", 0).is_empty());
        assert!(!g("Stable", 1).is_empty());
        assert!(!g("PreparingRebalance", 0).is_empty());
        assert!(!g("Empty", 1).is_empty());
    }

    #[test]
    fn not_empty_error_message_is_actionable() {
        let e = GroupError::NotEmpty {
            group: "analytics".into(),
            state: "Stable".into(),
            members: 1,
        };
        assert_eq!(
            e.to_string(),
            "consumer group analytics has 1 active member(s) (state Stable): \
             stop its consumers before resetting offsets"
        );
        let e = GroupError::UnknownTopic(vec!["nope".into(), "nada".into()]);
        assert_eq!(
            e.to_string(),
            "topic(s) not found on the broker: nope, nada"
        );
    }
}
