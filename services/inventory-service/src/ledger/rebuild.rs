//! Rebuilding a partition's ledger (the rule is in the [`super`] module docs): its
//! `inventory-ledger` records in log order (a later record of a key wins), then the
//! decisions of `inventory-events` from [`Rebuild::tail_from`] on; [`Rebuild::finish`] then
//! adds the catalogue's missing or changed items (see the module docs).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orderflow_events::{
    DecisionStatus, InventoryDecision, InventoryRecord, LedgerRecord, RestockDecision,
    RestockStatus, PARTITIONS,
};

use super::{PartitionLedger, Stock};

/// A ledger being rebuilt.
#[derive(Debug)]
pub struct Rebuild<'a> {
    stock: &'a Stock,
    now: DateTime<Utc>,
    ledger: PartitionLedger,
    /// Per item, the `events_offset` of its latest `ItemStock` record.
    item_events: HashMap<String, i64>,
    /// Per item, the `initial` of its latest `ItemStock` record.
    item_initial: HashMap<String, Option<u64>>,
    /// The `events_offset` of the latest checkpoint (0: none, read the whole tail).
    checkpoint_events: i64,
}

impl<'a> Rebuild<'a> {
    /// A rebuild at `now`, of a ledger whose idempotency window spans `window`.
    pub fn new(stock: &'a Stock, window: Duration, now: DateTime<Utc>) -> Self {
        Self {
            stock,
            now,
            ledger: PartitionLedger::new(window),
            item_events: HashMap::new(),
            item_initial: HashMap::new(),
            checkpoint_events: 0,
        }
    }

    /// Apply a record of `inventory-ledger`, in log order.
    pub fn ledger_record(&mut self, r: &LedgerRecord) {
        let l = &mut self.ledger;
        match r {
            LedgerRecord::ItemStock(s) => {
                l.reserved.insert(s.item.clone(), s.reserved);
                l.restocked.insert(s.item.clone(), s.restocked);
                self.item_events.insert(s.item.clone(), s.events_offset);
                self.item_initial.insert(s.item.clone(), s.initial);
                l.next_order = l.next_order.max(s.orders_offset);
                l.next_event = l.next_event.max(s.events_offset);
            }
            LedgerRecord::LedgerCheckpoint(c) => {
                // An item of this flush whose record is missing (see the module docs): the
                // checkpoint's copy of its state, written again by the next flush.
                for (item, totals) in &c.items {
                    let behind = self
                        .item_events
                        .get(item)
                        .is_none_or(|e| *e < c.events_offset);
                    if behind {
                        l.reserved.insert(item.clone(), totals.reserved);
                        l.restocked.insert(item.clone(), totals.restocked);
                        self.item_events.insert(item.clone(), c.events_offset);
                        if self.stock.initial(item).is_some() {
                            l.dirty.insert(item.clone());
                        }
                    }
                }
                self.checkpoint_events = c.events_offset;
                l.checkpointed = true;
                l.decided = c.decided;
                l.next_order = l.next_order.max(c.orders_offset);
                l.next_event = l.next_event.max(c.events_offset);
            }
        }
    }

    /// The first `inventory-events` offset whose decisions the ledger records may not count:
    /// the latest checkpoint's.
    pub fn tail_from(&self) -> i64 {
        self.checkpoint_events
    }

    /// The oldest order event time the idempotency window holds: decisions of orders
    /// placed since (the records' timestamps) are read for their order ids too.
    pub fn window_start(&self) -> DateTime<Utc> {
        self.ledger.window.start(self.now)
    }

    /// Apply a record of `inventory-ledger`'s tail: [`Self::decision`] or
    /// [`Self::restock_decision`].
    pub fn record(&mut self, r: &InventoryRecord, offset: i64, orders_offset: Option<i64>) {
        match r {
            InventoryRecord::Order(d) => self.decision(d, offset, orders_offset),
            InventoryRecord::Restock(d) => self.restock_decision(d, offset, orders_offset),
        }
    }

    /// The offset from which a tail record of `item` counts (see the module docs).
    fn threshold(&self, item: &str) -> i64 {
        self.item_events
            .get(item)
            .copied()
            .unwrap_or(0)
            .max(self.checkpoint_events)
    }

    /// Apply restock decision `d` by the same rule as [`Self::decision`]: its units count
    /// when applied and at or past the item's threshold; its id goes into the window.
    pub fn restock_decision(
        &mut self,
        d: &RestockDecision,
        offset: i64,
        orders_offset: Option<i64>,
    ) {
        let stocked = self.stock.initial(&d.item).is_some();
        let threshold = self.threshold(&d.item);
        let l = &mut self.ledger;
        l.window.insert(d.restock_id, d.ts, self.now);
        l.reserved.entry(d.item.clone()).or_default();
        if offset >= threshold {
            if d.status == RestockStatus::Restocked {
                *l.restocked.entry(d.item.clone()).or_default() += u64::from(d.qty);
            }
            if stocked {
                l.dirty.insert(d.item.clone());
            }
        }
        if let Some(o) = orders_offset {
            l.pass(o);
        }
        l.written(offset + 1);
    }

    /// Apply decision `d`, read at `offset` of `inventory-events`; `orders_offset` is the
    /// `orders` offset it decided (its header), when it has one. A decision below
    /// [`Rebuild::tail_from`] (read for the idempotency window) only adds its order id.
    pub fn decision(&mut self, d: &InventoryDecision, offset: i64, orders_offset: Option<i64>) {
        let stocked = self.stock.initial(&d.item).is_some();
        let threshold = self.threshold(&d.item);
        let l = &mut self.ledger;
        l.window.insert(d.order_id, d.ts, self.now);
        if offset >= self.checkpoint_events {
            l.decided += 1;
        }
        let reserved = l.reserved.entry(d.item.clone()).or_default();
        if offset >= threshold {
            if d.status == DecisionStatus::Reserved {
                *reserved += u64::from(d.qty);
            }
            if stocked {
                l.dirty.insert(d.item.clone());
            }
        }
        if let Some(o) = orders_offset {
            l.pass(o);
        }
        l.written(offset + 1);
    }

    /// The rebuilt ledger of `orders` partition `p`, with the catalogue's changes marked
    /// dirty: every configured item of `p` without a record, and every item whose record
    /// was written with another `initial` than `INITIAL_STOCK` says now (changed, or no
    /// longer configured). [`PartitionLedger::needs_flush`] then says to flush first.
    pub fn finish(mut self, p: i32) -> PartitionLedger {
        let l = &mut self.ledger;
        for item in self.stock.items_of_partition(p, PARTITIONS) {
            if !self.item_initial.contains_key(item) && !l.dirty.contains(item) {
                l.reserved.entry(item.to_string()).or_default();
                l.dirty.insert(item.to_string());
            }
        }
        for (item, initial) in &self.item_initial {
            if *initial != self.stock.initial(item) {
                l.dirty.insert(item.clone());
            }
        }
        self.ledger
    }
}
