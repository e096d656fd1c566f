//! Consumer-group operations against the broker, blocking (async callers use
//! `tokio::task::spawn_blocking`). `timeout` bounds each broker request, not the whole call.
//!
//! Every `TopicPartitionList` that librdkafka filled is converted to plain structs and
//! dropped before its consumer: a list still alive when the consumer is destroyed makes
//! the destroy hang.

mod copy;
mod handle;
mod records;
mod reset;
mod watch;

use std::time::Duration;

use chrono::Utc;
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::GroupError;
use crate::model::{CommittedOffset, GroupInfo, GroupMember, LagSample, PartitionLag};
use crate::timelag::next_offset;
use handle::{while_coordinator_loads, GroupHandle, CLIENT_ID};
use records::RecordReader;

pub use copy::{copy_changes, copy_committed};
pub use reset::{plan_reset_now, reset, reset_by, reset_leaving_the_check_to_kafka};
pub use watch::{watch_lag, LagProbe, WatchEnd, WatchOptions};

/// State and members of `group`. A group the broker does not know is `Dead` with 0
/// members (not an error).
pub fn describe_group(
    kafka: &KafkaConfig,
    group: &str,
    timeout: Duration,
) -> Result<GroupInfo, GroupError> {
    let consumer: BaseConsumer = kafka.reader(CLIENT_ID).create()?;
    // Learn the brokers first: the group listing asks every known broker, and on a fresh
    // client it otherwise waits about a second for the broker list.
    consumer.fetch_metadata(None, timeout)?;
    let list =
        while_coordinator_loads(timeout, || consumer.fetch_group_list(Some(group), timeout))?;
    let info = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(|g| GroupInfo {
            group: group.to_string(),
            // A group the broker could not describe has no state string.
            state: match g.state() {
                "" => "Unknown".to_string(),
                s => s.to_string(),
            },
            members: g.members().len(),
            member_list: g
                .members()
                .iter()
                .map(|m| GroupMember {
                    member_id: m.id().to_string(),
                    client_id: m.client_id().to_string(),
                    host: m.client_host().to_string(),
                })
                .collect(),
        })
        .unwrap_or_else(|| GroupInfo {
            group: group.to_string(),
            state: "Dead".to_string(),
            members: 0,
            member_list: Vec::new(),
        });
    drop(list);
    Ok(info)
}

/// Lag of `group` on every partition of `topics` (topics in the order given, partitions
/// ascending), from the offsets only: no record is read, so the lag in seconds is known
/// (0) only where the group is caught up; [`sample_lag`] measures it everywhere.
pub fn lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<PartitionLag>, GroupError> {
    let h = GroupHandle::open(kafka, group, timeout)?;
    let parts = h.partitions(topics)?;
    h.lag(&parts)
}

/// [`lag`] with the lag in seconds (the record at each lagging partition's committed offset
/// read, see [`crate::timelag`]), the time it was taken and the totals.
pub fn sample_lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<LagSample, GroupError> {
    let partitions = lag(kafka, group, topics, timeout)?;
    let reader = RecordReader::open(kafka)?;
    Ok(timed_sample(&reader, partitions, timeout))
}

/// The sample of `partitions` at now, with the lag in seconds of the lagging ones read
/// through `reader` (bounded by `timeout` in all; caught-up partitions are not read).
fn timed_sample(
    reader: &RecordReader,
    partitions: Vec<PartitionLag>,
    timeout: Duration,
) -> LagSample {
    let wanted: Vec<(String, i32, i64)> = partitions
        .iter()
        .filter(|p| p.lag > 0)
        .map(|p| (p.topic.clone(), p.partition, next_offset(p)))
        .collect();
    let found = if wanted.is_empty() {
        Default::default()
    } else {
        reader.next_records(&wanted, timeout)
    };
    // "now" after the reads: the age of each record at the moment the sample is complete
    let now_ms = Utc::now().timestamp_millis();
    let partitions = partitions
        .into_iter()
        .map(|p| {
            let next = found.get(&(p.topic.clone(), p.partition)).copied();
            p.with_time(next, now_ms)
        })
        .collect();
    LagSample::new(now_ms, partitions)
}

/// A partition's `(low, high)` watermarks: its oldest offset held and its log end.
pub type Watermarks = (i64, i64);

/// [`committed_offsets`] and each partition's `(low, high)` watermarks, read with one
/// client (a service's start-up reads both: one client and one coordinator lookup less).
pub fn committed_with_watermarks(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<(CommittedOffset, Watermarks)>, GroupError> {
    let h = GroupHandle::open(kafka, group, timeout)?;
    let parts = h.partitions(topics)?;
    h.committed(&parts)?
        .into_iter()
        .map(|c| {
            let marks = h.watermarks(&c.topic, c.partition)?;
            Ok((c, marks))
        })
        .collect()
}

/// Committed offsets and commit metadata of `group` on every partition of `topics`.
pub fn committed_offsets(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<CommittedOffset>, GroupError> {
    let h = GroupHandle::open(kafka, group, timeout)?;
    let parts = h.partitions(topics)?;
    h.committed(&parts)
}
