//! inventory-service settings from the environment (defaults in brackets):
//!
//! - `KAFKA_BOOTSTRAP` [127.0.0.1:9092] (and the optional `KAFKA_SECURITY_PROTOCOL`,
//!   `KAFKA_SASL_*`, `KAFKA_SSL_CA_LOCATION`, `GROUP_INSTANCE_ID`: see orderflow-runtime)
//! - `HTTP_ADDR` [:8081]: `/stock`, `/healthz`, `/readyz`, `/metrics`
//! - `THROTTLE_MS` [0]: pause this long per order, to create consumer lag on purpose
//! - `INITIAL_STOCK` [every menu item at 2000]: e.g. `burger=2000,pizza=1500`; listed items
//!   override the default quantity or add new items
//! - `BATCH_MAX` [500]: most orders decided per produce-acknowledge-commit round (at least 1;
//!   with `THROTTLE_MS` a batch is also cut to about one second of work, see
//!   [`Settings::batch_limit`])
//! - `TRANSACTIONS` [true]: commit each batch's decisions, DLQ entries and offsets in one
//!   Kafka transaction per partition (see `worker`); `false` sends them with the idempotent
//!   producer and commits the offsets once they are acknowledged, the ledger making a
//!   redelivered order a no-op (README "Guarantees" compares the two)
//! - `TRANSACTIONAL_ID_PREFIX` [orderflow-inventory]: with `TRANSACTIONS=true`, the decisions
//!   of `orders` partition `p` are written by a transactional producer with id
//!   `<prefix>-<p>`, whichever replica owns `p`; two installations sharing one Kafka cluster
//!   need different prefixes
//! - `LOG_FORMAT` [text]: `json` for JSON lines; `RUST_LOG` filters
//!
//! A value that does not parse stops the service with a message naming the variable.

use std::time::Duration;

use thiserror::Error;

use crate::ledger::{Stock, StockError};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("environment variable INITIAL_STOCK is invalid: {0}")]
    Stock(#[from] StockError),
}

/// Settings of the decide loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub stock: Stock,
    pub throttle: Duration,
    pub batch_max: usize,
    pub transactions: bool,
    pub txn_prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stock: Stock::default(),
            throttle: Duration::ZERO,
            batch_max: 500,
            transactions: true,
            txn_prefix: "orderflow-inventory".to_string(),
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from `lookup(name)` (unset or blank = default).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut s = Self::default();
        if let Some(v) = get("THROTTLE_MS") {
            let ms: u64 = v.trim().parse().map_err(|e| ConfigError::Invalid {
                name: "THROTTLE_MS",
                value: v.clone(),
                reason: format!("{e} (expected milliseconds, e.g. 5)"),
            })?;
            s.throttle = Duration::from_millis(ms);
        }
        if let Some(v) = get("BATCH_MAX") {
            s.batch_max = match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                Ok(_) => {
                    return Err(ConfigError::Invalid {
                        name: "BATCH_MAX",
                        value: v,
                        reason: "must be at least 1".into(),
                    })
                }
                Err(e) => {
                    return Err(ConfigError::Invalid {
                        name: "BATCH_MAX",
                        value: v,
                        reason: e.to_string(),
                    })
                }
            };
        }
        if let Some(v) = get("INITIAL_STOCK") {
            s.stock = Stock::parse(&v)?;
        }
        if let Some(v) = get("TRANSACTIONS") {
            s.transactions = match v.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "TRANSACTIONS",
                        value: v,
                        reason: "expected true or false".into(),
                    })
                }
            };
        }
        if let Some(v) = get("TRANSACTIONAL_ID_PREFIX") {
            s.txn_prefix = v.trim().to_string();
        }
        Ok(s)
    }

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
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let s = from(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.batch_limit(), 500);
        assert_eq!(from(&[("THROTTLE_MS", " ")]).unwrap(), Settings::default());
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
    }

    #[test]
    fn errors_name_the_variable() {
        let e = from(&[("THROTTLE_MS", "fast")]).unwrap_err().to_string();
        assert!(e.contains("THROTTLE_MS") && e.contains("fast"), "{e}");
        let e = from(&[("BATCH_MAX", "0")]).unwrap_err().to_string();
        assert!(e.contains("BATCH_MAX") && e.contains("at least 1"), "{e}");
        let e = from(&[("INITIAL_STOCK", "burger:3")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("INITIAL_STOCK") && e.contains("burger:3"), "{e}");
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
