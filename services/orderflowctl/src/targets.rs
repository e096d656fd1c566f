//! The reset targets beyond earliest / latest / a timestamp, as `kafka-consumer-groups
//! --reset-offsets` has them: `--by-duration` (an ISO 8601 duration before now),
//! `--shift-by` (a signed count of records per partition) and `--from-file` (explicit
//! offsets, the tool's CSV). Pure: parsing, formatting and the arithmetic of [`crate::plan`]
//! for these targets; nothing here talks to Kafka.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ParseResetToError;
use crate::history::HistoryTruncated;
use crate::model::PartitionLag;
use crate::plan::{OffsetChange, ResetTo};

/// One partition's explicit target offset (`ResetTo::ToOffsets`, a line of the CSV file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl ResetTo {
    /// `ByDuration` as the timestamp it stands for at `now` (`now - duration`, as Kafka's
    /// tool computes it); every other target unchanged.
    pub fn resolved(&self, now: DateTime<Utc>) -> ResetTo {
        match self {
            Self::ByDuration(d) => Self::Timestamp(now - *d),
            other => other.clone(),
        }
    }

    /// The topics an explicit-offsets target names, in first-seen order (empty otherwise).
    pub fn topics(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Self::ToOffsets(list) = self {
            for o in list {
                if !out.contains(&o.topic) {
                    out.push(o.topic.clone());
                }
            }
        }
        out
    }
}

/// Parse an ISO 8601 duration as `java.time.Duration.parse` (Kafka's `--by-duration`) reads
/// it: `PnDTnHnMn.nS`, each part optional but at least one, e.g. `PT1H`, `P1DT12H`,
/// `PT0.5S`. Negative durations (a time in the future) are refused.
pub fn parse_duration(s: &str) -> Result<Duration, ParseResetToError> {
    let bad = |reason: &str| ParseResetToError::BadDuration {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let t = s.trim().to_ascii_uppercase();
    if t.starts_with('-') {
        return Err(bad("a negative duration is a time in the future"));
    }
    let rest = t
        .strip_prefix('P')
        .ok_or_else(|| bad("it does not start with P"))?;
    let (date, time) = match rest.split_once('T') {
        Some((d, "")) => return Err(bad(&format!("nothing after T in P{d}T"))),
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(bad("it has no part"));
    }
    let mut total = Duration::zero();
    let mut add = |part: &str, units: &[(char, i64)]| -> Result<(), ParseResetToError> {
        let mut num = String::new();
        let mut allowed = units;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let pos = allowed
                .iter()
                .position(|(u, _)| *u == c)
                .ok_or_else(|| bad(&format!("unexpected {c:?}")))?;
            let secs = allowed[pos].1;
            allowed = &allowed[pos + 1..];
            total += amount(&num, secs, c == 'S').ok_or_else(|| bad("a number is malformed"))?;
            num.clear();
        }
        if num.is_empty() {
            Ok(())
        } else {
            Err(bad("a number has no unit"))
        }
    };
    add(date, &[('D', 86_400)])?;
    if let Some(time) = time {
        add(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    Ok(total)
}

/// `num` units of `secs` seconds; only seconds may have a fraction (up to nanoseconds).
fn amount(num: &str, secs: i64, fraction_allowed: bool) -> Option<Duration> {
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) if fraction_allowed && !f.is_empty() && f.len() <= 9 => (w, f),
        Some(_) => return None,
        None => (num, ""),
    };
    let whole: i64 = whole.parse().ok()?;
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Duration::try_seconds(whole.checked_mul(secs)?)?.checked_add(&Duration::nanoseconds(nanos))
}

/// The ISO 8601 form of `d` (`PT1H`, `P1DT2H30M`, `PT0.5S`, `PT0S`).
pub fn format_duration(d: Duration) -> String {
    let total = d.num_seconds();
    let nanos = (d - Duration::seconds(total))
        .num_nanoseconds()
        .unwrap_or(0);
    let (days, rest) = (total / 86_400, total % 86_400);
    let (h, m, s) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
    let mut out = String::from("P");
    if days > 0 {
        let _ = write!(out, "{days}D");
    }
    if h > 0 || m > 0 || s > 0 || nanos > 0 || days == 0 {
        out.push('T');
        if h > 0 {
            let _ = write!(out, "{h}H");
        }
        if m > 0 {
            let _ = write!(out, "{m}M");
        }
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            let _ = write!(out, "{s}.{}S", frac.trim_end_matches('0'));
        } else if s > 0 || (h == 0 && m == 0) {
            let _ = write!(out, "{s}S");
        }
    }
    out
}

/// Read the CSV of `kafka-consumer-groups --reset-offsets --export` (what `--from-file`
/// reads): `topic,partition,offset` per line, or `group,topic,partition,offset` (the tool's
/// form for several groups; only `group`'s lines are taken). Blank lines are skipped.
pub fn parse_offsets_csv(text: &str, group: &str) -> Result<Vec<TargetOffset>, ParseResetToError> {
    let mut out: Vec<TargetOffset> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| ParseResetToError::BadOffsets {
            line: i + 1,
            text: line.to_string(),
            reason,
        };
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let (topic, partition, offset) = match cells.as_slice() {
            [""] => continue,
            [t, p, o] => (*t, *p, *o),
            [g, t, p, o] if *g == group => (*t, *p, *o),
            [_, _, _, _] => continue,
            _ => {
                return Err(bad(format!(
                    "{} field(s), expected topic,partition,offset",
                    cells.len()
                )))
            }
        };
        if topic.is_empty() {
            return Err(bad("the topic is empty".to_string()));
        }
        let partition: i32 = partition
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| bad(format!("partition {partition:?} is not a number >= 0")))?;
        let offset: i64 = offset
            .parse()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| bad(format!("offset {offset:?} is not a number >= 0")))?;
        if out
            .iter()
            .any(|o| o.topic == topic && o.partition == partition)
        {
            return Err(bad(format!("{topic}[{partition}] is listed twice")));
        }
        out.push(TargetOffset {
            topic: topic.to_string(),
            partition,
            offset,
        });
    }
    if out.is_empty() {
        return Err(ParseResetToError::NoOffsets);
    }
    Ok(out)
}

/// The CSV `kafka-consumer-groups --export` prints for these changes: `topic,partition,offset`
/// of each new offset, one line each, then a blank line (as the tool does).
pub fn offsets_csv(changes: &[OffsetChange]) -> String {
    let mut out = String::new();
    for c in changes {
        let _ = writeln!(out, "{},{},{}", c.topic, c.partition, c.to);
    }
    out.push('\n');
    out
}

/// The requested offset of a `ShiftBy` / `ToOffsets` target on `p`, before it is kept
/// inside `[log start, log end]`: `Ok(None)` for a partition an explicit list leaves out.
pub(crate) fn requested(to: &ResetTo, p: &PartitionLag) -> Result<Option<i64>, ShiftError> {
    match to {
        ResetTo::ShiftBy(n) => {
            let from = p.committed.ok_or(ShiftError)?;
            Ok(Some(from.saturating_add(*n)))
        }
        ResetTo::ToOffsets(list) => Ok(list
            .iter()
            .find(|o| o.topic == p.topic && o.partition == p.partition)
            .map(|o| o.offset)),
        _ => Ok(None),
    }
}

/// A shift of a partition the group never committed on (Kafka's tool refuses it too).
pub(crate) struct ShiftError;

/// An explicit target (shift or offset) below the log start offset lies in deleted history:
/// the offset goes to the log start offset, and `records_deleted` says how many of the
/// offsets asked for are gone.
pub(crate) fn explicit_truncated(
    p: &PartitionLag,
    requested: i64,
    oldest_at: Option<DateTime<Utc>>,
) -> Option<HistoryTruncated> {
    (requested < p.low_watermark && p.low_watermark > 0).then(|| HistoryTruncated {
        log_start_offset: p.low_watermark,
        records_deleted: Some(p.low_watermark - requested.max(0)),
        oldest_record_at: oldest_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::p;
    use chrono::TimeZone;

    #[test]
    fn durations_parse_like_java_time() {
        let h = |n| Duration::hours(n);
        assert_eq!(parse_duration("PT1H").unwrap(), h(1));
        assert_eq!(parse_duration("pt90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("P1DT12H").unwrap(), h(36));
        assert_eq!(parse_duration("P2D").unwrap(), h(48));
        assert_eq!(
            parse_duration("PT1.5S").unwrap(),
            Duration::milliseconds(1500)
        );
        assert_eq!(
            parse_duration("PT1H2M3S").unwrap(),
            h(1) + Duration::seconds(123)
        );
        assert_eq!(parse_duration("PT0S").unwrap(), Duration::zero());
        for bad in [
            "", "P", "PT", "1H", "PT1", "PT1X", "PT1M1H", "P1H", "-PT1H", "PT1.5H", "P1W", "PT1.S",
            "P1DT",
        ] {
            assert!(
                matches!(
                    parse_duration(bad),
                    Err(ParseResetToError::BadDuration { .. })
                ),
                "{bad:?}"
            );
        }
        let msg = parse_duration("1H").unwrap_err().to_string();
        assert!(msg.contains("\"1H\"") && msg.contains("PT1H"), "{msg}");
    }

    #[test]
    fn durations_format_back() {
        for s in [
            "PT1H", "P1DT12H", "PT1.5S", "PT0S", "P2D", "PT1H2M3S", "PT30M",
        ] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn by_duration_is_now_minus_the_duration_as_a_timestamp() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let to = ResetTo::ByDuration(Duration::minutes(90));
        assert_eq!(
            to.resolved(now),
            ResetTo::Timestamp(Utc.with_ymd_and_hms(2026, 11, 22, 8, 30, 0).unwrap())
        );
        assert_eq!(ResetTo::Earliest.resolved(now), ResetTo::Earliest);
        assert_eq!(ResetTo::ShiftBy(-3).resolved(now), ResetTo::ShiftBy(-3));
        assert_eq!(to.to_string(), "by-duration PT1H30M");
    }

    fn plan(to: &ResetTo, cur: &[PartitionLag]) -> Result<Vec<(i32, i64, Option<i64>)>, String> {
        crate::plan::plan_reset(to, cur, &[], &[])
            .map(|v| {
                v.iter()
                    .map(|c| {
                        let deleted = c.history_truncated.as_ref().and_then(|h| h.records_deleted);
                        (c.partition, c.to, deleted)
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn shift_by_moves_the_committed_offset_and_clamps_like_kafka() {
        let cur = vec![
            p("t", 0, Some(40), 10, 100),
            p("t", 1, Some(3), 0, 50),
            p("t", 2, Some(7), 0, 7),
        ];
        // back 35: 5 is below t[0]'s log start 10 (5 offsets deleted), -32 is below 0
        assert_eq!(
            plan(&ResetTo::ShiftBy(-35), &cur),
            Ok(vec![(0, 10, Some(5)), (1, 0, None), (2, 0, None)])
        );
        // forward: kept at the log end
        assert_eq!(
            plan(&ResetTo::ShiftBy(20), &cur),
            Ok(vec![(0, 60, None), (1, 23, None), (2, 7, None)])
        );
        assert_eq!(
            plan(&ResetTo::ShiftBy(0), &cur),
            Ok(vec![(0, 40, None), (1, 3, None), (2, 7, None)])
        );
        assert_eq!(
            plan(&ResetTo::ShiftBy(i64::MIN), &cur),
            Ok(vec![(0, 10, Some(10)), (1, 0, None), (2, 0, None)])
        );
        // a partition never committed: nothing to shift from (Kafka's tool refuses too)
        let never = vec![p("t", 0, Some(4), 0, 10), p("t", 1, None, 0, 10)];
        assert_eq!(
            plan(&ResetTo::ShiftBy(-1), &never),
            Err("cannot shift the offset of t[1]: the group has no committed offset there".into())
        );
    }

    #[test]
    fn explicit_offsets_reset_only_the_listed_partitions_clamped() {
        let cur = vec![
            p("t", 0, Some(40), 10, 100),
            p("t", 1, None, 0, 50),
            p("t", 2, Some(7), 0, 7),
        ];
        let at = |partition, offset| TargetOffset {
            topic: "t".into(),
            partition,
            offset,
        };
        assert_eq!(
            plan(&ResetTo::ToOffsets(vec![at(2, 9), at(0, 4)]), &cur),
            Ok(vec![(0, 10, Some(6)), (2, 7, None)])
        );
        assert_eq!(
            plan(&ResetTo::ToOffsets(vec![at(1, 20)]), &cur),
            Ok(vec![(1, 20, None)])
        );
        assert_eq!(
            plan(&ResetTo::ToOffsets(vec![at(3, 0)]), &cur),
            Err("t[3] is not a partition of topic t on the broker".into())
        );
    }

    #[test]
    fn offsets_csv_reads_the_tools_export() {
        let got = parse_offsets_csv("orders,1,0\norders,0,7\n\n", "g").unwrap();
        assert_eq!(
            got,
            vec![
                TargetOffset {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 0
                },
                TargetOffset {
                    topic: "orders".into(),
                    partition: 0,
                    offset: 7
                },
            ]
        );
        // several groups: only ours
        let got = parse_offsets_csv("g,orders,0,3\nother,orders,0,9\n", "g").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].offset, 3);
        for (bad, line) in [
            ("orders,0\n", 1),
            ("orders,0,1\norders,x,1\n", 2),
            ("orders,0,-1\n", 1),
            (",0,1\n", 1),
            ("orders,0,1\norders,0,2\n", 2),
        ] {
            match parse_offsets_csv(bad, "g") {
                Err(ParseResetToError::BadOffsets { line: l, .. }) => assert_eq!(l, line, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(
            parse_offsets_csv("\n", "g"),
            Err(ParseResetToError::NoOffsets)
        );
        assert_eq!(
            parse_offsets_csv("other,orders,0,9\n", "g"),
            Err(ParseResetToError::NoOffsets)
        );
    }

    #[test]
    fn the_export_is_the_tools_csv_and_reads_back() {
        let changes = vec![
            OffsetChange {
                topic: "orders".into(),
                partition: 1,
                from: None,
                to: 0,
                history_truncated: None,
            },
            OffsetChange {
                topic: "orders".into(),
                partition: 0,
                from: Some(4),
                to: 12,
                history_truncated: None,
            },
        ];
        let csv = offsets_csv(&changes);
        assert_eq!(csv, "orders,1,0\norders,0,12\n\n");
        let back = parse_offsets_csv(&csv, "g").unwrap();
        assert_eq!(
            back.iter()
                .map(|o| (o.partition, o.offset))
                .collect::<Vec<_>>(),
            vec![(1, 0), (0, 12)]
        );
        let to = ResetTo::ToOffsets(back);
        assert_eq!(to.topics(), vec!["orders".to_string()]);
        assert_eq!(to.to_string(), "offsets (2 partition(s))");
    }
}
