//! Offset resets: plan, commit with the reset's [`CommitMark`], read back.

use std::time::Duration;

use chrono::Utc;
use orderflow_events::CommitMark;
use orderflow_runtime::KafkaConfig;

use super::describe_group;
use super::handle::GroupHandle;
use crate::error::GroupError;
use crate::history::wanting_oldest;
use crate::plan::{plan_reset, OffsetChange, ResetTo};

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
    // a duration before now is the timestamp it stands for at this moment
    let to = &to.resolved(Utc::now());
    let times = match to {
        ResetTo::Timestamp(at) => h.offsets_for_time(&parts, at.timestamp_millis())?,
        _ => Vec::new(),
    };
    let plan = plan_reset(to, &current, &times, &[])?;
    // Where the target lies before the oldest record held, that record's time tells a
    // timestamp whether the history it asks for is gone (and users how far back it goes).
    let want = wanting_oldest(&plan, &current);
    if want.is_empty() {
        return Ok(plan);
    }
    let oldest = h.oldest_records(&want);
    plan_reset(to, &current, &times, &oldest)
}

/// Reset `group`'s committed offsets on every partition of `topics`.
///
/// 1. Refuses with [`GroupError::NotEmpty`] unless the group has no members. Kafka would
///    refuse the commit too ([`GroupError::RefusedByKafka`]), but less plainly.
/// 2. Plans the new offsets ([`plan_reset`]) and commits them synchronously as absolute
///    offsets, each with commit metadata `orderflow.reset=<RFC 3339 now>`
///    ([`CommitMark::reset`]), from a client that assigns the partitions and never
///    joins the group.
/// 3. Reads the committed offsets back and fails with [`GroupError::VerifyMismatch`]
///    unless they are the plan.
///
/// Returns the changes made. A change whose target lay before the oldest record Kafka still
/// holds (history deleted by retention or DeleteRecords) carries
/// [`OffsetChange::history_truncated`]; the reset is made all the same (to the log start
/// offset), and telling users is the caller's ([`crate::history_warnings`]).
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
/// metadata is [`CommitMark::reset_by`], naming `by` and the offset before the reset, so
/// the reset can be recognised afterwards ([`CommitMark::reset_by_of`]).
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
    let metadata = |c: &OffsetChange| {
        match by {
            Some(by) => CommitMark::reset_by(at, by, c.from),
            None => CommitMark::reset(at),
        }
        .to_string()
    };
    h.commit(&plan, &metadata)?;
    h.verify(&plan, &metadata)?;
    tracing::info!(group, %to, partitions = plan.len(), "reset consumer group offsets");
    Ok(plan)
}
