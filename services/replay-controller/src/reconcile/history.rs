//! A reset whose target lay before the oldest record Kafka still holds (records deleted by
//! retention or DeleteRecords): status.historyTruncated, and the words for the status
//! message and the Warning Event `HistoryTruncated`.

use orderflowctl::OffsetChange;

use crate::crd::{Condition, ReplayRequestSpec, ReplayRequestStatus, TruncatedPartition};

/// Event reason (type Warning) of a reset that cannot replay the whole history asked for,
/// and the type of its condition.
pub const REASON: &str = "HistoryTruncated";

/// The condition `HistoryTruncated` (status True) while status.historyTruncated lists
/// partitions: reason `AllowTruncated` when spec.allowTruncated let a timestamp / duration
/// target go on from the earliest offset (refused with BeforeRetention otherwise), else
/// `LogStartOffset` (earliest, a shift or explicit offsets below the log start offset). Its
/// lastTransitionTime is kept from `old`.
pub fn condition(
    old: &[Condition],
    st: &ReplayRequestStatus,
    spec: &ReplayRequestSpec,
    now: &str,
) -> Option<Condition> {
    if st.history_truncated.is_empty() {
        return None;
    }
    let allowed = spec.allow_truncated.unwrap_or(false)
        && matches!(
            spec.reset_to,
            Some(crate::crd::ResetTarget::Timestamp | crate::crd::ResetTarget::ByDuration)
        );
    let since = old
        .iter()
        .find(|c| c.type_ == REASON && c.status == "True")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    let message = format!(
        "{}history truncated: {}",
        if allowed {
            "spec.allowTruncated: the target lay before the oldest record Kafka still holds; "
        } else {
            ""
        },
        summary(&st.history_truncated)
    );
    Some(Condition {
        type_: REASON.to_string(),
        status: "True".to_string(),
        reason: Some(
            if allowed {
                "AllowTruncated"
            } else {
                "LogStartOffset"
            }
            .to_string(),
        ),
        message: Some(message),
        last_transition_time: Some(since),
    })
}

/// The partitions of a reset's changes whose history is truncated.
pub fn truncated_of(changes: &[OffsetChange]) -> Vec<TruncatedPartition> {
    changes
        .iter()
        .filter_map(|c| {
            let h = c.history_truncated.as_ref()?;
            Some(TruncatedPartition {
                topic: c.topic.clone(),
                partition: c.partition,
                log_start_offset: h.log_start_offset,
                records_deleted: h.records_deleted,
                oldest_record_at: h.oldest_record_at.map(super::fmt_time),
            })
        })
        .collect()
}

/// `orders[1] from log start offset 5 (5 record(s) deleted), orders[2] from ...`.
pub fn summary(truncated: &[TruncatedPartition]) -> String {
    truncated
        .iter()
        .map(|t| {
            let deleted = t
                .records_deleted
                .map(|n| format!(" ({n} record(s) deleted)"))
                .unwrap_or_default();
            format!(
                "{}[{}] from log start offset {}{deleted}",
                t.topic, t.partition, t.log_start_offset
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The note of the `HistoryTruncated` Event: group, target, partitions and log start offsets.
pub fn event_note(group: &str, target: &str, truncated: &[TruncatedPartition]) -> String {
    format!(
        "the reset of {group} to {target} lies before the oldest record Kafka still holds on \
         {} partition(s): {}; the records deleted there (retention or DeleteRecords) are not \
         replayed",
        truncated.len(),
        summary(truncated)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use orderflowctl::HistoryTruncated;

    fn change(partition: i32, h: Option<HistoryTruncated>) -> OffsetChange {
        OffsetChange {
            topic: "orders".into(),
            partition,
            from: Some(9),
            to: h.as_ref().map_or(0, |h| h.log_start_offset),
            history_truncated: h,
        }
    }

    #[test]
    fn truncated_partitions_in_status_and_words() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let changes = [
            change(0, None),
            change(
                1,
                Some(HistoryTruncated {
                    log_start_offset: 5,
                    records_deleted: Some(5),
                    oldest_record_at: Some(at),
                }),
            ),
            change(
                2,
                Some(HistoryTruncated {
                    log_start_offset: 10,
                    records_deleted: None,
                    oldest_record_at: None,
                }),
            ),
        ];
        let t = truncated_of(&changes);
        assert_eq!(
            t,
            vec![
                TruncatedPartition {
                    topic: "orders".into(),
                    partition: 1,
                    log_start_offset: 5,
                    records_deleted: Some(5),
                    oldest_record_at: Some("2026-11-22T10:00:00.000Z".into()),
                },
                TruncatedPartition {
                    topic: "orders".into(),
                    partition: 2,
                    log_start_offset: 10,
                    records_deleted: None,
                    oldest_record_at: None,
                },
            ]
        );
        assert_eq!(
            summary(&t),
            "orders[1] from log start offset 5 (5 record(s) deleted), orders[2] from log start \
             offset 10"
        );
        assert_eq!(
            event_note("analytics", "earliest", &t[..1]),
            "the reset of analytics to earliest lies before the oldest record Kafka still holds \
             on 1 partition(s): orders[1] from log start offset 5 (5 record(s) deleted); the \
             records deleted there (retention or DeleteRecords) are not replayed"
        );
        assert!(truncated_of(&changes[..1]).is_empty());
    }

    #[test]
    fn the_status_field_is_camel_case_and_absent_when_empty() {
        let t = truncated_of(&[change(
            1,
            Some(HistoryTruncated {
                log_start_offset: 5,
                records_deleted: Some(5),
                oldest_record_at: None,
            }),
        )]);
        let st = crate::crd::ReplayRequestStatus {
            history_truncated: t,
            ..Default::default()
        };
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(
            v["historyTruncated"],
            serde_json::json!([{"topic": "orders", "partition": 1, "logStartOffset": 5,
                                "recordsDeleted": 5}])
        );
        let empty = serde_json::to_value(crate::crd::ReplayRequestStatus::default()).unwrap();
        assert!(empty.get("historyTruncated").is_none());
    }
}
