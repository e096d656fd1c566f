//! Initial stock per item: `INITIAL_STOCK` over the default menu.

use std::collections::BTreeMap;

use orderflow_events::{DEFAULT_ITEMS, DEFAULT_STOCK_PER_ITEM, LEDGER_CHECKPOINT_KEY};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StockError {
    #[error("entry {0:?} is not item=quantity")]
    Malformed(String),
    #[error("quantity for {item:?} is not a whole number: {value:?}")]
    BadQuantity { item: String, value: String },
    #[error("{0:?} is the ledger checkpoint's key, not an item name")]
    Reserved(String),
}

/// Initial stock per item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stock {
    initial: BTreeMap<String, u64>,
}

impl Default for Stock {
    fn default() -> Self {
        Self {
            initial: DEFAULT_ITEMS
                .iter()
                .map(|i| (i.to_string(), DEFAULT_STOCK_PER_ITEM))
                .collect(),
        }
    }
}

impl Stock {
    /// The default menu, with `spec` ("burger=2000,pizza=1500") overriding or adding items.
    pub fn parse(spec: &str) -> Result<Self, StockError> {
        let mut stock = Self::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (item, qty) = entry
                .split_once('=')
                .ok_or_else(|| StockError::Malformed(entry.to_string()))?;
            let item = item.trim();
            if item.is_empty() {
                return Err(StockError::Malformed(entry.to_string()));
            }
            if item == LEDGER_CHECKPOINT_KEY {
                return Err(StockError::Reserved(item.to_string()));
            }
            let qty: u64 = qty.trim().parse().map_err(|_| StockError::BadQuantity {
                item: item.to_string(),
                value: qty.trim().to_string(),
            })?;
            stock.initial.insert(item.to_string(), qty);
        }
        Ok(stock)
    }

    pub fn initial(&self, item: &str) -> Option<u64> {
        self.initial.get(item).copied()
    }

    pub fn items(&self) -> impl Iterator<Item = (&str, u64)> {
        self.initial.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stock_with_defaults() {
        let s = Stock::parse("burger=5, tofu=3").unwrap();
        assert_eq!(s.initial("burger"), Some(5));
        assert_eq!(s.initial("tofu"), Some(3));
        assert_eq!(s.initial("pizza"), Some(DEFAULT_STOCK_PER_ITEM));
        assert_eq!(Stock::parse("").unwrap(), Stock::default());
        assert_eq!(
            Stock::parse("burger").unwrap_err(),
            StockError::Malformed("burger".into())
        );
        assert!(matches!(
            Stock::parse("burger=-1"),
            Err(StockError::BadQuantity { .. })
        ));
        assert!(matches!(Stock::parse("=4"), Err(StockError::Malformed(_))));
        assert_eq!(
            Stock::parse("#checkpoint=4").unwrap_err(),
            StockError::Reserved("#checkpoint".into())
        );
    }
}
