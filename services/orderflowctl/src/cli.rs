//! The `orderflowctl` command line: arguments (clap) and what each command does.
//! `main.rs` only parses, calls [`run`] and turns the result into an exit code.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use orderflow_events::{TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use serde::Serialize;
use thiserror::Error;

use crate::error::{GroupError, ParseResetToError};
use crate::format;
use crate::groups::{self, WatchEnd, WatchOptions};
use crate::history::{history_warnings, HistoryTruncated};
use crate::model::LagSample;
use crate::plan::{OffsetChange, ResetTo};

/// Topics `lag` looks at when no `--topic` is given: the ones orderflow's groups consume.
pub const DEFAULT_LAG_TOPICS: [&str; 2] = [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS];

/// Exit code when a reset is refused because the group has members (by our check or by
/// Kafka).
pub const EXIT_GROUP_NOT_EMPTY: i32 = 2;
/// Exit code when `lag --until-zero` did not see lag 0 before `--timeout-secs`.
pub const EXIT_NOT_DRAINED: i32 = 3;

/// Consumer-group lag, state and offset reset for orderflow (like kafka-consumer-groups).
///
/// Exit codes: 0 ok, 1 error, 2 reset refused because the group has active members
/// (also clap's code for bad arguments), 3 `lag --until-zero` timed out. A reset whose
/// target lay before the oldest record Kafka still holds (history deleted by retention or
/// DeleteRecords) is made to the log start offset, warned about on stderr, and exits 0.
#[derive(Debug, Parser)]
#[command(name = "orderflowctl", version)]
pub struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = orderflow_runtime::kafka::DEFAULT_BOOTSTRAP, global = true)]
    pub bootstrap: String,

    /// Timeout of each request to the broker, in milliseconds.
    #[arg(long, default_value_t = 5000, global = true)]
    pub request_timeout_ms: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a group's state and members.
    Describe(DescribeArgs),
    /// Show a group's lag per partition: in records (log-end offset minus committed offset)
    /// and in seconds (now minus the timestamp of the record at the committed offset, the
    /// next one a read_committed consumer gets; 0 when caught up).
    Lag(LagArgs),
    /// Reset a group's committed offsets (the group must have no active members). Warns on
    /// stderr for each partition whose target lay before the oldest record Kafka still holds.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Consumer group.
    #[arg(long, short)]
    pub group: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LagArgs {
    /// Consumer group.
    #[arg(long, short)]
    pub group: String,
    /// Topic (repeatable); default: orders and inventory-events.
    #[arg(long = "topic", short)]
    pub topics: Vec<String>,
    /// Print JSON (with --watch: one JSON object per line and sample).
    #[arg(long)]
    pub json: bool,
    /// Sample repeatedly, one line per sample.
    #[arg(long)]
    pub watch: bool,
    /// Time between samples with --watch.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Stop watching at the first sample with total lag 0 (implies --watch).
    #[arg(long)]
    pub until_zero: bool,
    /// Stop watching after this many seconds (implies --watch); with --until-zero, not
    /// reaching 0 by then is an error (exit code 3).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Consumer group.
    #[arg(long, short)]
    pub group: String,
    /// Topic (repeatable, at least one).
    #[arg(long = "topic", short, required = true)]
    pub topics: Vec<String>,
    /// earliest | latest | timestamp (with --timestamp), or an RFC 3339 timestamp.
    #[arg(long)]
    pub to: String,
    /// RFC 3339 timestamp for --to timestamp, e.g. 2026-11-22T10:00:00Z.
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Show the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error(transparent)]
    ResetTo(#[from] ParseResetToError),
    #[error("lag of group {group} did not reach 0 within {secs}s (last total lag: {last_total})")]
    NotDrained {
        group: String,
        secs: u64,
        last_total: i64,
    },
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl CliError {
    /// The line printed on stderr: Kafka errors name the bootstrap servers they used.
    pub fn message(&self, bootstrap: &str) -> String {
        match self {
            Self::Group(GroupError::Kafka(_)) => format!("{self} (bootstrap {bootstrap})"),
            _ => self.to_string(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Group(GroupError::NotEmpty { .. } | GroupError::RefusedByKafka { .. }) => {
                EXIT_GROUP_NOT_EMPTY
            }
            Self::NotDrained { .. } => EXIT_NOT_DRAINED,
            _ => 1,
        }
    }
}

impl Cli {
    /// Kafka settings: `KAFKA_*` security settings from the environment, bootstrap from
    /// `--bootstrap` / `KAFKA_BOOTSTRAP`.
    pub fn kafka(&self) -> Result<KafkaConfig, orderflow_runtime::ConfigError> {
        let mut k = KafkaConfig::from_env()?;
        k.bootstrap = self.bootstrap.clone();
        Ok(k)
    }
}

#[derive(Serialize)]
struct LagJson<'a> {
    group: &'a str,
    #[serde(flatten)]
    sample: &'a LagSample,
}

#[derive(Serialize)]
struct ResetJson<'a> {
    group: &'a str,
    to: ResetTo,
    dry_run: bool,
    changes: &'a [OffsetChange],
    /// The partitions whose target lay before the oldest record Kafka still holds (also
    /// in their change); empty when the whole history asked for is there.
    history_truncated: Vec<TruncatedJson<'a>>,
}

#[derive(Serialize)]
struct TruncatedJson<'a> {
    topic: &'a str,
    partition: i32,
    #[serde(flatten)]
    history: &'a HistoryTruncated,
}

fn truncated_json(changes: &[OffsetChange]) -> Vec<TruncatedJson<'_>> {
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

/// Run one command; output goes to `out`, notes to `note`.
pub fn run(
    cli: &Cli,
    kafka: &KafkaConfig,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), CliError> {
    let timeout = Duration::from_millis(cli.request_timeout_ms);
    match &cli.command {
        Command::Describe(a) => {
            let info = groups::describe_group(kafka, &a.group, timeout)?;
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
            } else {
                write!(out, "{}", format::group_text(&info))?;
            }
        }
        Command::Lag(a) => lag(a, kafka, timeout, out, note)?,
        Command::Reset(a) => {
            let to = ResetTo::from_parts(&a.to, a.timestamp.as_deref())?;
            let topics: Vec<&str> = a.topics.iter().map(String::as_str).collect();
            let changes = if a.dry_run {
                let info = groups::describe_group(kafka, &a.group, timeout)?;
                if !info.is_empty() {
                    writeln!(
                        note,
                        "note: group {} has {} active member(s) (state {}): a real reset would be refused",
                        info.group, info.members, info.state
                    )?;
                }
                groups::plan_reset_now(kafka, &a.group, &topics, to, timeout)?
            } else {
                groups::reset(kafka, &a.group, &topics, to, timeout)?
            };
            // The reset is made (or planned) all the same: a warning, not an error.
            let dry = if a.dry_run { " (dry run)" } else { "" };
            for line in history_warnings(&to, &changes) {
                writeln!(note, "warning{dry}: {line}")?;
            }
            if a.json {
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
        }
    }
    Ok(())
}

fn lag(
    a: &LagArgs,
    kafka: &KafkaConfig,
    timeout: Duration,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), CliError> {
    let topics: Vec<&str> = if a.topics.is_empty() {
        DEFAULT_LAG_TOPICS.to_vec()
    } else {
        a.topics.iter().map(String::as_str).collect()
    };
    let watch = a.watch || a.until_zero || a.timeout_secs.is_some();
    if !watch {
        let sample = groups::sample_lag(kafka, &a.group, &topics, timeout)?;
        if a.json {
            let doc = LagJson {
                group: &a.group,
                sample: &sample,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        } else {
            write!(out, "{}", format::lag_table(&a.group, &sample.partitions))?;
        }
        return Ok(());
    }
    let opts = WatchOptions {
        interval: Duration::from_millis(a.interval_ms.max(1)),
        until_zero: a.until_zero,
        timeout: a.timeout_secs.map(Duration::from_secs),
    };
    let mut write_err: Option<CliError> = None;
    let end = groups::watch_lag(kafka, &a.group, &topics, &opts, timeout, |s| {
        let line = if a.json {
            serde_json::to_string(&LagJson {
                group: &a.group,
                sample: s,
            })
            .map_err(CliError::from)
        } else {
            Ok(format::sample_line(s))
        };
        let written = line.and_then(|l| writeln!(out, "{l}").map_err(CliError::from));
        if let Err(e) = written.and_then(|()| out.flush().map_err(CliError::from)) {
            write_err.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    match end {
        WatchEnd::Drained { after_ms, samples } => {
            writeln!(
                note,
                "lag of group {} reached 0 after {:.1}s ({samples} samples)",
                a.group,
                after_ms as f64 / 1000.0
            )?;
            Ok(())
        }
        WatchEnd::TimedOut { last_total, .. } if a.until_zero => Err(CliError::NotDrained {
            group: a.group.clone(),
            secs: a.timeout_secs.unwrap_or(0),
            last_total,
        }),
        WatchEnd::TimedOut { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("orderflowctl").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn lag_defaults_and_watch_flags() {
        let cli = parse(&["--bootstrap", "h:1", "lag", "--group", "inventory"]).unwrap();
        assert_eq!(cli.bootstrap, "h:1");
        assert_eq!(cli.request_timeout_ms, 5000);
        let Command::Lag(a) = cli.command else {
            panic!("not lag")
        };
        assert!(a.topics.is_empty() && !a.watch && !a.until_zero && !a.json);
        assert_eq!(a.interval_ms, 500);

        let cli = parse(&[
            "lag",
            "-g",
            "inventory",
            "--topic",
            "orders",
            "-t",
            "inventory-events",
            "--until-zero",
            "--timeout-secs",
            "30",
            "--interval-ms",
            "250",
            "--bootstrap",
            "x:2",
        ])
        .unwrap();
        assert_eq!(cli.bootstrap, "x:2");
        let Command::Lag(a) = cli.command else {
            panic!("not lag")
        };
        assert_eq!(a.topics, vec!["orders", "inventory-events"]);
        assert!(a.until_zero);
        assert_eq!(a.timeout_secs, Some(30));
        assert_eq!(a.interval_ms, 250);
    }

    #[test]
    fn reset_needs_group_topic_and_target() {
        assert!(parse(&["reset", "--group", "g", "--to", "earliest"]).is_err());
        assert!(parse(&["reset", "--topic", "orders", "--to", "earliest"]).is_err());
        assert!(parse(&["reset", "--group", "g", "--topic", "orders"]).is_err());
        let cli = parse(&[
            "reset",
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
        let Command::Reset(a) = cli.command else {
            panic!("not reset")
        };
        assert!(a.dry_run);
        assert_eq!(
            ResetTo::from_parts(&a.to, a.timestamp.as_deref())
                .unwrap()
                .to_string(),
            "2026-11-22T10:00:00Z"
        );
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

    #[test]
    fn exit_codes() {
        let refused = CliError::Group(GroupError::NotEmpty {
            group: "g".into(),
            state: "Stable".into(),
            members: 2,
        });
        assert_eq!(refused.exit_code(), EXIT_GROUP_NOT_EMPTY);
        let by_kafka = CliError::Group(GroupError::RefusedByKafka {
            group: "analytics".into(),
            code: "UnknownMemberId".into(),
        });
        assert_eq!(by_kafka.exit_code(), EXIT_GROUP_NOT_EMPTY);
        assert_eq!(
            by_kafka.to_string(),
            "Kafka refused to reset consumer group analytics: the group has active members \
             (Kafka answered UnknownMemberId); stop its consumers before resetting offsets"
        );
        let slow = CliError::NotDrained {
            group: "inventory".into(),
            secs: 30,
            last_total: 12,
        };
        assert_eq!(slow.exit_code(), EXIT_NOT_DRAINED);
        assert_eq!(
            slow.to_string(),
            "lag of group inventory did not reach 0 within 30s (last total lag: 12)"
        );
        assert_eq!(CliError::Group(GroupError::NoTopics).exit_code(), 1);
        assert_eq!(slow.message("h:1"), slow.to_string());
        let kafka = CliError::Group(GroupError::Kafka(
            rdkafka::error::KafkaError::ClientCreation("x".into()),
        ));
        assert_eq!(kafka.exit_code(), 1);
        assert!(kafka.message("h:1").ends_with("(bootstrap h:1)"));
        assert_eq!(
            CliError::ResetTo(ParseResetToError::MissingTimestamp).exit_code(),
            1
        );
    }
}
