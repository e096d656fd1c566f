//! A request's reset target, from its spec: the checks the CRD's CEL rules make (for API
//! servers that do not run them, the request ends Failed with reason InvalidSpec), the
//! `orderflowctl::ResetTo` the spec names, an undo (`spec.undoOf`) turned into the offsets to
//! restore, and the retention guard's refusal (reason BeforeRetention). Pure; the reconciler's
//! side is `reconcile::targets`.

use orderflowctl::{OffsetChange, ResetTo, TargetOffset};

use crate::crd::{Phase, ReplayRequest, ReplayRequestSpec, ResetTarget};

/// Failure reason: the undone request does not exist.
pub const UNDO_NOT_FOUND: &str = "UndoTargetNotFound";
/// Failure reason: the undone request has not Succeeded (or recorded no offsets).
pub const UNDO_NOT_SUCCEEDED: &str = "UndoTargetNotSucceeded";
/// Failure reason: the undone request found a partition never committed, whose "offset
/// before" cannot be committed back (see [`undo_offsets`]).
pub const UNDO_NOT_EXACT: &str = "UndoNotExact";
/// Failure reason: a timestamp or duration target lies before the oldest record held.
pub const BEFORE_RETENTION: &str = "BeforeRetention";

/// What a request does: reset to a target, or undo another request (by name).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Reset(ResetTo),
    Undo(String),
}

/// The target of `spec`, or why the spec is invalid (naming the field).
pub fn target(spec: &ReplayRequestSpec) -> Result<Target, String> {
    let only_with = |field: &str, present: bool, kind: ResetTarget| -> Result<(), String> {
        let is = spec.reset_to == Some(kind);
        match (present, is) {
            (true, false) => Err(format!(
                "spec.{field} is only allowed with spec.resetTo: {}",
                kind.as_str()
            )),
            (false, true) => Err(format!(
                "spec.{field} is required when spec.resetTo is {}",
                kind.as_str()
            )),
            _ => Ok(()),
        }
    };
    only_with("duration", spec.duration.is_some(), ResetTarget::ByDuration)?;
    only_with("shiftBy", spec.shift_by.is_some(), ResetTarget::ShiftBy)?;
    only_with("offsets", spec.offsets.is_some(), ResetTarget::ToOffsets)?;
    let kind = match (spec.reset_to, &spec.undo_of) {
        (Some(_), Some(_)) => {
            return Err(
                "spec.undoOf is not allowed with spec.resetTo: a request resets to a \
                        target, or undoes another request"
                    .to_string(),
            )
        }
        (None, None) => return Err("spec.resetTo (or spec.undoOf) is required".to_string()),
        (None, Some(name)) => {
            if spec.timestamp.is_some() {
                return Err("spec.timestamp is only allowed with spec.resetTo: timestamp".into());
            }
            return Ok(Target::Undo(name.clone()));
        }
        (Some(kind), None) => kind,
    };
    let to = match kind {
        ResetTarget::Earliest | ResetTarget::Latest | ResetTarget::Timestamp => {
            ResetTo::from_parts(kind.as_str(), spec.timestamp.as_deref())
                .map_err(|e| format!("spec.resetTo/spec.timestamp: {e}"))?
        }
        _ if spec.timestamp.is_some() => {
            return Err("spec.timestamp is only allowed with spec.resetTo: timestamp".into())
        }
        ResetTarget::None => {
            return Err(
                "spec.resetTo none is a drill without a reset: it has no reset target".into(),
            )
        }
        ResetTarget::ByDuration => {
            let d = spec.duration.as_deref().unwrap_or_default();
            ResetTo::ByDuration(
                orderflowctl::parse_duration(d).map_err(|e| format!("spec.duration: {e}"))?,
            )
        }
        ResetTarget::ShiftBy => ResetTo::ShiftBy(spec.shift_by.unwrap_or_default()),
        ResetTarget::ToOffsets => {
            let list = spec.offsets.as_deref().unwrap_or_default();
            if list.is_empty() {
                return Err("spec.offsets must list at least one partition".to_string());
            }
            let mut out: Vec<TargetOffset> = Vec::with_capacity(list.len());
            for (i, o) in list.iter().enumerate() {
                if !spec.topics.contains(&o.topic) {
                    return Err(format!(
                        "spec.offsets[{i}].topic {} is not in spec.topics",
                        o.topic
                    ));
                }
                if o.partition < 0 || o.offset < 0 {
                    return Err(format!(
                        "spec.offsets[{i}]: partition and offset must be 0 or more"
                    ));
                }
                if out
                    .iter()
                    .any(|t| t.topic == o.topic && t.partition == o.partition)
                {
                    return Err(format!(
                        "spec.offsets[{i}]: {}[{}] is listed twice",
                        o.topic, o.partition
                    ));
                }
                out.push(TargetOffset {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                });
            }
            ResetTo::ToOffsets(out)
        }
    };
    Ok(Target::Reset(to))
}

/// The target in words for messages and Events: `earliest`, `timestamp <t>`,
/// `byDuration PT1H`, `shiftBy -100`, `toOffsets (3 partition(s))`, `undo of replay-1`.
pub fn label(spec: &ReplayRequestSpec) -> String {
    if let Some(name) = &spec.undo_of {
        return format!("undo of {name}");
    }
    let Some(kind) = spec.reset_to else {
        return "nothing".to_string();
    };
    match kind {
        ResetTarget::Timestamp => format!(
            "timestamp {}",
            spec.timestamp.as_deref().unwrap_or_default()
        ),
        ResetTarget::ByDuration => format!(
            "byDuration {}",
            spec.duration.as_deref().unwrap_or_default()
        ),
        ResetTarget::ShiftBy => format!("shiftBy {}", spec.shift_by.unwrap_or_default()),
        ResetTarget::ToOffsets => format!(
            "toOffsets ({} partition(s))",
            spec.offsets.as_ref().map_or(0, Vec::len)
        ),
        k => k.as_str().to_string(),
    }
}

/// The offsets an undo of `undone` restores (its status.offsets' `from`), for the undo
/// request `spec`; or the failure reason and message.
///
/// A partition whose `from` is absent (the group had never committed there before the undone
/// request) refuses the undo (reason [`UNDO_NOT_EXACT`]): "never committed" cannot be
/// committed back (it takes deleting the group's offset on that partition, which the
/// controller does not do), and any offset chosen instead would not be an exact undo. The
/// message names the partitions and what to do instead.
pub fn undo_offsets(
    spec: &ReplayRequestSpec,
    undone: Option<&ReplayRequest>,
    name: &str,
) -> Result<ResetTo, (&'static str, String)> {
    let Some(undone) = undone else {
        return Err((
            UNDO_NOT_FOUND,
            format!("spec.undoOf: ReplayRequest {name} not found in this namespace"),
        ));
    };
    let st = undone.status.clone().unwrap_or_default();
    if st.phase != Phase::Succeeded || st.offsets.is_empty() {
        return Err((
            UNDO_NOT_SUCCEEDED,
            format!(
                "spec.undoOf: ReplayRequest {name} is {} with {} recorded offset(s); only a \
                 Succeeded request's offsets can be restored",
                st.phase,
                st.offsets.len()
            ),
        ));
    }
    if undone.spec.consumer_group != spec.consumer_group {
        return Err((
            "InvalidSpec",
            format!(
                "spec.consumerGroup {} differs from that of ReplayRequest {name} ({}), which \
                 spec.undoOf undoes",
                spec.consumer_group, undone.spec.consumer_group
            ),
        ));
    }
    let mut mine = spec.topics.clone();
    let mut theirs = undone.spec.topics.clone();
    mine.sort();
    mine.dedup();
    theirs.sort();
    theirs.dedup();
    if mine != theirs {
        return Err((
            "InvalidSpec",
            format!(
                "spec.topics ({}) must be those of ReplayRequest {name} ({}), which spec.undoOf \
                 undoes",
                spec.topics.join(", "),
                undone.spec.topics.join(", ")
            ),
        ));
    }
    let never: Vec<String> = st
        .offsets
        .iter()
        .filter(|o| o.from.is_none())
        .map(|o| format!("{}[{}]", o.topic, o.partition))
        .collect();
    if !never.is_empty() {
        return Err((
            UNDO_NOT_EXACT,
            format!(
                "ReplayRequest {name} found no committed offset of group {} on {} before it: \
                 that cannot be restored exactly (it needs the group's offset deleted there, \
                 e.g. kafka-consumer-groups --delete-offsets); to restore the other partitions, \
                 use resetTo: toOffsets with their offsets",
                spec.consumer_group,
                never.join(", ")
            ),
        ));
    }
    Ok(ResetTo::ToOffsets(
        st.offsets
            .iter()
            .filter_map(|o| {
                Some(TargetOffset {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.from?,
                })
            })
            .collect(),
    ))
}

/// Does the retention guard apply: a timestamp or duration target, without
/// spec.allowTruncated?
pub fn guarded(spec: &ReplayRequestSpec, to: &ResetTo) -> bool {
    matches!(to, ResetTo::Timestamp(_) | ResetTo::ByDuration(_))
        && !spec.allow_truncated.unwrap_or(false)
}

/// The refusal of a plan whose timestamp / duration target lies before the oldest record
/// Kafka still holds on some partition: names the partitions, their log start offsets and
/// the time of their oldest record held. `None` when the whole history asked for is there.
pub fn before_retention(group: &str, label: &str, plan: &[OffsetChange]) -> Option<String> {
    let parts: Vec<String> = plan
        .iter()
        .filter_map(|c| {
            let h = c.history_truncated.as_ref()?;
            let oldest = h.oldest_record_at.map_or_else(
                || "no record held".to_string(),
                |t| {
                    format!(
                        "oldest record {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    )
                },
            );
            Some(format!(
                "{}[{}] ({oldest}, log start offset {})",
                c.topic, c.partition, h.log_start_offset
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "the reset of {group} to {label} lies before the oldest record Kafka still holds on \
             {}: refused, nothing changed (set spec.allowTruncated: true to start those \
             partitions at their earliest offset instead)",
            parts.join(", ")
        )
    })
}

#[cfg(test)]
#[path = "targets_tests.rs"]
mod tests;
