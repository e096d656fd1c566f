//! The commit metadata orderflow writes next to a consumer group's committed offsets, and
//! reads back to learn who committed there and why.
//!
//! Every meaning is one variant of [`CommitMark`]; its `Display` is the wire format and its
//! `FromStr` reads it back. The wire format is fixed: groups committed by earlier versions
//! must still parse.
//!
//! | mark | written by | wire format |
//! | --- | --- | --- |
//! | [`CommitMark::Reset`] | an offset reset (`orderflowctl reset`, the replay controller) | `orderflow.reset=<RFC 3339 ms, UTC>` |
//! | the same, made for someone | a reset on behalf of a ReplayRequest | `orderflow.reset=<time> by=<by> from=<offset\|none>` |
//! | [`CommitMark::AnalyticsBase`] | analytics-service before its snapshots (still read) | `orderflow.analytics.base=<offset>` |
//! | [`CommitMark::AnalyticsRun`] | analytics-service, on every commit | `orderflow.analytics.base=<offset> run=<run id>` |

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

/// Prefix of the commit metadata of an offset reset.
pub const RESET_MARK_PREFIX: &str = "orderflow.reset=";
/// Prefix of the commit metadata analytics writes: where its state of the partition began.
pub const ANALYTICS_BASE_PREFIX: &str = "orderflow.analytics.base=";
/// The token after analytics' base that names its run ([`CommitMark::AnalyticsRun`]).
pub const ANALYTICS_RUN_TOKEN: &str = "run=";

/// One meaning of a committed offset's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitMark {
    /// The offset was set by a reset at `at` (milliseconds are kept; finer is dropped by the
    /// wire format), made for `by` when it was tagged.
    Reset {
        at: DateTime<Utc>,
        by: Option<ResetBy>,
    },
    /// analytics-service committed here; its state of the partition began at this offset.
    AnalyticsBase(i64),
    /// analytics-service committed here, in its run `run` (the id every record of its
    /// `analytics-snapshots` state carries); the run's state of the partition began at
    /// `base`. `run` has no whitespace: the wire format splits on it.
    AnalyticsRun { base: i64, run: String },
}

/// Whom a reset was made for, and where the partition was before it: a controller that
/// resumes after a crash recognises its own reset (and must not reset twice), and still
/// knows the offsets it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetBy {
    /// e.g. a ReplayRequest's uid. No whitespace: the wire format splits on it.
    pub by: String,
    /// The committed offset before the reset; `None` when the partition had none.
    pub from: Option<i64>,
}

/// Metadata that is not one of orderflow's marks (empty, another tool's, or malformed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not an orderflow commit mark: {0:?}")]
pub struct NotACommitMark(pub String);

impl CommitMark {
    /// The mark of a reset at `at` made for no one in particular.
    pub fn reset(at: DateTime<Utc>) -> Self {
        Self::Reset { at, by: None }
    }

    /// The mark of a reset at `at` made for `by` on a partition committed at `from` before.
    pub fn reset_by(at: DateTime<Utc>, by: impl Into<String>, from: Option<i64>) -> Self {
        Self::Reset {
            at,
            by: Some(ResetBy {
                by: by.into(),
                from,
            }),
        }
    }

    /// Read `metadata`; `None` for anything that is not a mark (as `FromStr`, without the
    /// error).
    pub fn of(metadata: &str) -> Option<Self> {
        metadata.parse().ok()
    }

    /// When the reset happened (`None`: not a reset).
    pub fn reset_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Reset { at, .. } => Some(*at),
            Self::AnalyticsBase(_) | Self::AnalyticsRun { .. } => None,
        }
    }

    /// Whom the reset was made for (`None`: not a reset, or an untagged one).
    pub fn reset_by_of(&self) -> Option<&ResetBy> {
        match self {
            Self::Reset { by, .. } => by.as_ref(),
            Self::AnalyticsBase(_) | Self::AnalyticsRun { .. } => None,
        }
    }

    /// Where analytics' state of the partition began, when analytics committed here.
    pub fn analytics_base(&self) -> Option<i64> {
        match self {
            Self::AnalyticsBase(b) | Self::AnalyticsRun { base: b, .. } => Some(*b),
            Self::Reset { .. } => None,
        }
    }
}

impl fmt::Display for CommitMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reset { at, by } => {
                let at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
                write!(f, "{RESET_MARK_PREFIX}{at}")?;
                if let Some(ResetBy { by, from }) = by {
                    write!(f, " by={by} from=")?;
                    match from {
                        Some(o) => write!(f, "{o}")?,
                        None => f.write_str("none")?,
                    }
                }
                Ok(())
            }
            Self::AnalyticsBase(base) => write!(f, "{ANALYTICS_BASE_PREFIX}{base}"),
            Self::AnalyticsRun { base, run } => {
                write!(
                    f,
                    "{ANALYTICS_BASE_PREFIX}{base} {ANALYTICS_RUN_TOKEN}{run}"
                )
            }
        }
    }
}

impl FromStr for CommitMark {
    type Err = NotACommitMark;

    /// The inverse of `Display`. Tokens after a reset's time other than `by=` and `from=`
    /// are passed over (room for later fields); `by=` and `from=` come together or not at
    /// all.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let not = || NotACommitMark(s.to_string());
        if let Some(rest) = s.strip_prefix(ANALYTICS_BASE_PREFIX) {
            let mut tokens = rest.split_whitespace();
            let base: i64 = tokens.next().and_then(|t| t.parse().ok()).ok_or_else(not)?;
            return match tokens.next() {
                None => Ok(Self::AnalyticsBase(base)),
                Some(t) => match t.strip_prefix(ANALYTICS_RUN_TOKEN) {
                    Some(run) if !run.is_empty() && tokens.next().is_none() => {
                        Ok(Self::AnalyticsRun {
                            base,
                            run: run.to_string(),
                        })
                    }
                    _ => Err(not()),
                },
            };
        }
        let rest = s.strip_prefix(RESET_MARK_PREFIX).ok_or_else(not)?;
        let mut tokens = rest.split_whitespace();
        let at = tokens
            .next()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or_else(not)?
            .with_timezone(&Utc);
        let (mut by, mut from) = (None, None);
        for t in tokens {
            if let Some(v) = t.strip_prefix("by=") {
                by = Some(v.to_string());
            } else if let Some(v) = t.strip_prefix("from=") {
                from = Some(match v {
                    "none" => None,
                    n => Some(n.parse::<i64>().map_err(|_| not())?),
                });
            }
        }
        let by = match (by, from) {
            (None, None) => None,
            (Some(by), Some(from)) => Some(ResetBy { by, from }),
            _ => return Err(not()),
        };
        Ok(Self::Reset { at, by })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use proptest::prelude::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    #[test]
    fn wire_format_of_every_mark() {
        assert_eq!(
            CommitMark::reset(at()).to_string(),
            "orderflow.reset=2026-11-22T10:00:00.000Z"
        );
        assert_eq!(
            CommitMark::reset_by(at(), "3f2a-uid", Some(42)).to_string(),
            "orderflow.reset=2026-11-22T10:00:00.000Z by=3f2a-uid from=42"
        );
        assert_eq!(
            CommitMark::reset_by(at(), "u", None).to_string(),
            "orderflow.reset=2026-11-22T10:00:00.000Z by=u from=none"
        );
        assert_eq!(
            CommitMark::AnalyticsBase(17).to_string(),
            "orderflow.analytics.base=17"
        );
        let run = CommitMark::AnalyticsRun {
            base: 17,
            run: "0f3a".into(),
        };
        assert_eq!(run.to_string(), "orderflow.analytics.base=17 run=0f3a");
        assert_eq!(CommitMark::of(&run.to_string()), Some(run.clone()));
        assert_eq!(run.analytics_base(), Some(17));
        assert_eq!(run.reset_at(), None);
        assert_eq!(CommitMark::AnalyticsBase(3).analytics_base(), Some(3));
        assert_eq!(CommitMark::reset(at()).analytics_base(), None);
    }

    #[test]
    fn metadata_committed_by_earlier_versions_parses() {
        assert_eq!(
            CommitMark::of("orderflow.reset=2026-11-22T10:00:00.000Z"),
            Some(CommitMark::reset(at()))
        );
        assert_eq!(
            CommitMark::of("orderflow.reset=2026-11-22T10:00:01.000Z by=3f2a-uid from=57"),
            Some(CommitMark::reset_by(
                at() + TimeDelta::seconds(1),
                "3f2a-uid",
                Some(57)
            ))
        );
        assert_eq!(
            CommitMark::of("orderflow.analytics.base=0"),
            Some(CommitMark::AnalyticsBase(0))
        );
        // another offset converts to UTC
        assert_eq!(
            CommitMark::of("orderflow.reset=2026-11-22T11:00:00+01:00").and_then(|m| m.reset_at()),
            Some(at())
        );
    }

    #[test]
    fn what_is_not_a_mark() {
        for m in [
            "",
            "analytics:v1",
            "orderflow.reset=garbage",
            "orderflow.reset=",
            "orderflow.analytics.base=garbage",
            "orderflow.analytics.base=",
            "orderflow.analytics.base=3 run=",
            "orderflow.analytics.base=3 base=4",
            "orderflow.analytics.base=3 run=a b",
            "orderflow.reset=2026-11-22T10:00:00.000Z by=u",
            "orderflow.reset=2026-11-22T10:00:00.000Z from=3",
            "orderflow.reset=2026-11-22T10:00:00.000Z by=u from=x",
        ] {
            assert_eq!(
                m.parse::<CommitMark>(),
                Err(NotACommitMark(m.into())),
                "{m}"
            );
        }
    }

    #[test]
    fn accessors() {
        let tagged = CommitMark::reset_by(at(), "u", Some(3));
        assert_eq!(tagged.reset_at(), Some(at()));
        assert_eq!(
            tagged.reset_by_of(),
            Some(&ResetBy {
                by: "u".into(),
                from: Some(3)
            })
        );
        assert_eq!(CommitMark::reset(at()).reset_by_of(), None);
        assert_eq!(CommitMark::AnalyticsBase(1).reset_at(), None);
        assert_eq!(CommitMark::AnalyticsBase(1).reset_by_of(), None);
    }

    fn is_reset(m: &str) -> bool {
        matches!(CommitMark::of(m), Some(CommitMark::Reset { .. }))
    }

    fn time(m: &str) -> Option<DateTime<Utc>> {
        CommitMark::of(m).and_then(|m| m.reset_at())
    }

    fn by_of(m: &str) -> Option<String> {
        CommitMark::of(m).and_then(|m| m.reset_by_of().map(|b| b.by.clone()))
    }

    fn from(m: &str) -> Option<Option<i64>> {
        CommitMark::of(m).and_then(|m| m.reset_by_of().map(|b| b.from))
    }

    // Moved from orderflowctl's model with the same assertions.
    #[test]
    fn tagged_reset_metadata_round_trips() {
        let at = at();
        let m = CommitMark::reset_by(at, "3f2a-uid", Some(42)).to_string();
        assert_eq!(
            m,
            "orderflow.reset=2026-11-22T10:00:00.000Z by=3f2a-uid from=42"
        );
        assert!(is_reset(&m));
        assert_eq!(time(&m), Some(at));
        assert_eq!(by_of(&m).as_deref(), Some("3f2a-uid"));
        assert_eq!(from(&m), Some(Some(42)));
        let none = CommitMark::reset_by(at, "u", None).to_string();
        assert_eq!(from(&none), Some(None));
        // plain reset metadata and other commit metadata carry no tag
        let plain = CommitMark::reset(at).to_string();
        assert_eq!(by_of(&plain), None);
        assert_eq!(from(&plain), None);
        assert_eq!(by_of("orderflow.analytics.base=0"), None);
        assert_eq!(time(&plain), Some(at));
    }

    // Moved from orderflowctl's model with the same assertions.
    #[test]
    fn reset_metadata_marker() {
        let at = at();
        let m = CommitMark::reset(at).to_string();
        assert_eq!(m, "orderflow.reset=2026-11-22T10:00:00.000Z");
        assert!(is_reset(&m));
        assert!(!is_reset(""));
        assert!(!is_reset("analytics:v1"));
        assert_eq!(time(&m), Some(at));
        assert_eq!(time("analytics:v1"), None);
        assert_eq!(time("orderflow.reset=garbage"), None);
    }

    fn mark() -> impl Strategy<Value = CommitMark> {
        // Milliseconds from 1970 to 2200: the precision the wire format keeps.
        let at = (0i64..7_258_118_400_000)
            .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or_default());
        prop_oneof![
            any::<i64>().prop_map(CommitMark::AnalyticsBase),
            (any::<i64>(), "[a-f0-9]{1,32}")
                .prop_map(|(base, run)| CommitMark::AnalyticsRun { base, run }),
            at.clone().prop_map(CommitMark::reset),
            (
                at,
                "[A-Za-z0-9._-]{0,40}",
                proptest::option::of(any::<i64>())
            )
                .prop_map(|(at, by, from)| CommitMark::reset_by(at, by, from)),
        ]
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(m in mark()) {
            let wire = m.to_string();
            prop_assert_eq!(wire.parse::<CommitMark>(), Ok(m));
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<CommitMark>();
        }
    }
}
