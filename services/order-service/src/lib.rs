//! order-service internals: the HTTP API, order generation for bulk runs, and the Kafka
//! publisher.

pub mod api;
pub mod bulk;
pub mod publisher;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Prometheus metrics of order-service.
#[derive(Clone)]
pub struct AppMetrics {
    pub published: Counter,
    pub publish_failures: Counter,
    pub rejected_requests: Counter,
    pub publish_seconds: Histogram,
}

impl AppMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            published: Counter::default(),
            publish_failures: Counter::default(),
            rejected_requests: Counter::default(),
            publish_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
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
            "Order requests refused as invalid (4xx)",
            m.rejected_requests.clone(),
        );
        registry.register(
            "orderflow_orders_publish_seconds",
            "Time from handing an order to the producer until Kafka acknowledged it (single orders)",
            m.publish_seconds.clone(),
        );
        m
    }
}

impl Default for AppMetrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}
