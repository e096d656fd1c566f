//! Structured logging: human-readable by default, one JSON object per line with
//! `LOG_FORMAT=json` (what `kubectl logs ... | jq` wants). Filter with `RUST_LOG`.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "info,{}=info,rdkafka=warn",
            service.replace('-', "_")
        ))
    });
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    let builder = fmt().with_env_filter(filter).with_target(true);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) is harmless.
    let _ = result;
}
