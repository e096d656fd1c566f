//! Taking over partitions: a partition's ledger is rebuilt from the `inventory-ledger`
//! partition of the same number and the tail of its `inventory-events` partition, up to
//! their ends as of the take-over ([`super::restore`]; with transactions, only after its
//! transactional producer has fenced off the previous owner's). A rebuilt ledger that
//! [`PartitionLedger::needs_flush`] (catalogue items to write, no checkpoint yet) is flushed
//! before the partition counts as taken over (and `/readyz` says ready), so order-service's
//! catalogue lists every configured item of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};

use super::commit::Committer;
use super::flush::{flush_ledgers, take_flushes};
use super::rebalance::{InventoryContext, Shared};
use super::restore::restore;
use super::{Ctx, InventoryError};
use crate::ledger::{PartitionLedger, Stock};

/// How long a rebuild's read may go without progress.
const REBUILD_STALL: Duration = Duration::from_secs(30);

async fn rebuild(
    kafka: &KafkaConfig,
    p: i32,
    stock: &Stock,
    window: Duration,
    dlq: &Dlq,
) -> Result<PartitionLedger, InventoryError> {
    let k = kafka.clone();
    let dlq = dlq.clone();
    let stock = stock.clone();
    let started = Instant::now();
    let (ledger, read) = tokio::task::spawn_blocking(move || {
        restore(&k, p, &stock, window, REBUILD_STALL, |m, e| dlq.skip(m, e))
    })
    .await
    .map_err(|e| InventoryError::Join(e.to_string()))??;
    tracing::info!(
        partition = p,
        ledger_records = read.ledger_records,
        checkpoint = read.checkpoint,
        tail_from = read.tail_from,
        tail_records = read.tail_records,
        orders = ledger.decided_count(),
        window_ids = ledger.window().len(),
        next_order = ledger.next_order(),
        seconds = started.elapsed().as_secs_f64(),
        ledger_seconds = read.secs[0],
        window_seconds = read.secs[1],
        tail_seconds = read.secs[2],
        "ledger rebuilt from inventory-ledger and the tail of inventory-events"
    );
    Ok(ledger)
}

/// For every assigned partition marked stale (and, defensively, any assigned partition of
/// the batch without a ledger): prepare the committer (with `TRANSACTIONS`, open the
/// partition's transactional producer), then rebuild its ledger.
/// Producers and ledgers of partitions no longer assigned are dropped. Called between
/// batches only, where no rebalance callback can run and no transaction is open.
pub(super) async fn sync_ledgers(
    ctx: Ctx<'_>,
    shared: &Shared,
    consumer: &StreamConsumer<InventoryContext>,
    committer: &mut Committer,
    batch: &[OwnedMessage],
) -> Result<(), InventoryError> {
    let Ctx {
        kafka,
        settings,
        ledgers,
        dlq,
        suspects,
        ..
    } = ctx;
    let (assigned, stale) = match shared.ownership.lock() {
        Ok(o) => (o.assigned.clone().unwrap_or_default(), o.stale.clone()),
        Err(_) => return Err(InventoryError::Join("ownership lock poisoned".into())),
    };
    let mut todo: BTreeSet<i32> = stale.intersection(&assigned).copied().collect();
    if let Ok(l) = ledgers.read() {
        todo.extend(
            batch
                .iter()
                .map(|m| m.partition())
                .filter(|p| assigned.contains(p) && !l.contains_key(p)),
        );
    }
    // The partitions are taken over in parallel, each changelog by its own reader.
    let preparing: &Committer = committer;
    let taken = join_all(todo.iter().map(|p| async move {
        let group = consumer.group_metadata();
        let writer = preparing
            .prepare(kafka, settings, *p, group, suspects, ctx.metrics)
            .await?;
        let ledger = rebuild(kafka, *p, &settings.stock, settings.idempotency_window, dlq).await?;
        Ok::<_, InventoryError>((*p, writer, ledger))
    }))
    .await;
    let mut seed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rebuilt = Vec::new();
    for t in taken {
        let (p, writer, ledger) = t?;
        committer.adopt(p, writer);
        shared.log_ends.forget(p);
        if ledger.needs_flush() {
            seed.insert(p, ledger.next_order());
        }
        if let Ok(mut l) = ledgers.write() {
            l.insert(p, ledger);
        }
        rebuilt.push(p);
    }
    if !seed.is_empty() {
        for &p in seed.keys() {
            committer.begin(p).await?;
        }
        let flushes = take_flushes(ledgers, &settings.stock, seed.keys().copied())?;
        flush_ledgers(ledgers, ctx.metrics, committer, &flushes).await?;
        committer.commit_ledger_only(&seed).await?;
        tracing::info!(partitions = ?seed.keys().collect::<Vec<_>>(), "ledger flushed after the rebuild (catalogue items or a first checkpoint)");
    }
    for p in rebuilt {
        if let Ok(mut o) = shared.ownership.lock() {
            o.stale.remove(&p);
        }
    }
    if let Ok(mut l) = ledgers.write() {
        l.retain(|p, _| assigned.contains(p));
    }
    committer.release_unassigned(&assigned).await;
    Ok(())
}
