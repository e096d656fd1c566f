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
use crate::model::LagSample;
use crate::reset_cmd;
pub use crate::reset_cmd::ResetArgs;

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
    /// Reset a group's committed offsets (the group must have no active members): to
    /// earliest, latest, a timestamp, a duration before now, shifted by N records, or the
    /// offsets of a CSV file (--export writes one). Warns on stderr for each partition whose
    /// target lay before the oldest record Kafka still holds.
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
    #[error("{0}")]
    Usage(String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
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
        Command::Reset(a) => reset_cmd::run(a, kafka, timeout, out, note)?,
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
