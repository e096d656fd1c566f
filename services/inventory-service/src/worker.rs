//! The consume -> decide -> produce -> commit loop.
//!
//! Orders are keyed by item, so every order of an item lands on one `orders` partition, and
//! the group gives each partition to one replica: the stock of an item is only ever decided
//! by one replica at a time, which is what makes "no oversell" hold with several replicas.
//! Each decision is written, keyed by item, to the same partition number of
//! `inventory-events` ([`decision_partition`]), so that partition is the changelog of the
//! ledger of the items of that `orders` partition.
//!
//! When a partition is assigned, the rebalance callback marks it stale; before any of its
//! orders is decided (or on the next idle tick) its ledger is rebuilt from the matching
//! `inventory-events` partition, from the beginning up to the high watermark read at that
//! moment. A revoked partition's ledger is dropped at once.
//!
//! Orders are taken in batches (up to `BATCH_MAX`, or what arrives within 20 ms). A batch is
//! decided in order, all its decisions are sent without waiting for each other, and only
//! once the broker acknowledged every one of them are the batch's next offsets committed.
//! Two ways to commit, chosen by `TRANSACTIONS`:
//!
//! - **Idempotent (default).** Decisions go through the idempotent producer, then the
//!   offsets are committed (at-least-once, as in rust-rdkafka's at_least_once example). A
//!   crash between the acknowledgements and the commit redelivers orders already decided;
//!   the ledger, rebuilt from `inventory-events`, knows their order ids and skips them, so an
//!   order is never decided twice.
//! - **Transactions.** Every owned partition `p` has its own transactional producer
//!   (`transactional.id` `<TRANSACTIONAL_ID_PREFIX>-<p>`): a batch's decisions of `p`, the
//!   DLQ entries of its bad orders and the group's next offset for `p` are committed in one
//!   Kafka transaction (consume-decide-produce-commit, as in rust-rdkafka's transactions
//!   example), so a `read_committed` reader sees them together or not at all. A replica that
//!   dies mid-batch leaves its transaction open; the next owner of `p` opens its producer
//!   with the same id before anything else, which aborts that transaction and fences off the
//!   old producer should it still be alive (a replica cut off from Kafka, not dead), and
//!   only then reads the changelog. The ledger's duplicate check stays as a second line.
//!   Not the default because the local test broker mishandles aborted transactions: after
//!   an abort, `read_committed` consumers that did not read the abort marker themselves skip
//!   every later record of that producer (see README "Guarantees").
//!
//! Any Kafka failure mid-run (a transaction that cannot commit, the broker gone, a changelog
//! read that stalls) ends the session: open transactions are aborted, the consumer leaves,
//! ledgers are dropped, and [`supervise::sessions`] starts again from the committed offsets
//! after a backoff while `/readyz` reports the reason. Rebalance callbacks only run inside
//! `recv()`, i.e. between batches, so a batch is always decided and committed under one
//! assignment; orders fetched before a revoke that arrives while a batch is being collected
//! are left to the partition's next owner (not decided, not committed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use orderflow_events::{
    decision_partition, decode_decision, decode_order, encode, record_key, DecisionStatus,
    DecodeError, InventoryDecision, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::{kafka, supervise, topics, Health, KafkaConfig};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
    StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::ledger::{Outcome, PartitionLedger};
use crate::logs;
use crate::metrics::{InventoryMetrics, StatusLabels};
use crate::ready::{self, Snapshot};

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topics: {0}")]
    Topics(#[from] topics::TopicError),
    #[error("`{TOPIC_ORDERS}` has {orders} partitions but `{TOPIC_INVENTORY_EVENTS}` has {events}: they must match, because each decision goes to the partition number of its order")]
    PartitionMismatch { orders: i32, events: i32 },
    #[error("a decision or DLQ entry was not taken by Kafka ({0}); the batch is not committed and is decided again")]
    Delivery(String),
    #[error("the transaction of orders partition {partition} failed ({error}); it is aborted and the batch decided again")]
    Txn { partition: i32, error: String },
    #[error("reading inventory-events/{partition} stalled before offset {end}")]
    ChangelogStalled { partition: i32, end: i64 },
    #[error("internal: orders partition {0} is owned but its ledger was not rebuilt")]
    NoLedger(i32),
    #[error("{0}; new Kafka clients take over")]
    Fatal(String),
    #[error("background task failed: {0}")]
    Join(String),
}

impl InventoryError {
    /// Errors a new session cannot cure: the process exits with them.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::PartitionMismatch { .. } | Self::NoLedger(_) | Self::Join(_)
        )
    }
}

/// The transactional producer of each owned `orders` partition.
type Writers = BTreeMap<i32, FutureProducer>;

/// How long a transaction's offset hand-over, commit or the producer's start may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Ledgers of the partitions this replica owns, shared with `GET /stock`.
pub type Ledgers = Arc<RwLock<BTreeMap<i32, PartitionLedger>>>;

/// Partition ownership as the group protocol tells it.
#[derive(Debug, Default)]
struct Ownership {
    /// `None` until the first assignment.
    assigned: Option<BTreeSet<i32>>,
    /// Assigned since their ledger was last rebuilt: must be rebuilt before deciding.
    stale: BTreeSet<i32>,
}

/// State shared by the rebalance callbacks, the loop, the Kafka probe and `/readyz`.
#[derive(Default)]
struct Shared {
    ownership: Mutex<Ownership>,
    kafka_error: Mutex<Option<String>>,
    stopping: AtomicBool,
}

impl Shared {
    fn snapshot(&self) -> Snapshot {
        let (assigned, stale) = self
            .ownership
            .lock()
            .map(|o| (o.assigned.clone(), o.stale.clone()))
            .unwrap_or_default();
        Snapshot {
            kafka_error: self.kafka_error.lock().ok().and_then(|e| e.clone()),
            assigned,
            stale,
            stopping: self.stopping.load(Ordering::SeqCst),
        }
    }

    fn set_kafka_error(&self, e: Option<String>) {
        if let Ok(mut k) = self.kafka_error.lock() {
            *k = e;
        }
    }

    fn publish(&self, health: &Health) {
        match ready::verdict(&self.snapshot()) {
            Ok(detail) => health.set_ready(detail),
            Err(reason) => health.set_not_ready(reason),
        }
    }
}

struct InventoryContext {
    shared: Arc<Shared>,
    ledgers: Ledgers,
}

impl ClientContext for InventoryContext {}

impl ConsumerContext for InventoryContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Ok(mut o) = self.shared.ownership.lock() else {
            return;
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = o.assigned.get_or_insert_with(BTreeSet::new);
                let new: Vec<i32> = tpl
                    .elements_for_topic(TOPIC_ORDERS)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                assigned.extend(new.iter().copied());
                o.stale.extend(new.iter().copied());
                tracing::info!(assigned = ?new, owned = ?o.assigned, "partitions assigned; their ledgers will be rebuilt");
            }
            Rebalance::Revoke(tpl) => {
                let gone: Vec<i32> = tpl
                    .elements_for_topic(TOPIC_ORDERS)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                for p in &gone {
                    if let Some(a) = o.assigned.as_mut() {
                        a.remove(p);
                    }
                    o.stale.remove(p);
                }
                if let Ok(mut l) = self.ledgers.write() {
                    l.retain(|p, _| !gone.contains(p));
                }
                tracing::info!(revoked = ?gone, owned = ?o.assigned, "partitions revoked; their ledgers dropped");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// Feed every decision recorded on `inventory-events` partition `p`, from the beginning up
/// to the last stable offset as of now (a `read_committed` reader's end: committed
/// transactions only), to `apply`, and every record that is not a valid
/// decision to `bad` (the rebuild steps over it: analytics, the consumer of
/// `inventory-events`, reports it to the DLQ). Returns how many records were read.
pub fn read_changelog(
    kafka: &KafkaConfig,
    p: i32,
    timeout: Duration,
    mut apply: impl FnMut(&InventoryDecision),
    mut bad: impl FnMut(&BorrowedMessage<'_>, &DecodeError),
) -> Result<u64, InventoryError> {
    let reader: BaseConsumer = kafka.reader("inventory-rebuild").create()?;
    let (low, high) = reader.fetch_watermarks(TOPIC_INVENTORY_EVENTS, p, timeout)?;
    if high <= low {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC_INVENTORY_EVENTS, p, Offset::Offset(low))?;
    reader.assign(&tpl)?;
    let mut read = 0;
    let mut last = Instant::now();
    loop {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                if m.offset() < high {
                    read += 1;
                    match decode_decision(m.payload().unwrap_or_default()) {
                        Ok(d) => apply(&d),
                        Err(e) => bad(&m, &e),
                    }
                }
                if m.offset() + 1 >= high {
                    return Ok(read);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "changelog read error (retrying)"),
            // The log may end in a transaction marker: no record, but the position moves.
            None if kafka::reached(&reader, TOPIC_INVENTORY_EVENTS, p, high) => return Ok(read),
            None => {}
        }
        if last.elapsed() > timeout {
            return Err(InventoryError::ChangelogStalled {
                partition: p,
                end: high,
            });
        }
    }
}

async fn rebuild(
    kafka: &KafkaConfig,
    p: i32,
    dlq: &Dlq,
) -> Result<PartitionLedger, InventoryError> {
    let k = kafka.clone();
    let dlq = dlq.clone();
    let started = Instant::now();
    let (ledger, records) = tokio::task::spawn_blocking(move || {
        let mut ledger = PartitionLedger::default();
        let records = read_changelog(
            &k,
            p,
            Duration::from_secs(30),
            |d| ledger.record(d),
            |m, e| dlq.skip(m, e),
        )?;
        Ok::<_, InventoryError>((ledger, records))
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

/// Run until `token` is cancelled (then finish the batch in hand, commit, leave the group).
/// A session that fails on Kafka is started again (see the module docs); only a
/// configuration error ([`InventoryError::is_fatal`]) ends the service.
pub async fn run(
    kafka: KafkaConfig,
    settings: Settings,
    ledgers: Ledgers,
    health: Health,
    metrics: InventoryMetrics,
    dlq: Dlq,
    token: CancellationToken,
) -> Result<(), InventoryError> {
    let ctx = Ctx {
        kafka: &kafka,
        settings: &settings,
        ledgers: &ledgers,
        health: &health,
        metrics: &metrics,
        dlq: &dlq,
    };
    supervise::sessions(&health, &token, InventoryError::is_fatal, || {
        session(ctx, &token)
    })
    .await
}

/// What every session works with.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    kafka: &'a KafkaConfig,
    settings: &'a Settings,
    ledgers: &'a Ledgers,
    health: &'a Health,
    metrics: &'a InventoryMetrics,
    dlq: &'a Dlq,
}

/// Connect, join the group and decide batches until cancelled (`Ok`) or a Kafka failure.
async fn session(ctx: Ctx<'_>, token: &CancellationToken) -> Result<(), InventoryError> {
    let Ctx {
        kafka,
        settings,
        ledgers,
        health,
        metrics,
        ..
    } = ctx;
    health.set_not_ready("connecting to Kafka");
    // Waits for Kafka as long as it takes; locally the topics are created then (under
    // Strimzi they exist already).
    if !topics::connect(kafka, health, token).await? {
        return Ok(());
    }
    check_partitions(kafka).await?;

    let shared = Arc::new(Shared::default());
    let consumer: StreamConsumer<InventoryContext> = kafka
        .consumer(GROUP_INVENTORY, "inventory-service")
        .create_with_context(InventoryContext {
            shared: shared.clone(),
            ledgers: ledgers.clone(),
        })?;
    consumer.subscribe(&[TOPIC_ORDERS])?;
    // The decisions' producer (without TRANSACTIONS) lives as long as the session: one that
    // failed fatally (e.g. an idempotent producer whose sequence a restarted broker no longer
    // knows) is replaced with the session.
    let producer: FutureProducer = kafka.producer("inventory-service").create()?;
    let probe_token = token.child_token();
    let probe = {
        let (shared, health) = (shared.clone(), health.clone());
        tokio::spawn(kafka::probe_reachable(
            producer.clone(),
            probe_token.clone(),
            move |error| {
                shared.set_kafka_error(error);
                shared.publish(&health);
            },
        ))
    };
    let limit = settings.batch_limit();
    tracing::info!(
        batch_limit = limit,
        "subscribed to {TOPIC_ORDERS} as group {GROUP_INVENTORY}"
    );
    let mut writers = Writers::new();

    let outcome = loop {
        shared.publish(health);
        let first = tokio::select! {
            biased;
            _ = token.cancelled() => break Ok(()),
            m = consumer.recv() => Some(m.map(|m| m.detach())),
            _ = tokio::time::sleep(Duration::from_millis(250)) => None,
        };
        let first = match first {
            None => {
                // Idle: rebuild what was just assigned, so /readyz and /stock are current.
                if let Err(e) = sync_ledgers(ctx, &shared, &mut writers, &[]).await {
                    break Err(e);
                }
                metrics.set_stock(&settings.stock, ledgers);
                continue;
            }
            Some(Err(e)) => {
                if let Some(f) = kafka::fatal(consumer.client()) {
                    break Err(InventoryError::Fatal(f));
                }
                tracing::warn!(error = %e, "consume error");
                shared.set_kafka_error(Some(e.to_string()));
                shared.publish(health);
                tokio::select! {
                    _ = token.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            Some(Ok(m)) => m,
        };
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < limit {
            match tokio::time::timeout_at(until, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consume error");
                    break;
                }
                Err(_) => break,
            }
        }
        metrics.consumed.inc_by(batch.len() as u64);
        if let Err(e) = sync_ledgers(ctx, &shared, &mut writers, &batch).await {
            break Err(e);
        }
        shared.publish(health);
        let started = Instant::now(); // batch time without any ledger rebuild (logged apart)
        let summary = match decide_batch(&batch, ctx, &writers, &producer, token).await {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        let committed = if settings.transactions {
            let Some(group) = consumer.group_metadata() else {
                break Err(InventoryError::Txn {
                    partition: -1,
                    error: "the consumer has no group metadata".into(),
                });
            };
            if let Err(e) = commit_transactions(&writers, &summary.next, group).await {
                break Err(e);
            }
            true
        } else {
            commit(&consumer, &summary.next)
        };
        if let Some(f) = kafka::fatal(consumer.client()).or_else(|| kafka::fatal(producer.client()))
        {
            break Err(InventoryError::Fatal(f));
        }
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.set_stock(&settings.stock, ledgers);
        tracing::info!(
            orders = summary.orders,
            reserved = summary.reserved,
            failed = summary.failed,
            duplicates = summary.duplicates,
            dlq = summary.dlq,
            not_owned = summary.not_owned,
            next_offsets = ?summary.next,
            offsets = %logs::offset_ranges(batch.iter().map(|m| (m.partition(), m.offset()))),
            committed,
            ms = started.elapsed().as_millis() as u64,
            "batch decided"
        );
    };

    shared.stopping.store(true, Ordering::SeqCst);
    shared.publish(health);
    probe_token.cancel();
    let _ = probe.await;
    // On an error a transaction may be open: abort it now rather than leave it to the
    // partition's next owner (who would abort it anyway when it opens its producer).
    let aborts = writers.into_values().map(|w| {
        tokio::task::spawn_blocking(move || {
            let _ = w.abort_transaction(Duration::from_secs(5));
            drop(w);
        })
    });
    join_all(aborts).await;
    let _ = tokio::task::spawn_blocking(move || close_consumer(consumer, CLOSE_TIMEOUT)).await;
    if let Ok(mut l) = ledgers.write() {
        l.clear();
    }
    outcome
}

/// How long closing the consumer (leaving the group) may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Close the consumer: it leaves the group (unless `GROUP_INSTANCE_ID` makes it a static
/// member), so its partitions move to the other replicas at once. The close runs on its own
/// thread and is abandoned after `within` (a coordinator stuck in a rebalance must not keep
/// a stopping process alive; the member then expires after `session.timeout.ms`).
fn close_consumer(consumer: StreamConsumer<InventoryContext>, within: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("consumer-close".into())
        .spawn(move || {
            consumer.unsubscribe();
            drop(consumer);
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the consumer-close thread");
        return;
    }
    match rx.recv_timeout(within) {
        Ok(()) => tracing::info!("inventory consumer closed; left the group"),
        Err(_) => tracing::warn!(
            seconds = within.as_secs(),
            "closing the consumer did not finish in time; exiting without it (offsets are committed)"
        ),
    }
}

async fn check_partitions(kafka: &KafkaConfig) -> Result<(), InventoryError> {
    let k = kafka.clone();
    let (orders, events) = tokio::task::spawn_blocking(move || -> Result<_, InventoryError> {
        let t = Duration::from_secs(60);
        let o = topics::wait_for_topic(&k, TOPIC_ORDERS, t)?;
        let e = topics::wait_for_topic(&k, TOPIC_INVENTORY_EVENTS, t)?;
        Ok((o, e))
    })
    .await
    .map_err(|e| InventoryError::Join(e.to_string()))??;
    if orders != events {
        return Err(InventoryError::PartitionMismatch { orders, events });
    }
    tracing::info!(partitions = orders, "topic partition counts match");
    Ok(())
}

/// Open the transactional producer of `orders` partition `p`. `init_transactions` aborts
/// the transaction a previous owner of `p` left open and fences that producer off; until it
/// returns, nothing of `p` is read or decided.
async fn open_writer(
    kafka: &KafkaConfig,
    settings: &Settings,
    p: i32,
) -> Result<FutureProducer, InventoryError> {
    let config = kafka.transactional_producer(
        &format!("inventory-service-p{p}"),
        &settings.transactional_id(p),
    );
    tokio::task::spawn_blocking(move || -> Result<FutureProducer, InventoryError> {
        let w: FutureProducer = config.create()?;
        w.init_transactions(TXN_TIMEOUT)
            .map_err(|e| InventoryError::Txn {
                partition: p,
                error: format!("starting the transactional producer: {e}"),
            })?;
        Ok(w)
    })
    .await
    .map_err(|e| InventoryError::Join(e.to_string()))?
}

/// For every assigned partition marked stale (and, defensively, any assigned partition of
/// the batch without a ledger): open its transactional producer (with `TRANSACTIONS`),
/// then rebuild its ledger.
/// Producers and ledgers of partitions no longer assigned are dropped. Called between
/// batches only, where no rebalance callback can run and no transaction is open.
async fn sync_ledgers(
    ctx: Ctx<'_>,
    shared: &Shared,
    writers: &mut Writers,
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
    let taken = join_all(todo.iter().map(|p| async move {
        let writer = match settings.transactions {
            true => Some(open_writer(kafka, settings, *p).await?),
            false => None,
        };
        let ledger = rebuild(kafka, *p, dlq).await?;
        Ok::<_, InventoryError>((*p, writer, ledger))
    }))
    .await;
    for t in taken {
        let (p, writer, ledger) = t?;
        if let Some(w) = writer {
            writers.insert(p, w);
        }
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
    let gone: Vec<i32> = writers
        .keys()
        .filter(|p| !assigned.contains(p))
        .copied()
        .collect();
    for p in gone {
        if let Some(w) = writers.remove(&p) {
            let _ = tokio::task::spawn_blocking(move || drop(w)).await;
        }
    }
    Ok(())
}

/// What a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Orders read and handled (decided, skipped as duplicates or sent to the DLQ).
    pub orders: usize,
    pub reserved: usize,
    pub failed: usize,
    pub duplicates: usize,
    pub dlq: usize,
    /// Records of partitions revoked while the batch was being collected: left to the new
    /// owner.
    pub not_owned: usize,
    /// Next offset to commit per `orders` partition.
    pub next: BTreeMap<i32, i64>,
}

fn status_label(s: DecisionStatus) -> &'static str {
    match s {
        DecisionStatus::Reserved => "reserved",
        DecisionStatus::Failed => "failed",
    }
}

/// Decide every order of the batch, send each decision (and each DLQ entry), and wait until
/// the broker acknowledged all of them. With `TRANSACTIONS` they go to the open transaction
/// of their partition, which [`commit_transactions`] then commits; without, to the
/// idempotent producer, and [`commit`] then commits the offsets. On cancellation (SIGTERM)
/// it stops taking further orders of the batch; those decided so far are still committed.
async fn decide_batch(
    batch: &[OwnedMessage],
    ctx: Ctx<'_>,
    writers: &Writers,
    producer: &FutureProducer,
    token: &CancellationToken,
) -> Result<BatchSummary, InventoryError> {
    let Ctx {
        settings,
        ledgers,
        dlq,
        metrics,
        ..
    } = ctx;
    let mut s = BatchSummary::default();
    let mut sends = Vec::new();
    for m in batch {
        let p = m.partition();
        let owned = ledgers.read().map(|l| l.contains_key(&p)).unwrap_or(false);
        if !owned {
            s.not_owned += 1; // revoked meanwhile: its new owner decides it
            continue;
        }
        let writer = match settings.transactions {
            true => writers.get(&p).ok_or(InventoryError::NoLedger(p))?,
            false => producer,
        };
        if !settings.throttle.is_zero() {
            if token.is_cancelled() {
                break;
            }
            tokio::time::sleep(settings.throttle).await;
        }
        s.orders += 1;
        if s.next.insert(p, m.offset() + 1).is_none() && settings.transactions {
            writer
                .begin_transaction()
                .map_err(|e| InventoryError::Txn {
                    partition: p,
                    error: format!("beginning: {e}"),
                })?;
        }
        let order = match decode_order(m.payload().unwrap_or_default()) {
            Ok(o) => o,
            Err(err) => {
                let sent = dlq
                    .reject_via(writer, m, &err)
                    .map_err(|e| InventoryError::Delivery(e.to_string()))?;
                sends.extend(sent);
                s.dlq += 1;
                continue;
            }
        };
        let outcome = {
            let mut l = ledgers
                .write()
                .map_err(|_| InventoryError::Join("ledger lock poisoned".into()))?;
            l.get_mut(&p).ok_or(InventoryError::NoLedger(p))?.decide(
                &settings.stock,
                &order,
                Utc::now(),
            )
        };
        match outcome {
            Outcome::Duplicate => {
                s.duplicates += 1;
                metrics.duplicates.inc();
                tracing::debug!(order_id = %order.order_id, partition = p, offset = m.offset(), "already decided; skipped");
            }
            Outcome::Decided(d) => {
                logs::decided(&d, p, m.offset());
                match d.status {
                    DecisionStatus::Reserved => s.reserved += 1,
                    DecisionStatus::Failed => s.failed += 1,
                }
                metrics
                    .decisions
                    .get_or_create(&StatusLabels {
                        status: status_label(d.status),
                    })
                    .inc();
                let ts = d.ts.timestamp_millis();
                let key = record_key(&d.item).to_vec();
                let payload = encode(&d.into_event());
                // Record timestamp = the order's event time, like the order itself, so an
                // offset reset to a timestamp cuts both topics at the same point.
                let record = FutureRecord::to(TOPIC_INVENTORY_EVENTS)
                    .partition(decision_partition(p))
                    .key(&key)
                    .payload(&payload)
                    .timestamp(ts);
                sends.push(kafka::enqueue(writer, record).map_err(|e| {
                    metrics.produce_failures.inc();
                    InventoryError::Delivery(e.to_string())
                })?);
            }
        }
    }
    for r in join_all(sends).await {
        if let Some(e) = kafka::delivery_error(r) {
            metrics.produce_failures.inc();
            return Err(InventoryError::Delivery(e));
        }
    }
    Ok(s)
}

/// Commit the batch's next offsets (synchronously: one round trip per batch). Returns
/// whether the broker took the commit. Without `TRANSACTIONS` only.
fn commit(consumer: &StreamConsumer<InventoryContext>, next: &BTreeMap<i32, i64>) -> bool {
    if next.is_empty() {
        return true;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        if let Err(e) = tpl.add_partition_offset(TOPIC_ORDERS, *p, Offset::Offset(*o)) {
            tracing::warn!(error = %e, "building the commit list failed");
            return false;
        }
    }
    // Off the async workers: a synchronous commit waits for the coordinator, up to
    // socket.timeout.ms when Kafka is gone, and /readyz must keep answering meanwhile.
    match tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync)) {
        Ok(()) => true,
        Err(e) => {
            // e.g. refused during a rebalance: the orders come again and are skipped as
            // duplicates by the rebuilt ledger.
            tracing::warn!(error = %e, "offset commit failed; the batch may be redelivered (harmless)");
            false
        }
    }
}

/// Commit the open transaction of every partition of the batch, each with its next
/// `orders` offset (the partitions in parallel). A transaction that fails is aborted and
/// reported: its orders stay uncommitted and are decided again by the next session.
async fn commit_transactions(
    writers: &Writers,
    next: &BTreeMap<i32, i64>,
    group: ConsumerGroupMetadata,
) -> Result<(), InventoryError> {
    let group = Arc::new(group);
    let commits = next.iter().map(|(&p, &offset)| {
        let writer = writers.get(&p).cloned();
        let group = group.clone();
        tokio::task::spawn_blocking(move || -> Result<(), InventoryError> {
            let w = writer.ok_or(InventoryError::NoLedger(p))?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(TOPIC_ORDERS, p, Offset::Offset(offset))?;
            let done = w
                .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)
                .and_then(|()| w.commit_transaction(TXN_TIMEOUT));
            drop(tpl);
            done.map_err(|e| {
                let _ = w.abort_transaction(Duration::from_secs(5));
                InventoryError::Txn {
                    partition: p,
                    error: e.to_string(),
                }
            })
        })
    });
    let mut first_error = None;
    for r in join_all(commits).await {
        let r = r.map_err(|e| InventoryError::Join(e.to_string()))?;
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_match_the_event_contract() {
        for s in [DecisionStatus::Reserved, DecisionStatus::Failed] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", status_label(s)));
        }
    }

    #[test]
    fn readiness_follows_ownership_and_kafka() {
        let shared = Shared::default();
        let health = Health::new();
        shared.publish(&health);
        assert!(!health.is_ready());
        if let Ok(mut o) = shared.ownership.lock() {
            o.assigned = Some([0, 1].into_iter().collect());
            o.stale = [1].into_iter().collect();
        }
        shared.publish(&health);
        assert!(
            health.detail().contains("rebuilding"),
            "{}",
            health.detail()
        );
        shared.ownership.lock().unwrap().stale.clear();
        shared.publish(&health);
        assert!(health.is_ready());
        shared.set_kafka_error(Some("all brokers down".into()));
        shared.publish(&health);
        assert!(!health.is_ready());
    }
}
