//! A batch's tail: once its decisions are sent ([`super::batch`]), wait until the broker
//! acknowledged every one of them (which tells each partition's ledger where its decisions
//! end on `inventory-events`), write the ledger records taken when the batch was decided
//! ([`super::flush`]), then commit the batch ([`Committer::commit`]). Each tail is a task of
//! its own, which first waits for the tail of the batch before it: the batches' ledger
//! records and commits keep their order, whatever overlaps.
//!
//! - **Without transactions** the loop decides the next batch while the tails are in flight
//!   (up to [`MAX_IN_FLIGHT`] of them): batch k+1's decisions may reach `inventory-events`
//!   before batch k's ledger records reach `inventory-ledger`, which is what a crash between
//!   those two writes leaves too, and the rebuild rule ([`crate::ledger`]) counts them; the
//!   ledger records of batch k say the state after batch k, at the offset after batch k's
//!   last decision of the partition (one producer per session, so Kafka keeps the order of
//!   its decisions per partition).
//! - **With transactions** a partition's producer has one transaction open at a time, so the
//!   loop waits for the tail before it takes the next batch: one batch at a time, as before.
//!   The batch's offsets are handed to its transactions ([`Committer::hand_over`]) while its
//!   records are acknowledged, and its ledger records were sent with its decisions when the
//!   last commit made their end known ([`super::ahead`]); the tail then writes only the
//!   records of the partitions whose end was not known, or not confirmed.
//!
//! A revoke waits until no tail is in flight ([`super::rebalance::TailGate`]), and a
//! partition's ledger is rebuilt only once every tail has ended ([`Deciding::settle`]).
//!
//! [`Deciding::settle`]: super::batch::Deciding::settle

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderflow_runtime::{kafka, Health};
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::DeliveryFuture;
use tokio::task::JoinHandle;

use super::ahead;
use super::batch::BatchSummary;
use super::commit::{Committer, HandOver};
use super::flush::{flush_ledgers, ledger_mut};
use super::rebalance::{InventoryContext, Shared, TailGate};
use super::{bounded, InventoryError, Ledgers};
use crate::ledger::{Flush, Stock};
use crate::metrics::InventoryMetrics;

/// The most a batch waits for its acknowledgements: `message.timeout.ms` and a margin.
const DELIVERY_BOUND: Duration = Duration::from_secs(75);

/// The most tails in flight without transactions; the loop waits for them all past this.
pub(super) const MAX_IN_FLIGHT: usize = 3;

/// The handle on a tail's task.
pub(super) type InFlight = JoinHandle<Result<(), InventoryError>>;

/// A batch whose decisions and DLQ entries are handed to the producers, not yet
/// acknowledged.
pub(super) struct Sent {
    pub(super) summary: BatchSummary,
    /// Each decision's `orders` partition and its delivery.
    pub(super) decisions: Vec<(i32, DeliveryFuture)>,
    /// The DLQ entries' deliveries.
    pub(super) others: Vec<DeliveryFuture>,
    /// The ledger records of each partition of the batch, as of its end.
    pub(super) flushes: BTreeMap<i32, Flush>,
    /// The partitions whose ledger records were sent with the decisions (in `others`), and
    /// the end of `inventory-events` they name ([`super::ahead`]).
    pub(super) ahead: BTreeMap<i32, i64>,
}

/// What the tail of a batch works with: its own handles on what the session shares.
pub(super) struct Tail {
    pub(super) ledgers: Ledgers,
    pub(super) stock: Stock,
    pub(super) metrics: InventoryMetrics,
    pub(super) health: Health,
    pub(super) shared: Arc<Shared>,
    pub(super) committer: Committer,
    pub(super) consumer: Arc<StreamConsumer<InventoryContext>>,
    /// When the batch's first order was decided.
    pub(super) started: Instant,
    /// The batch's `orders` offsets, for its log line.
    pub(super) offsets: String,
}

/// Marks the gate when the tail's task ends, however it ends.
struct Done(Arc<TailGate>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.done();
    }
}

impl Tail {
    /// Run the tail of `sent` as a task, after `before` (the tail of the batch before, if
    /// still in flight) has ended; its failure is this one's. The gate counts it until it
    /// ends.
    pub(super) fn spawn(self, before: Option<InFlight>, sent: Sent) -> InFlight {
        let gate = self.shared.tail.clone();
        gate.start();
        // made here, not in the task: a task dropped before it first runs drops it too
        let done = Done(gate);
        tokio::spawn(async move {
            let _done = done;
            if let Some(before) = before {
                before
                    .await
                    .map_err(|e| InventoryError::Join(e.to_string()))??;
            }
            self.run(sent).await
        })
    }

    async fn run(self, sent: Sent) -> Result<(), InventoryError> {
        let Sent {
            summary,
            decisions,
            others,
            flushes,
            ahead,
        } = sent;
        let decided: BTreeSet<i32> = decisions.iter().map(|(p, _)| *p).collect();
        // With transactions, a partition's offsets join its transaction once its first
        // decision is acknowledged: the broker then has the partition in the transaction, so
        // the previous commit's markers are written and the coordinator takes the offsets
        // without a CONCURRENT_TRANSACTIONS refusal (which librdkafka retries only after
        // retry.backoff.ms). The others' once every record is acknowledged.
        let group = self.committer.group(&self.consumer)?;
        let mut handing = HandOver::default();
        let mut refused = None;
        let written = async {
            let first_of = |p: i32| {
                if let (Some(g), Some(&o)) = (&group, summary.next.get(&p)) {
                    if let Err(e) = self.committer.hand_over(g, p, o, &mut handing) {
                        refused.get_or_insert(e);
                    }
                }
            };
            acknowledge(decisions, others, &self.ledgers, &self.metrics, first_of).await?;
            let acknowledged = self.started.elapsed();
            let confirmed = ahead::confirmed(&ahead, |p| {
                ledger_mut(&self.ledgers, p, |l| l.next_event()).ok()
            });
            let missed = ahead.len() - confirmed.len();
            if missed > 0 {
                self.metrics.ledger_rewritten.inc_by(missed as u64);
                tracing::warn!(sent_ahead = ?ahead, confirmed = ?confirmed, "ledger records sent with the decisions named another end of inventory-events than the acknowledgements; writing them again");
            }
            let late = flushes.iter().filter(|(p, _)| !confirmed.contains(p));
            flush_ledgers(&self.ledgers, &self.metrics, &self.committer, late).await?;
            Ok::<_, InventoryError>((acknowledged, self.started.elapsed()))
        }
        .await;
        if let (Ok(_), Some(g)) = (&written, &group) {
            for (&p, &o) in &summary.next {
                if !handing.has(p) {
                    if let Err(e) = self.committer.hand_over(g, p, o, &mut handing) {
                        refused.get_or_insert(e);
                    }
                }
            }
        }
        // every hand-over begun is waited for, whatever else failed
        let handed = handing.wait().await;
        let (acknowledged, flushed) = written?;
        refused.map_or(Ok(()), Err)?;
        handed?;
        let committed = self.committer.commit(&self.consumer, &summary.next).await?;
        if self.committer.transactional() {
            for &p in &decided {
                if let Ok(end) = ledger_mut(&self.ledgers, p, |l| l.next_event()) {
                    self.shared.log_ends.committed(p, end);
                }
            }
        }
        let took = self.started.elapsed();
        self.metrics.batch_seconds.observe(took.as_secs_f64());
        self.metrics.set_stock(&self.stock, &self.ledgers);
        tracing::info!(
            orders = summary.orders,
            reserved = summary.reserved,
            failed = summary.failed,
            restocks = summary.restocks,
            duplicates = summary.duplicates,
            dlq = summary.dlq,
            not_owned = summary.not_owned,
            next_offsets = ?summary.next,
            offsets = %self.offsets,
            committed,
            ms = took.as_millis() as u64,
            // where the batch's time went: deciding until every decision was acknowledged
            // (and the batch before committed), then the ledger records, then the commit
            // (the transactions, or the offsets)
            acked_ms = acknowledged.as_millis() as u64,
            ledger_ms = (flushed - acknowledged).as_millis() as u64,
            commit_ms = (took - flushed).as_millis() as u64,
            "batch decided"
        );
        self.shared.publish(&self.health);
        Ok(())
    }
}

/// Wait until the broker acknowledged every decision and DLQ entry of the batch (and ledger
/// record sent ahead), calling `first_of(p)` once the first decision of partition `p` is
/// answered, and tell each partition's ledger where its decisions end on
/// `inventory-events`. Any refusal fails the batch: it is not committed, and its orders are
/// decided again by the next session.
async fn acknowledge(
    decisions: Vec<(i32, DeliveryFuture)>,
    others: Vec<DeliveryFuture>,
    ledgers: &Ledgers,
    metrics: &InventoryMetrics,
    mut first_of: impl FnMut(i32),
) -> Result<(), InventoryError> {
    // Each send times out after `message.timeout.ms` (60 s, runtime::kafka) by itself. Every
    // record is in flight already, so the futures are awaited one after the other: the batch
    // waits as long as for all at once, without a task allocated per record (join_all's) and
    // woken only by the record it waits for.
    let all = async move {
        let mut answered = BTreeSet::new();
        let mut decided = Vec::with_capacity(decisions.len());
        for (p, f) in decisions {
            decided.push((p, f.await));
            if answered.insert(p) {
                first_of(p);
            }
        }
        let mut rest = Vec::with_capacity(others.len());
        for f in others {
            rest.push(f.await);
        }
        (decided, rest)
    };
    let (decided, others) = bounded("the acknowledgements of a batch", DELIVERY_BOUND, all).await?;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, r) in decided {
        if let Ok(Ok(delivery)) = &r {
            let end = ends.entry(p).or_default();
            *end = (*end).max(delivery.offset + 1);
        }
        if let Some(e) = kafka::delivery_error(r) {
            metrics.produce_failures.inc();
            return Err(InventoryError::Delivery(e));
        }
    }
    for r in others {
        if let Some(e) = kafka::delivery_error(r) {
            metrics.produce_failures.inc();
            return Err(InventoryError::Delivery(e));
        }
    }
    for (p, end) in ends {
        ledger_mut(ledgers, p, |l| l.written(end))?;
    }
    Ok(())
}
