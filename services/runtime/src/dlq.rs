//! The dead-letter queue: a record that cannot be decoded or validated is copied, bytes
//! unchanged, to `orderflow.dlq` with the reason and its origin in headers; the consumer
//! then moves past it.

use std::time::Duration;

use orderflow_events::{
    DecodeError, HEADER_DLQ_OFFSET, HEADER_DLQ_PARTITION, HEADER_DLQ_REASON, HEADER_DLQ_TOPIC,
    TOPIC_DLQ,
};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Publish `msg` to the DLQ and wait for the broker's acknowledgement.
pub async fn send<M: Message>(
    producer: &FutureProducer,
    msg: &M,
    err: &DecodeError,
) -> Result<(), rdkafka::error::KafkaError> {
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
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}
