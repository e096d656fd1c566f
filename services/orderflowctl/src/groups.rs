//! Consumer-group operations against the broker, blocking (async callers use
//! `tokio::task::spawn_blocking`). `timeout` bounds each broker request, not the whole call.
//!
//! Every `TopicPartitionList` that librdkafka filled is converted to plain structs and
//! dropped before its consumer: a list still alive when the consumer is destroyed makes
//! the destroy hang.

use std::time::{Duration, Instant};

use chrono::Utc;
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::GroupError;
use crate::model::{
    plan_reset, reset_metadata, reset_metadata_by, CommittedOffset, GroupInfo, GroupMember,
    LagSample, OffsetChange, PartitionLag, ResetTo, TimeOffset,
};

const CLIENT_ID: &str = "orderflowctl";

/// A consumer that carries `group.id = group` but never joins the group (no subscribe):
/// it reads and, for a reset, commits the group's offsets.
struct GroupHandle {
    group: String,
    consumer: BaseConsumer,
    timeout: Duration,
}

impl GroupHandle {
    fn open(kafka: &KafkaConfig, group: &str, timeout: Duration) -> Result<Self, GroupError> {
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
    fn partitions(&self, topics: &[&str]) -> Result<Vec<(String, i32)>, GroupError> {
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

    fn committed(&self, parts: &[(String, i32)]) -> Result<Vec<CommittedOffset>, GroupError> {
        // A coordinator that is new or moved answers NotCoordinator / loading for a while.
        let tpl = while_coordinator_loads(self.timeout, || {
            self.consumer.committed_offsets(tpl_of(parts), self.timeout)
        })?;
        let result = read_committed(&tpl);
        drop(tpl);
        result
    }

    fn lag(&self, parts: &[(String, i32)]) -> Result<Vec<PartitionLag>, GroupError> {
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

    fn offsets_for_time(
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

    /// Commit `plan` as absolute offsets with `metadata` on every partition, through an
    /// explicit assignment (never a subscription: this client must not join the group).
    fn commit(
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
    fn verify(
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
fn while_coordinator_loads<T>(
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
/// ascending).
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

/// [`lag`] with the time it was taken and the total.
pub fn sample_lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<LagSample, GroupError> {
    let partitions = lag(kafka, group, topics, timeout)?;
    Ok(LagSample::new(Utc::now().timestamp_millis(), partitions))
}

/// One client kept open to sample a group's lag on the same topics again and again (the lag
/// exporter of analytics-service, [`watch_lag`]). The topics' partitions are looked up once,
/// when it is opened.
pub struct LagProbe {
    handle: GroupHandle,
    parts: Vec<(String, i32)>,
}

impl LagProbe {
    /// Fails when a topic does not exist (yet).
    pub fn open(
        kafka: &KafkaConfig,
        group: &str,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<Self, GroupError> {
        let handle = GroupHandle::open(kafka, group, timeout)?;
        let parts = handle.partitions(topics)?;
        Ok(Self { handle, parts })
    }

    pub fn group(&self) -> &str {
        &self.handle.group
    }

    /// The group's lag on every partition now, with the time it was taken.
    pub fn sample(&self) -> Result<LagSample, GroupError> {
        let partitions = self.handle.lag(&self.parts)?;
        Ok(LagSample::new(Utc::now().timestamp_millis(), partitions))
    }
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

/// The offset changes a reset would make now, without checking the group's members and
/// without committing anything (`--dry-run`).
pub fn plan_reset_now(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    to: ResetTo,
    timeout: Duration,
) -> Result<Vec<OffsetChange>, GroupError> {
    let h = GroupHandle::open(kafka, group, timeout)?;
    plan_with(&h, topics, &to)
}

fn plan_with(
    h: &GroupHandle,
    topics: &[&str],
    to: &ResetTo,
) -> Result<Vec<OffsetChange>, GroupError> {
    let parts = h.partitions(topics)?;
    let current = h.lag(&parts)?;
    let times = match to {
        ResetTo::Timestamp(at) => h.offsets_for_time(&parts, at.timestamp_millis())?,
        ResetTo::Earliest | ResetTo::Latest => Vec::new(),
    };
    plan_reset(to, &current, &times)
}

/// Reset `group`'s committed offsets on every partition of `topics`.
///
/// 1. Refuses with [`GroupError::NotEmpty`] unless the group has no members. Kafka would
///    refuse the commit too ([`GroupError::RefusedByKafka`]), but less plainly.
/// 2. Plans the new offsets ([`plan_reset`]) and commits them synchronously as absolute
///    offsets, each with commit metadata `orderflow.reset=<RFC 3339 now>`
///    ([`crate::reset_metadata`]), from a client that assigns the partitions and never
///    joins the group.
/// 3. Reads the committed offsets back and fails with [`GroupError::VerifyMismatch`]
///    unless they are the plan.
///
/// Returns the changes made.
pub fn reset(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    to: ResetTo,
    timeout: Duration,
) -> Result<Vec<OffsetChange>, GroupError> {
    reset_by(kafka, group, topics, to, timeout, None)
}

/// [`reset`] made on behalf of `by` (e.g. a ReplayRequest's uid): each partition's commit
/// metadata is [`crate::reset_metadata_by`], naming `by` and the offset before the reset, so
/// the reset can be recognised afterwards ([`crate::reset_metadata_by_of`]).
pub fn reset_by(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    to: ResetTo,
    timeout: Duration,
    by: Option<&str>,
) -> Result<Vec<OffsetChange>, GroupError> {
    if topics.is_empty() {
        return Err(GroupError::NoTopics);
    }
    let info = describe_group(kafka, group, timeout)?;
    if !info.is_empty() {
        return Err(GroupError::NotEmpty {
            group: info.group,
            state: info.state,
            members: info.members,
        });
    }
    reset_leaving_the_check_to_kafka(kafka, group, topics, to, timeout, by)
}

/// [`reset_by`] without our own check of the group's members: steps 2 and 3 only. Kafka
/// itself refuses the commit while the group has members, which this reports as
/// [`GroupError::RefusedByKafka`] (a member may also join between our check and the
/// commit). Public so that a test can show Kafka's refusal; tools use [`reset_by`].
pub fn reset_leaving_the_check_to_kafka(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    to: ResetTo,
    timeout: Duration,
    by: Option<&str>,
) -> Result<Vec<OffsetChange>, GroupError> {
    let h = GroupHandle::open(kafka, group, timeout)?;
    let plan = plan_with(&h, topics, &to)?;
    let at = Utc::now();
    let metadata = |c: &OffsetChange| match by {
        Some(by) => reset_metadata_by(at, by, c.from),
        None => reset_metadata(at),
    };
    h.commit(&plan, &metadata)?;
    h.verify(&plan, &metadata)?;
    tracing::info!(group, %to, partitions = plan.len(), "reset consumer group offsets");
    Ok(plan)
}

/// How [`watch_lag`] samples.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Time between the starts of two samples.
    pub interval: Duration,
    /// Stop at the first sample with total lag 0.
    pub until_zero: bool,
    /// Stop after this long (`None`: only `until_zero` or an error stops).
    pub timeout: Option<Duration>,
}

/// Why [`watch_lag`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// A sample had total lag 0 (only with `until_zero`), after this many ms.
    Drained { after_ms: u64, samples: usize },
    /// `timeout` passed first; `last_total` is the last sample's total lag.
    TimedOut { last_total: i64, samples: usize },
}

/// Sample `group`'s lag on `topics` every `opts.interval` with one client, handing each
/// sample to `on_sample`, until the lag is 0 (`until_zero`) or `opts.timeout` passes.
/// `request_timeout` bounds each broker request.
pub fn watch_lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[&str],
    opts: &WatchOptions,
    request_timeout: Duration,
    mut on_sample: impl FnMut(&LagSample),
) -> Result<WatchEnd, GroupError> {
    let start = Instant::now();
    let deadline = opts.timeout.map(|t| start + t);
    let probe = LagProbe::open(kafka, group, topics, request_timeout)?;
    let mut samples = 0usize;
    loop {
        let tick = Instant::now();
        let sample = probe.sample()?;
        samples += 1;
        on_sample(&sample);
        if opts.until_zero && sample.total == 0 {
            return Ok(WatchEnd::Drained {
                after_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                samples,
            });
        }
        let next = tick + opts.interval;
        if deadline.is_some_and(|d| next > d) {
            return Ok(WatchEnd::TimedOut {
                last_total: sample.total,
                samples,
            });
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
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
