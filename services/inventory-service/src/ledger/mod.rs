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
//! - **`ItemStock`**, key = the item (as on the other topics): the item's `reserved` and
//!   `restocked` quantities (the facts; `INITIAL_STOCK + restocked - reserved` is what is
//!   available, so the initial stock stays a setting that may change across restarts, as
//!   before), the `initial` stock it was written with (for the catalogue, below), and the
//!   position it
//!   reflects: `orders_offset` (the next `orders` offset of `p`: every order of `p` below it
//!   is decided and counted) and `events_offset` (the next `inventory-events` offset of `p`:
//!   every decision of this item below it is counted in `reserved`).
//! - **`LedgerCheckpoint`**, key `#checkpoint` (a name `INITIAL_STOCK` refuses, so no item
//!   record can overwrite it): the same two offsets for the whole partition, the number of
//!   orders decided so far, and the reserved units of the items written in its flush. It is
//!   written **last** in every flush, after the item records, so it says: every item record
//!   the state up to these offsets needs is in the log before me. One idempotent producer
//!   writes them to one partition, so Kafka keeps their order and a crash leaves a prefix;
//!   the one way a later record could land without an earlier one is a delivery timeout
//!   followed by librdkafka's epoch bump (the batch then fails and the session restarts).
//!   For that case the checkpoint repeats its items' state: a rebuild that finds a
//!   checkpoint newer than an item's record takes the checkpoint's value and writes the
//!   item again with the next flush.
//!
//! Why one record per item and not one per partition: the state of an item is decided by
//! exactly one partition, a record stays small whatever the menu, and compaction then keeps
//! exactly "each item's stock state". The checkpoint is what bounds the rebuild: without
//! it, the tail to read would start at the oldest item record (a rarely ordered item would
//! pin it days back).
//!
//! ## Writing (a flush per batch and partition)
//! The ledger keeps which items changed since its last flush (`dirty`). When a batch has
//! decided its orders of `p`, it takes its flush ([`PartitionLedger::take_flush`]: the dirty
//! items' state and the next `orders` offset after the batch); after the batch's decisions
//! of `p` are acknowledged (their offsets are then known) it writes one `ItemStock` per
//! dirty item, then the checkpoint, both at the offset after the batch's last decision of
//! `p` ([`Flush::records`]). Without transactions the next batch may be decided, and its
//! decisions written, before these records are: they are then decisions the ledger does not
//! reflect yet, as after a crash between the two writes, and the rebuild rule below counts
//! them (the property test `ledger::tests` runs both ways).
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
//! ## Restocks
//! A `StockRestockRequested` on `orders` is decided like an order, in partition order with
//! the item's orders (so "sold out, then 500 more" means exactly 500 more units for the
//! orders after it): it adds `qty` to the item's `restocked` units unless the item is
//! unknown or its stock (`initial + restocked + qty`, checked arithmetic) would pass
//! `MAX_STOCK`; either way the decision is recorded on `inventory-events`
//! (`InventoryRestocked` / `InventoryRestockRefused`, same `orders` offset header), counted
//! by the same rebuild rule as a reservation, and its `restock_id` goes into the
//! idempotency window like an order id. The item becomes dirty, so the next flush writes
//! its `restocked` to the ledger.
//!
//! ## The catalogue: every configured item has a record
//! order-service refuses orders for items no inventory knows, reading the ledger as the
//! catalogue (all partitions, no group). So a rebuild that ends without a record for a
//! configured item of its partition (the item's partition is
//! `orderflow_events::item_partition`, where order-service sends its orders) makes it dirty
//! with `reserved = restocked = 0`, and an item whose record was written with another
//! `initial` than `INITIAL_STOCK` now says (a changed setting), or that is no longer
//! configured (`initial: null`: it leaves the catalogue, its counts are kept should it come
//! back) is dirty too; a partition without a checkpoint yet (a first start) needs one. The
//! rebuild is then followed by a flush before the first batch ([`PartitionLedger::needs_flush`]),
//! an ordinary flush with the rebuilt positions, so the crash rules above hold for it too.
//! When `INITIAL_STOCK` changes, the catalogue follows at the next rebuild of each partition
//! (a restart or rebalance of inventory): new items appear, removed ones disappear.
//!
//! ## Duplicates, in bounded memory
//! Decisions are made in partition order, so "decided up to `orders` offset X" per
//! partition is enough to recognise a redelivered order ([`Outcome::Duplicate`] for an
//! offset below X). An order re-sent upstream under the same `order_id` (a new offset) is
//! caught by the [`IdempotencyWindow`]: the order ids of the decisions whose order
//! event time `ts` is within `IDEMPOTENCY_WINDOW` (24 h by default) of now; older ids are
//! evicted, so memory is bounded by the orders of one window, not by history. A rebuild
//! refills it from `inventory-events/p` from the offset of the window's start (Kafka's
//! offsets-for-times on the records' timestamps, which are the orders' event times) when
//! that is before `E`. An order re-sent with an event time older than the window is decided
//! again: that is the documented limit.
//!
//! ## Upgrading from before the ledger
//! With no checkpoint, the first rebuild reads all of `inventory-events` (as before); every
//! item it counts is dirty, so the first flush writes the whole ledger before its first
//! checkpoint. Decisions written before the `orderflow.orders.offset` header existed tell no
//! `orders` offset: until that first flush, a redelivered old order is recognised by its
//! order id (within the window) only. Upgrade before Kafka has deleted any decision.
//!
//! ## Retention
//! Kafka may delete `orders` and `inventory-events` records older than 7 days: the ledger
//! keeps the stock they reserved, and a rebuild reads at most the tail after the last
//! checkpoint (a batch) and the idempotency window. If the tail the checkpoint points to is
//! itself gone (the ledger behind by more than the retention), the rebuild says so in an
//! ERROR log line: stock decided in that gap would be unknown.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use orderflow_events::{
    DecisionStatus, InventoryDecision, InventoryRecord, ItemStock, ItemTotals, LedgerCheckpoint,
    LedgerRecord, OrderPlaced, OrdersRecord, RestockDecision, RestockStatus, StockRestockRequested,
    SCHEMA_VERSION,
};
use uuid::Uuid;

mod rebuild;
mod stock;
pub mod window;

pub use rebuild::Rebuild;
pub use stock::{stock_after_restock, Stock, StockError};
pub use window::IdempotencyWindow;

/// What deciding an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new decision, to be recorded on `inventory-events`.
    Decided(InventoryDecision),
    /// The order was decided before (a redelivery, or the same order id re-sent): nothing
    /// to do.
    Duplicate,
}

/// What deciding a restock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestockOutcome {
    /// A new decision (restocked or refused), to be recorded on `inventory-events`.
    Decided(RestockDecision),
    /// Decided before (a redelivery, or the same restock id re-sent): nothing to do.
    Duplicate,
}

/// A flush of one partition's ledger, taken when its batch was decided
/// ([`PartitionLedger::take_flush`]): the changed items' state and the partition's position
/// on `orders` after the batch; [`Flush::records`] adds the position on `inventory-events`
/// once the batch's decisions are acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    items: Vec<FlushItem>,
    orders_offset: i64,
    decided: u64,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FlushItem {
    item: String,
    initial: Option<u64>,
    reserved: u64,
    restocked: u64,
}

impl Flush {
    /// The records to write to `inventory-ledger` partition `p`: an `ItemStock` per changed
    /// item, then the checkpoint (last: see the module docs), all at `events_offset`, the
    /// next `inventory-events` offset after every decision they count.
    pub fn records(&self, p: i32, events_offset: i64) -> Vec<LedgerRecord> {
        let mut out: Vec<LedgerRecord> = self
            .items
            .iter()
            .map(|i| {
                LedgerRecord::ItemStock(ItemStock {
                    schema_version: SCHEMA_VERSION,
                    item: i.item.clone(),
                    initial: i.initial,
                    reserved: i.reserved,
                    restocked: i.restocked,
                    orders_offset: self.orders_offset,
                    events_offset,
                    updated_at: self.updated_at,
                })
            })
            .collect();
        out.push(LedgerRecord::LedgerCheckpoint(LedgerCheckpoint {
            schema_version: SCHEMA_VERSION,
            partition: p,
            orders_offset: self.orders_offset,
            events_offset,
            decided: self.decided,
            items: self
                .items
                .iter()
                .map(|i| {
                    let totals = ItemTotals {
                        reserved: i.reserved,
                        restocked: i.restocked,
                    };
                    (i.item.clone(), totals)
                })
                .collect(),
            updated_at: self.updated_at,
        }));
        out
    }
}

/// Reserved stock, decided orders and the positions they reflect, for the items of one
/// `orders` partition (see the module docs).
///
/// `reserved` has an entry (possibly 0) for every item this partition has decided an order
/// for, so it also tells which items the partition carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionLedger {
    reserved: HashMap<String, u64>,
    /// Units added by restocks, per item (only items restocked at least once).
    restocked: HashMap<String, u64>,
    /// A checkpoint of this partition is in `inventory-ledger` (read back or flushed).
    checkpointed: bool,
    /// Order ids decided within the idempotency window.
    window: IdempotencyWindow,
    /// Orders decided on the partition (reserved or failed), over its whole history.
    decided: u64,
    /// Next `orders` offset: every order below it is handled (decided, or a bad record).
    next_order: i64,
    /// Next `inventory-events` offset after the last decision counted here.
    next_event: i64,
    /// Stocked items changed since the last flush to `inventory-ledger`.
    dirty: BTreeSet<String>,
}

impl PartitionLedger {
    /// An empty ledger whose idempotency window spans `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window: IdempotencyWindow::new(window),
            ..Self::default()
        }
    }

    /// Decide `order`, read at `offset` of the partition, against `stock`, at `now`.
    pub fn decide(
        &mut self,
        stock: &Stock,
        order: &OrderPlaced,
        offset: i64,
        now: DateTime<Utc>,
    ) -> Outcome {
        self.window.evict(now);
        if offset < self.next_order || self.window.contains(&order.order_id) {
            self.pass(offset);
            return Outcome::Duplicate;
        }
        let reason = match stock.initial(&order.item) {
            None => Some(format!("unknown item {:?}", order.item)),
            Some(_) => {
                let available = self.available(stock, &order.item);
                (u64::from(order.qty) > available).then(|| {
                    format!(
                        "insufficient stock: requested {}, available {available}",
                        order.qty
                    )
                })
            }
        };
        let decision = order.decide(reason, now);
        self.count(&decision, stock.initial(&order.item).is_some(), now);
        self.pass(offset);
        Outcome::Decided(decision)
    }

    /// Decide restock `req`, read at `offset` of the partition, against `stock`, at `now`:
    /// refused for an unknown item or beyond `MAX_STOCK` (checked arithmetic), else the
    /// item's `restocked` units grow by `qty`.
    pub fn restock(
        &mut self,
        stock: &Stock,
        req: &StockRestockRequested,
        offset: i64,
        now: DateTime<Utc>,
    ) -> RestockOutcome {
        self.window.evict(now);
        if offset < self.next_order || self.window.contains(&req.restock_id) {
            self.pass(offset);
            return RestockOutcome::Duplicate;
        }
        let restocked = self.restocked(&req.item);
        let decision = match stock.initial(&req.item) {
            None => req.decide(Some(format!("unknown item {:?}", req.item)), 0, now),
            Some(initial) => match stock_after_restock(initial, restocked, req.qty) {
                Ok(after) => req.decide(None, after, now),
                Err(e) => req.decide(Some(e.to_string()), initial.saturating_add(restocked), now),
            },
        };
        self.count_restock(&decision, stock.initial(&req.item).is_some(), now);
        self.pass(offset);
        RestockOutcome::Decided(decision)
    }

    /// Decide a record of `orders` ([`Self::decide`] or [`Self::restock`]); `None`: a
    /// duplicate.
    pub fn apply(
        &mut self,
        stock: &Stock,
        record: &OrdersRecord,
        offset: i64,
        now: DateTime<Utc>,
    ) -> Option<InventoryRecord> {
        match record {
            OrdersRecord::Order(o) => match self.decide(stock, o, offset, now) {
                Outcome::Decided(d) => Some(InventoryRecord::Order(d)),
                Outcome::Duplicate => None,
            },
            OrdersRecord::Restock(r) => match self.restock(stock, r, offset, now) {
                RestockOutcome::Decided(d) => Some(InventoryRecord::Restock(d)),
                RestockOutcome::Duplicate => None,
            },
        }
    }

    /// Units of `item` available: initial stock plus restocked minus reserved (0 for an
    /// unknown item, never negative).
    pub fn available(&self, stock: &Stock, item: &str) -> u64 {
        stock.initial(item).map_or(0, |initial| {
            initial
                .saturating_add(self.restocked(item))
                .saturating_sub(self.reserved(item))
        })
    }

    /// The order at `offset` is handled without a decision (a bad record sent to the DLQ).
    pub fn pass(&mut self, offset: i64) {
        self.next_order = self.next_order.max(offset + 1);
    }

    /// The decisions sent so far are acknowledged, the last one at `next - 1` of
    /// `inventory-events`.
    pub fn written(&mut self, next: i64) {
        self.next_event = self.next_event.max(next);
    }

    /// Count a decision: its order id, and its stock when it reserved. `stocked`: the item
    /// has an `ItemStock` record (a flush writes it).
    fn count(&mut self, d: &InventoryDecision, stocked: bool, now: DateTime<Utc>) {
        self.window.insert(d.order_id, d.ts, now);
        self.decided += 1;
        // the item's name is copied only the first time it is seen (a map entry, a dirty mark)
        let qty = match d.status {
            DecisionStatus::Reserved => u64::from(d.qty),
            DecisionStatus::Failed => 0,
        };
        match self.reserved.get_mut(&d.item) {
            Some(r) => *r += qty,
            None => {
                self.reserved.insert(d.item.clone(), qty);
            }
        }
        if stocked && !self.dirty.contains(&d.item) {
            self.dirty.insert(d.item.clone());
        }
    }

    /// Count restock decision `d` like [`Self::count`]: its id, and its units when applied.
    fn count_restock(&mut self, d: &RestockDecision, stocked: bool, now: DateTime<Utc>) {
        self.window.insert(d.restock_id, d.ts, now);
        self.reserved.entry(d.item.clone()).or_default();
        if d.status == RestockStatus::Restocked {
            *self.restocked.entry(d.item.clone()).or_default() += u64::from(d.qty);
        }
        if stocked {
            self.dirty.insert(d.item.clone());
        }
    }

    /// Whether the ledger must be flushed before deciding anything: it has changes a
    /// rebuild found (items of the catalogue to write) or no checkpoint yet.
    pub fn needs_flush(&self) -> bool {
        !self.dirty.is_empty() || !self.checkpointed
    }

    /// What the next flush writes to `inventory-ledger` partition `p`: an `ItemStock` per
    /// changed item (with its `initial` from `stock`), then the checkpoint (last: see the
    /// module docs), at the positions the ledger has now. Once the broker acknowledged them,
    /// [`PartitionLedger::flushed`]. The tests' view of a flush: the worker takes one when a
    /// batch is decided ([`PartitionLedger::take_flush`]).
    #[cfg(test)]
    fn flush_records(&self, p: i32, stock: &Stock, now: DateTime<Utc>) -> Vec<LedgerRecord> {
        self.pending(stock, now).records(p, self.next_event)
    }

    /// The next flush, taken now: the ledger's state after the decisions made so far, whose
    /// `inventory-events` offsets are not known yet ([`Flush::records`] gets them). The
    /// ledger counts it as written from now on (nothing dirty, a checkpoint), so the
    /// decisions that follow are the next flush's: a flush that then fails ends the session,
    /// which drops the ledger and rebuilds it.
    pub fn take_flush(&mut self, stock: &Stock, now: DateTime<Utc>) -> Flush {
        let flush = self.pending(stock, now);
        self.flushed();
        flush
    }

    fn pending(&self, stock: &Stock, now: DateTime<Utc>) -> Flush {
        Flush {
            items: self
                .dirty
                .iter()
                .map(|item| FlushItem {
                    item: item.clone(),
                    initial: stock.initial(item),
                    reserved: self.reserved(item),
                    restocked: self.restocked(item),
                })
                .collect(),
            orders_offset: self.next_order,
            decided: self.decided,
            updated_at: orderflow_events::truncate_ms(now),
        }
    }

    /// The next flush is counted as written (see [`PartitionLedger::take_flush`]).
    fn flushed(&mut self) {
        self.dirty.clear();
        self.checkpointed = true;
    }

    pub fn reserved(&self, item: &str) -> u64 {
        self.reserved.get(item).copied().unwrap_or(0)
    }

    /// Units of `item` added by restocks.
    pub fn restocked(&self, item: &str) -> u64 {
        self.restocked.get(item).copied().unwrap_or(0)
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

    /// Whether `order_id` is known as decided (within the idempotency window).
    pub fn is_decided(&self, order_id: &Uuid) -> bool {
        self.window.contains(order_id)
    }

    /// The idempotency window of the partition.
    pub fn window(&self) -> &IdempotencyWindow {
        &self.window
    }

    /// Orders decided on the partition, over its whole history.
    pub fn decided_count(&self) -> u64 {
        self.decided
    }

    /// Next `orders` offset to decide (every order below it is handled).
    pub fn next_order(&self) -> i64 {
        self.next_order
    }

    /// Next `inventory-events` offset after the last decision counted.
    pub fn next_event(&self) -> i64 {
        self.next_event
    }
}

#[cfg(test)]
mod tests;
