//! Taking over partitions: a partition's ledger is rebuilt from its changelog, the
//! `inventory-events` partition of the same number, from the beginning up to the end as of
//! the take-over (with transactions, only after its transactional producer has fenced off
//! the previous owner's).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use orderflow_events::{
    decode_decision, DecodeError, InventoryDecision, HEADER_ORDERS_OFFSET, TOPIC_INVENTORY_EVENTS,
};
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::read::{self, ReadError};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedMessage};

use super::commit::Committer;
use super::rebalance::Shared;
use super::{Ctx, InventoryError};
use crate::ledger::{PartitionLedger, Rebuild, Stock};

/// How long a changelog read may go without progress.
const REBUILD_STALL: Duration = Duration::from_secs(30);

/// Feed every decision recorded on `inventory-events` partition `p`, from the beginning up
/// to the last stable offset as of now (a `read_committed` reader's end: committed
/// transactions only), to `apply`, and every record that is not a valid
/// decision to `bad` (the rebuild steps over it: analytics, the consumer of
/// `inventory-events`, reports it to the DLQ). `apply` gets each decision with its offset
/// and the `orders` offset of its header. Returns how many records were read.
pub fn read_changelog(
    kafka: &KafkaConfig,
    p: i32,
    timeout: Duration,
    mut apply: impl FnMut(&InventoryDecision, i64, Option<i64>),
    mut bad: impl FnMut(&BorrowedMessage<'_>, &DecodeError),
) -> Result<u64, InventoryError> {
    let reader: BaseConsumer = kafka.reader("inventory-rebuild").create()?;
    let spans = read::spans_to_end(&reader, TOPIC_INVENTORY_EVENTS, &[p], timeout)?;
    read::read_to_end(&reader, &spans, timeout, |m| {
        match decode_decision(m.payload().unwrap_or_default()) {
            Ok(d) => apply(&d, m.offset(), orders_offset(m)),
            Err(e) => bad(m, &e),
        }
    })
    .map_err(|e| match e {
        ReadError::Kafka(e) => InventoryError::Kafka(e),
        ReadError::Stalled { end, .. } => InventoryError::ChangelogStalled { partition: p, end },
    })
}

/// The `orders` offset a decision's header names (decisions written before the header
/// existed have none).
fn orders_offset(m: &BorrowedMessage<'_>) -> Option<i64> {
    let headers = m.headers()?;
    let h = headers.iter().find(|h| h.key == HEADER_ORDERS_OFFSET)?;
    std::str::from_utf8(h.value?).ok()?.parse().ok()
}

async fn rebuild(
    kafka: &KafkaConfig,
    p: i32,
    stock: &Stock,
    dlq: &Dlq,
) -> Result<PartitionLedger, InventoryError> {
    let k = kafka.clone();
    let dlq = dlq.clone();
    let stock = stock.clone();
    let started = Instant::now();
    let (ledger, records) = tokio::task::spawn_blocking(move || {
        let mut rebuild = Rebuild::new(&stock);
        let records = read_changelog(
            &k,
            p,
            REBUILD_STALL,
            |d, offset, orders| rebuild.decision(d, offset, orders),
            |m, e| dlq.skip(m, e),
        )?;
        Ok::<_, InventoryError>((rebuild.finish(), records))
    })
    .await
    .map_err(|e| InventoryError::Join(e.to_string()))??;
    tracing::info!(
        partition = p,
        records,
        orders = ledger.decided_count(),
        seconds = started.elapsed().as_secs_f64(),
        "ledger rebuilt from inventory-events"
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
    committer: &mut Committer,
    batch: &[OwnedMessage],
) -> Result<(), InventoryError> {
    let Ctx {
        kafka,
        settings,
        ledgers,
        dlq,
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
        let writer = preparing.prepare(kafka, settings, *p).await?;
        let ledger = rebuild(kafka, *p, &settings.stock, dlq).await?;
        Ok::<_, InventoryError>((*p, writer, ledger))
    }))
    .await;
    for t in taken {
        let (p, writer, ledger) = t?;
        committer.adopt(p, writer);
        if let Ok(mut l) = ledgers.write() {
            l.insert(p, ledger);
        }
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
