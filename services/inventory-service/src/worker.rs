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
//! once the broker acknowledged every one of them are the batch's next offsets committed
//! (at-least-once, as in rust-rdkafka's at_least_once example). If an acknowledgement fails
//! the loop stops without committing, so nothing is lost. A crash between the
//! acknowledgements and the commit redelivers orders that are already decided; the ledger,
//! rebuilt from `inventory-events`, knows their order ids and skips them, so an order is
//! never decided twice. Rebalance callbacks only run inside `recv()`, i.e. between batches,
//! so a batch is always decided and committed under one assignment; orders fetched before a
//! revoke that arrives while a batch is being collected are left to the partition's next
//! owner (not decided, not committed).

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
use orderflow_runtime::{kafka, topics, Health, KafkaConfig};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::ledger::{Outcome, PartitionLedger};
use crate::logs;
use crate::metrics::InventoryMetrics;
use crate::ready::{self, Snapshot};

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topics: {0}")]
    Topics(#[from] topics::TopicError),
    #[error("`{TOPIC_ORDERS}` has {orders} partitions but `{TOPIC_INVENTORY_EVENTS}` has {events}: they must match, because each decision goes to the partition number of its order")]
    PartitionMismatch { orders: i32, events: i32 },
    #[error("a decision was not acknowledged by Kafka ({0}); stopping without committing, so the batch is decided again (idempotently) after a restart")]
    Delivery(String),
    #[error("reading inventory-events/{partition} stalled before offset {end}")]
    ChangelogStalled { partition: i32, end: i64 },
    #[error("internal: orders partition {0} is owned but its ledger was not rebuilt")]
    NoLedger(i32),
    #[error("background task failed: {0}")]
    Join(String),
}

/// Where decisions and rejected records go.
#[derive(Clone)]
pub struct Sinks {
    pub producer: FutureProducer,
    pub dlq: Dlq,
}

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
/// to the high watermark as of now, to `apply`, and every record that is not a valid
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
pub async fn run(
    kafka: KafkaConfig,
    settings: Settings,
    ledgers: Ledgers,
    health: Health,
    metrics: InventoryMetrics,
    sinks: Sinks,
    token: CancellationToken,
) -> Result<(), InventoryError> {
    health.set_not_ready("connecting to Kafka");
    // Waits for Kafka as long as it takes; locally the topics are created then (under
    // Strimzi they exist already).
    if !topics::connect(&kafka, &health, &token).await? {
        return Ok(());
    }
    check_partitions(&kafka).await?;

    let shared = Arc::new(Shared::default());
    let consumer: StreamConsumer<InventoryContext> = kafka
        .consumer(GROUP_INVENTORY, "inventory-service")
        .create_with_context(InventoryContext {
            shared: shared.clone(),
            ledgers: ledgers.clone(),
        })?;
    consumer.subscribe(&[TOPIC_ORDERS])?;
    let probe = tokio::spawn(probe_kafka(
        sinks.producer.clone(),
        shared.clone(),
        health.clone(),
        token.clone(),
    ));
    let limit = settings.batch_limit();
    tracing::info!(
        batch_limit = limit,
        "subscribed to {TOPIC_ORDERS} as group {GROUP_INVENTORY}"
    );

    let outcome = loop {
        shared.publish(&health);
        let first = tokio::select! {
            biased;
            _ = token.cancelled() => break Ok(()),
            m = consumer.recv() => Some(m.map(|m| m.detach())),
            _ = tokio::time::sleep(Duration::from_millis(250)) => None,
        };
        let first = match first {
            None => {
                // Idle: rebuild what was just assigned, so /readyz and /stock are current.
                if let Err(e) = sync_ledgers(&kafka, &shared, &ledgers, &[], &sinks.dlq).await {
                    break Err(e);
                }
                metrics.set_stock(&settings.stock, &ledgers);
                continue;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consume error");
                shared.set_kafka_error(Some(e.to_string()));
                shared.publish(&health);
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
        if let Err(e) = sync_ledgers(&kafka, &shared, &ledgers, &batch, &sinks.dlq).await {
            break Err(e);
        }
        shared.publish(&health);
        let started = Instant::now(); // batch time without any ledger rebuild (logged apart)
        let summary =
            match decide_batch(&batch, &settings, &ledgers, &sinks, &metrics, &token).await {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
        let committed = commit(&consumer, &summary.next);
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.set_stock(&settings.stock, &ledgers);
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
    shared.publish(&health);
    token.cancel(); // also stops the probe when the loop ended on an error
    let _ = probe.await;
    if outcome.is_ok() {
        // Every decision was acknowledged before its commit; flush anything else (DLQ).
        let p = sinks.producer.clone();
        let _ = tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(10))).await;
    }
    let _ = tokio::task::spawn_blocking(move || close_consumer(consumer, CLOSE_TIMEOUT)).await;
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

/// Keep the Kafka part of `/readyz` honest while the loop is idle or busy: ready only while
/// the broker answers metadata requests.
async fn probe_kafka(
    producer: FutureProducer,
    shared: Arc<Shared>,
    health: Health,
    token: CancellationToken,
) {
    loop {
        let p = producer.clone();
        let probe = tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|_| ())
        })
        .await;
        match probe {
            Ok(Ok(())) => shared.set_kafka_error(None),
            Ok(Err(e)) => shared.set_kafka_error(Some(e.to_string())),
            Err(e) => shared.set_kafka_error(Some(format!("probe failed: {e}"))),
        }
        shared.publish(&health);
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
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

/// Rebuild the ledger of every assigned partition marked stale (and, defensively, of any
/// assigned partition of the batch without one). Called between batches only, where no
/// rebalance callback can run.
async fn sync_ledgers(
    kafka: &KafkaConfig,
    shared: &Shared,
    ledgers: &Ledgers,
    batch: &[OwnedMessage],
    dlq: &Dlq,
) -> Result<(), InventoryError> {
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
    // The partitions' changelogs are read in parallel, each by its own reader.
    let rebuilt = join_all(
        todo.iter()
            .map(|p| async move { (*p, rebuild(kafka, *p, dlq).await) }),
    )
    .await;
    for (p, ledger) in rebuilt {
        let ledger = ledger?;
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

/// Decide every order of the batch, send the decisions, wait for all acknowledgements.
/// On cancellation (SIGTERM) it stops taking further orders of the batch; those decided so
/// far are still sent, acknowledged and committed.
async fn decide_batch(
    batch: &[OwnedMessage],
    settings: &Settings,
    ledgers: &Ledgers,
    sinks: &Sinks,
    metrics: &InventoryMetrics,
    token: &CancellationToken,
) -> Result<BatchSummary, InventoryError> {
    let mut s = BatchSummary::default();
    let mut sends = Vec::new();
    for m in batch {
        let p = m.partition();
        let owned = ledgers.read().map(|l| l.contains_key(&p)).unwrap_or(false);
        if !owned {
            s.not_owned += 1; // revoked meanwhile: its new owner decides it
            continue;
        }
        if !settings.throttle.is_zero() {
            if token.is_cancelled() {
                break;
            }
            tokio::time::sleep(settings.throttle).await;
        }
        s.orders += 1;
        s.next.insert(p, m.offset() + 1);
        let order = match decode_order(m.payload().unwrap_or_default()) {
            Ok(o) => o,
            Err(err) => {
                sinks.dlq.reject(m, &err).await;
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
                    .get_or_create(&vec![(
                        "status".to_string(),
                        status_label(d.status).to_string(),
                    )])
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
                sends.push(kafka::enqueue(&sinks.producer, record).map_err(|e| {
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
/// whether the broker took the commit.
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
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => true,
        Err(e) => {
            // e.g. refused during a rebalance: the orders come again and are skipped as
            // duplicates by the rebuilt ledger.
            tracing::warn!(error = %e, "offset commit failed; the batch may be redelivered (harmless)");
            false
        }
    }
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
