//! How a batch is committed, chosen by `TRANSACTIONS`: [`Committer::Offsets`] (the
//! default: decisions through the idempotent producer, then the offsets) or
//! [`Committer::Transactions`] (decisions, DLQ entries and offsets of a partition in one
//! Kafka transaction). Why each is crash-safe is in the [`super`] module docs; the rest
//! of the worker does not ask which one it has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use orderflow_events::{TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerGroupMetadata, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::hanging::{self, Suspects, Watermarks, HANGING_ABORTED, HANGING_FOUND};
use super::rebalance::InventoryContext;
use super::{bounded, InventoryError};
use crate::config::Settings;
use crate::metrics::InventoryMetrics;

/// How long a transaction's offset hand-over, commit or the producer's start may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a new transactional producer waits for a broker connection before
/// `init_transactions` (which then waits on its own terms).
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// How long aborting a transaction may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound ([`bounded`]) of a call that has no timeout of its own, and the margin added to
/// those that have one.
const CALL_BOUND: Duration = Duration::from_secs(10);

/// The writer of a session's decisions and the way it commits a batch (cloned into each
/// batch's tail: the producers are handles on the same clients).
#[derive(Clone)]
pub(super) enum Committer {
    /// At-least-once: decisions go through the session's idempotent producer, then the
    /// consumer commits the batch's next offsets.
    Offsets(FutureProducer),
    /// One transactional producer per owned `orders` partition (`transactional.id`
    /// `<TRANSACTIONAL_ID_PREFIX>-<p>`), whose transaction carries the partition's decisions,
    /// DLQ entries and next offset; and the session's readers that a take-over asks whether
    /// a transaction of that producer hangs ([`hanging`]), made with the committer so that
    /// their connections are up by the first take-over (two new clients per take-over added
    /// 0.2-0.3 s to a restart).
    Transactions(BTreeMap<i32, FutureProducer>, Arc<Watermarks>),
}

impl Committer {
    /// The committer `settings` ask for; `producer` is the session's idempotent producer.
    pub(super) fn new(
        kafka: &KafkaConfig,
        settings: &Settings,
        producer: &FutureProducer,
    ) -> Result<Self, InventoryError> {
        Ok(match settings.transactions {
            true => Self::Transactions(BTreeMap::new(), Arc::new(Watermarks::new(kafka)?)),
            false => Self::Offsets(producer.clone()),
        })
    }

    /// Whether the loop must wait for a batch's commit before it takes the next one: with
    /// transactions, a partition's producer has one transaction open at a time.
    pub(super) fn one_batch_at_a_time(&self) -> bool {
        self.transactional()
    }

    /// Whether a batch's records become visible only with its commit (transactions), so its
    /// ledger records may name an end of `inventory-events` known before the
    /// acknowledgements ([`super::ahead`]).
    pub(super) fn transactional(&self) -> bool {
        matches!(self, Self::Transactions(..))
    }

    /// Prepare taking over `orders` partition `p`, before its ledger is rebuilt: with
    /// transactions, open its producer ([`open_writer`]), which [`Committer::adopt`] then
    /// keeps, and abort a transaction of that producer that Kafka left open ([`hanging`]):
    /// `group` is the consumer's (for the offsets), and a `p` in `suspects` is aborted for
    /// its offsets even when its changelog shows nothing open. Nothing to do without.
    pub(super) async fn prepare(
        &self,
        kafka: &KafkaConfig,
        settings: &Settings,
        p: i32,
        group: Option<ConsumerGroupMetadata>,
        suspects: &Suspects,
        metrics: &InventoryMetrics,
    ) -> Result<Option<FutureProducer>, InventoryError> {
        match self {
            Self::Offsets(_) => Ok(None),
            Self::Transactions(_, watermarks) => {
                let suspect = suspects.lock().is_ok_and(|s| s.contains(&p));
                let watermarks = watermarks.clone();
                let opened = open_writer(kafka, settings, p, group, suspect, watermarks);
                let (w, aborted) = opened.await?;
                if aborted {
                    metrics.hanging_aborted.inc();
                }
                if let Ok(mut s) = suspects.lock() {
                    s.remove(&p);
                }
                Ok(Some(w))
            }
        }
    }

    /// Keep what [`Committer::prepare`] opened for `p`.
    pub(super) fn adopt(&mut self, p: i32, writer: Option<FutureProducer>) {
        if let (Self::Transactions(writers, _), Some(w)) = (self, writer) {
            writers.insert(p, w);
        }
    }

    /// Drop the producers of partitions no longer `assigned`.
    pub(super) async fn release_unassigned(&mut self, assigned: &BTreeSet<i32>) {
        let Self::Transactions(writers, _) = self else {
            return;
        };
        let gone: Vec<i32> = writers
            .keys()
            .filter(|p| !assigned.contains(p))
            .copied()
            .collect();
        for p in gone {
            if let Some(w) = writers.remove(&p) {
                let dropped = tokio::task::spawn_blocking(move || drop(w));
                if let Err(e) = bounded("closing a producer", CALL_BOUND, dropped).await {
                    tracing::warn!(partition = p, error = %e, "transactional producer left behind");
                }
            }
        }
    }

    /// The producer of `orders` partition `p`'s decisions and DLQ entries.
    pub(super) fn producer(&self, p: i32) -> Result<&FutureProducer, InventoryError> {
        match self {
            Self::Offsets(producer) => Ok(producer),
            Self::Transactions(writers, _) => writers.get(&p).ok_or(InventoryError::NoLedger(p)),
        }
    }

    /// The batch reaches its first order of `p`: with transactions, begin `p`'s transaction.
    /// librdkafka waits for its own main thread without a timeout here, so the call runs off
    /// the async workers, bounded.
    pub(super) async fn begin(&self, p: i32) -> Result<(), InventoryError> {
        match self {
            Self::Offsets(_) => Ok(()),
            Self::Transactions(..) => {
                let w = self.producer(p)?.clone();
                let begun = tokio::task::spawn_blocking(move || w.begin_transaction());
                bounded("beginning a transaction", CALL_BOUND, begun)
                    .await?
                    .map_err(|e| InventoryError::Join(e.to_string()))?
                    .map_err(|e| InventoryError::Txn {
                        partition: p,
                        error: format!("beginning: {e}"),
                    })
            }
        }
    }

    /// With transactions, the consumer's group metadata, which [`Committer::hand_over`]
    /// hands with the offsets; `None` without.
    pub(super) fn group(
        &self,
        consumer: &StreamConsumer<InventoryContext>,
    ) -> Result<Option<Arc<ConsumerGroupMetadata>>, InventoryError> {
        match self {
            Self::Offsets(_) => Ok(None),
            Self::Transactions(..) => match consumer.group_metadata() {
                Some(g) => Ok(Some(Arc::new(g))),
                None => Err(InventoryError::Txn {
                    partition: -1,
                    error: "the consumer has no group metadata".into(),
                }),
            },
        }
    }

    /// With transactions, hand `orders` partition `p`'s next `offset` to its transaction
    /// (`send_offsets_to_transaction`: the transaction coordinator, then the group's), into
    /// `handing`, which [`HandOver::wait`] waits for before the commit: the tail starts it
    /// while the batch's records are still being acknowledged. Nothing to do without.
    pub(super) fn hand_over(
        &self,
        group: &Arc<ConsumerGroupMetadata>,
        p: i32,
        offset: i64,
        handing: &mut HandOver,
    ) -> Result<(), InventoryError> {
        let Self::Transactions(writers, _) = self else {
            return Ok(());
        };
        let w = writers
            .get(&p)
            .cloned()
            .ok_or(InventoryError::NoLedger(p))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC_ORDERS, p, Offset::Offset(offset))?;
        let group = group.clone();
        let job = tokio::task::spawn_blocking(move || {
            w.send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)
        });
        handing.0.insert(p, job);
        Ok(())
    }

    /// Commit a batch whose records the broker all acknowledged, `next` being its next
    /// offset per partition (with transactions, handed over already: [`HandOver`]). Returns
    /// whether the offsets were committed: without transactions a refused commit is harmless
    /// (the orders come again and are skipped as duplicates); a transaction that cannot
    /// commit is an error.
    pub(super) async fn commit(
        &self,
        consumer: &StreamConsumer<InventoryContext>,
        next: &BTreeMap<i32, i64>,
    ) -> Result<bool, InventoryError> {
        match self {
            Self::Offsets(_) => Ok(commit_offsets(consumer, next)),
            Self::Transactions(writers, _) => {
                commit_transactions(writers, next, "the batch's transaction commits").await?;
                Ok(true)
            }
        }
    }

    /// Commit what a flush outside a batch wrote for the partitions of `next` (the ledger
    /// records after a rebuild): with transactions, each partition's open transaction,
    /// without consumer offsets; nothing to do without.
    pub(super) async fn commit_ledger_only(
        &self,
        next: &BTreeMap<i32, i64>,
    ) -> Result<(), InventoryError> {
        let Self::Transactions(writers, _) = self else {
            return Ok(());
        };
        commit_transactions(writers, next, "the ledger's transaction commits").await
    }

    /// End of the session. On an error a transaction may be open: abort it now rather than
    /// leave it to the partition's next owner (who would abort it anyway when it opens its
    /// producer).
    pub(super) async fn close(self) {
        let Self::Transactions(writers, _) = self else {
            return;
        };
        let aborts = writers.into_values().map(|w| {
            tokio::task::spawn_blocking(move || {
                let _ = w.abort_transaction(ABORT_TIMEOUT);
                drop(w);
            })
        });
        if let Err(e) = bounded("the session's aborts", CALL_BOUND, join_all(aborts)).await {
            tracing::warn!(error = %e, "transactional producers left behind");
        }
    }
}

/// Open the transactional producer of `orders` partition `p`. `init_transactions` aborts
/// the transaction a previous owner of `p` left open and fences that producer off; until it
/// returns, nothing of `p` is read or decided. Then a transaction of `p`'s producer that
/// Kafka left open is aborted ([`end_hanging`]); the `bool` says whether one was.
async fn open_writer(
    kafka: &KafkaConfig,
    settings: &Settings,
    p: i32,
    group: Option<ConsumerGroupMetadata>,
    suspect: bool,
    watermarks: Arc<Watermarks>,
) -> Result<(FutureProducer, bool), InventoryError> {
    let config = kafka.transactional_producer(
        &format!("inventory-service-p{p}"),
        &settings.transactional_id(p),
    );
    let opened = tokio::task::spawn_blocking(move || -> Result<FutureProducer, InventoryError> {
        let w: FutureProducer = config.create()?;
        // A broker connection first: init_transactions that finds none up asks for its
        // coordinator again only on librdkafka's 500 ms timer, unless the connection's coming
        // up wakes it, which it missed for one of three producers in about half the
        // restarts (P7: 1.02 s instead of 0.6 s, with KAFKA_DEBUG=eos). A metadata request
        // waits for a connection; the first one goes through the bootstrap address, which
        // librdkafka then leaves for the brokers the metadata named, so a second one waits
        // for a connection to those. Their failure is init_transactions' to report.
        for _ in 0..2 {
            let _ = w
                .client()
                .fetch_metadata(Some(TOPIC_INVENTORY_EVENTS), CONNECT_WAIT);
        }
        w.init_transactions(TXN_TIMEOUT)
            .map_err(|e| InventoryError::Txn {
                partition: p,
                error: format!("starting the transactional producer: {e}"),
            })?;
        Ok(w)
    });
    let w = bounded(
        "starting a transactional producer",
        TXN_TIMEOUT + CALL_BOUND,
        opened,
    )
    .await?
    .map_err(|e| InventoryError::Join(e.to_string()))??;
    let writer = w.clone();
    let ended =
        tokio::task::spawn_blocking(move || end_hanging(&watermarks, &writer, p, group, suspect));
    let aborted = bounded(
        "checking for a transaction Kafka left open (and aborting it)",
        TXN_TIMEOUT * 2 + CALL_BOUND,
        ended,
    )
    .await?
    .map_err(|e| InventoryError::Join(e.to_string()))??;
    Ok((w, aborted))
}

/// After `init_transactions` of `p`'s producer `w`: find what of it hangs and abort it
/// (see [`hanging`]); whether there was any. Blocking.
fn end_hanging(
    watermarks: &Watermarks,
    w: &FutureProducer,
    p: i32,
    group: Option<ConsumerGroupMetadata>,
    suspect: bool,
) -> Result<bool, InventoryError> {
    let Some(topics) = hanging::plan(watermarks.open_on(p)?, suspect) else {
        return Ok(false);
    };
    let group = group.ok_or_else(|| InventoryError::Txn {
        partition: p,
        error: "the consumer has no group metadata".into(),
    })?;
    tracing::warn!(
        partition = p,
        ?topics,
        offsets_suspected = suspect,
        "a transaction of this partition's producer {HANGING_FOUND} (completed without all \
         its markers); aborting it, and its orders are decided again"
    );
    hanging::abort_hanging(w, p, &topics, &group, TXN_TIMEOUT)?;
    let still = watermarks.open_after_abort(p)?;
    if still.events || still.ledger {
        tracing::error!(
            partition = p,
            events = still.events,
            ledger = still.ledger,
            "a transaction of another producer is open on this partition's changelog, and \
             read_committed readers stop at it: find it with `kafka-transactions.sh \
             find-hanging --broker-id <its leader>`, end it with `kafka-transactions.sh abort`"
        );
    } else {
        tracing::info!(partition = p, "{HANGING_ABORTED}");
    }
    Ok(true)
}

/// Commit the batch's next offsets (synchronously: one round trip per batch). Returns
/// whether the broker took the commit.
fn commit_offsets(consumer: &StreamConsumer<InventoryContext>, next: &BTreeMap<i32, i64>) -> bool {
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

/// The offsets of a batch on their way into its transactions ([`Committer::hand_over`]),
/// per `orders` partition.
#[derive(Default)]
pub(super) struct HandOver(BTreeMap<i32, tokio::task::JoinHandle<Result<(), KafkaError>>>);

impl HandOver {
    /// Whether `p`'s offsets are on their way.
    pub(super) fn has(&self, p: i32) -> bool {
        self.0.contains_key(&p)
    }

    /// Wait until every partition's offsets are in its transaction. A refusal ends the
    /// session, which aborts the transactions: their orders are decided again.
    pub(super) async fn wait(self) -> Result<(), InventoryError> {
        let all = join_all(
            self.0
                .into_iter()
                .map(|(p, job)| async move { (p, job.await) }),
        );
        let limit = TXN_TIMEOUT + CALL_BOUND;
        for (p, r) in bounded("handing the batch's offsets over", limit, all).await? {
            r.map_err(|e| InventoryError::Join(e.to_string()))?
                .map_err(|e| InventoryError::Txn {
                    partition: p,
                    error: format!("handing the offsets over: {e}"),
                })?;
        }
        Ok(())
    }
}

/// Commit the open transaction of every partition of `next` (the partitions in parallel):
/// a batch's, its offsets handed over already, or a rebuild's ledger records; `what` names
/// them in the bound's error. A transaction that fails is aborted and reported: its orders
/// stay uncommitted and are decided again by the next session.
async fn commit_transactions(
    writers: &BTreeMap<i32, FutureProducer>,
    next: &BTreeMap<i32, i64>,
    what: &'static str,
) -> Result<(), InventoryError> {
    let commits = next.keys().map(|&p| {
        let writer = writers.get(&p).cloned();
        tokio::task::spawn_blocking(move || -> Result<(), InventoryError> {
            let w = writer.ok_or(InventoryError::NoLedger(p))?;
            w.commit_transaction(TXN_TIMEOUT).map_err(|e| {
                let _ = w.abort_transaction(ABORT_TIMEOUT);
                InventoryError::Txn {
                    partition: p,
                    error: e.to_string(),
                }
            })
        })
    });
    let mut first_error = None;
    let limit = TXN_TIMEOUT + ABORT_TIMEOUT + CALL_BOUND;
    for r in bounded(what, limit, join_all(commits)).await? {
        let r = r.map_err(|e| InventoryError::Join(e.to_string()))?;
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
