//! Writing the ledger: after a batch's decisions of a partition are acknowledged, its
//! changed items and then its checkpoint go to the same partition of `inventory-ledger`,
//! through the partition's producer (with transactions: inside its open transaction). The
//! write order and why a crash between any two writes is harmless: [`crate::ledger`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use orderflow_events::{ledger_partition, LedgerRecord, TOPIC_INVENTORY_LEDGER};
use orderflow_runtime::kafka;
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::commit::Committer;
use super::{bounded, Ctx, InventoryError};
use crate::ledger::PartitionLedger;

/// The most a flush waits for its acknowledgements: `message.timeout.ms` and a margin.
const FLUSH_BOUND: Duration = Duration::from_secs(75);

/// Run `f` on the ledger of `orders` partition `p`.
pub(super) fn ledger_mut<T>(
    ctx: Ctx<'_>,
    p: i32,
    f: impl FnOnce(&mut PartitionLedger) -> T,
) -> Result<T, InventoryError> {
    let mut l = ctx
        .ledgers
        .write()
        .map_err(|_| InventoryError::Join("ledger lock poisoned".into()))?;
    Ok(f(l.get_mut(&p).ok_or(InventoryError::NoLedger(p))?))
}

/// Write the ledger records of every partition of the batch (`next`: its partitions) and
/// wait for their acknowledgements; only then are the ledgers marked flushed. A failure
/// ends the session before the batch is committed.
pub(super) async fn flush_ledgers(
    ctx: Ctx<'_>,
    committer: &Committer,
    next: &BTreeMap<i32, i64>,
) -> Result<(), InventoryError> {
    let now = Utc::now();
    let mut sends: Vec<DeliveryFuture> = Vec::new();
    for &p in next.keys() {
        let records = ledger_mut(ctx, p, |l| l.flush_records(p, &ctx.settings.stock, now))?;
        let producer = committer.producer(p)?;
        for r in &records {
            sends.push(send(producer, p, r).inspect_err(|_| {
                ctx.metrics.produce_failures.inc();
            })?);
        }
    }
    let acks = bounded(
        "the ledger's acknowledgements",
        FLUSH_BOUND,
        join_all(sends),
    )
    .await?;
    for r in acks {
        if let Some(e) = kafka::delivery_error(r) {
            ctx.metrics.produce_failures.inc();
            return Err(InventoryError::Delivery(format!("ledger: {e}")));
        }
    }
    for &p in next.keys() {
        ledger_mut(ctx, p, PartitionLedger::flushed)?;
    }
    Ok(())
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
