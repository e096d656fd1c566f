//! Structured logging: `LOG_FORMAT=json` writes one JSON object per line (what
//! `kubectl logs deploy/inventory | jq` wants; the default in the container images and the
//! Helm chart), `LOG_FORMAT=text` (the default for local runs) human-readable lines.
//! Filter with `RUST_LOG` (tracing `EnvFilter` syntax).
//!
//! A JSON line carries `timestamp`, `level`, `target` (the module), `message` and the event's
//! fields at the top level, e.g. `order_id`, `partition`, `offset` where they apply.

use tracing_subscriber::{fmt, EnvFilter};

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

pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(service)));
    let raw = std::env::var("LOG_FORMAT").ok();
    let (format, understood) = LogFormat::parse(raw.as_deref());
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
            value = raw.as_deref().unwrap_or_default(),
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
