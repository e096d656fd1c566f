//! Reading `orders` and `inventory-events` as group `analytics` into [`Aggregates`].
//!
//! Start-up: for every partition the group's committed offset and its commit metadata say
//! where the state begins (see [`start_for`]); the span `[base, committed)` of our own
//! previous run is rebuilt from the log with a group-less reader, then the group consumer
//! continues from the committed offsets. Commits carry `orderflow.analytics.base=<base>`
//! ([`CommitMark::AnalyticsBase`]).
//! A record at an offset already applied (a redelivery after a rebalance) is skipped, so
//! each record counts once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use orderflow_events::{
    decode_on, CommitMark, GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_runtime::dlq::{Dlq, Rejected};
use orderflow_runtime::{kafka, supervise, Health, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::metrics::AnalyticsMetrics;
use crate::state::{start_for, Aggregates, Bases, Start};

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
    #[error("{0}; a new consumer takes over")]
    Fatal(String),
    #[error("the DLQ did not take a bad record, so it stays uncommitted: {0}")]
    Dlq(rdkafka::error::KafkaError),
    #[error("background task failed: {0}")]
    Join(String),
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
}

struct Plan {
    bases: Bases,
    /// (topic, partition, from, to) spans to rebuild
    rebuild: Vec<(String, i32, i64, i64)>,
}

fn plan(kafka: &KafkaConfig, timeout: Duration) -> Result<Plan, AnalyticsError> {
    let committed = orderflowctl::committed_offsets(kafka, GROUP_ANALYTICS, &TOPICS, timeout)?;
    let marks = orderflowctl::lag(kafka, GROUP_ANALYTICS, &TOPICS, timeout)?;
    let low: HashMap<(String, i32), i64> = marks
        .iter()
        .map(|l| ((l.topic.clone(), l.partition), l.low_watermark))
        .collect();
    let mut p = Plan {
        bases: Bases::new(),
        rebuild: Vec::new(),
    };
    for c in committed {
        let lw = low
            .get(&(c.topic.clone(), c.partition))
            .copied()
            .unwrap_or(0);
        let key = (c.topic.clone(), c.partition);
        match start_for(c.offset, &c.metadata, lw) {
            Start::Resume { base, committed } => {
                p.bases.insert(key, base);
                if committed > base {
                    p.rebuild.push((c.topic, c.partition, base, committed));
                }
            }
            Start::Fresh { at } => {
                p.bases.insert(key, at);
            }
            Start::Earliest { low } => {
                p.bases.insert(key, low);
            }
        }
    }
    Ok(p)
}

/// Read `[from, to)` of every span into `state`. Records that do not decode were handled
/// (sent to the DLQ or skipped) by the run that first read them; here they are only
/// stepped over.
fn rebuild(
    kafka: &KafkaConfig,
    spans: &[(String, i32, i64, i64)],
    state: &mut Aggregates,
    timeout: Duration,
) -> Result<u64, AnalyticsError> {
    if spans.is_empty() {
        return Ok(0);
    }
    let reader: BaseConsumer = kafka.reader("analytics-rebuild").create()?;
    let mut tpl = TopicPartitionList::new();
    for (t, p, from, _) in spans {
        tpl.add_partition_offset(t, *p, Offset::Offset(*from))?;
    }
    reader.assign(&tpl)?;
    let ends: HashMap<(String, i32), i64> = spans
        .iter()
        .map(|(t, p, _, to)| ((t.clone(), *p), *to))
        .collect();
    let mut done: HashMap<(String, i32), bool> = spans
        .iter()
        .map(|(t, p, from, to)| ((t.clone(), *p), from >= to))
        .collect();
    let mut n = 0u64;
    let mut last_progress = Instant::now();
    while done.values().any(|d| !d) {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let key = (m.topic().to_string(), m.partition());
                let end = ends.get(&key).copied().unwrap_or(0);
                if m.offset() < end {
                    match decode_on(m.topic(), m.payload().unwrap_or_default()) {
                        Ok(e) => state.apply(m.topic(), m.partition(), m.offset(), &e),
                        Err(_) => state.advance(m.topic(), m.partition(), m.offset()),
                    }
                    n += 1;
                }
                if m.offset() + 1 >= end {
                    done.insert(key, true);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "rebuild read error (retrying)"),
            None => {
                // Nothing more to read: a span may end in transaction markers, which are
                // never delivered as records but move the position.
                for ((t, p), d) in done.iter_mut() {
                    let end = ends.get(&(t.clone(), *p)).copied().unwrap_or(0);
                    if !*d && kafka::reached(&reader, t, *p, end) {
                        *d = true;
                        last_progress = Instant::now();
                    }
                }
            }
        }
        if last_progress.elapsed() > timeout {
            let (t, p, reached, wanted) = spans
                .iter()
                .find(|(t, p, _, _)| !done.get(&(t.clone(), *p)).copied().unwrap_or(true))
                .map(|(t, p, _, to)| (t.clone(), *p, state.next_offset(t, *p).unwrap_or(-1), *to))
                .unwrap_or_default();
            return Err(AnalyticsError::RebuildStalled {
                topic: t,
                partition: p,
                reached,
                wanted,
            });
        }
    }
    // The spans were read to their ends, including any transaction markers after their last
    // records: the state's next offsets are the spans' ends (the committed offsets).
    for (t, p, _, to) in spans {
        if *to > 0 {
            state.advance(t, *p, to - 1);
        }
    }
    Ok(n)
}

/// Build the commit list: every known position with its base marker.
fn commit_list(
    state: &Aggregates,
    bases: &Bases,
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p, next) in state.positions() {
        let base = bases.get(&(t.clone(), p)).copied().unwrap_or(next);
        let mut e = tpl.add_partition(&t, p);
        e.set_offset(Offset::Offset(next))?;
        e.set_metadata(CommitMark::AnalyticsBase(base).to_string());
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
    commit_every: Duration,
) -> Result<(), AnalyticsError> {
    supervise::sessions(
        &health,
        &token,
        |e| matches!(e, AnalyticsError::Join(_)),
        || {
            session(
                &kafka,
                &shared,
                &health,
                &metrics,
                &dlq,
                &token,
                commit_every,
            )
        },
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
    commit_every: Duration,
) -> Result<(), AnalyticsError> {
    health.set_not_ready("connecting to Kafka");
    // Waits for Kafka as long as it takes; locally the topics are created then (under
    // Strimzi they exist already).
    if !orderflow_runtime::topics::connect(kafka, health, token).await? {
        return Ok(());
    }
    let timeout = Duration::from_secs(10);
    let k = kafka.clone();
    let plan = loop {
        let k2 = k.clone();
        match tokio::task::spawn_blocking(move || plan(&k2, timeout)).await {
            Ok(Ok(p)) => break p,
            Ok(Err(e)) => {
                health.set_not_ready(format!("reading the group's committed offsets: {e}"));
                tracing::warn!(error = %e, "cannot read committed offsets yet; retrying");
            }
            Err(e) => return Err(AnalyticsError::Join(e.to_string())),
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    let Plan {
        bases,
        rebuild: spans,
    } = plan;
    let to_rebuild: i64 = spans.iter().map(|(_, _, f, t)| t - f).sum();
    health.set_not_ready(format!("rebuilding {to_rebuild} records"));
    let started = Instant::now();
    let (state, rebuilt) = {
        let k2 = kafka.clone();
        let bases2 = bases.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = Aggregates::default();
            for ((t, p), base) in &bases2 {
                st.start_at(t, *p, *base);
            }
            rebuild(&k2, &spans, &mut st, Duration::from_secs(60)).map(|n| (st, n))
        })
        .await
        .map_err(|e| AnalyticsError::Join(e.to_string()))??
    };
    metrics.rebuild_seconds.set(started.elapsed().as_secs_f64());
    tracing::info!(
        records = rebuilt,
        seconds = started.elapsed().as_secs_f64(),
        "state rebuilt"
    );
    if let Ok(mut info) = shared.info.write() {
        info.rebuilt_records = rebuilt;
        for ((t, p), b) in &bases {
            info.started_from
                .entry(t.clone())
                .or_default()
                .insert(p.to_string(), *b);
        }
    }
    if let Ok(mut s) = shared.state.write() {
        *s = state;
    }

    let consumer: StreamConsumer = kafka
        .consumer(GROUP_ANALYTICS, "analytics-service")
        .create()?;
    // The DLQ's producer lives as long as the session, like the consumer: a client that
    // failed fatally is replaced with the session.
    let producer: FutureProducer = kafka.producer("analytics-service").create()?;
    consumer.subscribe(&TOPICS)?;
    health.set_ready("consuming");
    // Ready while Kafka answers (a consumer with nothing to read would not notice it gone).
    let probe_token = token.child_token();
    let _probe_stops = probe_token.clone().drop_guard();
    tokio::spawn(kafka::probe_reachable(producer.clone(), probe_token, {
        let health = health.clone();
        move |error| match error {
            None => health.set_ready("consuming"),
            Some(e) => health.set_not_ready(format!("Kafka unreachable: {e}")),
        }
    }));

    let mut ticker = tokio::time::interval(commit_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = false;
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => {
                dirty |= skip_to_positions(&consumer, shared);
                if dirty {
                    dirty = !commit(&consumer, shared, &bases, health);
                }
                if let Some(f) = kafka::fatal(consumer.client()).or_else(|| kafka::fatal(producer.client())) {
                    return Err(AnalyticsError::Fatal(f));
                }
            }
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    if let Err(e) = handle(&m, shared, dlq, &producer, metrics).await {
                        // Not committed past: the next session reads it again.
                        consumer.unsubscribe();
                        return Err(e);
                    }
                    dirty = true;
                    health.set_ready("consuming");
                }
                Err(e) => {
                    if let Some(f) = kafka::fatal(consumer.client()) {
                        return Err(AnalyticsError::Fatal(f));
                    }
                    health.set_not_ready(format!("Kafka: {e}"));
                    tracing::warn!(error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    // Shutdown: commit what was applied, then leave the group.
    commit(&consumer, shared, &bases, health);
    consumer.unsubscribe();
    tracing::info!("analytics consumer stopped");
    Ok(())
}

async fn handle(
    m: &BorrowedMessage<'_>,
    shared: &Shared,
    dlq: &Dlq,
    producer: &FutureProducer,
    metrics: &AnalyticsMetrics,
) -> Result<(), AnalyticsError> {
    let already = shared
        .state
        .read()
        .ok()
        .and_then(|s| s.next_offset(m.topic(), m.partition()))
        .unwrap_or(0);
    if m.offset() < already {
        // Redelivered after a rebalance: already counted.
        return Ok(());
    }
    let started = Instant::now();
    match decode_on(m.topic(), m.payload().unwrap_or_default()) {
        Ok(event) => {
            if let Ok(mut s) = shared.state.write() {
                s.apply(m.topic(), m.partition(), m.offset(), &event);
                metrics.observe(m.topic(), &s);
            }
            metrics.applied(started.elapsed());
        }
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
fn skip_to_positions(consumer: &StreamConsumer, shared: &Shared) -> bool {
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
fn commit(consumer: &StreamConsumer, shared: &Shared, bases: &Bases, health: &Health) -> bool {
    let tpl = match shared.state.read() {
        Ok(s) => commit_list(&s, bases),
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
