//! Reading the record at each lagging partition's committed offset, for the lag in seconds
//! ([`crate::timelag`]).
//!
//! One reader (a consumer outside any group, explicit assignment) is kept and reused: the lag
//! exporter samples every few seconds with the same one. Per sample it is assigned, topic by
//! topic, at the next offset of every partition that lags (caught-up partitions are 0 s and
//! not read), takes the first record each partition returns, and is unassigned. Fetches are
//! kept small (one record is wanted; Kafka still returns at least one batch).
//!
//! Isolation: `read_committed`, as orderflow's consumers read. A transaction marker or an
//! aborted record at the committed offset is never returned, so the record read is the next
//! one the group will really process. When nothing follows but markers or aborted records
//! (or an open transaction: the group cannot read past it either), the reader reaches the
//! partition's end (`enable.partition.eof`) and the partition counts as caught up in time.
//!
//! The end-of-partition event names the partition but not its topic, hence one assignment
//! per topic. The whole read is bounded by the request timeout; a partition whose record
//! has not arrived by then is left unknown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::handle::CLIENT_ID;
use crate::error::GroupError;
use crate::timelag::NextRecord;

/// What a read of `(topic, partition)` found; missing: not in time.
pub(crate) type Found = HashMap<(String, i32), NextRecord>;

/// The reused reader.
pub(crate) struct RecordReader {
    consumer: BaseConsumer,
}

impl RecordReader {
    pub(crate) fn open(kafka: &KafkaConfig) -> Result<Self, GroupError> {
        let mut cfg = kafka.reader(CLIENT_ID);
        cfg.set("enable.partition.eof", "true")
            // one record per partition is wanted: small fetches, no prefetching ahead
            .set("fetch.message.max.bytes", "65536")
            .set("queued.min.messages", "1")
            .set("fetch.wait.max.ms", "50");
        Ok(Self {
            consumer: cfg.create()?,
        })
    }

    /// The next record at each `(topic, partition, offset)`, all of it within `timeout`.
    pub(crate) fn next_records(&self, wanted: &[(String, i32, i64)], timeout: Duration) -> Found {
        let deadline = Instant::now() + timeout;
        let mut found = Found::new();
        let mut topics: Vec<&str> = Vec::new();
        for (t, _, _) in wanted {
            if !topics.contains(&t.as_str()) {
                topics.push(t);
            }
        }
        for topic in topics {
            let parts: Vec<(i32, i64)> = wanted
                .iter()
                .filter(|(t, _, _)| t == topic)
                .map(|(_, p, o)| (*p, *o))
                .collect();
            if let Err(e) = self.read_topic(topic, &parts, deadline, &mut found) {
                tracing::warn!(topic, error = %e, "cannot read the records at the committed offsets");
            }
            if let Err(e) = self.consumer.unassign() {
                tracing::warn!(error = %e, "unassigning after reading the next records");
            }
        }
        found
    }

    fn read_topic(
        &self,
        topic: &str,
        parts: &[(i32, i64)],
        deadline: Instant,
        found: &mut Found,
    ) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(parts.len());
        for (partition, offset) in parts {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let assigned = self.consumer.assign(&tpl);
        drop(tpl);
        assigned?;
        let mut left: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
        while !left.is_empty() && Instant::now() < deadline {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            let (partition, next) = match self.consumer.poll(wait) {
                Some(Ok(m)) => match m.timestamp().to_millis() {
                    Some(ts) => (m.partition(), NextRecord::At(ts)),
                    // a record without a timestamp (old message format): unknown
                    None => {
                        left.retain(|p| *p != m.partition());
                        continue;
                    }
                },
                Some(Err(KafkaError::PartitionEOF(p))) => (p, NextRecord::Nothing),
                Some(Err(e)) => {
                    tracing::debug!(topic, error = %e, "reading the next records");
                    continue;
                }
                None => continue,
            };
            if left.contains(&partition) {
                left.retain(|p| *p != partition);
                found.insert((topic.to_string(), partition), next);
            }
        }
        if !left.is_empty() {
            tracing::debug!(topic, partitions = ?left, "next records not read in time");
        }
        Ok(())
    }
}
