//! Prometheus metrics of analytics-service.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::Aggregates;

type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub struct AnalyticsMetrics {
    pub records: Family<Labels, Counter>,
    pub orders_total: Gauge,
    pub failure_rate: Gauge<f64, AtomicU64>,
    pub rebuild_seconds: Gauge<f64, AtomicU64>,
    /// Time to decode and apply one record (consumed by the group consumer).
    pub apply_seconds: Histogram,
}

impl Default for AnalyticsMetrics {
    fn default() -> Self {
        Self {
            records: Family::default(),
            orders_total: Gauge::default(),
            failure_rate: Gauge::default(),
            rebuild_seconds: Gauge::default(),
            // 1 µs .. ~33 ms
            apply_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 16)),
        }
    }
}

impl AnalyticsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "orderflow_analytics_apply_seconds",
            "Time to decode and apply one consumed record",
            m.apply_seconds.clone(),
        );
        registry.register(
            "orderflow_analytics_records",
            "Records applied, by topic",
            m.records.clone(),
        );
        registry.register(
            "orderflow_analytics_orders",
            "Orders counted (current state)",
            m.orders_total.clone(),
        );
        registry.register(
            "orderflow_analytics_failure_rate",
            "Failed / decided orders",
            m.failure_rate.clone(),
        );
        registry.register(
            "orderflow_analytics_rebuild_seconds",
            "Time the last start-up took to rebuild the state from the log",
            m.rebuild_seconds.clone(),
        );
        m
    }

    pub fn applied(&self, took: Duration) {
        self.apply_seconds.observe(took.as_secs_f64());
    }

    pub fn observe(&self, topic: &str, state: &Aggregates) {
        self.records
            .get_or_create(&vec![("topic".to_string(), topic.to_string())])
            .inc();
        let v = state.orders_total();
        self.orders_total.set(i64::try_from(v).unwrap_or(i64::MAX));
        self.failure_rate.set(state.failure_rate());
    }
}
