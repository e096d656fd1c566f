//! order-service internals: the HTTP API, order generation for bulk runs, the catalogue
//! (the items inventory knows, read from `inventory-ledger`), and the Kafka publisher.

pub mod api;
pub mod bulk;
pub mod bulk_producer;
pub mod catalogue;
pub mod config;
pub mod publisher;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `{reason="..."}`: why a request was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// `{item="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    pub item: String,
}

/// Prometheus metrics of order-service.
#[derive(Clone)]
pub struct AppMetrics {
    /// Records acknowledged by Kafka (single and bulk): the records order-service produced.
    pub published: Counter,
    pub publish_failures: Counter,
    /// Requests refused, by reason (`unsupported_media_type`, `invalid_body`,
    /// `invalid_field`, `unknown_item`, `stock_limit`, `catalogue_unavailable`,
    /// `kafka_unavailable`).
    pub rejected: Family<ReasonLabels, Counter>,
    /// Requests refused as invalid (4xx), for `/stats`.
    pub rejected_requests: Counter,
    pub publish_seconds: Histogram,
    /// Units of the restock requests Kafka acknowledged, per item.
    pub restocked_units: Family<ItemLabels, Counter>,
}

impl AppMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            published: Counter::default(),
            publish_failures: Counter::default(),
            rejected: Family::default(),
            rejected_requests: Counter::default(),
            publish_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            restocked_units: Family::default(),
        };
        registry.register(
            "orderflow_orders_published",
            "OrderPlaced records acknowledged by Kafka",
            m.published.clone(),
        );
        registry.register(
            "orderflow_orders_publish_failures",
            "OrderPlaced records Kafka did not acknowledge",
            m.publish_failures.clone(),
        );
        registry.register(
            "orderflow_orders_rejected_requests",
            "Order and restock requests refused, by reason (unsupported_media_type, invalid_body, invalid_field, unknown_item, stock_limit: 4xx; catalogue_unavailable, kafka_unavailable: 503)",
            m.rejected.clone(),
        );
        registry.register(
            "orderflow_orders_restocked_units",
            "Units of the StockRestockRequested records Kafka acknowledged (POST /stock/{item}/restock), per item",
            m.restocked_units.clone(),
        );
        registry.register(
            "orderflow_orders_publish_seconds",
            "Time from handing an order to the producer until Kafka acknowledged it (single orders)",
            m.publish_seconds.clone(),
        );
        m
    }

    /// Count a refused request (`client_error`: refused as invalid, a 4xx).
    pub fn rejected(&self, reason: &'static str, client_error: bool) {
        if client_error {
            self.rejected_requests.inc();
        }
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }
}

impl Default for AppMetrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_reason() {
        let mut registry = Registry::default();
        let m = AppMetrics::register(&mut registry);
        m.rejected("invalid_body", true);
        m.rejected("kafka_unavailable", false);
        m.rejected("kafka_unavailable", false);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "orderflow_orders_rejected_requests_total{reason=\"invalid_body\"} 1\n",
            "orderflow_orders_rejected_requests_total{reason=\"kafka_unavailable\"} 2\n",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        assert_eq!(m.rejected_requests.get(), 1);
    }
}
