//! Prometheus metrics of inventory-service.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ledger::Stock;
use crate::worker::Ledgers;

type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub struct InventoryMetrics {
    pub decisions: Family<Labels, Counter>,
    pub duplicates: Counter,
    pub batch_seconds: Histogram,
    pub stock_available: Family<Labels, Gauge>,
}

impl InventoryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            decisions: Family::default(),
            duplicates: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            stock_available: Family::default(),
        };
        registry.register(
            "orderflow_inventory_decisions",
            "Decisions recorded, by status",
            m.decisions.clone(),
        );
        registry.register(
            "orderflow_inventory_duplicates_skipped",
            "Redelivered orders recognised as already decided",
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
        m
    }

    pub fn set_stock(&self, stock: &Stock, ledgers: &Ledgers) {
        let Ok(l) = ledgers.read() else { return };
        for (item, initial) in stock.items() {
            if let Some(reserved) = l.values().map(|pl| pl.reserved(item)).find(|r| *r > 0) {
                let avail = initial.saturating_sub(reserved);
                self.stock_available
                    .get_or_create(&vec![("item".to_string(), item.to_string())])
                    .set(i64::try_from(avail).unwrap_or(i64::MAX));
            }
        }
    }
}

impl Default for InventoryMetrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}
