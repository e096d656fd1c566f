//! The Kafka side of [`crate::snapshot`]: reading `<group>-snapshots` ([`OwnNames::snapshots`],
//! `analytics-snapshots` by default) back at start-up and writing a flush (records, acknowledged, then the checkpoint, acknowledged).

use std::time::Duration;

use futures::future::join_all;
use orderflow_events::{SnapshotRecord, SNAPSHOT_PARTITION};
use orderflow_runtime::kafka::{self, KafkaConfig};
use orderflow_runtime::read::{self, ReadError, Span};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::consumer::AnalyticsError;
use crate::group::OwnNames;
use crate::snapshot::{Flush, Restore};

/// The most a flush waits for its acknowledgements: `message.timeout.ms` and a margin.
const FLUSH_BOUND: Duration = Duration::from_secs(75);

/// What reading the snapshot topic found.
#[derive(Debug, Default)]
pub struct Read {
    pub restore: Restore,
    pub records: u64,
    pub undecodable: u64,
}

/// Read partition [`SNAPSHOT_PARTITION`] of the snapshot topic to its end (blocking).
pub fn read_snapshots(
    kafka: &KafkaConfig,
    names: &OwnNames,
    timeout: Duration,
) -> Result<Read, AnalyticsError> {
    let reader: BaseConsumer = kafka.reader(&names.snapshots_reader()).create()?;
    let (low, high) = reader.fetch_watermarks(&names.snapshots, SNAPSHOT_PARTITION, timeout)?;
    let mut out = Read::default();
    let span = Span {
        topic: names.snapshots.clone(),
        partition: SNAPSHOT_PARTITION,
        from: low,
        to: high,
    };
    out.records = read::read_to_end(&reader, &[span], timeout, |m| {
        if let Err(e) = out.restore.record(m.key(), m.payload()) {
            out.undecodable += 1;
            tracing::warn!(topic = %names.snapshots, offset = m.offset(), error = %e, "undecodable analytics-snapshots record: ignored");
        }
    })
    .map_err(|e| match e {
        ReadError::Kafka(e) => AnalyticsError::Kafka(e),
        other => AnalyticsError::Snapshot(other.to_string()),
    })?;
    Ok(out)
}

/// Write `flush` to `topic`: its records and tombstones, then (all acknowledged) its
/// checkpoint.
pub async fn write_flush(
    producer: &FutureProducer,
    topic: &str,
    flush: &Flush,
) -> Result<(), AnalyticsError> {
    let mut sends = Vec::with_capacity(flush.before.len());
    for w in &flush.before {
        let payload = w.value.as_ref().map(SnapshotRecord::encode);
        sends.push(send(producer, topic, &w.key, payload.as_deref())?);
    }
    acknowledged(sends).await?;
    let payload = flush.checkpoint.encode();
    let key = flush.checkpoint.key();
    acknowledged(vec![send(producer, topic, &key, Some(&payload))?]).await
}

fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: Option<&[u8]>,
) -> Result<DeliveryFuture, AnalyticsError> {
    let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
        .partition(SNAPSHOT_PARTITION)
        .key(key);
    if let Some(p) = payload {
        record = record.payload(p);
    }
    kafka::enqueue(producer, record).map_err(|e| AnalyticsError::Snapshot(e.to_string()))
}

async fn acknowledged(sends: Vec<DeliveryFuture>) -> Result<(), AnalyticsError> {
    if sends.is_empty() {
        return Ok(());
    }
    let acks = tokio::time::timeout(FLUSH_BOUND, join_all(sends))
        .await
        .map_err(|_| {
            AnalyticsError::Snapshot(format!(
                "no acknowledgement within {}s",
                FLUSH_BOUND.as_secs()
            ))
        })?;
    for r in acks {
        if let Some(e) = kafka::delivery_error(r) {
            return Err(AnalyticsError::Snapshot(e));
        }
    }
    Ok(())
}
