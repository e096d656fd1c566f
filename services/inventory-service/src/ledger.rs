//! The stock ledger: pure decision logic, no Kafka.
//!
//! One [`PartitionLedger`] per `orders` partition this replica owns. Because orders are
//! keyed by item, every order of an item is in one partition, so the ledger of that
//! partition alone knows how much of the item is reserved. The ledger is rebuilt from the
//! decisions recorded on the same partition of `inventory-events` ([`PartitionLedger::record`])
//! and extended by new decisions ([`PartitionLedger::decide`]); an order already decided is
//! never decided again.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use orderflow_events::{
    DecisionStatus, InventoryDecision, OrderPlaced, DEFAULT_ITEMS, DEFAULT_STOCK_PER_ITEM,
};
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StockError {
    #[error("entry {0:?} is not item=quantity")]
    Malformed(String),
    #[error("quantity for {item:?} is not a whole number: {value:?}")]
    BadQuantity { item: String, value: String },
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

/// What deciding an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new decision, to be recorded on `inventory-events`.
    Decided(InventoryDecision),
    /// The order was decided before (a redelivery): nothing to do.
    Duplicate,
}

/// Reserved stock and decided orders for the items of one `orders` partition.
///
/// `reserved` has an entry (possibly 0) for every item this partition has decided an order
/// for, so it also tells which items the partition carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionLedger {
    reserved: HashMap<String, u64>,
    decided: HashSet<Uuid>,
}

impl PartitionLedger {
    /// Replay a recorded decision (rebuilding from `inventory-events`). Replaying the same
    /// decision twice changes nothing.
    pub fn record(&mut self, d: &InventoryDecision) {
        if self.decided.insert(d.order_id) {
            let reserved = self.reserved.entry(d.item.clone()).or_default();
            if d.status == DecisionStatus::Reserved {
                *reserved += u64::from(d.qty);
            }
        }
    }

    /// Decide `order` against `stock`, at `now`.
    pub fn decide(&mut self, stock: &Stock, order: &OrderPlaced, now: DateTime<Utc>) -> Outcome {
        if self.decided.contains(&order.order_id) {
            return Outcome::Duplicate;
        }
        let reason = match stock.initial(&order.item) {
            None => Some(format!("unknown item {:?}", order.item)),
            Some(initial) => {
                let available = initial.saturating_sub(self.reserved(&order.item));
                (u64::from(order.qty) > available).then(|| {
                    format!(
                        "insufficient stock: requested {}, available {available}",
                        order.qty
                    )
                })
            }
        };
        let decision = order.decide(reason, now);
        self.record(&decision);
        Outcome::Decided(decision)
    }

    pub fn reserved(&self, item: &str) -> u64 {
        self.reserved.get(item).copied().unwrap_or(0)
    }

    /// Reserved quantity of every item this partition decided an order for (0 when all
    /// of them failed).
    pub fn reserved_items(&self) -> impl Iterator<Item = (&str, u64)> {
        self.reserved.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Whether this partition has decided an order for `item`.
    pub fn carries(&self, item: &str) -> bool {
        self.reserved.contains_key(item)
    }

    /// Whether `order_id` has been decided.
    pub fn is_decided(&self, order_id: &Uuid) -> bool {
        self.decided.contains(order_id)
    }

    pub fn decided_count(&self) -> usize {
        self.decided.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order(item: &str, qty: u32) -> OrderPlaced {
        OrderPlaced::new(item, qty, "u", Utc::now())
    }

    fn decided(o: Outcome) -> InventoryDecision {
        match o {
            Outcome::Decided(d) => d,
            Outcome::Duplicate => panic!("duplicate"),
        }
    }

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
    }

    #[test]
    fn reserves_until_exactly_empty_then_fails() {
        let stock = Stock::parse("pizza=5").unwrap();
        let mut l = PartitionLedger::default();
        assert_eq!(
            decided(l.decide(&stock, &order("pizza", 3), Utc::now())).status,
            DecisionStatus::Reserved
        );
        assert_eq!(
            decided(l.decide(&stock, &order("pizza", 2), Utc::now())).status,
            DecisionStatus::Reserved
        );
        let fail = decided(l.decide(&stock, &order("pizza", 1), Utc::now()));
        assert_eq!(fail.status, DecisionStatus::Failed);
        assert_eq!(
            fail.reason.as_deref(),
            Some("insufficient stock: requested 1, available 0")
        );
        assert_eq!(l.reserved("pizza"), 5);
    }

    #[test]
    fn a_failed_large_order_leaves_stock_for_smaller_ones() {
        let stock = Stock::parse("pizza=2").unwrap();
        let mut l = PartitionLedger::default();
        assert_eq!(
            decided(l.decide(&stock, &order("pizza", 3), Utc::now())).status,
            DecisionStatus::Failed
        );
        assert_eq!(
            decided(l.decide(&stock, &order("pizza", 2), Utc::now())).status,
            DecisionStatus::Reserved
        );
    }

    #[test]
    fn unknown_item_fails_with_reason() {
        let mut l = PartitionLedger::default();
        let d = decided(l.decide(&Stock::default(), &order("caviar", 1), Utc::now()));
        assert_eq!(d.reason.as_deref(), Some("unknown item \"caviar\""));
    }

    #[test]
    fn redelivered_order_is_not_decided_twice() {
        let stock = Stock::default();
        let mut l = PartitionLedger::default();
        let o = order("taco", 2);
        decided(l.decide(&stock, &o, Utc::now()));
        assert_eq!(l.decide(&stock, &o, Utc::now()), Outcome::Duplicate);
        assert_eq!(l.reserved("taco"), 2);
    }

    #[test]
    fn rebuild_from_decisions_gives_the_same_ledger() {
        let stock = Stock::parse("a=10,b=4").unwrap();
        let mut live = PartitionLedger::default();
        let mut log = Vec::new();
        for (item, qty) in [("a", 3), ("b", 3), ("a", 5), ("b", 3), ("a", 3)] {
            log.push(decided(live.decide(&stock, &order(item, qty), Utc::now())));
        }
        let mut rebuilt = PartitionLedger::default();
        for d in log.iter().chain(log.iter()) {
            rebuilt.record(d); // replaying twice is harmless
        }
        assert_eq!(
            (rebuilt.reserved("a"), rebuilt.reserved("b")),
            (live.reserved("a"), live.reserved("b"))
        );
        assert_eq!(rebuilt.decided_count(), 5);
        assert_eq!(rebuilt.reserved("a"), 8);
        let again = order("a", 3); // 2 left
        assert_eq!(
            decided(rebuilt.decide(&stock, &again, Utc::now())).status,
            DecisionStatus::Failed
        );
    }

    #[test]
    fn exact_remaining_stock_is_reserved() {
        let stock = Stock::parse("ramen=4").unwrap();
        let mut l = PartitionLedger::default();
        decided(l.decide(&stock, &order("ramen", 1), Utc::now()));
        let d = decided(l.decide(&stock, &order("ramen", 3), Utc::now()));
        assert_eq!(d.status, DecisionStatus::Reserved);
        let d = decided(l.decide(&stock, &order("ramen", 1), Utc::now()));
        assert_eq!(
            d.reason.as_deref(),
            Some("insufficient stock: requested 1, available 0")
        );
        assert!(l.carries("ramen") && !l.carries("taco"));
    }

    #[test]
    fn failed_decisions_are_remembered_too() {
        let stock = Stock::parse("wrap=1").unwrap();
        let mut l = PartitionLedger::default();
        let big = order("wrap", 2);
        assert_eq!(
            decided(l.decide(&stock, &big, Utc::now()))
                .reason
                .as_deref(),
            Some("insufficient stock: requested 2, available 1")
        );
        // Redelivered after the stock changed: still not decided again.
        assert_eq!(l.decide(&stock, &big, Utc::now()), Outcome::Duplicate);
        assert!(l.is_decided(&big.order_id));
        assert_eq!(l.reserved("wrap"), 0);
        assert!(l.carries("wrap"));
    }

    proptest! {
        /// A stream of orders with redeliveries, cut at a random point ("crash"): the ledger
        /// rebuilt from the decisions recorded so far and fed the rest of the stream (from
        /// an earlier offset, as after a lost commit) ends in the same state as a run
        /// without the crash, with exactly one decision per order and no oversell.
        #[test]
        fn crash_rebuild_and_redelivery_match_an_uninterrupted_run(
            picks in proptest::collection::vec((0usize..3, 1u32..5), 1..120),
            limit in 0u64..30,
            crash in 0usize..120,
            rewind in 0usize..40,
        ) {
            let items = ["a", "b", "c"];
            let stock = Stock::parse(&format!("a={limit},b={limit},c={limit}")).unwrap();
            let orders: Vec<OrderPlaced> =
                picks.iter().map(|(i, q)| order(items[*i], *q)).collect();
            let t = Utc::now();

            let mut straight = PartitionLedger::default();
            let mut straight_log = Vec::new();
            for o in &orders {
                if let Outcome::Decided(d) = straight.decide(&stock, o, t) {
                    straight_log.push(d);
                }
            }

            let crash = crash.min(orders.len());
            let mut first = PartitionLedger::default();
            let mut log = Vec::new();
            for o in &orders[..crash] {
                if let Outcome::Decided(d) = first.decide(&stock, o, t) {
                    log.push(d);
                }
            }
            let mut rebuilt = PartitionLedger::default();
            for d in &log {
                rebuilt.record(d);
            }
            prop_assert_eq!(&rebuilt, &first);
            for o in &orders[crash.saturating_sub(rewind)..] {
                if let Outcome::Decided(d) = rebuilt.decide(&stock, o, t) {
                    log.push(d);
                }
            }
            prop_assert_eq!(&rebuilt, &straight);
            prop_assert_eq!(log.len(), orders.len());
            let statuses: Vec<_> = log.iter().map(|d| (d.order_id, d.status)).collect();
            let expected: Vec<_> = straight_log.iter().map(|d| (d.order_id, d.status)).collect();
            prop_assert_eq!(statuses, expected);
            for item in items {
                prop_assert!(rebuilt.reserved(item) <= limit);
            }
        }

        #[test]
        fn never_oversells(qtys in proptest::collection::vec((0usize..3, 1u32..6), 0..200), limit in 0u64..40) {
            let items = ["a", "b", "c"];
            let stock = Stock::parse(&format!("a={limit},b={limit},c={limit}")).unwrap();
            let mut l = PartitionLedger::default();
            let mut reserved = [0u64; 3];
            for (i, q) in qtys {
                if let Outcome::Decided(d) = l.decide(&stock, &order(items[i], q), Utc::now()) {
                    if d.status == DecisionStatus::Reserved { reserved[i] += u64::from(q); }
                }
            }
            for (i, item) in items.iter().enumerate() {
                prop_assert!(reserved[i] <= limit);
                prop_assert_eq!(l.reserved(item), reserved[i]);
            }
        }
    }
}
