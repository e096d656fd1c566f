//! The dead-letter queue: a record that cannot be decoded or validated is copied, bytes
//! unchanged, to `orderflow.dlq` with the reason and its origin in headers, and counted in
//! `orderflow_dlq_records_total{reason}`; the consumer then moves past it.

use std::time::Duration;

use orderflow_events::{
    DecodeError, HEADER_DLQ_OFFSET, HEADER_DLQ_PARTITION, HEADER_DLQ_REASON, HEADER_DLQ_TOPIC,
    TOPIC_DLQ,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Sends rejected records to `orderflow.dlq` and counts them.
#[derive(Clone)]
pub struct Dlq {
    producer: FutureProducer,
    records: Family<Vec<(String, String)>, Counter>,
}

impl Dlq {
    /// Use `producer` (shared with the service's own records) and register the counter.
    pub fn new(producer: FutureProducer, registry: &mut Registry) -> Self {
        let records = Family::default();
        registry.register(
            "orderflow_dlq_records",
            "Records sent to orderflow.dlq, by reason",
            records.clone(),
        );
        Self { producer, records }
    }

    /// Publish `msg` to the DLQ and wait for the broker's acknowledgement. A record the DLQ
    /// cannot take either is logged with its coordinates (and still counted): the consumer
    /// must move on rather than stop on one bad record.
    pub async fn send<M: Message>(&self, msg: &M, err: &DecodeError) {
        self.records
            .get_or_create(&vec![("reason".to_string(), err.kind().to_string())])
            .inc();
        let reason = err.to_string();
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_DLQ_REASON,
                value: Some(reason.as_str()),
            })
            .insert(Header {
                key: HEADER_DLQ_TOPIC,
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: HEADER_DLQ_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: HEADER_DLQ_OFFSET,
                value: Some(offset.as_str()),
            });
        let payload = msg.payload().unwrap_or_default();
        let mut record = FutureRecord::to(TOPIC_DLQ)
            .payload(payload)
            .headers(headers);
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), reason = %reason, "record sent to DLQ");
        if let Err((e, _)) = self.producer.send(record, Duration::from_secs(30)).await {
            tracing::error!(error = %e, topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                "could not write to the DLQ; the record is skipped, see this log line");
        }
    }
}
