//! The results of consumer-group work (all serializable to JSON) and the pure arithmetic
//! on them: lag per partition and the offset-reset plan. Nothing here talks to Kafka.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::error::{GroupError, ParseResetToError};

/// Group states in which nobody consumes, so offsets may be reset (Kafka's rule).
pub const INACTIVE_STATES: [&str; 2] = ["Empty", "Dead"];

/// Prefix of the per-partition commit metadata written by [`crate::reset`]:
/// `orderflow.reset=<RFC 3339 time of the reset>`.
pub const RESET_METADATA_PREFIX: &str = "orderflow.reset=";

/// The commit metadata a reset at `at` writes on every partition.
pub fn reset_metadata(at: DateTime<Utc>) -> String {
    format!(
        "{RESET_METADATA_PREFIX}{}",
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// The commit metadata of a reset made on behalf of `by` (e.g. a ReplayRequest's uid; no
/// whitespace) on a partition whose committed offset was `from`:
/// `orderflow.reset=<time> by=<by> from=<offset|none>`. A reset can then be recognised
/// later (a controller resuming after a crash must not reset twice) and says where the
/// partition was before.
pub fn reset_metadata_by(at: DateTime<Utc>, by: &str, from: Option<i64>) -> String {
    let from = from.map_or_else(|| "none".to_string(), |f| f.to_string());
    format!("{} by={by} from={from}", reset_metadata(at))
}

/// True when `metadata` was written by an offset reset (see [`reset_metadata`]).
pub fn is_reset_metadata(metadata: &str) -> bool {
    metadata.starts_with(RESET_METADATA_PREFIX)
}

/// When the reset that wrote `metadata` happened (`None`: not a reset marker).
pub fn reset_metadata_time(metadata: &str) -> Option<DateTime<Utc>> {
    let rest = metadata.strip_prefix(RESET_METADATA_PREFIX)?;
    let at = rest.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Who a reset was made for (`by=` of [`reset_metadata_by`]; `None` for other metadata).
pub fn reset_metadata_by_of(metadata: &str) -> Option<&str> {
    reset_field(metadata, "by=")
}

/// The committed offset before the reset (`from=` of [`reset_metadata_by`]): `None` when
/// the metadata has no such field, `Some(None)` when the partition had no committed offset.
pub fn reset_metadata_from(metadata: &str) -> Option<Option<i64>> {
    match reset_field(metadata, "from=")? {
        "none" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

fn reset_field<'a>(metadata: &'a str, key: &str) -> Option<&'a str> {
    metadata
        .strip_prefix(RESET_METADATA_PREFIX)?
        .split_whitespace()
        .find_map(|t| t.strip_prefix(key))
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
}

/// State of a consumer group. A group the broker does not know is reported as state
/// `Dead` with no members (like Kafka's DescribeGroups), not as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    pub group: String,
    /// `Stable`, `Empty`, `Dead`, `PreparingRebalance`, `CompletingRebalance`, ...
    pub state: String,
    /// Number of live members.
    pub members: usize,
    pub member_list: Vec<GroupMember>,
}

impl GroupInfo {
    /// No member and an inactive state: offsets may be reset.
    pub fn is_empty(&self) -> bool {
        self.members == 0 && INACTIVE_STATES.contains(&self.state.as_str())
    }
}

/// Lag of a group on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (next record to read), `None` when it never committed.
    pub committed: Option<i64>,
    pub low_watermark: i64,
    /// Log-end offset.
    pub high_watermark: i64,
    /// See [`partition_lag`].
    pub lag: i64,
}

impl PartitionLag {
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        committed: Option<i64>,
        low_watermark: i64,
        high_watermark: i64,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition,
            committed,
            low_watermark,
            high_watermark,
            lag: partition_lag(committed, low_watermark, high_watermark),
        }
    }
}

/// Records the group still has to read on a partition: `high - committed`, or `high - low`
/// when the group has no committed offset there (it would start at the earliest record).
/// Never negative (a committed offset past the end, e.g. after the topic was recreated,
/// counts as 0).
pub fn partition_lag(committed: Option<i64>, low_watermark: i64, high_watermark: i64) -> i64 {
    let from = committed.unwrap_or(low_watermark);
    (high_watermark - from).max(0)
}

/// Sum of the lag over partitions.
pub fn total_lag(partitions: &[PartitionLag]) -> i64 {
    partitions.iter().map(|p| p.lag).sum()
}

/// The group's lag at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LagSample {
    /// When it was taken, Unix milliseconds.
    pub at_ms: i64,
    pub total: i64,
    pub partitions: Vec<PartitionLag>,
}

impl LagSample {
    pub fn new(at_ms: i64, partitions: Vec<PartitionLag>) -> Self {
        Self {
            at_ms,
            total: total_lag(&partitions),
            partitions,
        }
    }
}

/// A group's committed offset on one partition, with the commit metadata string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// `None` when the group never committed on this partition.
    pub offset: Option<i64>,
    /// Commit metadata (empty when none).
    pub metadata: String,
}

/// One partition's offset move in a reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OffsetChange {
    pub topic: String,
    pub partition: i32,
    /// Committed offset before the reset (`None`: never committed).
    pub from: Option<i64>,
    /// The new committed offset.
    pub to: i64,
}

/// Answer of offsets-for-times for one partition: the earliest offset whose record
/// timestamp is at or after the reset timestamp, `None` when there is no such record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
}

/// Where a reset moves the committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The low watermark (oldest retained record).
    Earliest,
    /// The high watermark (log end: skip everything written so far).
    Latest,
    /// The first record whose timestamp is at or after this time (log end if none).
    Timestamp(DateTime<Utc>),
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
/// - `Timestamp`: the offsets-for-times answer in `times`, the high watermark when the
///   timestamp is past the last record; a partition missing from `times` is an error.
///
/// Targets are kept inside `[low_watermark, high_watermark]`.
pub fn plan_reset(
    to: &ResetTo,
    current: &[PartitionLag],
    times: &[TimeOffset],
) -> Result<Vec<OffsetChange>, GroupError> {
    current
        .iter()
        .map(|p| {
            let target = match to {
                ResetTo::Earliest => p.low_watermark,
                ResetTo::Latest => p.high_watermark,
                ResetTo::Timestamp(_) => {
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
            Ok(OffsetChange {
                topic: p.topic.clone(),
                partition: p.partition,
                from: p.committed,
                to: target.min(p.high_watermark).max(p.low_watermark),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn p(topic: &str, partition: i32, committed: Option<i64>, low: i64, high: i64) -> PartitionLag {
        PartitionLag::new(topic, partition, committed, low, high)
    }

    fn current() -> Vec<PartitionLag> {
        vec![
            p("orders", 0, Some(40), 10, 100),
            p("orders", 1, None, 0, 50),
            p("orders", 2, Some(7), 0, 7),
        ]
    }

    fn changes(v: &[OffsetChange]) -> Vec<(i32, Option<i64>, i64)> {
        v.iter().map(|c| (c.partition, c.from, c.to)).collect()
    }

    #[test]
    fn tagged_reset_metadata_round_trips() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let m = reset_metadata_by(at, "3f2a-uid", Some(42));
        assert_eq!(
            m,
            "orderflow.reset=2026-11-22T10:00:00.000Z by=3f2a-uid from=42"
        );
        assert!(is_reset_metadata(&m));
        assert_eq!(reset_metadata_time(&m), Some(at));
        assert_eq!(reset_metadata_by_of(&m), Some("3f2a-uid"));
        assert_eq!(reset_metadata_from(&m), Some(Some(42)));
        let none = reset_metadata_by(at, "u", None);
        assert_eq!(reset_metadata_from(&none), Some(None));
        // plain reset metadata and other commit metadata carry no tag
        assert_eq!(reset_metadata_by_of(&reset_metadata(at)), None);
        assert_eq!(reset_metadata_from(&reset_metadata(at)), None);
        assert_eq!(reset_metadata_by_of("orderflow.analytics.base=0"), None);
        assert_eq!(reset_metadata_time(&reset_metadata(at)), Some(at));
    }

    #[test]
    fn lag_is_high_minus_committed_or_high_minus_low() {
        assert_eq!(partition_lag(Some(40), 10, 100), 60);
        assert_eq!(partition_lag(None, 10, 100), 90);
        assert_eq!(partition_lag(Some(100), 10, 100), 0);
        assert_eq!(partition_lag(None, 5, 5), 0);
        // committed past the end (topic recreated): no negative lag
        assert_eq!(partition_lag(Some(120), 0, 100), 0);
        // committed before the low watermark (retention deleted records): what is left to read
        // counted from the committed offset, like kafka-consumer-groups
        assert_eq!(partition_lag(Some(2), 10, 100), 98);
    }

    #[test]
    fn total_and_sample_sum_partitions() {
        let c = current();
        assert_eq!(c.iter().map(|x| x.lag).collect::<Vec<_>>(), vec![60, 50, 0]);
        assert_eq!(total_lag(&c), 110);
        assert_eq!(total_lag(&[]), 0);
        let s = LagSample::new(1_700_000_000_000, c);
        assert_eq!(s.total, 110);
        assert_eq!(s.at_ms, 1_700_000_000_000);
    }

    #[test]
    fn plan_earliest_and_latest() {
        let e = plan_reset(&ResetTo::Earliest, &current(), &[]).unwrap();
        assert_eq!(
            changes(&e),
            vec![(0, Some(40), 10), (1, None, 0), (2, Some(7), 0)]
        );
        assert!(e.iter().all(|c| c.topic == "orders"));
        let l = plan_reset(&ResetTo::Latest, &current(), &[]).unwrap();
        assert_eq!(
            changes(&l),
            vec![(0, Some(40), 100), (1, None, 50), (2, Some(7), 7)]
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
        let plan = plan_reset(&ts, &current(), &times).unwrap();
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
        let plan = plan_reset(&ts, &cur, &times).unwrap();
        assert_eq!(changes(&plan), vec![(0, None, 10), (1, None, 20)]);
    }

    #[test]
    fn plan_timestamp_without_answer_is_an_error() {
        let ts = ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let err = plan_reset(&ts, &current(), &[]).unwrap_err();
        assert!(
            matches!(err, GroupError::MissingTimeOffset { ref topic, partition: 0 } if topic == "orders"),
            "{err}"
        );
    }

    #[test]
    fn plan_of_nothing_is_empty() {
        assert!(plan_reset(&ResetTo::Earliest, &[], &[]).unwrap().is_empty());
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

    #[test]
    fn reset_metadata_marker() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let m = reset_metadata(at);
        assert_eq!(m, "orderflow.reset=2026-11-22T10:00:00.000Z");
        assert!(is_reset_metadata(&m));
        assert!(!is_reset_metadata(""));
        assert!(!is_reset_metadata("analytics:v1"));
        assert_eq!(reset_metadata_time(&m), Some(at));
        assert_eq!(reset_metadata_time("analytics:v1"), None);
        assert_eq!(reset_metadata_time("orderflow.reset=garbage"), None);
    }

    #[test]
    fn group_is_empty_only_without_members_in_an_inactive_state() {
        let g = |state: &str, members: usize| GroupInfo {
            group: "g".into(),
            state: state.into(),
            members,
            member_list: vec![],
        };
        assert!(g("Empty", 0).is_empty());
        assert!(g("Dead", 0).is_empty());
        assert!(!g("Stable", 1).is_empty());
        assert!(!g("PreparingRebalance", 0).is_empty());
        assert!(!g("Empty", 1).is_empty());
    }

    #[test]
    fn not_empty_error_message_is_actionable() {
        let e = GroupError::NotEmpty {
            group: "analytics".into(),
            state: "Stable".into(),
            members: 1,
        };
        assert_eq!(
            e.to_string(),
            "consumer group analytics has 1 active member(s) (state Stable): \
             stop its consumers before resetting offsets"
        );
        let e = GroupError::UnknownTopic(vec!["nope".into(), "nada".into()]);
        assert_eq!(
            e.to_string(),
            "topic(s) not found on the broker: nope, nada"
        );
    }
}
