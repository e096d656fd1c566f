//! The dead-letter queue: a record that cannot be decoded or validated is copied, bytes
//! unchanged, to `orderflow.dlq` with the reason and its origin in headers, and counted in
//! `orderflow_dlq_records_total{reason}`; the consumer then moves past it.
//!
//! One DLQ entry per bad record: only the group [`dlq_group`] names for the record's topic
//! sends it. Every other reader (analytics on `orders`, inventory's ledger rebuild from
//! `inventory-events`) steps over it, logs it and counts it in
//! `orderflow_bad_records_skipped_total{topic,reason}`.

use orderflow_events::{
    dlq_group, DecodeError, HEADER_DLQ_OFFSET, HEADER_DLQ_PARTITION, HEADER_DLQ_REASON,
    HEADER_DLQ_TOPIC, TOPIC_DLQ,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

/// `{reason="..."}`: the kind of decode error ([`DecodeError::kind`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// `{topic="...",reason="..."}`: a skipped bad record's topic and kind of decode error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkippedLabels {
    pub topic: String,
    pub reason: &'static str,
}

/// What became of a rejected record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Written to `orderflow.dlq`.
    Sent,
    /// Left to the group that reports the topic's bad records; logged and counted.
    Skipped,
}

/// Sends rejected records to `orderflow.dlq` and counts them. The producer is the caller's:
/// a service replaces its Kafka clients when they fail, and inventory writes DLQ entries in
/// its transactions.
#[derive(Clone)]
pub struct Dlq {
    group: String,
    records: Family<ReasonLabels, Counter>,
    skipped: Family<SkippedLabels, Counter>,
}

impl Dlq {
    /// The DLQ of consumer group `group`; registers the counters. A group no topic names in
    /// [`dlq_group`] (e.g. a shadow replay's `analytics-shadow-<request>`) only skips: the
    /// live group reports each bad record once.
    pub fn new(group: impl Into<String>, registry: &mut Registry) -> Self {
        let records = Family::default();
        registry.register(
            "orderflow_dlq_records",
            "Records sent to orderflow.dlq, by reason",
            records.clone(),
        );
        let skipped = Family::default();
        registry.register(
            "orderflow_bad_records_skipped",
            "Records that failed to decode or validate and were stepped over without a DLQ entry, because another consumer group reports them (each time they are read), by topic and reason",
            skipped.clone(),
        );
        Self {
            group: group.into(),
            records,
            skipped,
        }
    }

    /// A record this service's group could not decode or validate: sent to the DLQ through
    /// `producer`, waiting for the broker's acknowledgement, when the group reports the bad
    /// records of its topic ([`dlq_group`]), else [`Dlq::skip`]ped. An error means the DLQ did
    /// not take the record: the caller keeps it uncommitted (it is read and rejected again
    /// later) rather than lose it.
    pub async fn reject<M: Message>(
        &self,
        producer: &FutureProducer,
        msg: &M,
        err: &DecodeError,
    ) -> Result<Rejected, KafkaError> {
        match self.reject_via(producer, msg, err)? {
            None => Ok(Rejected::Skipped),
            Some(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(Rejected::Sent),
                Ok(Err((e, _))) => Err(e),
                Err(_) => Err(KafkaError::Canceled),
            },
        }
    }

    /// [`Dlq::reject`] without waiting: the entry is only enqueued (e.g. into an open
    /// transaction, so it commits with the consumer's offsets), and the returned future, if
    /// it was sent, resolves when the broker took it.
    pub fn reject_via<M: Message>(
        &self,
        producer: &FutureProducer,
        msg: &M,
        err: &DecodeError,
    ) -> Result<Option<DeliveryFuture>, KafkaError> {
        if dlq_group(msg.topic()) == Some(self.group.as_str()) {
            self.enqueue(producer, msg, err).map(Some)
        } else {
            self.skip(msg, err);
            Ok(None)
        }
    }

    /// Step over a bad record another group reports to the DLQ: log it and count it in
    /// `orderflow_bad_records_skipped_total{topic,reason}`.
    pub fn skip<M: Message>(&self, msg: &M, err: &DecodeError) {
        self.skipped
            .get_or_create(&SkippedLabels {
                topic: msg.topic().to_string(),
                reason: err.kind(),
            })
            .inc();
        tracing::warn!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            reason = %err,
            reported_by = dlq_group(msg.topic()).unwrap_or("nobody"),
            "bad record skipped (its DLQ entry is written by the group named in reported_by)"
        );
    }

    /// Count `msg`, log it and hand it to `producer` for the DLQ, with reason and origin.
    fn enqueue<M: Message>(
        &self,
        producer: &FutureProducer,
        msg: &M,
        err: &DecodeError,
    ) -> Result<DeliveryFuture, KafkaError> {
        self.records
            .get_or_create(&ReasonLabels { reason: err.kind() })
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
        crate::kafka::enqueue(producer, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_events::{GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
    use rdkafka::message::{OwnedMessage, Timestamp};
    use rdkafka::ClientConfig;

    #[tokio::test]
    async fn a_group_skips_and_counts_the_bad_records_another_group_reports() {
        let mut registry = Registry::default();
        // Nothing is sent (the record is skipped), so no broker is needed.
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let dlq = Dlq::new(GROUP_ANALYTICS, &mut registry);
        let msg = OwnedMessage::new(
            Some(b"nope".to_vec()),
            None,
            TOPIC_ORDERS.to_string(),
            Timestamp::NotAvailable,
            1,
            7,
            None,
        );
        let err = DecodeError::NotJson("expected value".into());
        assert_eq!(
            dlq.reject(&producer, &msg, &err).await.unwrap(),
            Rejected::Skipped
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "orderflow_bad_records_skipped_total{topic=\"orders\",reason=\"not_json\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("orderflow_dlq_records_total{"), "{text}");
    }

    #[tokio::test]
    async fn a_shadow_group_skips_the_bad_records_its_live_group_reports() {
        let mut registry = Registry::default();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        // analytics reports bad inventory-events; its shadow copy must not report them again
        let dlq = Dlq::new(format!("{GROUP_ANALYTICS}-shadow-s1"), &mut registry);
        let msg = OwnedMessage::new(
            Some(b"nope".to_vec()),
            None,
            TOPIC_INVENTORY_EVENTS.to_string(),
            Timestamp::NotAvailable,
            2,
            5,
            None,
        );
        let sent = dlq.reject_via(&producer, &msg, &DecodeError::NotAnObject);
        assert!(matches!(sent, Ok(None)), "skipped, not sent");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("orderflow_bad_records_skipped_total{topic=\"inventory-events\",reason=\"not_an_object\"} 1"),
            "{text}"
        );
        assert!(!text.contains("orderflow_dlq_records_total{"), "{text}");
    }

    #[tokio::test]
    async fn the_reporting_group_sends_and_counts_by_reason() {
        let mut registry = Registry::default();
        // The entry is only enqueued (its delivery is never awaited), so no broker is needed.
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let dlq = Dlq::new(dlq_group(TOPIC_ORDERS).unwrap(), &mut registry);
        let msg = OwnedMessage::new(
            Some(b"[]".to_vec()),
            None,
            TOPIC_ORDERS.to_string(),
            Timestamp::NotAvailable,
            0,
            3,
            None,
        );
        let sent = dlq.reject_via(&producer, &msg, &DecodeError::NotAnObject);
        assert!(matches!(sent, Ok(Some(_))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("orderflow_dlq_records_total{reason=\"not_an_object\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("orderflow_bad_records_skipped_total{"),
            "{text}"
        );
    }
}
