//! The stock ledger: pure decision logic, no Kafka.
//!
//! One [`PartitionLedger`] per `orders` partition this replica owns. Because orders are
//! keyed by item, every order of an item is in one partition, so the ledger of that
//! partition alone knows how much of the item is reserved. Its state is persisted in two
//! logs of the same partition number `p`: the decisions on `inventory-events` and the
//! compacted stock ledger `inventory-ledger` (issue 18), in the way of a Kafka Streams state
//! store and its changelog.
//!
//! ## The ledger topic: key and value
//! `inventory-ledger` has `cleanup.policy=compact`, so Kafka keeps the last record per key
//! for ever, however old, while `orders` and `inventory-events` keep 7 days. Two kinds of
//! records (the contract: `orderflow_events::ledger`), both written to partition `p`:
//!
//! - **`ItemStock`**, key = the item (as on the other topics): the item's `reserved`
//!   quantity (the fact; `INITIAL_STOCK - reserved` is what is available, so the initial
//!   stock stays a setting that may change across restarts, as before), and the position it
//!   reflects: `orders_offset` (the next `orders` offset of `p`: every order of `p` below it
//!   is decided and counted) and `events_offset` (the next `inventory-events` offset of `p`:
//!   every decision of this item below it is counted in `reserved`).
//! - **`LedgerCheckpoint`**, key `#checkpoint` (a name `INITIAL_STOCK` refuses, so no item
//!   record can overwrite it): the same two offsets for the whole partition, plus the
//!   number of orders decided so far. It is written **last** in every flush, after the
//!   item records, so it says: every item record the state up to these offsets needs is
//!   in the log before me.
//!
//! Why one record per item and not one per partition: the state of an item is decided by
//! exactly one partition, a record stays small whatever the menu, and compaction then keeps
//! exactly "each item's stock state". The checkpoint is what bounds the rebuild: without
//! it, the tail to read would start at the oldest item record (a rarely ordered item would
//! pin it days back).
//!
//! ## Writing (a flush per batch and partition)
//! The ledger keeps which items changed since its last flush (`dirty`). After a batch's
//! decisions of `p` are acknowledged (their offsets are then known), the batch writes one
//! `ItemStock` per dirty item, then the checkpoint, both with the batch's next offsets.
//!
//! - **Transactions.** The ledger records are part of `p`'s transaction, with the decisions,
//!   the DLQ entries and the group's offset: a `read_committed` reader sees all of them or
//!   none, so the ledger and the decisions cannot disagree.
//! - **Idempotent** (`TRANSACTIONS=false`). Write order: decisions (acknowledged), then the
//!   item records, then the checkpoint (one idempotent producer, one partition: Kafka keeps
//!   their order and a crash leaves a prefix of them), then the consumer's offset. A crash
//!   at any point leaves decisions that the ledger does not reflect yet, or item records
//!   ahead of the checkpoint; the rebuild rule below makes both harmless. Each decision
//!   also carries the `orders` offset it decides in a header (`orderflow.orders.offset`).
//!
//! ## Rebuilding (when `p` is assigned)
//! Read `inventory-ledger/p` to its end (the latest record per key; later wins), then the
//! tail of `inventory-events/p` from the checkpoint's `events_offset` `E` (from the start
//! when there is no checkpoint yet: a first run, or an upgrade from before the ledger). A
//! tail decision of item `i` at offset `e` is counted in `reserved` only when `e` is at or
//! past both `E` and the item record's own `events_offset`: an item record ahead of the
//! checkpoint already counts the decisions below its offset, and an item record behind it
//! has no decisions between its offset and `E` (they would have been flushed before the
//! checkpoint). The positions are the **max** of the ledger's and the replayed tail's (the
//! header's `orders` offset + 1, the last tail offset + 1). Items changed by the tail are
//! dirty, so the next flush writes them before it moves the checkpoint past them.
//!
//! ## Duplicates, in bounded memory
//! Decisions are made in partition order, so "decided up to `orders` offset X" per
//! partition is enough to recognise a redelivered order ([`Outcome::Duplicate`] for an
//! offset below X). An order re-sent upstream under the same `order_id` (a new offset) is
//! caught by the `IdempotencyWindow`: the order ids of the decisions whose order
//! event time `ts` is within `IDEMPOTENCY_WINDOW` (24 h by default) of now; older ids are
//! evicted, so memory is bounded by the orders of one window, not by history. A rebuild
//! refills it from `inventory-events/p` from the offset of the window's start (Kafka's
//! offsets-for-times on the records' timestamps, which are the orders' event times) when
//! that is before `E`. An order re-sent with an event time older than the window is decided
//! again: that is the documented limit.
//!
//! ## Retention
//! Kafka may delete `orders` and `inventory-events` records older than 7 days: the ledger
//! keeps the stock they reserved, and a rebuild reads at most the tail after the last
//! checkpoint (a batch) and the idempotency window. If the tail the checkpoint points to is
//! itself gone (the ledger behind by more than the retention), the rebuild says so in an
//! ERROR log line: stock decided in that gap would be unknown.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use orderflow_events::{
    DecisionStatus, InventoryDecision, OrderPlaced, DEFAULT_ITEMS, DEFAULT_STOCK_PER_ITEM,
    LEDGER_CHECKPOINT_KEY,
};
use thiserror::Error;
use uuid::Uuid;

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
        assert_eq!(
            Stock::parse("#checkpoint=4").unwrap_err(),
            StockError::Reserved("#checkpoint".into())
        );
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
