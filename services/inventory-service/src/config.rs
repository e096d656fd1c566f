//! inventory-service settings from the environment (defaults in brackets):
//!
//! - `KAFKA_BOOTSTRAP` [127.0.0.1:9092] (and the optional `KAFKA_SECURITY_PROTOCOL`,
//!   `KAFKA_SASL_*`, `KAFKA_SSL_CA_LOCATION`, `GROUP_INSTANCE_ID`: see orderflow-runtime)
//! - `HTTP_ADDR` [:8081]: `/stock`, `/healthz`, `/readyz`, `/metrics`
//! - `THROTTLE_MS` [0]: pause this long per order, to create consumer lag on purpose
//! - `INITIAL_STOCK` [every menu item at 2000]: e.g. `burger=2000,pizza=1500`; listed items
//!   override the default quantity or add new items
//! - `BATCH_MAX` [20000]: most orders decided per produce-acknowledge-commit round (at least 1;
//!   with `THROTTLE_MS` a batch is also cut to about one second of work, see
//!   [`Settings::batch_limit`])
//! - `BATCH_WAIT_MS` [20]: how long a batch waits for more orders after its first; 0 takes
//!   only what has already arrived (the lowest latency; a backlog's batches are full either
//!   way)
//! - `TRANSACTIONS` [true]: commit each batch's decisions, DLQ entries and offsets in one
//!   Kafka transaction per partition (see `worker`), one batch at a time; `false` sends them
//!   with the idempotent producer and commits the offsets once they are acknowledged, the
//!   ledger making a redelivered order a no-op, and decides the next batches meanwhile (up to
//!   3 in flight; README "Guarantees" compares the two)
//! - `TRANSACTIONAL_ID_PREFIX` [orderflow-inventory]: with `TRANSACTIONS=true`, the decisions
//!   of `orders` partition `p` are written by a transactional producer with id
//!   `<prefix>-<p>`, whichever replica owns `p`; two installations sharing one Kafka cluster
//!   need different prefixes
//! - `IDEMPOTENCY_WINDOW_MS` [86400000, 24 h]: an order re-sent upstream under the same
//!   `order_id` is recognised while its event time is within this window of now; the ids of
//!   one window are kept in memory (and read back from `inventory-events` after a restart),
//!   see `ledger::window`. Redeliveries are recognised by offset, whatever the window
//! - `LOG_FORMAT` [text]: `json` for JSON lines; `RUST_LOG` filters
//!
//! A value that does not parse stops the service with a message naming the variable.

//! inventory-service's settings: the command line and environment ([`Args`], `--help`,
//! docs/reference/configuration.md) and what the decide loop takes of them ([`Settings`]).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use orderflow_runtime::config::{http_addr, switch, trimmed};
use orderflow_runtime::{KafkaArgs, LogArgs, ShutdownArgs};

use crate::ledger::Stock;

/// inventory-service: `orders` -> stock decision -> `inventory-events`.
///
/// HTTP: `GET /stock`, `/healthz`, `/readyz`, `/metrics`. SIGTERM: finish the batch in hand,
/// commit it, leave the group, exit 0. An invalid setting or a fatal worker error exits
/// non-zero.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "inventory-service", version)]
// linger 0: each batch waits for its acknowledgements before the commit, so a batch held back
// 5 ms to fill is 5 ms of every round; 1M orders: 70k -> 123k decisions/s (make bench, P2)
#[command(mut_arg("kafka_linger_ms", |a| a.default_value("0")))]
pub struct Args {
    /// Listen address (`:port`: all interfaces).
    #[arg(long, env = "HTTP_ADDR", default_value = ":8081", value_parser = http_addr)]
    pub http_addr: SocketAddr,

    /// Pause this long per order, in milliseconds, to create consumer lag on purpose.
    #[arg(long, env = "THROTTLE_MS", default_value_t = 0, value_parser = throttle_ms)]
    pub throttle_ms: u64,

    /// Initial stock, e.g. `burger=2000,pizza=1500`: listed items override the default
    /// quantity or add new items. Unset: every menu item (burger, pizza, salad, sushi, taco,
    /// ramen, curry, wrap) at 2000.
    #[arg(long, env = "INITIAL_STOCK", value_parser = Stock::parse)]
    pub initial_stock: Option<Stock>,

    /// Most orders decided per produce-acknowledge-commit round (at least 1). A batch takes
    /// what arrives within BATCH_WAIT_MS, so this bounds a backlog's batches only: each round
    /// costs a commit besides its orders (with TRANSACTIONS, a transaction per partition), so
    /// larger batches catch up faster (1M orders, transactions: about 81,000 decisions/s at
    /// 5000, 117,000 at 20000) and hold more in memory (peak RSS 57 MiB at 5000 and 70 MiB at
    /// 20000 with README's settings for memory, which set 5000). With THROTTLE_MS a batch is
    /// also cut to about one second of work.
    #[arg(long, env = "BATCH_MAX", default_value_t = DEFAULT_BATCH_MAX, value_parser = batch_max)]
    pub batch_max: usize,

    /// How long a batch waits for more orders after its first, in milliseconds. 0: only what
    /// has already arrived. Each round costs a commit (and with TRANSACTIONS one per
    /// partition), so while one is in flight the next batch's orders gather anyway; the
    /// wait adds to every order's latency when orders are few.
    #[arg(long, env = "BATCH_WAIT_MS", default_value_t = 20, value_parser = batch_wait_ms)]
    pub batch_wait_ms: u64,

    /// `true`: each batch's decisions, DLQ entries and offsets in one Kafka transaction per
    /// partition, one batch at a time. `false`: the idempotent producer, offsets committed
    /// once the decisions are acknowledged, the ledger making a redelivered order a no-op;
    /// the next batches are decided meanwhile (up to 3 in flight). README "Guarantees"
    /// compares the two.
    #[arg(long, env = "TRANSACTIONS", default_value = "true", value_parser = switch, action = clap::ArgAction::Set)]
    pub transactions: bool,

    /// With TRANSACTIONS=true, the decisions of `orders` partition `p` are written by a
    /// transactional producer with id `<prefix>-<p>`, whichever replica owns `p`; two
    /// installations sharing one Kafka cluster need different prefixes.
    #[arg(long, env = "TRANSACTIONAL_ID_PREFIX", default_value = "orderflow-inventory", value_parser = trimmed::<String>)]
    pub transactional_id_prefix: String,

    /// An order re-sent upstream under the same order_id is recognised (not decided again)
    /// while its event time is within this many milliseconds of now (default 24 h). The
    /// order ids of one window are kept in memory, and read back from inventory-events
    /// after a restart. A redelivered order is recognised by its offset, whatever the window.
    #[arg(long, env = "IDEMPOTENCY_WINDOW_MS", default_value_t = 86_400_000, value_parser = window_ms)]
    pub idempotency_window_ms: u64,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

fn throttle_ms(s: &str) -> Result<u64, String> {
    trimmed::<u64>(s).map_err(|e| format!("{e} (expected milliseconds, e.g. 5)"))
}

fn batch_wait_ms(s: &str) -> Result<u64, String> {
    match trimmed::<u64>(s) {
        Ok(n) if n <= 1000 => Ok(n),
        Ok(_) => Err("at most 1000 (milliseconds)".into()),
        Err(e) => Err(format!("{e} (expected milliseconds, e.g. 20)")),
    }
}

fn batch_max(s: &str) -> Result<usize, String> {
    match trimmed::<usize>(s) {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn window_ms(s: &str) -> Result<u64, String> {
    match trimmed::<u64>(s) {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1 (milliseconds)".into()),
        Err(e) => Err(format!(
            "{e} (expected milliseconds, e.g. 86400000 for 24 h)"
        )),
    }
}

impl Args {
    /// What the decide loop takes of the settings.
    pub fn settings(&self) -> Settings {
        Settings {
            stock: self.initial_stock.clone().unwrap_or_default(),
            throttle: Duration::from_millis(self.throttle_ms),
            batch_max: self.batch_max,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            transactions: self.transactions,
            txn_prefix: self.transactional_id_prefix.clone(),
            idempotency_window: Duration::from_millis(self.idempotency_window_ms),
        }
    }
}

/// Settings of the decide loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub stock: Stock,
    pub throttle: Duration,
    pub batch_max: usize,
    /// How long a batch waits for more orders after its first.
    pub batch_wait: Duration,
    pub transactions: bool,
    pub txn_prefix: String,
    /// How long an order id is remembered, by the order's event time.
    pub idempotency_window: Duration,
}

/// `BATCH_MAX`'s default (see its flag's doc for what was measured).
pub const DEFAULT_BATCH_MAX: usize = 20_000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            stock: Stock::default(),
            throttle: Duration::ZERO,
            batch_max: DEFAULT_BATCH_MAX,
            batch_wait: Duration::from_millis(20),
            transactions: true,
            txn_prefix: "orderflow-inventory".to_string(),
            idempotency_window: crate::ledger::window::DEFAULT_WINDOW,
        }
    }
}

impl Settings {
    /// The `transactional.id` of the producer that writes the decisions of `orders`
    /// partition `p`: one id per partition, so the replica that takes `p` over aborts what
    /// the previous owner left open and fences it off (see `worker`).
    pub fn transactional_id(&self, p: i32) -> String {
        format!("{}-{p}", self.txn_prefix)
    }

    /// Orders taken per batch: `BATCH_MAX`, cut so that a throttled batch is about one
    /// second of work. Offsets are committed per batch, so this keeps the committed lag
    /// moving smoothly, a SIGTERM quick, and the consumer far inside `max.poll.interval.ms`.
    pub fn batch_limit(&self) -> usize {
        let ms = self.throttle.as_millis();
        if ms == 0 {
            return self.batch_max;
        }
        let per_second = usize::try_from(1000 / ms).unwrap_or(usize::MAX).max(1);
        self.batch_max.min(per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_runtime::config::parse_vars;
    use orderflow_runtime::ConfigError;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        parse_vars("inventory-service", vars).map(|a: Args| a.settings())
    }

    #[test]
    fn defaults() {
        let s = from(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.batch_limit(), 20_000);
        assert_eq!(s.idempotency_window, Duration::from_secs(24 * 3600));
        assert_eq!(from(&[("THROTTLE_MS", " ")]).unwrap(), Settings::default());
        let a: Args = parse_vars("inventory-service", &[]).unwrap();
        assert_eq!(a.http_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(a.kafka.kafka_linger_ms, 0, "inventory lingers 0 ms");
        assert_eq!(a.kafka.kafka_session_timeout_ms, 10_000);
        assert_eq!(a.kafka.group_instance_id, None);
    }

    #[test]
    fn parses_values() {
        let s = from(&[
            ("THROTTLE_MS", "20"),
            ("BATCH_MAX", "100"),
            ("INITIAL_STOCK", "burger=3,tofu=9"),
        ])
        .unwrap();
        assert_eq!(s.throttle, Duration::from_millis(20));
        assert_eq!(s.batch_max, 100);
        assert_eq!(s.stock.initial("tofu"), Some(9));
        assert_eq!(s.batch_limit(), 50);
        assert_eq!(s.transactional_id(2), "orderflow-inventory-2");
        assert!(s.transactions, "transactions are the default");
        let s = from(&[
            ("TRANSACTIONAL_ID_PREFIX", "staging-inv"),
            ("TRANSACTIONS", "false"),
        ])
        .unwrap();
        assert_eq!(s.transactional_id(0), "staging-inv-0");
        assert!(!s.transactions);
        assert_eq!(s.batch_wait, Duration::from_millis(20), "the default wait");
        let s = from(&[("BATCH_WAIT_MS", "0")]).unwrap();
        assert_eq!(s.batch_wait, Duration::ZERO);
        let s = from(&[("IDEMPOTENCY_WINDOW_MS", "3600000")]).unwrap();
        assert_eq!(s.idempotency_window, Duration::from_secs(3600));
        let a: Args = parse_vars(
            "inventory-service",
            &[
                ("GROUP_INSTANCE_ID", "inv-0"),
                ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ],
        )
        .unwrap();
        let consumer = orderflow_runtime::KafkaConfig::from(&a.kafka).consumer("g", "c");
        assert_eq!(consumer.get("group.instance.id"), Some("inv-0"));
        assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
    }

    #[test]
    fn errors_name_the_variable() {
        let e = from(&[("THROTTLE_MS", "fast")]).unwrap_err().to_string();
        assert!(e.contains("THROTTLE_MS") && e.contains("fast"), "{e}");
        let e = from(&[("BATCH_WAIT_MS", "5000")]).unwrap_err().to_string();
        assert!(
            e.contains("BATCH_WAIT_MS") && e.contains("at most 1000"),
            "{e}"
        );
        let e = from(&[("BATCH_MAX", "0")]).unwrap_err().to_string();
        assert!(e.contains("BATCH_MAX") && e.contains("at least 1"), "{e}");
        let e = from(&[("INITIAL_STOCK", "burger:3")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("INITIAL_STOCK") && e.contains("burger:3"), "{e}");
        let e = from(&[("IDEMPOTENCY_WINDOW_MS", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("IDEMPOTENCY_WINDOW_MS") && e.contains("at least 1"),
            "{e}"
        );
        let e = from(&[("TRANSACTIONS", "yes")]).unwrap_err().to_string();
        assert!(
            e.contains("TRANSACTIONS") && e.contains("true or false"),
            "{e}"
        );
    }

    #[test]
    fn slow_throttle_still_takes_one_order() {
        let s = Settings {
            throttle: Duration::from_secs(5),
            ..Default::default()
        };
        assert_eq!(s.batch_limit(), 1);
    }
}
