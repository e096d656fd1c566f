//! Prometheus metrics of inventory-service.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ledger::Stock;
use crate::worker::Ledgers;

/// `{status="reserved"}` or `{status="failed"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

/// `{item="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    pub item: String,
}

#[derive(Clone)]
pub struct InventoryMetrics {
    /// `orders` records received (every record of every batch).
    pub consumed: Counter,
    /// Decisions Kafka did not acknowledge (or that could not be handed to the producer).
    pub produce_failures: Counter,
    pub decisions: Family<StatusLabels, Counter>,
    pub duplicates: Counter,
    pub batch_seconds: Histogram,
    pub stock_available: Family<ItemLabels, Gauge>,
    /// Restock decisions recorded, by status (`restocked`, `refused`).
    pub restocks: Family<StatusLabels, Counter>,
    /// Units added by restocks this replica recorded, per item.
    pub restocked_units: Family<ItemLabels, Counter>,
    /// Order ids held for duplicate detection (the idempotency windows of the owned
    /// partitions): bounded by one window of orders.
    pub window_ids: Gauge,
    /// Transactions of this replica's producers that Kafka had left open for good, aborted
    /// at a take-over (`worker::hanging`).
    pub hanging_aborted: Counter,
    /// Batches of a partition whose ledger records were sent with their decisions
    /// (`worker::ahead`).
    pub ledger_ahead: Counter,
    /// Ledger records sent with their decisions at an end the acknowledgements did not
    /// confirm, and written again (`worker::ahead`).
    pub ledger_rewritten: Counter,
    shown: Arc<Mutex<BTreeSet<String>>>,
}

impl InventoryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            consumed: Counter::default(),
            produce_failures: Counter::default(),
            decisions: Family::default(),
            duplicates: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            stock_available: Family::default(),
            restocks: Family::default(),
            restocked_units: Family::default(),
            window_ids: Gauge::default(),
            hanging_aborted: Counter::default(),
            ledger_ahead: Counter::default(),
            ledger_rewritten: Counter::default(),
            shown: Arc::default(),
        };
        registry.register(
            "orderflow_inventory_orders_consumed",
            "Records read from orders by this replica",
            m.consumed.clone(),
        );
        registry.register(
            "orderflow_inventory_produce_failures",
            "Decisions Kafka did not acknowledge (the batch is not committed and is decided again after a restart)",
            m.produce_failures.clone(),
        );
        registry.register(
            "orderflow_inventory_decisions",
            "Decisions recorded, by status",
            m.decisions.clone(),
        );
        registry.register(
            "orderflow_inventory_duplicates_skipped",
            "Orders recognised as already decided: redelivered (by offset) or re-sent under the same order_id (within the idempotency window)",
            m.duplicates.clone(),
        );
        registry.register(
            "orderflow_inventory_batch_seconds",
            "Time to decide, record and commit one batch",
            m.batch_seconds.clone(),
        );
        registry.register(
            "orderflow_inventory_stock_available",
            "Available stock per item, for items of the partitions this replica owns",
            m.stock_available.clone(),
        );
        registry.register(
            "orderflow_inventory_restocks",
            "Restock decisions recorded by this replica, by status (restocked, refused)",
            m.restocks.clone(),
        );
        registry.register(
            "orderflow_inventory_restocked_units",
            "Units added by the restocks this replica recorded, per item",
            m.restocked_units.clone(),
        );
        registry.register(
            "orderflow_inventory_idempotency_window_ids",
            "Order ids held for duplicate detection: those of the owned partitions' orders within IDEMPOTENCY_WINDOW_MS",
            m.window_ids.clone(),
        );
        registry.register(
            "orderflow_inventory_hanging_transactions_aborted",
            "Transactions of this replica's producers that Kafka had completed without all their markers (left open for good), aborted when their partition was taken over",
            m.hanging_aborted.clone(),
        );
        registry.register(
            "orderflow_inventory_ledger_sent_ahead",
            "Batches of a partition whose ledger records were sent with the decisions (transactions), at the end of inventory-events that the partition's last commit made known",
            m.ledger_ahead.clone(),
        );
        registry.register(
            "orderflow_inventory_ledger_rewritten",
            "Batches of a partition whose ledger records, sent with the decisions (transactions), named an end of inventory-events that the acknowledgements did not confirm, and were written again in the same transaction",
            m.ledger_rewritten.clone(),
        );
        m
    }

    /// Set `orderflow_inventory_stock_available{item}` for every stocked item an owned
    /// partition has decided orders for, and drop the series of items no longer owned (so
    /// that the replicas of the group together report each item once).
    pub fn set_stock(&self, stock: &Stock, ledgers: &Ledgers) {
        let Ok(l) = ledgers.read() else { return };
        let ids: usize = l.values().map(|pl| pl.window().len()).sum();
        self.window_ids.set(i64::try_from(ids).unwrap_or(i64::MAX));
        let mut now = BTreeSet::new();
        for (item, initial) in stock.items() {
            if !l.values().any(|pl| pl.carries(item)) {
                continue;
            }
            let reserved: u64 = l.values().map(|pl| pl.reserved(item)).sum();
            let restocked: u64 = l.values().map(|pl| pl.restocked(item)).sum();
            let avail = initial.saturating_add(restocked).saturating_sub(reserved);
            self.stock_available
                .get_or_create(&ItemLabels {
                    item: item.to_string(),
                })
                .set(i64::try_from(avail).unwrap_or(i64::MAX));
            now.insert(item.to_string());
        }
        let Ok(mut shown) = self.shown.lock() else {
            return;
        };
        for gone in shown.difference(&now) {
            self.stock_available
                .remove(&ItemLabels { item: gone.clone() });
        }
        *shown = now;
    }
}

impl Default for InventoryMetrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PartitionLedger;
    use chrono::Utc;
    use orderflow_events::OrderPlaced;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn decisions_by_status() {
        let mut registry = Registry::default();
        let m = InventoryMetrics::register(&mut registry);
        for status in ["reserved", "reserved", "failed"] {
            m.decisions.get_or_create(&StatusLabels { status }).inc();
        }
        let t = text(&registry);
        for want in [
            "orderflow_inventory_decisions_total{status=\"reserved\"} 2\n",
            "orderflow_inventory_decisions_total{status=\"failed\"} 1\n",
        ] {
            assert!(t.contains(want), "{want} missing in\n{t}");
        }
    }

    #[test]
    fn stock_gauge_covers_owned_items_only() {
        let mut registry = Registry::default();
        let m = InventoryMetrics::register(&mut registry);
        let stock = Stock::parse("pizza=10,taco=5").unwrap();
        let ledgers: Ledgers = Default::default();
        let mut pl = PartitionLedger::default();
        pl.decide(
            &stock,
            &OrderPlaced::new("pizza", 4, "u", Utc::now()),
            0,
            Utc::now(),
        );
        ledgers.write().unwrap().insert(1, pl);
        m.set_stock(&stock, &ledgers);
        let t = text(&registry);
        assert!(
            t.contains("orderflow_inventory_stock_available{item=\"pizza\"} 6"),
            "{t}"
        );
        assert!(!t.contains("item=\"taco\""), "{t}");
        assert!(
            t.contains("orderflow_inventory_idempotency_window_ids 1\n"),
            "{t}"
        );
        ledgers.write().unwrap().clear(); // partition revoked
        m.set_stock(&stock, &ledgers);
        assert!(!text(&registry).contains("item=\"pizza\""));
    }
}
