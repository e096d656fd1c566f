//! The client every group operation goes through: a consumer that carries the group's id
//! but never joins the group, and the conversions of what librdkafka answers.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::GroupError;
use crate::history::OldestRecord;
use crate::model::{CommittedOffset, PartitionLag};
use crate::plan::{OffsetChange, TimeOffset};

pub(super) const CLIENT_ID: &str = "orderflowctl";

/// A consumer that carries `group.id = group` but never joins the group (no subscribe):
/// it reads and, for a reset, commits the group's offsets.
pub(super) struct GroupHandle {
    pub(super) group: String,
    consumer: BaseConsumer,
    timeout: Duration,
}

impl GroupHandle {
    pub(super) fn open(
        kafka: &KafkaConfig,
        group: &str,
        timeout: Duration,
    ) -> Result<Self, GroupError> {
        let mut cfg = kafka.reader(CLIENT_ID);
        cfg.set("group.id", group);
        Ok(Self {
            group: group.to_string(),
            consumer: cfg.create()?,
            timeout,
        })
    }

    /// `(topic, partition)` of every partition of `topics`, in the order given, partitions
    /// ascending; topics missing on the broker are one error naming all of them.
    pub(super) fn partitions(&self, topics: &[&str]) -> Result<Vec<(String, i32)>, GroupError> {
        if topics.is_empty() {
            return Err(GroupError::NoTopics);
        }
        // All topics in one request (asking for one topic by name could auto-create it).
        let md = self.consumer.fetch_metadata(None, self.timeout)?;
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        for topic in dedup(topics) {
            match md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            {
                Some(t) => {
                    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    ids.sort_unstable();
                    out.extend(ids.into_iter().map(|id| (topic.to_string(), id)));
                }
                None => unknown.push(topic.to_string()),
            }
        }
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(GroupError::UnknownTopic(unknown))
        }
    }

    pub(super) fn committed(
        &self,
        parts: &[(String, i32)],
    ) -> Result<Vec<CommittedOffset>, GroupError> {
        // A coordinator that is new or moved answers NotCoordinator / loading for a while.
        let tpl = while_coordinator_loads(self.timeout, || {
            self.consumer.committed_offsets(tpl_of(parts), self.timeout)
        })?;
        let result = read_committed(&tpl);
        drop(tpl);
        result
    }

    /// `(low, high)` watermarks of `topic`/`partition`.
    pub(super) fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), GroupError> {
        Ok(self
            .consumer
            .fetch_watermarks(topic, partition, self.timeout)?)
    }

    pub(super) fn lag(&self, parts: &[(String, i32)]) -> Result<Vec<PartitionLag>, GroupError> {
        let committed = self.committed(parts)?;
        committed
            .into_iter()
            .map(|c| {
                let (low, high) =
                    self.consumer
                        .fetch_watermarks(&c.topic, c.partition, self.timeout)?;
                Ok(PartitionLag::new(c.topic, c.partition, c.offset, low, high))
            })
            .collect()
    }

    pub(super) fn offsets_for_time(
        &self,
        parts: &[(String, i32)],
        at_ms: i64,
    ) -> Result<Vec<TimeOffset>, GroupError> {
        let mut tpl = TopicPartitionList::with_capacity(parts.len());
        for (topic, partition) in parts {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(at_ms))?;
        }
        let answer = self.consumer.offsets_for_times(tpl, self.timeout)?;
        let result = answer
            .elements()
            .iter()
            .map(|e| {
                // -1 (End): no record at or after the timestamp.
                let offset = element_offset(e, "offset for timestamp")?;
                Ok(TimeOffset {
                    topic: e.topic().to_string(),
                    partition: e.partition(),
                    offset,
                })
            })
            .collect();
        drop(answer);
        result
    }

    /// The timestamp of the record at each `(topic, partition, log start offset)`: the oldest
    /// record Kafka still holds there. Read through an explicit assignment (the group is not
    /// joined), for at most the request timeout in all. Best effort: a partition whose record
    /// does not arrive in time, or has no timestamp, is left out (its time stays unknown).
    pub(super) fn oldest_records(&self, parts: &[(String, i32, i64)]) -> Vec<OldestRecord> {
        if parts.is_empty() {
            return Vec::new();
        }
        let mut tpl = TopicPartitionList::with_capacity(parts.len());
        for (topic, partition, offset) in parts {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(error = %e, "cannot read the oldest records held");
                return Vec::new();
            }
        }
        let assigned = self.consumer.assign(&tpl);
        drop(tpl);
        if let Err(e) = assigned {
            tracing::warn!(error = %e, "cannot read the oldest records held");
            return Vec::new();
        }
        let deadline = Instant::now() + self.timeout;
        let mut seen: Vec<(String, i32)> = Vec::new();
        let mut found = Vec::new();
        while seen.len() < parts.len() && Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    if seen.contains(&key) {
                        continue;
                    }
                    if let Some(at) = m
                        .timestamp()
                        .to_millis()
                        .and_then(DateTime::<Utc>::from_timestamp_millis)
                    {
                        found.push(OldestRecord {
                            topic: key.0.clone(),
                            partition: key.1,
                            at,
                        });
                    }
                    seen.push(key);
                }
                Some(Err(e)) => tracing::debug!(error = %e, "reading the oldest records held"),
                None => {}
            }
        }
        if let Err(e) = self.consumer.unassign() {
            tracing::warn!(error = %e, "unassigning after reading the oldest records held");
        }
        found
    }

    /// Commit `plan` as absolute offsets with `metadata` on every partition, through an
    /// explicit assignment (never a subscription: this client must not join the group).
    pub(super) fn commit(
        &self,
        plan: &[OffsetChange],
        metadata: &dyn Fn(&OffsetChange) -> String,
    ) -> Result<(), GroupError> {
        let mut tpl = TopicPartitionList::with_capacity(plan.len());
        for c in plan {
            tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.to))?;
        }
        for (mut e, c) in tpl.elements().into_iter().zip(plan) {
            e.set_metadata(metadata(c));
        }
        self.consumer.assign(&tpl)?;
        let committed = self.consumer.commit(&tpl, CommitMode::Sync);
        let unassigned = self.consumer.unassign();
        drop(tpl);
        committed.map_err(|e| refused_by_kafka(&self.group, e))?;
        unassigned?;
        Ok(())
    }

    /// Read the committed offsets back and check they are `plan` with `metadata`.
    pub(super) fn verify(
        &self,
        plan: &[OffsetChange],
        metadata: &dyn Fn(&OffsetChange) -> String,
    ) -> Result<(), GroupError> {
        let parts: Vec<(String, i32)> = plan
            .iter()
            .map(|c| (c.topic.clone(), c.partition))
            .collect();
        let back = self.committed(&parts)?;
        for c in plan {
            let got = back
                .iter()
                .find(|b| b.topic == c.topic && b.partition == c.partition);
            let ok = got.is_some_and(|b| b.offset == Some(c.to) && b.metadata == metadata(c));
            if !ok {
                return Err(GroupError::VerifyMismatch {
                    group: self.group.clone(),
                    topic: c.topic.clone(),
                    partition: c.partition,
                    expected: c.to,
                    actual: got
                        .and_then(|b| b.offset)
                        .map_or_else(|| "none".to_string(), |o| o.to_string()),
                    metadata: got.map(|b| b.metadata.clone()).unwrap_or_default(),
                });
            }
        }
        Ok(())
    }
}

/// Run `f` again while Kafka answers that the group coordinator is not ready yet (a fresh
/// cluster creates `__consumer_offsets` on the first group request, and a coordinator
/// that moved loads its groups first), for up to `timeout` in all.
pub(super) fn while_coordinator_loads<T>(
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::CoordinatorLoadInProgress
                                | RDKafkaErrorCode::CoordinatorNotAvailable
                                | RDKafkaErrorCode::NotCoordinator
                        )
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// A commit error that is Kafka's refusal to change the offsets of a group with members
/// becomes [`GroupError::RefusedByKafka`]; any other stays a Kafka error.
fn refused_by_kafka(group: &str, e: KafkaError) -> GroupError {
    match e.rdkafka_error_code() {
        Some(
            code @ (RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::IllegalGeneration),
        ) => GroupError::RefusedByKafka {
            group: group.to_string(),
            code: format!("{code:?}"),
        },
        _ => GroupError::Kafka(e),
    }
}

fn dedup<'a>(topics: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::with_capacity(topics.len());
    for t in topics {
        if !out.contains(t) {
            out.push(t);
        }
    }
    out
}

fn tpl_of(parts: &[(String, i32)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(parts.len());
    for (topic, partition) in parts {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

/// The element's offset (`None` for a logical one: no commit, or no such record), or its
/// per-partition error.
fn element_offset(
    e: &TopicPartitionListElem<'_>,
    what: &'static str,
) -> Result<Option<i64>, GroupError> {
    e.error().map_err(|err| GroupError::Partition {
        what,
        topic: e.topic().to_string(),
        partition: e.partition(),
        reason: err.to_string(),
    })?;
    Ok(match e.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    })
}

fn read_committed(tpl: &TopicPartitionList) -> Result<Vec<CommittedOffset>, GroupError> {
    tpl.elements()
        .iter()
        .map(|e| {
            let offset = element_offset(e, "committed offset")?;
            Ok(CommittedOffset {
                topic: e.topic().to_string(),
                partition: e.partition(),
                offset,
                metadata: e.metadata().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_first_order() {
        assert_eq!(
            dedup(&["orders", "inventory-events", "orders"]),
            vec!["orders", "inventory-events"]
        );
    }

    #[test]
    fn tpl_of_lists_partitions_in_order() {
        let tpl = tpl_of(&[("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]);
        let got: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        assert_eq!(got, vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]);
    }
}
