//! A batch: orders (and restock requests) taken from the consumer (up to `BATCH_MAX`, or what
//! arrives within `BATCH_WAIT_MS`), decided in order against their partition's ledger, every
//! decision and DLQ entry sent without waiting for the others (with transactions, the ledger
//! records too once the last commit made their position known: [`super::ahead`]); the rest
//! of the batch (the acknowledgements, the ledger records, the commit) is its tail
//! ([`super::tail`]), in flight while the next batch is taken from the consumer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use orderflow_events::{
    decision_partition, decode_orders_record, encode, record_key, DecisionStatus, Event,
    InventoryRecord, OrdersRecord, RestockStatus, HEADER_ORDERS_OFFSET, TOPIC_INVENTORY_EVENTS,
};
use orderflow_runtime::kafka;
use orderflow_runtime::session::Handler;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::ahead::{send_ahead, LogEnds};
use super::changelog::sync_ledgers;
use super::commit::Committer;
use super::flush::{ledger_mut, take_flushes};
use super::rebalance::{InventoryContext, Shared};
use super::tail::{InFlight, Sent, Tail, MAX_IN_FLIGHT};
use super::{Ctx, InventoryError};
use crate::logs;
use crate::metrics::{ItemLabels, StatusLabels};

/// What a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Orders read and handled (decided, skipped as duplicates or sent to the DLQ).
    pub orders: usize,
    pub reserved: usize,
    pub failed: usize,
    /// Restock requests decided (restocked or refused).
    pub restocks: usize,
    pub duplicates: usize,
    pub dlq: usize,
    /// Records of partitions revoked while the batch was being collected: left to the new
    /// owner.
    pub not_owned: usize,
    /// Next offset to commit per `orders` partition.
    pub next: BTreeMap<i32, i64>,
}

/// The session's loop: each record that arrives starts a batch; between batches the idle
/// tick rebuilds what was just assigned, so `/readyz` and `/stock` are current.
pub(super) struct Deciding<'a> {
    pub(super) ctx: Ctx<'a>,
    pub(super) shared: Arc<Shared>,
    pub(super) committer: Committer,
    pub(super) consumer: Arc<StreamConsumer<InventoryContext>>,
    pub(super) token: &'a CancellationToken,
    /// The tail of the last batch (which waits for those before it), while it may still be
    /// running.
    pub(super) in_flight: Option<InFlight>,
    /// When the idle tick last did all of its work (`None`: not yet).
    pub(super) last_full_tick: Option<Instant>,
}

impl Deciding<'_> {
    /// Wait until every batch decided is committed (its tail, and so those before it, ended);
    /// a tail's failure is the session's.
    pub(super) async fn settle(&mut self) -> Result<(), InventoryError> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(tail) => tail
                .await
                .map_err(|e| InventoryError::Join(e.to_string()))?,
        }
    }
}

impl Handler<InventoryContext> for Deciding<'_> {
    type Error = InventoryError;

    async fn message(
        &mut self,
        consumer: &StreamConsumer<InventoryContext>,
        first: BorrowedMessage<'_>,
    ) -> Result<(), InventoryError> {
        let Ctx {
            settings,
            ledgers,
            health,
            metrics,
            ..
        } = self.ctx;
        if self.committer.one_batch_at_a_time() {
            self.settle().await?;
        }
        // Without transactions, taken while the tails of the last batches are in flight.
        let batch = collect(
            consumer,
            first.detach(),
            settings.batch_limit(),
            settings.batch_wait,
        )
        .await;
        if self.shared.has_stale() || self.shared.tail.in_flight() >= MAX_IN_FLIGHT {
            self.settle().await?; // a ledger is rebuilt only once nothing is in flight
        }
        metrics.consumed.inc_by(batch.len() as u64);
        sync_ledgers(
            self.ctx,
            &self.shared,
            &self.consumer,
            &mut self.committer,
            &batch,
        )
        .await?;
        self.shared.publish(health);
        let started = Instant::now(); // batch time without any ledger rebuild (logged apart)
        let sent = decide_and_send(
            &batch,
            self.ctx,
            &self.committer,
            &self.shared.log_ends,
            self.token,
        )
        .await?;
        let tail = Tail {
            ledgers: ledgers.clone(),
            stock: settings.stock.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            shared: self.shared.clone(),
            committer: self.committer.clone(),
            consumer: self.consumer.clone(),
            started,
            offsets: logs::offset_ranges(batch.iter().map(|m| (m.partition(), m.offset()))),
        };
        let before = self.in_flight.take();
        self.in_flight = Some(tail.spawn(before, sent));
        Ok(())
    }

    async fn tick(&mut self, _: &StreamConsumer<InventoryContext>) -> Result<(), InventoryError> {
        // A partition to take over: now. Otherwise the whole tick every FULL_TICK.
        let due = self
            .last_full_tick
            .is_none_or(|t| t.elapsed() >= super::FULL_TICK);
        if !due && !self.shared.has_stale() {
            return Ok(());
        }
        self.last_full_tick = Some(Instant::now());
        self.settle().await?;
        sync_ledgers(
            self.ctx,
            &self.shared,
            &self.consumer,
            &mut self.committer,
            &[],
        )
        .await?;
        self.ctx
            .metrics
            .set_stock(&self.ctx.settings.stock, self.ctx.ledgers);
        self.shared.publish(self.ctx.health);
        Ok(())
    }

    fn consume_error(&mut self, e: &KafkaError) {
        self.shared.set_kafka_error(Some(e.to_string()));
        self.shared.publish(self.ctx.health);
    }
}

/// `first` and what else arrives within `wait` (`BATCH_WAIT_MS`), up to `limit` records.
/// With no wait, what has already arrived: the timeout polls `recv` before its deadline.
async fn collect(
    consumer: &StreamConsumer<InventoryContext>,
    first: OwnedMessage,
    limit: usize,
    wait: Duration,
) -> Vec<OwnedMessage> {
    let mut batch = vec![first];
    let until = tokio::time::Instant::now() + wait;
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
    batch
}

pub(super) fn status_label(s: DecisionStatus) -> &'static str {
    match s {
        DecisionStatus::Reserved => "reserved",
        DecisionStatus::Failed => "failed",
    }
}

/// Decide every order of the batch and send each decision (and each DLQ entry) through the
/// [`Committer`]'s producer of its partition, without waiting for the broker: the
/// acknowledgements, the ledger flush and [`Committer::commit`] are the batch's tail. On
/// cancellation (SIGTERM) it stops taking further orders of the batch; those decided so far
/// are still committed.
async fn decide_and_send(
    batch: &[OwnedMessage],
    ctx: Ctx<'_>,
    committer: &Committer,
    log_ends: &LogEnds,
    token: &CancellationToken,
) -> Result<Sent, InventoryError> {
    let Ctx {
        settings,
        ledgers,
        dlq,
        metrics,
        ..
    } = ctx;
    let mut s = BatchSummary::default();
    let mut sends: Vec<DeliveryFuture> = Vec::new();
    let mut decisions: Vec<(i32, DeliveryFuture)> = Vec::new();
    for m in batch {
        let p = m.partition();
        let owned = ledgers.read().map(|l| l.contains_key(&p)).unwrap_or(false);
        if !owned {
            s.not_owned += 1; // revoked meanwhile: its new owner decides it
            continue;
        }
        let producer = committer.producer(p)?;
        if !settings.throttle.is_zero() {
            if token.is_cancelled() {
                break;
            }
            tokio::time::sleep(settings.throttle).await;
        }
        s.orders += 1;
        if s.next.insert(p, m.offset() + 1).is_none() {
            committer.begin(p).await?;
        }
        let record = match decode_orders_record(m.payload().unwrap_or_default()) {
            Ok(r) => r,
            Err(err) => {
                let sent = dlq
                    .reject_via(producer, m, &err)
                    .map_err(|e| InventoryError::Delivery(e.to_string()))?;
                sends.extend(sent);
                s.dlq += 1;
                ledger_mut(ledgers, p, |l| l.pass(m.offset()))?;
                continue;
            }
        };
        let stock = &settings.stock;
        match ledger_mut(ledgers, p, |l| {
            l.apply(stock, &record, m.offset(), Utc::now())
        })? {
            None => {
                s.duplicates += 1;
                metrics.duplicates.inc();
                let id = match &record {
                    OrdersRecord::Order(o) => o.order_id,
                    OrdersRecord::Restock(r) => r.restock_id,
                };
                tracing::debug!(id = %id, partition = p, offset = m.offset(), "already decided; skipped");
            }
            Some(InventoryRecord::Order(d)) => {
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
                let item = d.item.clone();
                let event = d.into_event();
                decisions.push((p, send(ctx, producer, p, m.offset(), &item, ts, &event)?));
            }
            Some(InventoryRecord::Restock(d)) => {
                logs::restocked(&d, p, m.offset());
                s.restocks += 1;
                let status = match d.status {
                    RestockStatus::Restocked => "restocked",
                    RestockStatus::Refused => "refused",
                };
                metrics
                    .restocks
                    .get_or_create(&StatusLabels { status })
                    .inc();
                if d.status == RestockStatus::Restocked {
                    metrics
                        .restocked_units
                        .get_or_create(&ItemLabels {
                            item: d.item.clone(),
                        })
                        .inc_by(u64::from(d.qty));
                }
                let ts = d.ts.timestamp_millis();
                let item = d.item.clone();
                let event = d.into_event();
                decisions.push((p, send(ctx, producer, p, m.offset(), &item, ts, &event)?));
            }
        }
    }
    let flushes = take_flushes(ledgers, &settings.stock, s.next.keys().copied())?;
    let ahead = send_ahead(committer, log_ends, ledgers, metrics, &decisions, &flushes)?;
    sends.extend(ahead.sends);
    Ok(Sent {
        summary: s,
        decisions,
        others: sends,
        flushes,
        ahead: ahead.ends,
    })
}

/// Hand decision `event` (about `item`, with record timestamp `ts`) of the record at
/// `offset` of `orders` partition `p` to `producer` for its `inventory-events` partition,
/// with that offset in a header.
fn send(
    ctx: Ctx<'_>,
    producer: &FutureProducer,
    p: i32,
    offset: i64,
    item: &str,
    ts: i64,
    event: &Event,
) -> Result<DeliveryFuture, InventoryError> {
    let metrics = ctx.metrics;
    let payload = encode(event);
    let mut digits = itoa::Buffer::new();
    let headers = OwnedHeaders::new().insert(Header {
        key: HEADER_ORDERS_OFFSET,
        value: Some(digits.format(offset)),
    });
    // Record timestamp = the order's event time (a restock's request time), like the
    // record itself, so an offset reset to a timestamp cuts both topics at the same point.
    let record = FutureRecord::to(TOPIC_INVENTORY_EVENTS)
        .partition(decision_partition(p))
        .key(record_key(item))
        .payload(&payload)
        .headers(headers)
        .timestamp(ts);
    kafka::enqueue(producer, record).map_err(|e| {
        metrics.produce_failures.inc();
        InventoryError::Delivery(e.to_string())
    })
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
}
