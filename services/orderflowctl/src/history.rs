//! Whether a reset can replay the history it asks for. Kafka deletes records past the
//! topic's retention or by DeleteRecords, so a partition's log start offset (low watermark)
//! can be above 0; a reset whose target lies before it is clamped to it, and the records
//! below it are not replayed. [`history_truncated`] decides it per partition; pure, nothing
//! here talks to Kafka (the timestamp of the oldest record held is read by the caller).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::model::PartitionLag;
use crate::plan::{OffsetChange, ResetTo};

/// On one partition, the reset's target lay before the oldest record Kafka still holds: the
/// group was reset to the log start offset instead, and the deleted records are not replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryTruncated {
    /// The partition's log start offset (low watermark): the oldest offset Kafka still
    /// holds, and where the group's offset goes.
    pub log_start_offset: i64,
    /// How many records of the history asked for are gone, when it is known: with
    /// `earliest`, every offset below the log start offset (transaction markers take
    /// offsets too, so at most this many records). Absent for a timestamp: how many of the
    /// deleted records were at or after it cannot be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_deleted: Option<i64>,
    /// The timestamp of the oldest record still held (the one at the log start offset),
    /// when it could be read; absent when the partition holds no record any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_record_at: Option<DateTime<Utc>>,
}

/// The timestamp of the oldest record Kafka still holds on a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldestRecord {
    pub topic: String,
    pub partition: i32,
    pub at: DateTime<Utc>,
}

/// Does a reset to `to` that planned offset `target` on partition `p` lose history?
/// `oldest_at` is the timestamp of the oldest record held on it, if known.
///
/// - Nothing was deleted (log start offset 0), or `latest`: no.
/// - `earliest`: yes whenever the log start offset is above 0; every offset below it is a
///   record the replay cannot read.
/// - A timestamp: yes when the planned offset is the log start offset (offsets-for-times
///   found no held record older than the timestamp) and the oldest record held is newer
///   than the timestamp, or there is no record held at all (nothing says whether the
///   deleted records were older than the timestamp). An oldest record at or before the
///   timestamp, or a target past the log start offset, means the history from the
///   timestamp on is all there.
pub fn history_truncated(
    to: &ResetTo,
    p: &PartitionLag,
    target: i64,
    oldest_at: Option<DateTime<Utc>>,
) -> Option<HistoryTruncated> {
    let lso = p.low_watermark;
    if lso <= 0 {
        return None;
    }
    let records_deleted = match to {
        ResetTo::Latest => return None,
        ResetTo::Earliest => Some(lso),
        ResetTo::Timestamp(at) => {
            if target != lso || oldest_at.is_some_and(|o| o <= *at) {
                return None;
            }
            None
        }
        // unresolved (the time is not known here): the planned offset alone decides
        ResetTo::ByDuration(_) => {
            if target != lso {
                return None;
            }
            None
        }
        // decided by the offset asked for (`plan_reset`), not here
        ResetTo::ShiftBy(_) | ResetTo::ToOffsets(_) => return None,
    };
    Some(HistoryTruncated {
        log_start_offset: lso,
        records_deleted,
        oldest_record_at: oldest_at,
    })
}

/// The partitions of a plan whose oldest held record's timestamp the decision still wants:
/// those found truncated that still hold records (log start below log end in `current`),
/// as `(topic, partition, log start offset)`.
pub fn wanting_oldest(plan: &[OffsetChange], current: &[PartitionLag]) -> Vec<(String, i32, i64)> {
    plan.iter()
        .filter_map(|c| {
            let h = c.history_truncated.as_ref()?;
            let holds = current.iter().any(|p| {
                p.topic == c.topic
                    && p.partition == c.partition
                    && p.low_watermark < p.high_watermark
            });
            (h.oldest_record_at.is_none() && holds)
                .then(|| (c.topic.clone(), c.partition, h.log_start_offset))
        })
        .collect()
}

/// The oldest held record's timestamp on `topic[partition]`, if `oldest` has it.
pub(crate) fn oldest_of(
    oldest: &[OldestRecord],
    topic: &str,
    partition: i32,
) -> Option<DateTime<Utc>> {
    oldest
        .iter()
        .find(|o| o.topic == topic && o.partition == partition)
        .map(|o| o.at)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl OffsetChange {
    /// One line for people when this partition's history is truncated: topic, partition,
    /// log start offset, what is gone. `to` is the reset's target.
    pub fn history_warning(&self, to: &ResetTo) -> Option<String> {
        let h = self.history_truncated.as_ref()?;
        let oldest = h
            .oldest_record_at
            .map(|t| format!(" (its record written {})", rfc3339(t)))
            .unwrap_or_default();
        let gone = match (to, h.records_deleted) {
            (ResetTo::ByDuration(_), _) => "records before it were deleted (retention or \
                 DeleteRecords), so the replay cannot start that far back"
                .to_string(),
            (ResetTo::Timestamp(at), _) => format!(
                "records before it were deleted (retention or DeleteRecords), so the replay \
                 cannot start at {}",
                rfc3339(*at)
            ),
            (_, Some(n)) => format!(
                "the {n} record(s) before it were deleted (retention or DeleteRecords) and are \
                 not replayed"
            ),
            (_, None) => "records before it were deleted (retention or DeleteRecords) and are \
                          not replayed"
                .to_string(),
        };
        Some(format!(
            "history truncated on {}[{}]: the reset to {to} starts at log start offset {}, \
             the oldest offset Kafka still holds{oldest}; {gone}",
            self.topic, self.partition, h.log_start_offset
        ))
    }
}

/// The warning lines of a reset's changes, in partition order (empty when the whole
/// history asked for is there).
pub fn history_warnings(to: &ResetTo, changes: &[OffsetChange]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| c.history_warning(to))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::p;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0).unwrap()
    }

    #[test]
    fn nothing_deleted_is_never_truncated() {
        let part = p("orders", 0, Some(4), 0, 10);
        for to in [
            ResetTo::Earliest,
            ResetTo::Latest,
            ResetTo::Timestamp(t(10)),
        ] {
            assert_eq!(history_truncated(&to, &part, 0, None), None, "{to}");
        }
    }

    #[test]
    fn earliest_past_a_log_start_offset_is_truncated_with_the_count() {
        let part = p("orders", 1, Some(40), 5, 10);
        let h = history_truncated(&ResetTo::Earliest, &part, 5, Some(t(9))).unwrap();
        assert_eq!(h.log_start_offset, 5);
        assert_eq!(h.records_deleted, Some(5));
        assert_eq!(h.oldest_record_at, Some(t(9)));
        // every record deleted: the partition is empty, still truncated
        let empty = p("orders", 2, None, 10, 10);
        let h = history_truncated(&ResetTo::Earliest, &empty, 10, None).unwrap();
        assert_eq!((h.log_start_offset, h.records_deleted), (10, Some(10)));
    }

    #[test]
    fn latest_never_wants_history() {
        let part = p("orders", 0, Some(4), 5, 10);
        assert_eq!(history_truncated(&ResetTo::Latest, &part, 10, None), None);
    }

    #[test]
    fn timestamp_cases() {
        let part = p("orders", 0, None, 5, 10);
        let ts = ResetTo::Timestamp(t(10));
        // older than the oldest record held (written at 11:00): truncated, count unknown
        let h = history_truncated(&ts, &part, 5, Some(t(11))).unwrap();
        assert_eq!(h.log_start_offset, 5);
        assert_eq!(h.records_deleted, None);
        assert_eq!(h.oldest_record_at, Some(t(11)));
        // the oldest record held is at or before the timestamp: the history is there
        assert_eq!(history_truncated(&ts, &part, 5, Some(t(10))), None);
        assert_eq!(history_truncated(&ts, &part, 5, Some(t(9))), None);
        // a held record precedes the target: the history from the timestamp on is there
        assert_eq!(history_truncated(&ts, &part, 7, Some(t(9))), None);
        assert_eq!(history_truncated(&ts, &part, 7, None), None);
        // past the last record held: log end, nothing lost
        assert_eq!(history_truncated(&ts, &part, 10, None), None);
        // oldest record unknown at the log start: cannot tell, so it says so
        assert!(history_truncated(&ts, &part, 5, None).is_some());
        // every record deleted: nothing held tells whether they were older
        let empty = p("orders", 1, None, 10, 10);
        let h = history_truncated(&ts, &empty, 10, None).unwrap();
        assert_eq!((h.log_start_offset, h.records_deleted), (10, None));
    }

    fn change(partition: i32, h: Option<HistoryTruncated>) -> OffsetChange {
        OffsetChange {
            topic: "orders".into(),
            partition,
            from: Some(1),
            to: 5,
            history_truncated: h,
        }
    }

    #[test]
    fn warnings_name_partition_log_start_and_what_is_gone() {
        let h = HistoryTruncated {
            log_start_offset: 5,
            records_deleted: Some(5),
            oldest_record_at: Some(t(11)),
        };
        let c = change(1, Some(h.clone()));
        assert_eq!(
            c.history_warning(&ResetTo::Earliest).unwrap(),
            "history truncated on orders[1]: the reset to earliest starts at log start offset 5, \
             the oldest offset Kafka still holds (its record written 2026-11-22T11:00:00Z); the 5 record(s) \
             before it were deleted (retention or DeleteRecords) and are not replayed"
        );
        let ts = ResetTo::Timestamp(t(10));
        let c = change(
            0,
            Some(HistoryTruncated {
                records_deleted: None,
                ..h
            }),
        );
        assert_eq!(
            c.history_warning(&ts).unwrap(),
            "history truncated on orders[0]: the reset to 2026-11-22T10:00:00Z starts at log \
             start offset 5, the oldest offset Kafka still holds (its record written 2026-11-22T11:00:00Z); \
             records before it were deleted (retention or DeleteRecords), so the replay cannot \
             start at 2026-11-22T10:00:00Z"
        );
        let empty = change(
            2,
            Some(HistoryTruncated {
                log_start_offset: 10,
                records_deleted: Some(10),
                oldest_record_at: None,
            }),
        );
        assert!(empty.history_warning(&ResetTo::Earliest).unwrap().contains(
            "log start offset 10, the oldest offset Kafka still holds; the 10 record(s)"
        ));
        let fine = change(3, None);
        assert_eq!(fine.history_warning(&ResetTo::Earliest), None);
        let all = [c.clone(), fine, empty];
        let lines = history_warnings(&ResetTo::Earliest, &all);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("history truncated on orders[0]"));
        assert!(lines[1].starts_with("history truncated on orders[2]"));
    }

    #[test]
    fn the_oldest_record_is_wanted_only_where_truncated_and_held() {
        let h = HistoryTruncated {
            log_start_offset: 5,
            records_deleted: Some(5),
            oldest_record_at: None,
        };
        let known = HistoryTruncated {
            oldest_record_at: Some(t(1)),
            ..h.clone()
        };
        let plan = [
            change(0, Some(h.clone())),
            change(1, None),
            change(2, Some(h)),
            change(3, Some(known)),
        ];
        let current = [
            p("orders", 0, None, 5, 10),
            p("orders", 1, None, 0, 10),
            p("orders", 2, None, 5, 5), // every record deleted
            p("orders", 3, None, 5, 10),
        ];
        assert_eq!(
            wanting_oldest(&plan, &current),
            vec![("orders".to_string(), 0, 5)]
        );
    }

    #[test]
    fn json_carries_what_is_known_only() {
        let h = HistoryTruncated {
            log_start_offset: 5,
            records_deleted: None,
            oldest_record_at: Some(t(11)),
        };
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"log_start_offset": 5, "oldest_record_at": "2026-11-22T11:00:00Z"})
        );
        let back: HistoryTruncated = serde_json::from_value(v).unwrap();
        assert_eq!(back, h);
    }
}
