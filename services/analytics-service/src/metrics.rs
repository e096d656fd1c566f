//! Prometheus metrics of analytics-service.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use orderflow_events::{TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};

use crate::state::Aggregates;

/// `{topic="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone)]
pub struct AnalyticsMetrics {
    pub records: Family<TopicLabels, Counter>,
    /// `records` of the two topics analytics reads, taken from the family once: counting a
    /// record then copies no topic name and looks nothing up.
    records_of: [OnceLock<Counter>; 2],
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
            records_of: Default::default(),
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
        let counter = |topic: &str| {
            self.records
                .get_or_create(&TopicLabels {
                    topic: topic.to_string(),
                })
                .clone()
        };
        match [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS]
            .iter()
            .position(|t| *t == topic)
        {
            Some(i) => self.records_of[i].get_or_init(|| counter(topic)).inc(),
            None => counter(topic).inc(),
        };
        let v = state.orders_total();
        self.orders_total.set(i64::try_from(v).unwrap_or(i64::MAX));
        self.failure_rate.set(state.failure_rate());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let mut registry = Registry::default();
        let m = AnalyticsMetrics::register(&mut registry);
        m.observe("orders", &Aggregates::default());
        m.observe("inventory-events", &Aggregates::default());
        m.observe("inventory-events", &Aggregates::default());
        m.observe("elsewhere", &Aggregates::default());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "orderflow_analytics_records_total{topic=\"orders\"} 1\n",
            "orderflow_analytics_records_total{topic=\"inventory-events\"} 2\n",
            "orderflow_analytics_records_total{topic=\"elsewhere\"} 1\n",
            "orderflow_analytics_orders 0\n",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }
}
