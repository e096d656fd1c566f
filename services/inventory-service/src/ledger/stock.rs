//! Initial stock per item: `INITIAL_STOCK` over the default menu.

use std::collections::BTreeMap;

use orderflow_events::{
    item_partition, DEFAULT_ITEMS, DEFAULT_STOCK_PER_ITEM, LEDGER_CHECKPOINT_KEY, MAX_STOCK,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StockError {
    #[error("entry {0:?} is not item=quantity")]
    Malformed(String),
    #[error("quantity for {item:?} is not a whole number: {value:?}")]
    BadQuantity { item: String, value: String },
    #[error("{0:?} is the ledger checkpoint's key, not an item name")]
    Reserved(String),
    #[error("initial stock of {item:?} is {qty}, more than the maximum stock {MAX_STOCK}")]
    TooLarge { item: String, qty: u64 },
}

/// Why a restock is refused at decision time.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RestockError {
    #[error("stock beyond the maximum: {initial} initial + {restocked} restocked + {qty} requested exceeds {MAX_STOCK}")]
    BeyondMax {
        initial: u64,
        restocked: u64,
        qty: u32,
    },
}

/// The item's stock after restocking `qty` units onto `initial + restocked`: checked
/// arithmetic, at most [`MAX_STOCK`] (never panics, whatever the inputs).
pub fn stock_after_restock(initial: u64, restocked: u64, qty: u32) -> Result<u64, RestockError> {
    initial
        .checked_add(restocked)
        .and_then(|s| s.checked_add(u64::from(qty)))
        .filter(|s| *s <= MAX_STOCK)
        .ok_or(RestockError::BeyondMax {
            initial,
            restocked,
            qty,
        })
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
            if qty > MAX_STOCK {
                return Err(StockError::TooLarge {
                    item: item.to_string(),
                    qty,
                });
            }
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

    /// The configured items whose orders go to `orders` partition `p` (of `partitions`).
    pub fn items_of_partition(&self, p: i32, partitions: i32) -> impl Iterator<Item = &str> {
        self.initial
            .keys()
            .map(String::as_str)
            .filter(move |i| item_partition(i, partitions) == p)
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
        assert!(Stock::parse(&format!("tofu={MAX_STOCK}")).is_ok());
        assert!(matches!(
            Stock::parse(&format!("tofu={}", MAX_STOCK + 1)),
            Err(StockError::TooLarge { .. })
        ));
    }

    #[test]
    fn restock_arithmetic_is_checked_and_bounded() {
        assert_eq!(stock_after_restock(2000, 0, 500), Ok(2500));
        assert_eq!(stock_after_restock(MAX_STOCK - 10, 5, 5), Ok(MAX_STOCK));
        assert!(stock_after_restock(MAX_STOCK - 10, 5, 6).is_err());
        assert!(
            stock_after_restock(u64::MAX, 0, 1).is_err(),
            "no overflow panic"
        );
        assert!(stock_after_restock(1, u64::MAX, u32::MAX).is_err());
        let e = stock_after_restock(MAX_STOCK, 0, 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("maximum") && e.contains(&MAX_STOCK.to_string()),
            "{e}"
        );
    }

    #[test]
    fn every_item_belongs_to_one_partition() {
        let s = Stock::parse("tofu=3").unwrap();
        let mut all: Vec<&str> = (0..3).flat_map(|p| s.items_of_partition(p, 3)).collect();
        all.sort();
        let mut want: Vec<&str> = s.items().map(|(i, _)| i).collect();
        want.sort();
        assert_eq!(all, want);
    }
}
