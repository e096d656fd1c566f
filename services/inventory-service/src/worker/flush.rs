//! Writing the ledger: a batch's flush of a partition is taken when the batch is decided;
//! after its decisions are acknowledged, its changed items and then its checkpoint go to the
//! same partition of `inventory-ledger`, through the partition's producer (with
//! transactions: inside its open transaction). The
//! write order and why a crash between any two writes is harmless: [`crate::ledger`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use orderflow_events::{ledger_partition, LedgerRecord, TOPIC_INVENTORY_LEDGER};
use orderflow_runtime::kafka;
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::commit::Committer;
use super::{bounded, InventoryError, Ledgers};
use crate::ledger::{Flush, PartitionLedger, Stock};
use crate::metrics::InventoryMetrics;

/// The most a flush waits for its acknowledgements: `message.timeout.ms` and a margin.
const FLUSH_BOUND: Duration = Duration::from_secs(75);

/// Run `f` on the ledger of `orders` partition `p`.
pub(super) fn ledger_mut<T>(
    ledgers: &Ledgers,
    p: i32,
    f: impl FnOnce(&mut PartitionLedger) -> T,
) -> Result<T, InventoryError> {
    let mut l = ledgers
        .write()
        .map_err(|_| InventoryError::Join("ledger lock poisoned".into()))?;
    Ok(f(l.get_mut(&p).ok_or(InventoryError::NoLedger(p))?))
}

/// Write `flushes`, the ledger records of partitions of a batch, taken when the batch was
/// decided ([`PartitionLedger::take_flush`]), at the partition's `inventory-events` position
/// now that its decisions are acknowledged, and wait for their acknowledgements. A failure
/// ends the session before the batch is committed.
pub(super) async fn flush_ledgers<'f>(
    ledgers: &Ledgers,
    metrics: &InventoryMetrics,
    committer: &Committer,
    flushes: impl IntoIterator<Item = (&'f i32, &'f Flush)>,
) -> Result<(), InventoryError> {
    let mut sends: Vec<DeliveryFuture> = Vec::new();
    for (&p, flush) in flushes {
        let events_offset = ledger_mut(ledgers, p, |l| l.next_event())?;
        sends.extend(send_records(committer, metrics, p, flush, events_offset)?);
    }
    let acks = bounded(
        "the ledger's acknowledgements",
        FLUSH_BOUND,
        join_all(sends),
    )
    .await?;
    for r in acks {
        if let Some(e) = kafka::delivery_error(r) {
            metrics.produce_failures.inc();
            return Err(InventoryError::Delivery(format!("ledger: {e}")));
        }
    }
    Ok(())
}

/// Take the next flush of each of `partitions` ([`PartitionLedger::take_flush`]).
pub(super) fn take_flushes(
    ledgers: &Ledgers,
    stock: &Stock,
    partitions: impl IntoIterator<Item = i32>,
) -> Result<BTreeMap<i32, Flush>, InventoryError> {
    let now = Utc::now();
    partitions
        .into_iter()
        .map(|p| Ok((p, ledger_mut(ledgers, p, |l| l.take_flush(stock, now))?)))
        .collect()
}

/// Hand `flush`'s records, at `events_offset`, to the producer of partition `p`, without
/// waiting for the broker.
pub(super) fn send_records(
    committer: &Committer,
    metrics: &InventoryMetrics,
    p: i32,
    flush: &Flush,
    events_offset: i64,
) -> Result<Vec<DeliveryFuture>, InventoryError> {
    let producer = committer.producer(p)?;
    flush
        .records(p, events_offset)
        .iter()
        .map(|r| {
            send(producer, p, r).inspect_err(|_| {
                metrics.produce_failures.inc();
            })
        })
        .collect()
}

fn send(
    producer: &rdkafka::producer::FutureProducer,
    p: i32,
    r: &LedgerRecord,
) -> Result<DeliveryFuture, InventoryError> {
    let payload = r.encode();
    let record = FutureRecord::to(TOPIC_INVENTORY_LEDGER)
        .partition(ledger_partition(p))
        .key(r.key())
        .payload(&payload);
    kafka::enqueue(producer, record).map_err(|e| InventoryError::Delivery(e.to_string()))
}
