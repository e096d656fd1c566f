//! Structured logging: `LOG_FORMAT=json` writes one JSON object per line (what
//! `kubectl logs deploy/inventory | jq` wants; the default in the container images and the
//! Helm chart), `LOG_FORMAT=text` (the default for local runs) human-readable lines.
//! Filter with `RUST_LOG` (tracing `EnvFilter` syntax).
//!
//! A JSON line carries `timestamp`, `level`, `target` (the module), `message` and the event's
//! fields at the top level, e.g. `order_id`, `partition`, `offset` where they apply.

use tracing_subscriber::{fmt, EnvFilter};

/// The logging settings every service shares (flattened into each one's settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// `json`: one JSON object per log line (the container images and the Helm chart set
    /// it); `text`: human-readable lines. Any other value: text, with a warning.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Log filter, tracing `EnvFilter` syntax, e.g. `info,inventory_service::logs=debug`.
    /// Unset (or not a valid filter): `info` (the service's own crate at `info`, librdkafka's
    /// logging from `warn`).
    #[arg(long, env = "RUST_LOG")]
    pub rust_log: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The format named by a `LOG_FORMAT` value: `json` (any case) is JSON, anything else
    /// (unset, empty, `text`) is text. Returns whether the value was understood.
    pub fn parse(value: Option<&str>) -> (Self, bool) {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("json") => (LogFormat::Json, true),
            None | Some("") => (LogFormat::Text, true),
            Some(v) => (LogFormat::Text, v.eq_ignore_ascii_case("text")),
        }
    }
}

/// The default filter: `info` everywhere (the service's own per-record lines are at
/// `debug`), librdkafka's own logging from `warn`.
pub fn default_filter(service: &str) -> String {
    format!("info,{}=info,rdkafka=warn", service.replace('-', "_"))
}

/// Install the global subscriber of `service` as `args` say.
pub fn init(service: &str, args: &LogArgs) {
    let filter = args
        .rust_log
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter(service)));
    let (format, understood) = LogFormat::parse(Some(args.log_format.as_str()));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests) is harmless.
    let _ = result;
    if !understood {
        tracing::warn!(
            value = args.log_format.as_str(),
            "LOG_FORMAT must be json or text; using text"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_values() {
        assert_eq!(LogFormat::parse(Some("json")), (LogFormat::Json, true));
        assert_eq!(LogFormat::parse(Some(" JSON ")), (LogFormat::Json, true));
        assert_eq!(LogFormat::parse(Some("text")), (LogFormat::Text, true));
        assert_eq!(LogFormat::parse(None), (LogFormat::Text, true));
        assert_eq!(LogFormat::parse(Some("")), (LogFormat::Text, true));
        assert_eq!(LogFormat::parse(Some("yaml")), (LogFormat::Text, false));
    }

    #[test]
    fn default_filter_names_the_crate() {
        assert_eq!(
            default_filter("inventory-service"),
            "info,inventory_service=info,rdkafka=warn"
        );
    }
}
