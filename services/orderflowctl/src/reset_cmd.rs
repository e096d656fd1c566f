//! `orderflowctl reset`: its flags, the target they name ([`ResetArgs::target`]), and the
//! command itself (plan or reset, warnings, table / JSON / the CSV of `--export`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use orderflow_runtime::KafkaConfig;
use serde::Serialize;

use crate::cli::CliError;
use crate::format;
use crate::groups;
use crate::history::{history_warnings, HistoryTruncated};
use crate::plan::{OffsetChange, ResetTo};
use crate::targets::{offsets_csv, parse_duration, parse_offsets_csv};

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Consumer group.
    #[arg(long, short)]
    pub group: String,
    /// Topic (repeatable, at least one; not with --to-file, whose lines name the topics).
    #[arg(
        long = "topic",
        short,
        required_unless_present = "to_file",
        conflicts_with = "to_file"
    )]
    pub topics: Vec<String>,
    /// earliest | latest | timestamp (with --timestamp) | by-duration (with --duration) |
    /// shift-by (with --shift-by) | to-offsets (with --to-file), or an RFC 3339 timestamp.
    /// May be left out with --duration, --shift-by or --to-file.
    #[arg(long, required_unless_present_any = ["duration", "shift_by", "to_file"])]
    pub to: Option<String>,
    /// RFC 3339 timestamp for --to timestamp, e.g. 2026-11-22T10:00:00Z.
    #[arg(long, conflicts_with_all = ["duration", "shift_by", "to_file"])]
    pub timestamp: Option<String>,
    /// ISO 8601 duration for --to by-duration: the first record at or after now minus it,
    /// e.g. PT1H, P1DT12H (as kafka-consumer-groups --by-duration).
    #[arg(long, conflicts_with_all = ["shift_by", "to_file"])]
    pub duration: Option<String>,
    /// Move each partition's committed offset by N records (negative: back), kept inside
    /// the partition's log start and log end offsets (as kafka-consumer-groups --shift-by).
    /// A partition the group never committed on is an error.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "to_file")]
    pub shift_by: Option<i64>,
    /// Reset the partitions listed in FILE to its offsets: the CSV of
    /// kafka-consumer-groups --export (lines topic,partition,offset, or
    /// group,topic,partition,offset), as its --from-file reads it. To undo a reset later,
    /// save the offsets before it: `--shift-by 0 --dry-run --export > before.csv`.
    #[arg(long, value_name = "FILE")]
    pub to_file: Option<PathBuf>,
    /// Show the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "export")]
    pub json: bool,
    /// Print the new offsets as CSV (topic,partition,offset), the format of
    /// kafka-consumer-groups --export, which --to-file reads.
    #[arg(long)]
    pub export: bool,
}

impl ResetArgs {
    /// The target the flags name. Errors name the flags.
    pub fn target(&self) -> Result<ResetTo, CliError> {
        let kind = self
            .to
            .as_deref()
            .map(|t| t.trim().to_ascii_lowercase().replace('_', "-"));
        let usage = |m: &str| Err(CliError::Usage(m.to_string()));
        match (kind.as_deref(), self.duration.as_deref(), self.shift_by) {
            (None | Some("by-duration"), Some(d), _) => Ok(ResetTo::ByDuration(parse_duration(d)?)),
            (Some("by-duration"), None, _) => {
                usage("--to by-duration needs --duration (ISO 8601, e.g. PT1H)")
            }
            (Some(_), Some(_), _) => usage("--duration is only valid with --to by-duration"),
            (None | Some("shift-by"), None, Some(n)) => Ok(ResetTo::ShiftBy(n)),
            (Some("shift-by"), None, None) => usage("--to shift-by needs --shift-by N"),
            (Some(_), None, Some(_)) => usage("--shift-by is only valid with --to shift-by"),
            (kind, None, None) => match (kind, &self.to_file) {
                (None | Some("to-offsets" | "from-file"), Some(file)) => {
                    let text = std::fs::read_to_string(file).map_err(|e| CliError::Read {
                        path: file.display().to_string(),
                        source: e,
                    })?;
                    Ok(ResetTo::ToOffsets(parse_offsets_csv(&text, &self.group)?))
                }
                (Some("to-offsets" | "from-file"), None) => {
                    usage("--to to-offsets needs --to-file FILE")
                }
                (Some(_), Some(_)) => usage("--to-file is only valid with --to to-offsets"),
                (Some(_), None) => Ok(ResetTo::from_parts(
                    self.to.as_deref().unwrap_or_default(),
                    self.timestamp.as_deref(),
                )?),
                (None, None) => {
                    usage("a target is needed: --to, --duration, --shift-by or --to-file")
                }
            },
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ResetJson<'a> {
    pub(crate) group: &'a str,
    pub(crate) to: ResetTo,
    pub(crate) dry_run: bool,
    pub(crate) changes: &'a [OffsetChange],
    /// The partitions whose target lay before the oldest record Kafka still holds (also
    /// in their change); empty when the whole history asked for is there.
    pub(crate) history_truncated: Vec<TruncatedJson<'a>>,
}

#[derive(Serialize)]
pub(crate) struct TruncatedJson<'a> {
    topic: &'a str,
    partition: i32,
    #[serde(flatten)]
    history: &'a HistoryTruncated,
}

pub(crate) fn truncated_json(changes: &[OffsetChange]) -> Vec<TruncatedJson<'_>> {
    changes
        .iter()
        .filter_map(|c| {
            Some(TruncatedJson {
                topic: &c.topic,
                partition: c.partition,
                history: c.history_truncated.as_ref()?,
            })
        })
        .collect()
}

/// `orderflowctl reset`.
pub fn run(
    a: &ResetArgs,
    kafka: &KafkaConfig,
    timeout: Duration,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), CliError> {
    let to = a.target()?;
    let file_topics = to.topics();
    let topics: Vec<&str> = if file_topics.is_empty() {
        a.topics.iter().map(String::as_str).collect()
    } else {
        file_topics.iter().map(String::as_str).collect()
    };
    let changes = if a.dry_run {
        let info = groups::describe_group(kafka, &a.group, timeout)?;
        if !info.is_empty() {
            writeln!(
                note,
                "note: group {} has {} active member(s) (state {}): a real reset would be refused",
                info.group, info.members, info.state
            )?;
        }
        groups::plan_reset_now(kafka, &a.group, &topics, to.clone(), timeout)?
    } else {
        groups::reset(kafka, &a.group, &topics, to.clone(), timeout)?
    };
    // The reset is made (or planned) all the same: a warning, not an error.
    let dry = if a.dry_run { " (dry run)" } else { "" };
    for line in history_warnings(&to, &changes) {
        writeln!(note, "warning{dry}: {line}")?;
    }
    if a.export {
        write!(out, "{}", offsets_csv(&changes))?;
    } else if a.json {
        let doc = ResetJson {
            group: &a.group,
            to,
            dry_run: a.dry_run,
            changes: &changes,
            history_truncated: truncated_json(&changes),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        write!(out, "{}", format::reset_table(&a.group, &changes))?;
        if a.dry_run {
            writeln!(out, "(dry run: nothing changed)")?;
        } else {
            writeln!(out, "reset group {} to {to}", a.group)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn reset_args(args: &[&str]) -> Result<ResetArgs, clap::Error> {
        let cli = Cli::try_parse_from(["orderflowctl", "reset"].iter().chain(args).copied())?;
        match cli.command {
            Command::Reset(a) => Ok(a),
            _ => panic!("not reset"),
        }
    }

    fn target(args: &[&str]) -> Result<ResetTo, String> {
        let a = reset_args(args).map_err(|e| e.to_string())?;
        a.target().map_err(|e| e.to_string())
    }

    #[test]
    fn reset_needs_group_topic_and_target() {
        assert!(reset_args(&["--group", "g", "--to", "earliest"]).is_err());
        assert!(reset_args(&["--topic", "orders", "--to", "earliest"]).is_err());
        assert!(reset_args(&["--group", "g", "--topic", "orders"]).is_err());
        let a = reset_args(&[
            "--group",
            "analytics",
            "--topic",
            "orders",
            "--to",
            "timestamp",
            "--timestamp",
            "2026-11-22T10:00:00Z",
            "--dry-run",
        ])
        .unwrap();
        assert!(a.dry_run);
        assert_eq!(a.target().unwrap().to_string(), "2026-11-22T10:00:00Z");
    }

    #[test]
    fn the_new_targets_from_their_flags() {
        let g = ["-g", "analytics", "-t", "orders"];
        let with = |more: &[&str]| target(&[&g[..], more].concat());
        assert_eq!(
            with(&["--to", "by-duration", "--duration", "PT1H"]),
            Ok(ResetTo::ByDuration(chrono::Duration::hours(1)))
        );
        assert_eq!(
            with(&["--duration", "P1D"]),
            Ok(ResetTo::ByDuration(chrono::Duration::days(1)))
        );
        assert_eq!(with(&["--shift-by", "-5"]), Ok(ResetTo::ShiftBy(-5)));
        assert_eq!(
            with(&["--to", "shift-by", "--shift-by", "3"]),
            Ok(ResetTo::ShiftBy(3))
        );
        for (bad, why) in [
            (vec!["--to", "by-duration"], "needs --duration"),
            (vec!["--to", "shift-by"], "needs --shift-by"),
            (
                vec!["--to", "latest", "--shift-by", "1"],
                "only valid with --to shift-by",
            ),
            (
                vec!["--to", "earliest", "--duration", "PT1H"],
                "only valid with --to by-duration",
            ),
            (vec!["--duration", "1H"], "invalid duration \"1H\""),
            (
                vec!["--shift-by", "1", "--duration", "PT1H"],
                "cannot be used with",
            ),
            (
                vec!["--shift-by", "1", "--timestamp", "2026-11-22T10:00:00Z"],
                "cannot be used with",
            ),
            (vec!["--to", "to-offsets"], "needs --to-file"),
        ] {
            let err = with(&bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn to_file_reads_the_csv_and_names_the_topics() {
        let dir = std::env::temp_dir().join(format!("orderflowctl-to-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("offsets.csv");
        std::fs::write(&file, "orders,0,3\ninventory-events,2,9\n\n").unwrap();
        let f = file.display().to_string();
        let to = target(&["-g", "analytics", "--to-file", &f]).unwrap();
        assert_eq!(to.topics(), vec!["orders", "inventory-events"]);
        // --topic and --to-file do not go together; a missing file is named
        assert!(target(&["-g", "a", "-t", "orders", "--to-file", &f]).is_err());
        let missing = dir.join("nope.csv").display().to_string();
        let err = target(&["-g", "a", "--to-file", &missing]).unwrap_err();
        assert!(err.contains("nope.csv"), "{err}");
        std::fs::write(&file, "orders,zero,3\n").unwrap();
        let err = target(&["-g", "a", "--to-file", &f]).unwrap_err();
        assert!(err.contains("line 1") && err.contains("partition"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reset_json_lists_the_truncated_partitions() {
        let changes = vec![
            OffsetChange {
                topic: "orders".into(),
                partition: 0,
                from: Some(9),
                to: 0,
                history_truncated: None,
            },
            OffsetChange {
                topic: "orders".into(),
                partition: 1,
                from: Some(9),
                to: 5,
                history_truncated: Some(HistoryTruncated {
                    log_start_offset: 5,
                    records_deleted: Some(5),
                    oldest_record_at: None,
                }),
            },
        ];
        let doc = ResetJson {
            group: "analytics",
            to: ResetTo::Earliest,
            dry_run: false,
            changes: &changes,
            history_truncated: truncated_json(&changes),
        };
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            v["history_truncated"],
            serde_json::json!([{"topic": "orders", "partition": 1, "log_start_offset": 5,
                                "records_deleted": 5}])
        );
        assert!(v["changes"][0].get("history_truncated").is_none());
        assert_eq!(v["changes"][1]["history_truncated"]["log_start_offset"], 5);
        let none = ResetJson {
            history_truncated: truncated_json(&changes[..1]),
            ..doc
        };
        assert_eq!(
            serde_json::to_value(&none).unwrap()["history_truncated"],
            serde_json::json!([])
        );
    }
}
