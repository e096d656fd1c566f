//! The controller's view of Kafka: the consumer-group operations of the `orderflowctl`
//! library (the same code `make demo` and the CLI use), behind a trait so the reconciler
//! can be tested without a broker.

use std::time::Duration;

use async_trait::async_trait;
use orderflow_runtime::KafkaConfig;
use orderflowctl::state;
use orderflowctl::{CommittedOffset, GroupError, GroupInfo, OffsetChange, PartitionLag, ResetTo};
use thiserror::Error;

use crate::shadow::StateMetrics;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error("Kafka client task failed: {0}")]
    Task(String),
}

impl AdminError {
    /// Errors that retrying cannot fix: the request fails with the reason.
    pub fn permanent_reason(&self) -> Option<&'static str> {
        match self {
            Self::Group(GroupError::UnknownTopic(_)) => Some("TopicNotFound"),
            Self::Group(GroupError::NoTopics) => Some("InvalidSpec"),
            Self::Group(GroupError::NoCommittedOffset { .. }) => Some("NoCommittedOffset"),
            Self::Group(GroupError::UnknownPartition { .. }) => Some("PartitionNotFound"),
            _ => None,
        }
    }

    /// The group still has members (someone started a consumer again).
    pub fn is_not_empty(&self) -> bool {
        matches!(self, Self::Group(GroupError::NotEmpty { .. }))
    }
}

/// Consumer-group operations the reconciler needs.
#[async_trait]
pub trait GroupAdmin: Send + Sync + 'static {
    /// State and members of `group`.
    async fn describe(&self, group: &str) -> Result<GroupInfo, AdminError>;
    /// Committed offsets (and commit metadata) of `group` on every partition of `topics`.
    async fn committed(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<CommittedOffset>, AdminError>;
    /// Reset `group` on `topics` (refused while it has members), tagging the commit metadata
    /// with `by` so the reset can be recognised later.
    async fn reset(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
        by: &str,
    ) -> Result<Vec<OffsetChange>, AdminError>;
    /// The changes a reset of `group` on `topics` to `to` would make now (nothing is
    /// committed), with where its target lies before the oldest record Kafka still holds.
    async fn plan(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<OffsetChange>, AdminError>;
    /// Lag of `group` over every partition of `topics`: total records, and the largest lag
    /// in seconds (the records at the committed offsets read).
    async fn lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, AdminError>;
    /// Every partition of `topics`: `group`'s committed offset and the watermarks, read now
    /// (the plan's high watermarks and consume rate, and the catch-up progress).
    async fn positions(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<PartitionLag>, AdminError>;

    // Shadow replays (crate::shadow): a group's state topics are named `<group>-<suffix>`.

    /// Commit `to`'s offsets on `topics` at `from`'s committed offsets, commit metadata
    /// included (refused while `to` has members); the changes made, none if already there.
    async fn copy_committed(
        &self,
        from: &str,
        to: &str,
        topics: &[String],
    ) -> Result<Vec<OffsetChange>, AdminError>;
    /// The state topics of `group` (`<group>-*`) on the broker.
    async fn state_topics(&self, group: &str) -> Result<Vec<String>, AdminError>;
    /// Make state topic `to` hold what `from` holds (by key); the records written.
    async fn copy_state(&self, from: &str, to: &str) -> Result<u64, AdminError>;
    /// Delete group `group` (false: there was none); refused while it has members.
    async fn delete_group(&self, group: &str) -> Result<bool, AdminError>;
    /// Delete `topics` (those already gone are not an error).
    async fn delete_topics(&self, topics: &[String]) -> Result<(), AdminError>;
    /// The numbers in `group`'s latest analytics checkpoint (`<group>-snapshots`), if any.
    async fn checkpoint(&self, group: &str) -> Result<Option<StateMetrics>, AdminError>;
}

/// A group's lag at one moment, as the reconciler records it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GroupLag {
    /// Total records not committed yet.
    pub records: i64,
    /// The largest lag in seconds over the partitions, when known.
    pub seconds: Option<f64>,
}

/// [`GroupAdmin`] on a real broker through `orderflowctl` (blocking calls on tokio's
/// blocking pool; `timeout` bounds each broker request).
#[derive(Clone)]
pub struct KafkaAdmin {
    pub kafka: KafkaConfig,
    pub timeout: Duration,
}

impl KafkaAdmin {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&KafkaConfig, Duration) -> Result<T, GroupError> + Send + 'static,
    ) -> Result<T, AdminError> {
        let (kafka, timeout) = (self.kafka.clone(), self.timeout);
        tokio::task::spawn_blocking(move || f(&kafka, timeout))
            .await
            .map_err(|e| AdminError::Task(e.to_string()))?
            .map_err(AdminError::from)
    }
}

fn strs(topics: &[String]) -> Vec<&str> {
    topics.iter().map(String::as_str).collect()
}

#[async_trait]
impl GroupAdmin for KafkaAdmin {
    async fn describe(&self, group: &str) -> Result<GroupInfo, AdminError> {
        let group = group.to_string();
        self.blocking(move |k, t| orderflowctl::describe_group(k, &group, t))
            .await
    }

    async fn committed(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<CommittedOffset>, AdminError> {
        let (group, topics) = (group.to_string(), topics.to_vec());
        self.blocking(move |k, t| orderflowctl::committed_offsets(k, &group, &strs(&topics), t))
            .await
    }

    async fn reset(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
        by: &str,
    ) -> Result<Vec<OffsetChange>, AdminError> {
        let (group, topics, by) = (group.to_string(), topics.to_vec(), by.to_string());
        self.blocking(move |k, t| {
            orderflowctl::reset_by(k, &group, &strs(&topics), to, t, Some(&by))
        })
        .await
    }

    async fn plan(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<OffsetChange>, AdminError> {
        let (group, topics) = (group.to_string(), topics.to_vec());
        self.blocking(move |k, t| orderflowctl::plan_reset_now(k, &group, &strs(&topics), to, t))
            .await
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<GroupLag, AdminError> {
        let (group, topics) = (group.to_string(), topics.to_vec());
        self.blocking(move |k, t| {
            orderflowctl::sample_lag(k, &group, &strs(&topics), t).map(|s| GroupLag {
                records: s.total,
                seconds: s.max_lag_seconds,
            })
        })
        .await
    }

    async fn positions(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<PartitionLag>, AdminError> {
        let (group, topics) = (group.to_string(), topics.to_vec());
        self.blocking(move |k, t| orderflowctl::lag(k, &group, &strs(&topics), t))
            .await
    }

    async fn copy_committed(
        &self,
        from: &str,
        to: &str,
        topics: &[String],
    ) -> Result<Vec<OffsetChange>, AdminError> {
        let (from, to, topics) = (from.to_string(), to.to_string(), topics.to_vec());
        self.blocking(move |k, t| orderflowctl::copy_committed(k, &from, &to, &strs(&topics), t))
            .await
    }

    async fn state_topics(&self, group: &str) -> Result<Vec<String>, AdminError> {
        let group = group.to_string();
        self.blocking(move |k, t| state::state_topics(k, &group, t))
            .await
    }

    async fn copy_state(&self, from: &str, to: &str) -> Result<u64, AdminError> {
        let (from, to) = (from.to_string(), to.to_string());
        self.blocking(move |k, t| state::copy_state(k, &from, &to, t))
            .await
    }

    async fn delete_group(&self, group: &str) -> Result<bool, AdminError> {
        let group = group.to_string();
        self.blocking(move |k, t| state::delete_group(k, &group, t))
            .await
    }

    async fn delete_topics(&self, topics: &[String]) -> Result<(), AdminError> {
        let topics = topics.to_vec();
        self.blocking(move |k, t| state::delete_topics(k, &topics, t))
            .await
    }

    async fn checkpoint(&self, group: &str) -> Result<Option<StateMetrics>, AdminError> {
        let group = group.to_string();
        self.blocking(move |k, t| {
            let topic = crate::shadow::snapshot_topic(&group);
            if !state::state_topics(k, &group, t)?.contains(&topic) {
                return Ok(None);
            }
            let key = orderflow_events::SNAPSHOT_CHECKPOINT_KEY.as_bytes();
            let value =
                state::latest_value(k, &topic, orderflow_events::SNAPSHOT_PARTITION, key, 64, t)?;
            Ok(value.and_then(|v| crate::shadow::metrics_of(&v)))
        })
        .await
    }
}
