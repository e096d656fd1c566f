//! Where a reset moves a group's committed offsets: the target ([`ResetTo`]) and the plan
//! per partition ([`plan_reset`]), with where the target lies before the oldest record
//! Kafka still holds ([`crate::history`]). Pure arithmetic; nothing here talks to Kafka.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::error::{GroupError, ParseResetToError};
use crate::history::{history_truncated, oldest_of, HistoryTruncated, OldestRecord};
use crate::model::PartitionLag;
use crate::targets::{explicit_truncated, format_duration, requested, ShiftError, TargetOffset};

/// One partition's offset move in a reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OffsetChange {
    pub topic: String,
    pub partition: i32,
    /// Committed offset before the reset (`None`: never committed).
    pub from: Option<i64>,
    /// The new committed offset.
    pub to: i64,
    /// Set when the target lay before the oldest record Kafka still holds on this partition
    /// (records deleted by retention or DeleteRecords): `to` is then the log start offset,
    /// and the deleted history is not replayed. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_truncated: Option<HistoryTruncated>,
}

/// Answer of offsets-for-times for one partition: the earliest offset whose record
/// timestamp is at or after the reset timestamp, `None` when there is no such record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
}

/// Where a reset moves the committed offsets (the targets of `kafka-consumer-groups
/// --reset-offsets`; the ones beyond earliest / latest / a timestamp are in
/// [`crate::targets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTo {
    /// The low watermark (oldest retained record).
    Earliest,
    /// The high watermark (log end: skip everything written so far).
    Latest,
    /// The first record whose timestamp is at or after this time (log end if none).
    Timestamp(DateTime<Utc>),
    /// The first record at or after `now - duration` (log end if none): a timestamp fixed
    /// when the reset is planned ([`ResetTo::resolved`]).
    ByDuration(chrono::Duration),
    /// The committed offset moved by this many records (negative: back), kept inside
    /// `[log start, log end]`; a partition without a committed offset is an error.
    ShiftBy(i64),
    /// These offsets, kept inside `[log start, log end]`; only the partitions listed are
    /// reset (`--from-file`).
    ToOffsets(Vec<TargetOffset>),
}

impl ResetTo {
    /// From the separate "kind" and "timestamp" fields of the CLI (`--to`, `--timestamp`)
    /// and of the ReplayRequest spec (`resetTo`, `timestamp`). `to` may also be an
    /// RFC 3339 timestamp itself.
    pub fn from_parts(to: &str, timestamp: Option<&str>) -> Result<Self, ParseResetToError> {
        let to = to.trim();
        match (to.to_ascii_lowercase().as_str(), timestamp) {
            ("timestamp", Some(ts)) => Ok(Self::Timestamp(parse_timestamp(ts)?)),
            ("timestamp", None) => Err(ParseResetToError::MissingTimestamp),
            (_, Some(ts)) => Err(ParseResetToError::UnexpectedTimestamp(ts.to_string())),
            (_, None) => to.parse(),
        }
    }
}

fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, ParseResetToError> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ParseResetToError::BadTimestamp {
            value: s.to_string(),
            reason: e.to_string(),
        })
}

impl FromStr for ResetTo {
    type Err = ParseResetToError;

    /// `earliest`, `latest` (any case), or an RFC 3339 timestamp.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            "timestamp" => Err(ParseResetToError::MissingTimestamp),
            _ if t.len() >= 10 && t.as_bytes()[..4].iter().all(u8::is_ascii_digit) => {
                Ok(Self::Timestamp(parse_timestamp(t)?))
            }
            _ => Err(ParseResetToError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for ResetTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::Timestamp(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::ByDuration(d) => write!(f, "by-duration {}", format_duration(*d)),
            Self::ShiftBy(n) => write!(f, "shift-by {n}"),
            Self::ToOffsets(list) => write!(f, "offsets ({} partition(s))", list.len()),
        }
    }
}

impl Serialize for ResetTo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The reset plan: for every partition of `current` (committed offsets and watermarks, in
/// that order), where its committed offset goes.
/// - `Earliest`: the low watermark; `Latest`: the high watermark;
/// - `Timestamp` (and `ByDuration`, resolved by the caller with [`ResetTo::resolved`]): the
///   offsets-for-times answer in `times`, the high watermark when the timestamp is past the
///   last record; a partition missing from `times` is an error;
/// - `ShiftBy(n)`: the committed offset + n (a partition never committed is an error, as in
///   Kafka's tool); `ToOffsets`: the listed offset, only for the partitions listed (a listed
///   partition missing from `current` is an error).
///
/// Targets are kept inside `[low_watermark, high_watermark]`, as Kafka's tool does. Each
/// change says whether its target lay before the oldest record Kafka still holds
/// ([`history_truncated`]; for a shift or an explicit offset: below the log start offset),
/// given the timestamps of the oldest records held in `oldest` (may be empty: unknown).
pub fn plan_reset(
    to: &ResetTo,
    current: &[PartitionLag],
    times: &[TimeOffset],
    oldest: &[OldestRecord],
) -> Result<Vec<OffsetChange>, GroupError> {
    if let ResetTo::ToOffsets(list) = to {
        if let Some(o) = list.iter().find(|o| {
            !current
                .iter()
                .any(|p| p.topic == o.topic && p.partition == o.partition)
        }) {
            return Err(GroupError::UnknownPartition {
                topic: o.topic.clone(),
                partition: o.partition,
            });
        }
    }
    let mut plan = Vec::with_capacity(current.len());
    for p in current {
        let oldest_at = oldest_of(oldest, &p.topic, p.partition);
        let (target, history) = match to {
            ResetTo::Earliest
            | ResetTo::Latest
            | ResetTo::Timestamp(_)
            | ResetTo::ByDuration(_) => {
                let target = match to {
                    ResetTo::Earliest => p.low_watermark,
                    ResetTo::Latest => p.high_watermark,
                    _ => {
                        let answer = times
                            .iter()
                            .find(|t| t.topic == p.topic && t.partition == p.partition)
                            .ok_or_else(|| GroupError::MissingTimeOffset {
                                topic: p.topic.clone(),
                                partition: p.partition,
                            })?;
                        answer.offset.unwrap_or(p.high_watermark)
                    }
                };
                let target = target.min(p.high_watermark).max(p.low_watermark);
                (target, history_truncated(to, p, target, oldest_at))
            }
            ResetTo::ShiftBy(_) | ResetTo::ToOffsets(_) => {
                let wanted = match requested(to, p) {
                    Ok(Some(w)) => w,
                    Ok(None) => continue,
                    Err(ShiftError) => {
                        return Err(GroupError::NoCommittedOffset {
                            topic: p.topic.clone(),
                            partition: p.partition,
                        })
                    }
                };
                let target = wanted.min(p.high_watermark).max(p.low_watermark);
                (target, explicit_truncated(p, wanted, oldest_at))
            }
        };
        plan.push(OffsetChange {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.committed,
            to: target,
            history_truncated: history,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{current, p};
    use chrono::TimeZone;

    fn changes(v: &[OffsetChange]) -> Vec<(i32, Option<i64>, i64)> {
        v.iter().map(|c| (c.partition, c.from, c.to)).collect()
    }

    #[test]
    fn plan_earliest_and_latest() {
        let e = plan_reset(&ResetTo::Earliest, &current(), &[], &[]).unwrap();
        assert_eq!(
            changes(&e),
            vec![(0, Some(40), 10), (1, None, 0), (2, Some(7), 0)]
        );
        assert!(e.iter().all(|c| c.topic == "orders"));
        // orders[0] starts at offset 10: its first 10 records are gone, and the plan says so
        assert_eq!(truncated(&e), vec![(0, 10, Some(10))]);
        let l = plan_reset(&ResetTo::Latest, &current(), &[], &[]).unwrap();
        assert_eq!(
            changes(&l),
            vec![(0, Some(40), 100), (1, None, 50), (2, Some(7), 7)]
        );
        assert!(truncated(&l).is_empty());
    }

    fn truncated(v: &[OffsetChange]) -> Vec<(i32, i64, Option<i64>)> {
        v.iter()
            .filter_map(|c| {
                let h = c.history_truncated.as_ref()?;
                Some((c.partition, h.log_start_offset, h.records_deleted))
            })
            .collect()
    }

    #[test]
    fn plan_timestamp_before_the_oldest_record_held_is_truncated() {
        let ts = ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap());
        // records 0..5 deleted on both partitions; offsets-for-times answers the log start
        let cur = vec![p("t", 0, None, 5, 20), p("t", 1, None, 5, 20)];
        let times: Vec<TimeOffset> = (0..2)
            .map(|partition| TimeOffset {
                topic: "t".into(),
                partition,
                offset: Some(5),
            })
            .collect();
        let oldest = vec![
            // written after the reset time: what came before it is gone
            OldestRecord {
                topic: "t".into(),
                partition: 0,
                at: Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap(),
            },
            // written exactly at it: the history from the timestamp on is there
            OldestRecord {
                topic: "t".into(),
                partition: 1,
                at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
            },
        ];
        let plan = plan_reset(&ts, &cur, &times, &oldest).unwrap();
        assert_eq!(changes(&plan), vec![(0, None, 5), (1, None, 5)]);
        assert_eq!(truncated(&plan), vec![(0, 5, None)]);
        assert_eq!(
            plan[0].history_truncated.as_ref().unwrap().oldest_record_at,
            Some(oldest[0].at)
        );
    }

    #[test]
    fn plan_timestamp_uses_offsets_for_times_and_log_end_past_the_end() {
        let ts = ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap());
        let times = vec![
            TimeOffset {
                topic: "orders".into(),
                partition: 2,
                offset: None, // past the last record
            },
            TimeOffset {
                topic: "orders".into(),
                partition: 0,
                offset: Some(55),
            },
            TimeOffset {
                topic: "orders".into(),
                partition: 1,
                offset: Some(0),
            },
        ];
        let plan = plan_reset(&ts, &current(), &times, &[]).unwrap();
        assert_eq!(
            changes(&plan),
            vec![(0, Some(40), 55), (1, None, 0), (2, Some(7), 7)]
        );
    }

    #[test]
    fn plan_timestamp_clamps_into_watermarks() {
        let ts = ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let cur = vec![p("t", 0, None, 10, 20), p("t", 1, None, 0, 20)];
        let times = vec![
            TimeOffset {
                topic: "t".into(),
                partition: 0,
                offset: Some(3),
            },
            TimeOffset {
                topic: "t".into(),
                partition: 1,
                offset: Some(25),
            },
        ];
        let plan = plan_reset(&ts, &cur, &times, &[]).unwrap();
        assert_eq!(changes(&plan), vec![(0, None, 10), (1, None, 20)]);
        // clamped up to the log start offset, the oldest record's time unknown: truncated
        assert_eq!(truncated(&plan), vec![(0, 10, None)]);
    }

    #[test]
    fn plan_timestamp_without_answer_is_an_error() {
        let ts = ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let err = plan_reset(&ts, &current(), &[], &[]).unwrap_err();
        assert!(
            matches!(err, GroupError::MissingTimeOffset { ref topic, partition: 0 } if topic == "orders"),
            "{err}"
        );
    }

    #[test]
    fn plan_of_nothing_is_empty() {
        assert!(plan_reset(&ResetTo::Earliest, &[], &[], &[])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reset_to_parses_and_displays() {
        assert_eq!("earliest".parse::<ResetTo>().unwrap(), ResetTo::Earliest);
        assert_eq!(" LATEST ".parse::<ResetTo>().unwrap(), ResetTo::Latest);
        let t: ResetTo = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(
            t,
            ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap())
        );
        assert_eq!(t.to_string(), "2026-11-22T10:00:00Z");
        // offsets are converted to UTC
        let t: ResetTo = "2026-11-22T11:00:00.250+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-22T10:00:00.250Z");
        assert_eq!(ResetTo::Earliest.to_string(), "earliest");
        assert_eq!(ResetTo::Latest.to_string(), "latest");
        // round trip
        for s in ["earliest", "latest", "2026-11-22T10:00:00.123Z"] {
            assert_eq!(s.parse::<ResetTo>().unwrap().to_string(), s);
        }
        assert_eq!(
            serde_json::to_string(&ResetTo::Earliest).unwrap(),
            "\"earliest\""
        );
    }

    #[test]
    fn reset_to_rejects_nonsense() {
        assert!(matches!(
            "beginning".parse::<ResetTo>(),
            Err(ParseResetToError::Unknown(_))
        ));
        assert!(matches!(
            "".parse::<ResetTo>(),
            Err(ParseResetToError::Unknown(_))
        ));
        assert!(matches!(
            "2026-13-40T10:00:00Z".parse::<ResetTo>(),
            Err(ParseResetToError::BadTimestamp { .. })
        ));
        assert!(matches!(
            "2026-11-22".parse::<ResetTo>(),
            Err(ParseResetToError::BadTimestamp { .. })
        ));
        assert_eq!(
            "timestamp".parse::<ResetTo>(),
            Err(ParseResetToError::MissingTimestamp)
        );
    }

    #[test]
    fn reset_to_from_parts() {
        assert_eq!(
            ResetTo::from_parts("earliest", None).unwrap(),
            ResetTo::Earliest
        );
        assert_eq!(
            ResetTo::from_parts("Timestamp", Some("2026-11-22T10:00:00Z")).unwrap(),
            ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap())
        );
        assert_eq!(
            ResetTo::from_parts("timestamp", None),
            Err(ParseResetToError::MissingTimestamp)
        );
        assert!(matches!(
            ResetTo::from_parts("latest", Some("2026-11-22T10:00:00Z")),
            Err(ParseResetToError::UnexpectedTimestamp(_))
        ));
        assert!(matches!(
            ResetTo::from_parts("timestamp", Some("yesterday")),
            Err(ParseResetToError::BadTimestamp { .. })
        ));
        let msg = ResetTo::from_parts("timestamp", Some("yesterday"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("yesterday") && msg.contains("RFC 3339"),
            "{msg}"
        );
    }
}
