//! Publishing OrderPlaced (and StockRestockRequested) records to `orders` and waiting for
//! Kafka's acknowledgement. Both are keyed by item, through the same producer, so a restock
//! lands in the item's partition, in order with its orders.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use orderflow_events::{
    encode, record_key, Event, OrderPlaced, StockRestockRequested, TOPIC_ORDERS,
};
use orderflow_runtime::kafka::{self, delivery_error};
use orderflow_runtime::{Health, KafkaConfig};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::bulk::BulkPlan;
use crate::bulk_producer::BulkProducer;

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("Kafka did not acknowledge the record: {0}")]
    NotAcknowledged(String),
    #[error("{failed} of {attempted} records were not acknowledged by Kafka (first error: {first_error})")]
    Partial {
        attempted: u64,
        failed: u64,
        first_error: String,
    },
}

/// What a bulk run achieved.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BulkOutcome {
    pub published: u64,
    pub elapsed_ms: u64,
    pub events_per_sec: f64,
}

impl BulkOutcome {
    pub fn new(published: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        let events_per_sec = if secs > 0.0 {
            (published as f64 / secs).round()
        } else {
            published as f64
        };
        Self {
            published,
            elapsed_ms: elapsed.as_millis() as u64,
            events_per_sec,
        }
    }
}

/// Where Kafka stored an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// Where orders go. The Kafka implementation is [`KafkaPublisher`]; tests use a fake.
pub trait Publisher: Send + Sync + 'static {
    /// Publish one order; resolves once the broker acknowledged it, with where it was stored.
    fn publish(
        &self,
        order: OrderPlaced,
    ) -> impl Future<Output = Result<Position, PublishError>> + Send;
    /// Publish a restock request; resolves once the broker acknowledged it.
    fn publish_restock(
        &self,
        restock: StockRestockRequested,
    ) -> impl Future<Output = Result<Position, PublishError>> + Send;
    /// Publish every order of `plan`; resolves once all were acknowledged (or failed).
    fn publish_bulk(
        &self,
        plan: BulkPlan,
    ) -> impl Future<Output = Result<BulkOutcome, PublishError>> + Send;
}

pub struct KafkaPublisher {
    producer: FutureProducer,
    /// `POST /orders/bulk`'s own producer, tuned for throughput.
    bulk: BulkProducer,
}

/// How [`KafkaPublisher`] publishes.
#[derive(Debug, Clone, Copy)]
pub struct PublishSettings {
    /// How long a record waits at most for its acknowledgement (`PUBLISH_TIMEOUT_MS`).
    pub timeout_ms: u64,
    /// Most records of a bulk run in flight at once (`BULK_WINDOW`, at least 1).
    pub bulk_window: usize,
    /// The bulk producer's `linger.ms` (`BULK_LINGER_MS`).
    pub bulk_linger_ms: u32,
}

/// Produce requests in flight per broker connection, for both producers of `orders`: one, so
/// that an accepted order is written once. With more, librdkafka 2.12.1 can write a record
/// twice when a partition's leader dies: a later request of the partition is refused for a
/// skipped sequence (the one before it was refused by the old leader), librdkafka then bumps
/// the producer's epoch and sends again, with new sequence numbers, a record whose first send
/// the dead leader had written (librdkafka issue 4953, open; seen in this project's
/// three-node fault test, README "Guarantees"). With one request in flight no later request
/// can overtake a failed one.
pub(crate) const MAX_IN_FLIGHT: &str = "1";

impl KafkaPublisher {
    /// The producers of `orders`: one for single records (the service's `KAFKA_LINGER_MS`),
    /// one for bulk runs ([`BulkProducer`]).
    pub fn new(kafka: &KafkaConfig, settings: PublishSettings) -> Result<Self, KafkaError> {
        let PublishSettings {
            timeout_ms,
            bulk_window,
            bulk_linger_ms,
        } = settings;
        // The partitioner is librdkafka's default, named here because inventory relies on it:
        // CRC-32 of the key (the item) modulo the partition count,
        // orderflow_events::item_partition, is where it writes an item's ledger record
        // before the item's first order.
        let producer = kafka
            .producer("order-service")
            .set("message.timeout.ms", timeout_ms.to_string())
            .set("partitioner", "consistent_random")
            .set("max.in.flight.requests.per.connection", MAX_IN_FLIGHT)
            .create()?;
        let bulk = BulkProducer::new(kafka, timeout_ms, bulk_linger_ms, bulk_window)?;
        Ok(Self { producer, bulk })
    }

    pub fn flush(&self) {
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "flush on shutdown failed");
        }
        self.bulk.flush();
    }

    /// Hand `event` to the producer, keyed by its item, with its event time as timestamp.
    fn enqueue_event(&self, event: &Event) -> Result<DeliveryFuture, KafkaError> {
        let ts = event.ts().timestamp_millis();
        let key = record_key(event.item()).to_vec();
        let payload = encode(event);
        let record = FutureRecord::to(TOPIC_ORDERS)
            .key(&key)
            .payload(&payload)
            .timestamp(ts);
        kafka::enqueue(&self.producer, record)
    }
}

impl KafkaPublisher {
    async fn publish_event(&self, event: &Event) -> Result<Position, PublishError> {
        let fut = self
            .enqueue_event(event)
            .map_err(|e| PublishError::NotAcknowledged(e.to_string()))?;
        match fut.await {
            Ok(Ok(d)) => Ok(Position {
                partition: d.partition,
                offset: d.offset,
            }),
            r => Err(PublishError::NotAcknowledged(
                delivery_error(r).unwrap_or_default(),
            )),
        }
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(&self, order: OrderPlaced) -> Result<Position, PublishError> {
        self.publish_event(&Event::OrderPlaced(order)).await
    }

    async fn publish_restock(
        &self,
        restock: StockRestockRequested,
    ) -> Result<Position, PublishError> {
        self.publish_event(&Event::StockRestockRequested(restock))
            .await
    }

    async fn publish_bulk(&self, plan: BulkPlan) -> Result<BulkOutcome, PublishError> {
        self.bulk.publish(plan).await
    }
}

/// Keep `/readyz` honest: ready while the broker answers metadata requests for `orders`
/// and the catalogue has been read ([`crate::catalogue::Catalogue::readiness`]).
pub async fn watch_readiness(
    publisher: Arc<KafkaPublisher>,
    catalogue: crate::catalogue::SharedCatalogue,
    health: Health,
    token: CancellationToken,
) {
    loop {
        let p = publisher.clone();
        let probe = tokio::task::spawn_blocking(move || {
            // All topics, not Some(orders): asking for one topic lets a broker with
            // auto-creation on create it (with its default partition count).
            p.producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|md| {
                    md.topics().iter().any(|t| {
                        t.name() == TOPIC_ORDERS
                            && t.error().is_none()
                            && !t.partitions().is_empty()
                    })
                })
        })
        .await;
        match probe {
            Ok(Ok(true)) => match catalogue.read(|c| c.readiness()) {
                Some(Ok(detail)) => health.set_ready(format!("connected to Kafka; {detail}")),
                Some(Err(reason)) => health.set_not_ready(reason),
                None => health.set_not_ready("catalogue lock poisoned"),
            },
            Ok(Ok(false)) => {
                health.set_not_ready(format!("topic {TOPIC_ORDERS} does not exist yet"))
            }
            Ok(Err(e)) => health.set_not_ready(format!("Kafka unreachable: {e}")),
            Err(e) => health.set_not_ready(format!("readiness probe failed: {e}")),
        }
        let mut changed = catalogue.subscribe();
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            // the catalogue just loaded: say so now rather than up to 2 s later
            _ = changed.wait_for(|_| catalogue.read(|c| c.is_loaded()) == Some(true)), if catalogue.read(|c| !c.is_loaded()) == Some(true) => {}
        }
    }
}
