//! Kafka, faked: a scripted [`GroupAdmin`] (the shadow side is [`super::ShadowKafka`]).

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use orderflowctl::{
    CommittedOffset, GroupError, GroupInfo, HistoryTruncated, OffsetChange, PartitionLag, ResetTo,
};

use super::ShadowKafka;
use crate::kafka::{AdminError, GroupAdmin, GroupLag};
use crate::shadow::StateMetrics;

/// Kafka, scripted.
#[derive(Default)]
pub struct FakeKafka {
    pub members: usize,
    pub unreachable: bool,
    pub committed: Vec<CommittedOffset>,
    pub resets: Mutex<Vec<String>>,
    /// orders[0]'s history is truncated: its target lies before this log start offset.
    pub truncated: Option<HistoryTruncated>,
    /// How often the reset was planned without committing.
    pub plans: Mutex<usize>,
    /// The lag samples to answer, in order (then lag 0, caught up).
    pub lags: Mutex<VecDeque<GroupLag>>,
    /// The targets of the resets made, in order.
    pub targets: Mutex<Vec<ResetTo>>,
    /// What `positions` answers (committed offsets and watermarks); `None`: orders[0] with
    /// its committed offset at its high watermark, 40 (a group that has caught up).
    pub positions: Mutex<Option<Vec<PartitionLag>>>,
    /// How often `positions` was read.
    pub position_reads: Mutex<usize>,
    /// Shadow replays: groups, state topics and what was done to them.
    pub shadow: ShadowKafka,
}

impl FakeKafka {
    /// From now on `positions` answers orders[0] committed at `committed`, high watermark
    /// `high`.
    pub fn set_position(&self, committed: i64, high: i64) {
        *self.positions.lock().unwrap() = Some(vec![PartitionLag::new(
            "orders",
            0,
            Some(committed),
            0,
            high,
        )]);
    }
}

impl FakeKafka {
    /// The one change a reset makes: orders[0] from 40 to 0, or to the log start offset
    /// when its history is truncated.
    fn change(&self) -> OffsetChange {
        OffsetChange {
            topic: "orders".to_string(),
            partition: 0,
            from: Some(40),
            to: self.truncated.as_ref().map_or(0, |h| h.log_start_offset),
            history_truncated: self.truncated.clone(),
        }
    }
}

/// What the admin client returns when no broker answers.
fn down() -> AdminError {
    AdminError::Group(GroupError::Kafka(
        rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
        ),
    ))
}

#[async_trait]
impl GroupAdmin for FakeKafka {
    async fn describe(&self, group: &str) -> Result<GroupInfo, AdminError> {
        if self.unreachable {
            return Err(down());
        }
        let members = if group.contains("-shadow-") {
            self.shadow.members(group)
        } else {
            self.members
        };
        Ok(GroupInfo {
            group: group.to_string(),
            state: if members > 0 { "Stable" } else { "Empty" }.to_string(),
            members,
            member_list: Vec::new(),
        })
    }

    async fn committed(
        &self,
        group: &str,
        _topics: &[String],
    ) -> Result<Vec<CommittedOffset>, AdminError> {
        if group.contains("-shadow-") {
            return Ok(self.shadow.committed(group));
        }
        Ok(self.committed.clone())
    }

    async fn reset(
        &self,
        group: &str,
        _topics: &[String],
        to: ResetTo,
        by: &str,
    ) -> Result<Vec<OffsetChange>, AdminError> {
        if group.contains("-shadow-") {
            return Ok(self.shadow.reset(group, &to, by));
        }
        self.resets.lock().unwrap().push(format!("{to} by {by}"));
        self.targets.lock().unwrap().push(to);
        Ok(vec![self.change()])
    }

    async fn plan(
        &self,
        _group: &str,
        _topics: &[String],
        _to: ResetTo,
    ) -> Result<Vec<OffsetChange>, AdminError> {
        *self.plans.lock().unwrap() += 1;
        Ok(vec![self.change()])
    }

    async fn lag(&self, _group: &str, _topics: &[String]) -> Result<GroupLag, AdminError> {
        Ok(self.lags.lock().unwrap().pop_front().unwrap_or(GroupLag {
            records: 0,
            seconds: Some(0.0),
        }))
    }

    async fn positions(
        &self,
        _group: &str,
        _topics: &[String],
    ) -> Result<Vec<PartitionLag>, AdminError> {
        if self.unreachable {
            return Err(down());
        }
        *self.position_reads.lock().unwrap() += 1;
        Ok(self
            .positions
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| vec![PartitionLag::new("orders", 0, Some(40), 0, 40)]))
    }

    async fn copy_committed(
        &self,
        from: &str,
        to: &str,
        _topics: &[String],
    ) -> Result<Vec<OffsetChange>, AdminError> {
        self.shadow.done(format!("copy commits {from} -> {to}"));
        Ok(Vec::new())
    }

    async fn state_topics(&self, group: &str) -> Result<Vec<String>, AdminError> {
        Ok(self.shadow.topics(group))
    }

    async fn copy_state(&self, from: &str, to: &str) -> Result<u64, AdminError> {
        self.shadow.done(format!("copy state {from} -> {to}"));
        Ok(3)
    }

    async fn delete_group(&self, group: &str) -> Result<bool, AdminError> {
        self.shadow.delete_group(group)
    }

    async fn delete_topics(&self, topics: &[String]) -> Result<(), AdminError> {
        self.shadow.delete_topics(topics);
        Ok(())
    }

    async fn checkpoint(&self, group: &str) -> Result<Option<StateMetrics>, AdminError> {
        Ok(self.shadow.checkpoint(group))
    }
}
