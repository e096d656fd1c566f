//! The consume -> decide -> produce -> commit loop.
//!
//! Orders are keyed by item, so every order of an item lands on one `orders` partition, and
//! the group gives each partition to one replica: the stock of an item is only ever decided
//! by one replica at a time, which is what makes "no oversell" hold with several replicas.
//! Each decision is written, keyed by item, to the same partition number of
//! `inventory-events` ([`orderflow_events::decision_partition`]), so that partition is the changelog of the
//! ledger of the items of that `orders` partition.
//!
//! When a partition is assigned, the rebalance callback marks it stale; before any of its
//! orders is decided (or on the next idle tick) its ledger is rebuilt from the compacted
//! `inventory-ledger` partition of the same number and the tail of its `inventory-events`
//! partition (see [`crate::ledger`] for the keys, the write order and the rebuild rule). A
//! revoked partition's ledger is dropped at once.
//!
//! Orders are taken in batches (up to `BATCH_MAX`, or what arrives within `BATCH_WAIT_MS`). A
//! batch is decided in order, all its decisions are sent without waiting for each other; once
//! the broker acknowledged every one of them (which gives their offsets), each partition's
//! ledger records are written (the changed items, then the checkpoint), and once those are
//! acknowledged too the batch's next offsets are committed. That tail of a batch (its
//! acknowledgements, ledger records and commit) is a task of its own, after the tail of the
//! batch before (`tail`): without transactions the loop decides the next batches meanwhile,
//! with transactions it waits for the tail first. Two ways to commit, chosen by
//! `TRANSACTIONS` (the two variants of `commit::Committer`):
//!
//! - **Transactions (default).** Every owned partition `p` has its own transactional
//!   producer (`transactional.id` `<TRANSACTIONAL_ID_PREFIX>-<p>`): a batch's decisions of
//!   `p`, its ledger records, the DLQ entries of its bad orders and the group's next offset
//!   for `p` are committed in one Kafka transaction (consume-decide-produce-commit, as in
//!   rust-rdkafka's transactions example), so a `read_committed` reader sees them together
//!   or not at all. A replica that dies mid-batch leaves its transaction open; the next
//!   owner of `p` opens its producer with the same id before anything else, which aborts
//!   that transaction and fences off the old producer should it still be alive (a replica
//!   cut off from Kafka, not dead), and only then reads the ledger. The duplicate checks
//!   stay as a second line.
//! - **Idempotent** (`TRANSACTIONS=false`). Decisions, then ledger records, go through the
//!   idempotent producer, then the offsets are committed (at-least-once, as in
//!   rust-rdkafka's at_least_once example). A crash between any two of these steps
//!   redelivers orders already decided; the rebuilt ledger knows the `orders` offset they
//!   were decided up to (the ledger's and the decisions' headers) and skips them, so an
//!   order is never decided twice. The next batches' decisions may be written before a
//!   batch's ledger records (pipelined, up to 3 batches in flight): the same as a crash
//!   between the two, for the rebuild.
//!
//! Any Kafka failure mid-run (a transaction that cannot commit, the broker gone, a changelog
//! read that stalls) ends the session: open transactions are aborted, the consumer leaves,
//! ledgers are dropped, and [`supervise::sessions`] starts again from the committed offsets
//! after a backoff while `/readyz` reports the reason. Rebalance callbacks only run inside
//! `recv()`, i.e. while a batch is being collected, and a revoke first waits until every
//! tail in flight has ended (`rebalance::TailGate`), so a batch is always decided and
//! committed under one assignment, and a partition's next owner never reads a changelog to
//! which this replica still has records on their way; orders fetched before a revoke that
//! arrives while a batch is being collected are left to the partition's next owner (not
//! decided, not committed).
//!
//! ## Modules
//! - `rebalance`: ownership as the rebalance callbacks tell it, readiness, leaving the
//!   group;
//! - `changelog`: taking a partition over (its producer, then its ledger);
//! - `restore`: reading a ledger back from `inventory-ledger` and the tail of
//!   `inventory-events`;
//! - `flush`: writing a batch's ledger records;
//! - `batch`: the session's loop: collect, decide, send;
//! - `tail`: a batch's acknowledgements, ledger records and commit, in flight while the next
//!   batch is collected;
//! - `ahead`: with transactions, a batch's ledger records sent with its decisions, at the
//!   end the last commit makes known;
//! - `commit`: the `commit::Committer`, one variant per way to commit;
//! - `hanging`: a transaction of a partition's own producer that Kafka left open, aborted
//!   when the partition is taken over.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use orderflow_events::{
    GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER, TOPIC_ORDERS,
};
use orderflow_runtime::dlq::Dlq;
use orderflow_runtime::fetch_watch::{self, FetchWatch};
use orderflow_runtime::session::{self, ClientFailed, Tick};
use orderflow_runtime::{supervise, topics, Health, KafkaConfig};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::ledger::PartitionLedger;
use crate::metrics::InventoryMetrics;

mod ahead;
mod batch;
mod changelog;
mod commit;
mod flush;
mod hanging;
mod rebalance;
mod restore;
mod tail;

pub use batch::BatchSummary;
pub use hanging::{HANGING_ABORTED, HANGING_FOUND, HEAL_KEY};
pub use restore::{restore, Restored};

use batch::Deciding;
use commit::Committer;
use hanging::Suspects;
use rebalance::{close_consumer, InventoryContext, Shared, CLOSE_TIMEOUT};

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topics: {0}")]
    Topics(#[from] topics::TopicError),
    #[error("`{TOPIC_ORDERS}` has {orders} partitions but `{topic}` has {other}: they must match, because each decision and ledger record goes to the partition number of its order")]
    PartitionMismatch {
        orders: i32,
        topic: &'static str,
        other: i32,
    },
    #[error("a decision or DLQ entry was not taken by Kafka ({0}); the batch is not committed and is decided again")]
    Delivery(String),
    #[error("the transaction of orders partition {partition} failed ({error}); it is aborted and the batch decided again")]
    Txn { partition: i32, error: String },
    #[error("reading {topic}/{partition} stalled before offset {end}")]
    ChangelogStalled {
        topic: &'static str,
        partition: i32,
        end: i64,
    },
    #[error("internal: orders partition {0} is owned but its ledger was not rebuilt")]
    NoLedger(i32),
    /// A Kafka client failed for good; recovered: the next session opens new clients.
    #[error(transparent)]
    ClientFailed(#[from] ClientFailed),
    /// A Kafka call that did not return within its bound (see [`bounded`]); recovered: the
    /// next session opens new clients, and a transactional one fences the stuck producer.
    #[error("Kafka did not finish {what} within {ms} ms; new Kafka clients take over")]
    Stalled { what: &'static str, ms: u128 },
    #[error("background task failed: {0}")]
    Join(String),
}

/// Wait for `fut` at most `limit`. Every call into librdkafka that a session waits for has a
/// timeout of its own; this bound is the session's guarantee on top of them, so that a call
/// which does not honour its timeout (seen once in a while in the three-node fault test:
/// inventory silent for minutes after a transaction coordinator died) ends the session with
/// [`InventoryError::Stalled`] instead of holding it forever. A blocking call abandoned this
/// way keeps its thread until it returns; the client it holds is not used again.
pub(crate) async fn bounded<T>(
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, InventoryError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| InventoryError::Stalled {
            what,
            ms: limit.as_millis(),
        })
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

/// Ledgers of the partitions this replica owns, shared with `GET /stock`.
pub type Ledgers = Arc<RwLock<BTreeMap<i32, PartitionLedger>>>;

/// How long the loop waits for an order before its idle tick. Short, so that a partition
/// assigned while no order arrives is taken over (its producer, its ledger) at once: with
/// 250 ms a restart waited 190 ms after its assignment before it began; the tick's other
/// work (waiting for the batch in flight, the stock gauges, `/readyz`) runs every
/// [`FULL_TICK`] (`Deciding::tick`).
const IDLE_TICK: Duration = Duration::from_millis(20);

/// How often an idle loop does the whole of its tick.
const FULL_TICK: Duration = Duration::from_millis(250);

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
    let suspects = Suspects::default();
    let ctx = Ctx {
        kafka: &kafka,
        settings: &settings,
        ledgers: &ledgers,
        health: &health,
        metrics: &metrics,
        dlq: &dlq,
        suspects: &suspects,
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
    /// Carried from a session that stalled to the next ([`hanging`]).
    suspects: &'a Suspects,
}

/// Connect, join the group and decide batches until cancelled (`Ok`) or a Kafka failure.
async fn session(ctx: Ctx<'_>, token: &CancellationToken) -> Result<(), InventoryError> {
    let Ctx {
        kafka,
        settings,
        ledgers,
        health,
        ..
    } = ctx;
    if !session::connect(kafka, health, token).await? {
        return Ok(());
    }
    check_partitions(kafka).await?;

    let shared = Arc::new(Shared::default());
    let consumer: Arc<StreamConsumer<InventoryContext>> = Arc::new(
        fetch_watch::watched(kafka.consumer(GROUP_INVENTORY, "inventory-service"))
            .create_with_context(InventoryContext {
                shared: shared.clone(),
                ledgers: ledgers.clone(),
                watch: FetchWatch::default(),
            })?,
    );
    consumer.subscribe(&[TOPIC_ORDERS])?;
    // The session's producer (the decisions' without TRANSACTIONS, the probe's always)
    // lives as long as the session: one that failed for good (e.g. an idempotent producer
    // whose sequence a restarted broker no longer knows) is replaced with the session.
    let producer: FutureProducer = kafka.producer("inventory-service").create()?;
    let probe_report = {
        let (shared, health) = (shared.clone(), health.clone());
        move |error| {
            shared.set_kafka_error(error);
            shared.publish(&health);
        }
    };
    tracing::info!(
        batch_limit = settings.batch_limit(),
        "subscribed to {TOPIC_ORDERS} as group {GROUP_INVENTORY}"
    );
    let mut deciding = Deciding {
        ctx,
        shared: shared.clone(),
        committer: Committer::new(kafka, settings, &producer)?,
        consumer: consumer.clone(),
        token,
        in_flight: None,
        last_full_tick: None,
    };
    shared.publish(health);
    let tick = Tick::Idle(IDLE_TICK);
    let outcome = session::consume(
        &consumer,
        &producer,
        token,
        tick,
        probe_report,
        &mut deciding,
    )
    .await;
    // Partitions whose committed offsets never came: suspects for the next take-over.
    let stalled = consumer
        .context()
        .watch
        .stalled_partitions(std::time::Instant::now(), fetch_watch::STALL_AFTER);
    if let Ok(mut s) = ctx.suspects.lock() {
        s.extend(
            stalled
                .iter()
                .filter(|(topic, _)| topic == TOPIC_ORDERS)
                .map(|(_, p)| *p),
        );
    }
    // The last batch's tail ends (committed, or failed) before anything is closed.
    let settled = deciding.settle().await;
    let outcome = match (outcome, settled) {
        (Ok(()), settled) => settled,
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(tail)) => {
            tracing::warn!(error = %tail, "the last batch failed too");
            Err(e)
        }
    };

    shared.set_stopping();
    shared.publish(health);
    let Deciding {
        committer,
        consumer: loop_handle,
        ..
    } = deciding;
    drop(loop_handle); // the consumer closes where close_consumer drops the last handle
    committer.close().await;
    let _ = tokio::task::spawn_blocking(move || close_consumer(consumer, CLOSE_TIMEOUT)).await;
    if let Ok(mut l) = ledgers.write() {
        l.clear();
    }
    outcome
}

async fn check_partitions(kafka: &KafkaConfig) -> Result<(), InventoryError> {
    let k = kafka.clone();
    let (orders, others) = tokio::task::spawn_blocking(move || -> Result<_, InventoryError> {
        let others = [TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER];
        let counts = topics::wait_for_topics(
            &k,
            &[TOPIC_ORDERS, others[0], others[1]],
            Duration::from_secs(60),
        )?;
        let orders = counts.first().copied().unwrap_or_default();
        Ok((orders, others.into_iter().zip(counts.into_iter().skip(1))))
    })
    .await
    .map_err(|e| InventoryError::Join(e.to_string()))??;
    if let Some((topic, other)) = others.into_iter().find(|(_, n)| *n != orders) {
        return Err(InventoryError::PartitionMismatch {
            orders,
            topic,
            other,
        });
    }
    tracing::info!(partitions = orders, "topic partition counts match");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_past_its_bound_ends_the_session_and_says_which() {
        let limit = Duration::from_millis(50);
        let stuck = bounded("a stuck call", limit, std::future::pending::<()>());
        let e = stuck.await.expect_err("a pending call is cut at its bound");
        assert!(matches!(
            e,
            InventoryError::Stalled {
                what: "a stuck call",
                ms: 50
            }
        ));
        assert!(!e.is_fatal(), "a new session recovers it");
        assert_eq!(
            e.to_string(),
            "Kafka did not finish a stuck call within 50 ms; new Kafka clients take over"
        );
        let quick = bounded("a quick call", limit, async { 7 });
        assert_eq!(quick.await.ok(), Some(7));
    }
}
