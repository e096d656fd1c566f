//! The consume -> decide -> produce -> commit loop.
//!
//! Orders are taken in batches (up to `BATCH_MAX`, or what arrives within 20 ms). Each batch
//! is decided in order, every decision is sent to the same partition number of
//! `inventory-events`, and only once the broker acknowledged all of them are the batch's
//! offsets committed (at-least-once, as in rust-rdkafka's at_least_once example). A crash
//! between the acknowledgement and the commit redelivers orders that are already decided;
//! the ledger, rebuilt from `inventory-events` when a partition is assigned, recognises
//! their order ids and skips them, so no order is ever decided twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use orderflow_events::{
    decision_partition, decode, encode, record_key, DecodeError, Event, InventoryDecision,
    TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::{kafka, topics, Health, KafkaConfig};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::ledger::{Outcome, PartitionLedger, Stock};
use crate::metrics::InventoryMetrics;

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
    #[error("background task failed: {0}")]
    Join(String),
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stock: Stock,
    pub throttle: Duration,
    pub batch_max: usize,
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
    owned: BTreeSet<i32>,
    /// Assigned since the ledger was last rebuilt: must be rebuilt before deciding.
    stale: BTreeSet<i32>,
}

struct InventoryContext {
    ownership: Arc<Mutex<Ownership>>,
}

impl ClientContext for InventoryContext {}

impl ConsumerContext for InventoryContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Ok(mut o) = self.ownership.lock() else {
            return;
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements_for_topic(TOPIC_ORDERS) {
                    o.owned.insert(e.partition());
                    o.stale.insert(e.partition());
                }
                tracing::info!(partitions = ?o.owned, "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements_for_topic(TOPIC_ORDERS) {
                    o.owned.remove(&e.partition());
                }
                tracing::info!(partitions = ?o.owned, "partitions revoked; still own these");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// Read every decision recorded on `inventory-events` partition `p` (up to its current end).
pub fn read_changelog(
    kafka: &KafkaConfig,
    p: i32,
    timeout: Duration,
) -> Result<Vec<InventoryDecision>, InventoryError> {
    let reader: BaseConsumer = kafka.reader("inventory-rebuild").create()?;
    let (low, high) = reader.fetch_watermarks(TOPIC_INVENTORY_EVENTS, p, timeout)?;
    let mut out = Vec::with_capacity((high - low).max(0) as usize);
    if high <= low {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC_INVENTORY_EVENTS, p, Offset::Offset(low))?;
    reader.assign(&tpl)?;
    let mut last = Instant::now();
    loop {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                if m.offset() < high {
                    match m.payload().map(decode) {
                        Some(Ok(Event::InventoryReserved(d)))
                        | Some(Ok(Event::InventoryFailed(d))) => out.push(d),
                        _ => tracing::warn!(
                            partition = p,
                            offset = m.offset(),
                            "undecodable record in inventory-events skipped"
                        ),
                    }
                }
                if m.offset() + 1 >= high {
                    return Ok(out);
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

async fn rebuild(kafka: &KafkaConfig, p: i32) -> Result<PartitionLedger, InventoryError> {
    let k = kafka.clone();
    let started = Instant::now();
    let decisions =
        tokio::task::spawn_blocking(move || read_changelog(&k, p, Duration::from_secs(30)))
            .await
            .map_err(|e| InventoryError::Join(e.to_string()))??;
    let mut ledger = PartitionLedger::default();
    for d in &decisions {
        ledger.record(d);
    }
    tracing::info!(
        partition = p,
        decisions = decisions.len(),
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
    if let Err(e) = topics::ensure_topics(&kafka).await {
        tracing::warn!(error = %e, "could not ensure topics (they may be managed elsewhere)");
    }
    check_partitions(&kafka).await?;

    let ownership = Arc::new(Mutex::new(Ownership::default()));
    let consumer: StreamConsumer<InventoryContext> = kafka
        .consumer(orderflow_events::GROUP_INVENTORY, "inventory-service")
        .create_with_context(InventoryContext {
            ownership: ownership.clone(),
        })?;
    consumer.subscribe(&[TOPIC_ORDERS])?;
    health.set_ready("subscribed to orders");

    loop {
        let first = tokio::select! {
            _ = token.cancelled() => break,
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => m.detach(),
            Err(e) => {
                health.set_not_ready(format!("Kafka: {e}"));
                tracing::warn!(error = %e, "consume error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < settings.batch_max {
            match tokio::time::timeout_at(until, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consume error");
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let owned = sync_ledgers(&kafka, &ownership, &ledgers, &batch).await?;
        let next = decide_batch(&batch, &owned, &settings, &ledgers, &sinks, &metrics).await?;
        commit(&consumer, &next);
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.set_stock(&settings.stock, &ledgers);
        health.set_ready("consuming");
    }
    consumer.unsubscribe();
    tracing::info!("inventory consumer stopped");
    Ok(())
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
    Ok(())
}

/// Rebuild the ledgers of partitions assigned since their last rebuild (and of any
/// partition in the batch without one); drop those no longer owned. Returns the owned set.
async fn sync_ledgers(
    kafka: &KafkaConfig,
    ownership: &Mutex<Ownership>,
    ledgers: &Ledgers,
    batch: &[OwnedMessage],
) -> Result<BTreeSet<i32>, InventoryError> {
    let (owned, mut stale) = match ownership.lock() {
        Ok(mut o) => (o.owned.clone(), std::mem::take(&mut o.stale)),
        Err(_) => return Err(InventoryError::Join("ownership lock poisoned".into())),
    };
    let have: BTreeSet<i32> = ledgers
        .read()
        .map(|l| l.keys().copied().collect())
        .unwrap_or_default();
    for m in batch {
        if owned.contains(&m.partition()) && !have.contains(&m.partition()) {
            stale.insert(m.partition());
        }
    }
    for p in stale.into_iter().filter(|p| owned.contains(p)) {
        let ledger = rebuild(kafka, p).await?;
        if let Ok(mut l) = ledgers.write() {
            l.insert(p, ledger);
        }
    }
    if let Ok(mut l) = ledgers.write() {
        l.retain(|p, _| owned.contains(p));
    }
    Ok(owned)
}

/// Decide every order of the batch, send the decisions, wait for all acknowledgements.
/// Returns the next offset to commit per partition.
async fn decide_batch(
    batch: &[OwnedMessage],
    owned: &BTreeSet<i32>,
    settings: &Settings,
    ledgers: &Ledgers,
    sinks: &Sinks,
    metrics: &InventoryMetrics,
) -> Result<HashMap<i32, i64>, InventoryError> {
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut sends = Vec::new();
    for m in batch {
        let p = m.partition();
        if !owned.contains(&p) {
            continue; // revoked meanwhile: its new owner decides it
        }
        next.insert(p, m.offset() + 1);
        let event = decode(m.payload().unwrap_or_default());
        let order = match event {
            Ok(Event::OrderPlaced(o)) => o,
            Ok(other) => {
                let err =
                    DecodeError::Invalid(format!("{} on topic {TOPIC_ORDERS}", other.type_name()));
                sinks.dlq.send(m, &err).await;
                continue;
            }
            Err(err) => {
                sinks.dlq.send(m, &err).await;
                continue;
            }
        };
        if !settings.throttle.is_zero() {
            tokio::time::sleep(settings.throttle).await;
        }
        let outcome = match ledgers.write() {
            Ok(mut l) => l
                .entry(p)
                .or_default()
                .decide(&settings.stock, &order, Utc::now()),
            Err(_) => return Err(InventoryError::Join("ledger lock poisoned".into())),
        };
        match outcome {
            Outcome::Duplicate => {
                metrics.duplicates.inc();
                tracing::debug!(order_id = %order.order_id, partition = p, offset = m.offset(), "already decided; skipped");
            }
            Outcome::Decided(d) => {
                metrics
                    .decisions
                    .get_or_create(&vec![(
                        "status".to_string(),
                        format!("{:?}", d.status).to_lowercase(),
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
                sends.push(
                    kafka::enqueue(&sinks.producer, record)
                        .map_err(|e| InventoryError::Delivery(e.to_string()))?,
                );
            }
        }
    }
    for r in join_all(sends).await {
        if let Some(e) = kafka::delivery_error(r) {
            return Err(InventoryError::Delivery(e));
        }
    }
    Ok(next)
}

fn commit(consumer: &StreamConsumer<InventoryContext>, next: &HashMap<i32, i64>) {
    if next.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        if let Err(e) = tpl.add_partition_offset(TOPIC_ORDERS, *p, Offset::Offset(*o)) {
            tracing::warn!(error = %e, "building the commit list failed");
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        // e.g. refused during a rebalance: the orders come again and are skipped as duplicates.
        tracing::warn!(error = %e, "offset commit failed; the batch may be redelivered (harmless)");
    }
}
