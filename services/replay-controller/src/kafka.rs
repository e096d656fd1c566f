//! The controller's view of Kafka: the consumer-group operations of the `orderflowctl`
//! library (the same code `make demo` and the CLI use), behind a trait so the reconciler
//! can be tested without a broker.

use std::time::Duration;

use async_trait::async_trait;
use orderflow_runtime::KafkaConfig;
use orderflowctl::{CommittedOffset, GroupError, GroupInfo, OffsetChange, PartitionLag, ResetTo};
use thiserror::Error;

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
}
