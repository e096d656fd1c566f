//! Moving a group to where another one is: a shadow replay's promotion commits the live
//! group's offsets at the shadow group's committed offsets, with the shadow's commit
//! metadata, so the live consumer takes up exactly where the shadow (whose state was copied
//! with it, [`crate::state`]) stood.

use std::time::Duration;

use orderflow_runtime::KafkaConfig;

use super::describe_group;
use super::handle::GroupHandle;
use crate::error::GroupError;
use crate::model::CommittedOffset;
use crate::plan::OffsetChange;

/// The changes that make `to`'s commits equal `from`'s: every partition `from` committed
/// on whose offset or metadata `to` does not have already. Pure, for the tests.
pub fn copy_changes(
    from: &[CommittedOffset],
    to: &[CommittedOffset],
) -> Vec<(OffsetChange, String)> {
    from.iter()
        .filter_map(|f| {
            let offset = f.offset?;
            let now = to
                .iter()
                .find(|t| t.topic == f.topic && t.partition == f.partition);
            let same = now.is_some_and(|t| t.offset == Some(offset) && t.metadata == f.metadata);
            (!same).then(|| {
                (
                    OffsetChange {
                        topic: f.topic.clone(),
                        partition: f.partition,
                        from: now.and_then(|t| t.offset),
                        to: offset,
                        history_truncated: None,
                    },
                    f.metadata.clone(),
                )
            })
        })
        .collect()
}

/// Commit group `to`'s offsets on every partition of `topics` at group `from`'s committed
/// offsets, commit metadata included (partitions `from` never committed on are left
/// alone), and read them back. Refused while `to` has members, like a reset. Returns the
/// changes made: none when `to` is there already (made again after a crash, it changes
/// nothing).
pub fn copy_committed(
    kafka: &KafkaConfig,
    from: &str,
    to: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<OffsetChange>, GroupError> {
    let info = describe_group(kafka, to, timeout)?;
    if !info.is_empty() {
        return Err(GroupError::NotEmpty {
            group: info.group,
            state: info.state,
            members: info.members,
        });
    }
    let src = GroupHandle::open(kafka, from, timeout)?;
    let parts = src.partitions(topics)?;
    let theirs = src.committed(&parts)?;
    drop(src);
    let dst = GroupHandle::open(kafka, to, timeout)?;
    let changes = copy_changes(&theirs, &dst.committed(&parts)?);
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let plan: Vec<OffsetChange> = changes.iter().map(|(c, _)| c.clone()).collect();
    let metadata = |c: &OffsetChange| {
        changes
            .iter()
            .find(|(x, _)| x.topic == c.topic && x.partition == c.partition)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    };
    dst.commit(&plan, &metadata)?;
    dst.verify(&plan, &metadata)?;
    tracing::info!(
        from,
        to,
        partitions = plan.len(),
        "group moved to another group's offsets"
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(partition: i32, offset: Option<i64>, metadata: &str) -> CommittedOffset {
        CommittedOffset {
            topic: "orders".into(),
            partition,
            offset,
            metadata: metadata.into(),
        }
    }

    #[test]
    fn copies_offsets_and_metadata_not_already_there() {
        let shadow = vec![
            c(0, Some(50), "run=s"),
            c(1, Some(7), "run=s"),
            c(2, None, ""),
        ];
        let live = vec![
            c(0, Some(90), "run=l"),
            c(1, Some(7), "run=s"),
            c(2, Some(3), "run=l"),
        ];
        let ch = copy_changes(&shadow, &live);
        assert_eq!(ch.len(), 1);
        assert_eq!(
            (ch[0].0.partition, ch[0].0.from, ch[0].0.to),
            (0, Some(90), 50)
        );
        assert_eq!(ch[0].1, "run=s");
        let same_offset_other_run = vec![c(0, Some(50), "run=l")];
        assert_eq!(copy_changes(&shadow[..1], &same_offset_other_run).len(), 1);
        assert!(copy_changes(&shadow, &shadow).is_empty());
    }
}
