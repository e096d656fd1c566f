//! order-service's settings (`order-service --help`; docs/reference/configuration.md).

use std::net::SocketAddr;

use clap::Parser;
use orderflow_runtime::config::{http_addr, trimmed};
use orderflow_runtime::{KafkaArgs, LogArgs, ShutdownArgs};

/// order-service: HTTP order intake -> topic `orders`.
///
/// Routes: `POST /orders`, `POST /orders/bulk`, `POST /stock/{item}/restock` (admin),
/// `GET /stats`, `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "order-service", version)]
// linger 0: a single POST /orders is sent at once (p50 0.4 ms instead of 1.6 ms at 1 ms and
// 3.5 ms at 5 ms, oha at 2,000 req/s); bulk runs go through a producer of their own
// (BULK_LINGER_MS)
#[command(mut_arg("kafka_linger_ms", |a| a.default_value("0")))]
pub struct Args {
    /// Listen address (`:port`: all interfaces).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080", value_parser = http_addr)]
    pub http_addr: SocketAddr,

    /// Largest `count` of `POST /orders/bulk`.
    #[arg(long, env = "BULK_MAX", default_value_t = 5_000_000, value_parser = trimmed::<u64>)]
    pub bulk_max: u64,

    /// How long a record may wait for Kafka's acknowledgement (librdkafka's
    /// `message.timeout.ms`) before the request fails with 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 15_000, value_parser = trimmed::<u64>)]
    pub publish_timeout_ms: u64,

    // Each record in flight holds its payload and librdkafka's copy. 10k: a 1M-record bulk ran
    // at ~500k events/s with a 36-39 MiB peak RSS, 200k at ~535k/s with 133 MiB (local broker,
    // 2 cores).
    /// Most bulk records waiting for their acknowledgement at once (bounds the memory of a
    /// bulk run; 0 counts as 1).
    #[arg(long, env = "BULK_WINDOW", default_value_t = 10_000, value_parser = trimmed::<usize>)]
    pub bulk_window: usize,

    /// `linger.ms` of the producer of `POST /orders/bulk`, which is not the one of single
    /// orders (those are sent at once: `KAFKA_LINGER_MS`, 0 here). Batches that fill cost
    /// less per record: a 1M-order bulk on the local broker ran at 493k events/s at 5 ms,
    /// 440k at 20 ms, 338k at 0.
    #[arg(long, env = "BULK_LINGER_MS", default_value_t = 5, value_parser = trimmed::<u32>)]
    pub bulk_linger_ms: u32,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

impl Args {
    /// How the publisher publishes, from these settings.
    pub fn publish_settings(&self) -> crate::publisher::PublishSettings {
        crate::publisher::PublishSettings {
            timeout_ms: self.publish_timeout_ms,
            bulk_window: self.bulk_window,
            bulk_linger_ms: self.bulk_linger_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_runtime::config::parse_vars;
    use orderflow_runtime::KafkaConfig;

    fn parse(vars: &[(&str, &str)]) -> Result<Args, orderflow_runtime::ConfigError> {
        parse_vars("order-service", vars)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(a.bulk_max, 5_000_000);
        assert_eq!(a.publish_timeout_ms, 15_000);
        assert_eq!(a.bulk_window, 10_000);
        assert_eq!(a.bulk_linger_ms, 5);
        assert_eq!(a.kafka.kafka_bootstrap, "127.0.0.1:9092");
        assert_eq!(a.kafka.kafka_linger_ms, 0, "order-service lingers 0 ms");
        assert_eq!(a.kafka.kafka_compression, "lz4");
        assert_eq!(a.log.log_format, "text");
    }

    #[test]
    fn variables() {
        let a = parse(&[
            ("HTTP_ADDR", ":9000"),
            ("BULK_MAX", "10"),
            ("PUBLISH_TIMEOUT_MS", "500"),
            ("BULK_WINDOW", "7"),
            ("BULK_LINGER_MS", "20"),
            ("KAFKA_BOOTSTRAP", "k:9093"),
            ("KAFKA_LINGER_MS", "3"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ])
        .unwrap();
        assert_eq!(a.http_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(
            (
                a.bulk_max,
                a.publish_timeout_ms,
                a.bulk_window,
                a.bulk_linger_ms
            ),
            (10, 500, 7, 20)
        );
        let producer = KafkaConfig::from(&a.kafka).producer("t");
        assert_eq!(producer.get("bootstrap.servers"), Some("k:9093"));
        assert_eq!(producer.get("linger.ms"), Some("3"));
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let e = parse(&[("PUBLISH_TIMEOUT_MS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PUBLISH_TIMEOUT_MS=\"soon\""), "{e}");
    }
}
