//! Reading `orders` and `inventory-events` as analytics' group (`CONSUMER_GROUP`, default
//! `analytics`; [`OwnNames`]) into [`Aggregates`].
//!
//! Start-up ([`crate::startup`]): the state is restored from `<group>-snapshots`
//! (`analytics-snapshots` for the default group, created compacted when missing) when the
//! group's commits carry the snapshot's run, else it starts from the log per partition
//! (an offset reset: empty at the new offsets; see [`crate::snapshot`]). Then the group
//! consumer continues from the committed offsets. Every `COMMIT_INTERVAL_MS` the changed
//! minutes and a checkpoint are written to `<group>-snapshots`, then the positions are
//! committed with `orderflow.analytics.base=<base> run=<run>` ([`CommitMark::AnalyticsRun`]).
//! A record at an offset already applied (a redelivery after a rebalance, or a record
//! between the committed offset and a snapshot written just before a crash) is skipped, so
//! each record counts once.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use orderflow_events::{decode_on, CommitMark, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::dlq::{Dlq, Rejected};
use orderflow_runtime::fetch_watch::{self, WatchedContext};
use orderflow_runtime::session::{self, ClientFailed, Handler, Tick};
use orderflow_runtime::{supervise, topics, Health, KafkaConfig};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::group::OwnNames;
use crate::metrics::AnalyticsMetrics;
use crate::startup::{self, Plan};
use crate::state::{Aggregates, Bases};
use crate::store;

pub const TOPICS: [&str; 2] = [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS];

#[derive(Debug, Error)]
pub enum AnalyticsError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("consumer group work: {0}")]
    Group(#[from] orderflowctl::GroupError),
    #[error("topics: {0}")]
    Topics(#[from] orderflow_runtime::topics::TopicError),
    #[error(
        "rebuilding the state timed out at {topic}/{partition}: reached {reached}, wanted {wanted}"
    )]
    RebuildStalled {
        topic: String,
        partition: i32,
        reached: i64,
        wanted: i64,
    },
    /// Recovered: the next session opens new clients.
    #[error(transparent)]
    ClientFailed(#[from] ClientFailed),
    #[error("the DLQ did not take a bad record, so it stays uncommitted: {0}")]
    Dlq(rdkafka::error::KafkaError),
    #[error("background task failed: {0}")]
    Join(String),
    /// Recovered: the next session restores from what was written.
    #[error("analytics-snapshots: {0}")]
    Snapshot(String),
}

/// The state shared with the HTTP handlers.
#[derive(Clone, Default)]
pub struct Shared {
    pub state: Arc<RwLock<Aggregates>>,
    pub info: Arc<RwLock<RunInfo>>,
}

/// Facts about this run, shown in `/api/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunInfo {
    /// Where the state of each partition begins: topic -> partition -> offset.
    pub started_from: std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
    pub rebuilt_records: u64,
    pub dlq_total: u64,
    /// The run id of the state (in its snapshots and commit metadata).
    pub run: String,
    /// Whether the state was restored from `analytics-snapshots` at start-up.
    pub restored_from_snapshot: bool,
    /// Records read from `analytics-snapshots` at start-up.
    pub snapshot_records: u64,
}

/// Settings of the consumer loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the state is saved and the positions committed.
    pub commit_every: Duration,
    /// The group consumed and committed, and the snapshot topic and readers named after it.
    pub names: OwnNames,
}

/// Build the commit list: every known position with its base marker.
fn commit_list(
    state: &Aggregates,
    bases: &Bases,
    run: &str,
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p, next) in state.positions() {
        let base = bases.get(&(t.clone(), p)).copied().unwrap_or(next);
        let mut e = tpl.add_partition(&t, p);
        e.set_offset(Offset::Offset(next))?;
        e.set_metadata(
            CommitMark::AnalyticsRun {
                base,
                run: run.to_string(),
            }
            .to_string(),
        );
    }
    Ok(tpl)
}

/// Run analytics until `token` is cancelled. A session that fails (Kafka lost during the
/// rebuild, a record the DLQ did not take, ...) is started again by
/// [`supervise::sessions`]: the state is rebuilt from the committed offsets, so nothing is
/// counted twice or lost; only a failed background task ends the service.
pub async fn run(
    kafka: KafkaConfig,
    shared: Shared,
    health: Health,
    metrics: AnalyticsMetrics,
    dlq: Dlq,
    token: CancellationToken,
    options: Options,
) -> Result<(), AnalyticsError> {
    supervise::sessions(
        &health,
        &token,
        |e| matches!(e, AnalyticsError::Join(_)),
        || session(&kafka, &shared, &health, &metrics, &dlq, &token, &options),
    )
    .await
}

async fn session(
    kafka: &KafkaConfig,
    shared: &Shared,
    health: &Health,
    metrics: &AnalyticsMetrics,
    dlq: &Dlq,
    token: &CancellationToken,
    options: &Options,
) -> Result<(), AnalyticsError> {
    if !session::connect(kafka, health, token).await? {
        return Ok(());
    }
    let names = &options.names;
    if !names.snapshots_created_by_all() {
        // A group of its own (a shadow): its state topic, compacted like analytics-snapshots.
        if let Err(e) = topics::ensure_compacted_topics(kafka, &[&names.snapshots]).await {
            tracing::warn!(topic = %names.snapshots, error = %e, "could not create the snapshot topic (it may be managed elsewhere)");
        }
    }
    let timeout = Duration::from_secs(10);
    health.set_not_ready(format!(
        "reading the group's commits and {}",
        names.snapshots
    ));
    let started = Instant::now();
    let plan = loop {
        let (k2, n2) = (kafka.clone(), names.clone());
        match tokio::task::spawn_blocking(move || startup::plan(&k2, &n2, timeout)).await {
            Ok(Ok(p)) => break p,
            Ok(Err(e)) => {
                health.set_not_ready(format!("reading the group's commits and snapshots: {e}"));
                tracing::warn!(error = %e, "cannot read committed offsets or snapshots yet; retrying");
            }
            Err(e) => return Err(AnalyticsError::Join(e.to_string())),
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    let Plan {
        state,
        bases,
        rebuild: spans,
        run,
        stale,
        restored,
        snapshot_records,
    } = plan;
    let to_rebuild: i64 = spans.iter().map(|s| s.to - s.from).sum();
    health.set_not_ready(format!("rebuilding {to_rebuild} records"));
    let (state, rebuilt) = {
        let (k2, n2) = (kafka.clone(), names.clone());
        tokio::task::spawn_blocking(move || {
            let mut st = state;
            startup::rebuild(&k2, &n2, &spans, &mut st, Duration::from_secs(60)).map(|n| (st, n))
        })
        .await
        .map_err(|e| AnalyticsError::Join(e.to_string()))??
    };
    metrics.rebuild_seconds.set(started.elapsed().as_secs_f64());
    tracing::info!(
        records = rebuilt,
        snapshot_records,
        restored_from_snapshot = restored,
        run = %run,
        seconds = started.elapsed().as_secs_f64(),
        "state rebuilt"
    );
    if let Ok(mut info) = shared.info.write() {
        info.rebuilt_records = rebuilt;
        info.run = run.clone();
        info.restored_from_snapshot = restored;
        info.snapshot_records = snapshot_records;
        info.started_from.clear();
        for ((t, p), b) in &bases {
            info.started_from
                .entry(t.clone())
                .or_default()
                .insert(p.to_string(), *b);
        }
    }
    // A state read from the log (an upgrade, a partial reset) is saved at once.
    let rebuilt_minutes = !state.dirty.is_empty();
    if let Ok(mut s) = shared.state.write() {
        *s = state;
    }

    // assigned partitions that do not start fetching end the session (the runtime's fetch_watch)
    let consumer: StreamConsumer<WatchedContext> =
        fetch_watch::watched(kafka.consumer(&names.group, "analytics-service"))
            .create_with_context(WatchedContext::default())?;
    // The DLQ's producer lives as long as the session, like the consumer: a client that
    // failed for good is replaced with the session. It writes the snapshots too.
    let producer: FutureProducer = kafka.producer("analytics-service").create()?;
    consumer.subscribe(&TOPICS)?;
    health.set_ready("consuming");
    // Ready while Kafka answers (a consumer with nothing to read would not notice it gone).
    let probe_report = {
        let health = health.clone();
        move |error: Option<String>| match error {
            None => health.set_ready("consuming"),
            Some(e) => health.set_not_ready(format!("Kafka unreachable: {e}")),
        }
    };
    let mut counting = Counting {
        shared,
        health,
        metrics,
        dlq,
        producer: &producer,
        snapshots: &names.snapshots,
        bases: &bases,
        run: &run,
        stale,
        dirty: rebuilt_minutes,
    };
    let tick = Tick::Every(options.commit_every);
    session::consume(
        &consumer,
        &producer,
        token,
        tick,
        probe_report,
        &mut counting,
    )
    .await?;
    // Shutdown: save and commit what was applied, then leave the group.
    counting.dirty |= skip_to_positions(&consumer, shared);
    if counting.dirty {
        if let Err(e) = counting.save(&consumer).await {
            tracing::warn!(error = %e, "the last snapshot failed: nothing committed past the previous one");
        }
    }
    consumer.unsubscribe();
    tracing::info!("analytics consumer stopped");
    Ok(())
}

/// The session's loop: each record counted once; every `COMMIT_INTERVAL_MS` the state is
/// saved to `<group>-snapshots` and the applied positions committed with their marks.
struct Counting<'a> {
    shared: &'a Shared,
    health: &'a Health,
    metrics: &'a AnalyticsMetrics,
    dlq: &'a Dlq,
    producer: &'a FutureProducer,
    /// The snapshot topic.
    snapshots: &'a str,
    bases: &'a Bases,
    run: &'a str,
    /// Minute keys of other runs, tombstoned by the next flush.
    stale: BTreeSet<String>,
    /// Applied since the last commit that worked.
    dirty: bool,
}

impl Counting<'_> {
    /// Write the snapshot (a failure ends the session: nothing is committed past it), then
    /// commit. Returns whether the commit worked.
    async fn save(
        &mut self,
        consumer: &StreamConsumer<WatchedContext>,
    ) -> Result<bool, AnalyticsError> {
        let started = Instant::now();
        let flush = self
            .shared
            .state
            .read()
            .map_err(|_| AnalyticsError::Join("state lock poisoned".into()))?
            .flush(self.run, &self.stale, Utc::now());
        store::write_flush(self.producer, self.snapshots, &flush).await?;
        if let Ok(mut s) = self.shared.state.write() {
            s.flushed();
        }
        self.stale.clear();
        let written = started.elapsed();
        let committed = commit(consumer, self.shared, self.bases, self.run, self.health);
        tracing::debug!(
            records = flush.before.len() + 1,
            write_ms = written.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            committed,
            "snapshot saved"
        );
        Ok(committed)
    }
}

impl Handler<WatchedContext> for Counting<'_> {
    type Error = AnalyticsError;

    async fn message(
        &mut self,
        consumer: &StreamConsumer<WatchedContext>,
        m: BorrowedMessage<'_>,
    ) -> Result<(), AnalyticsError> {
        if let Err(e) = handle(&m, self.shared, self.dlq, self.producer, self.metrics).await {
            // Not committed past: the next session reads it again.
            consumer.unsubscribe();
            return Err(e);
        }
        self.dirty = true;
        self.health.set_ready("consuming");
        Ok(())
    }

    async fn tick(
        &mut self,
        consumer: &StreamConsumer<WatchedContext>,
    ) -> Result<(), AnalyticsError> {
        self.dirty |= skip_to_positions(consumer, self.shared);
        if self.dirty {
            self.dirty = !self.save(consumer).await?;
        }
        Ok(())
    }

    fn consume_error(&mut self, e: &rdkafka::error::KafkaError) {
        self.health.set_not_ready(format!("Kafka: {e}"));
    }
}

async fn handle(
    m: &BorrowedMessage<'_>,
    shared: &Shared,
    dlq: &Dlq,
    producer: &FutureProducer,
    metrics: &AnalyticsMetrics,
) -> Result<(), AnalyticsError> {
    let started = Instant::now();
    let topic = m.topic(); // once: each call measures and checks the name's C string
    let decoded = decode_on(topic, m.payload().unwrap_or_default());
    // one exclusive lock per record: the redelivery check and the apply together
    if let Ok(mut s) = shared.state.write() {
        if m.offset() < s.next_offset(topic, m.partition()).unwrap_or(0) {
            // Redelivered after a rebalance: already counted.
            return Ok(());
        }
        if let Ok(event) = &decoded {
            s.apply(topic, m.partition(), m.offset(), event);
            metrics.observe(topic, &s);
        }
    }
    match decoded {
        Ok(_) => metrics.applied(started.elapsed()),
        Err(err) => {
            // A bad order is reported by inventory (it decides orders); analytics reports
            // the bad records of inventory-events, and steps over both.
            if dlq
                .reject(producer, m, &err)
                .await
                .map_err(AnalyticsError::Dlq)?
                == Rejected::Sent
            {
                if let Ok(mut i) = shared.info.write() {
                    i.dlq_total += 1;
                }
            }
            if let Ok(mut s) = shared.state.write() {
                s.advance(m.topic(), m.partition(), m.offset());
            }
        }
    }
    Ok(())
}

/// Move the state's next offsets up to the consumer's positions. They differ only by
/// records the consumer never delivers: the transaction markers after inventory's
/// decisions (and aborted decisions). Without this a caught-up group would keep a lag of
/// one marker per partition. Returns whether anything moved.
fn skip_to_positions(consumer: &StreamConsumer<WatchedContext>, shared: &Shared) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    let Ok(mut s) = shared.state.write() else {
        return false;
    };
    let mut moved = false;
    for e in positions.elements() {
        let Some(pos) = e.offset().to_raw().filter(|o| *o >= 0) else {
            continue;
        };
        if s.next_offset(e.topic(), e.partition())
            .is_some_and(|n| pos > n)
        {
            s.advance(e.topic(), e.partition(), pos - 1);
            moved = true;
        }
    }
    moved
}

/// Commit every applied position synchronously; returns whether it worked.
fn commit(
    consumer: &StreamConsumer<WatchedContext>,
    shared: &Shared,
    bases: &Bases,
    run: &str,
    health: &Health,
) -> bool {
    let tpl = match shared.state.read() {
        Ok(s) => commit_list(&s, bases, run),
        Err(_) => return false,
    };
    // A synchronous commit waits for the coordinator, up to socket.timeout.ms when Kafka is
    // gone: off the async workers, so that /readyz and the probe keep answering.
    match tpl
        .and_then(|tpl| tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync)))
    {
        Ok(()) => true,
        Err(e) => {
            // e.g. a commit refused during a rebalance: it is retried on the next tick;
            // records redelivered meanwhile are skipped by position.
            tracing::warn!(error = %e, "offset commit failed; will retry");
            if matches!(
                e,
                rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                )
            ) {
                health.set_not_ready(format!("Kafka: {e}"));
            }
            false
        }
    }
}
