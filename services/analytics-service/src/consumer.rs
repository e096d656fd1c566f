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
use orderflow_runtime::read::{self, ReadError, Span};
use orderflow_runtime::session::{self, ClientFailed, Handler, Tick};
use orderflow_runtime::{supervise, Health, KafkaConfig};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, DefaultConsumerContext, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
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
    /// Recovered: the next session opens new clients.
    #[error(transparent)]
    ClientFailed(#[from] ClientFailed),
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
    /// Spans to rebuild.
    rebuild: Vec<Span>,
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
                    p.rebuild.push(Span {
                        topic: c.topic,
                        partition: c.partition,
                        from: base,
                        to: committed,
                    });
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
    spans: &[Span],
    state: &mut Aggregates,
    timeout: Duration,
) -> Result<u64, AnalyticsError> {
    if spans.is_empty() {
        return Ok(0);
    }
    let reader: BaseConsumer = kafka.reader("analytics-rebuild").create()?;
    let n = read::read_to_end(&reader, spans, timeout, |m| {
        match decode_on(m.topic(), m.payload().unwrap_or_default()) {
            Ok(e) => state.apply(m.topic(), m.partition(), m.offset(), &e),
            Err(_) => state.advance(m.topic(), m.partition(), m.offset()),
        }
    })
    .map_err(|e| match e {
        ReadError::Kafka(e) => AnalyticsError::Kafka(e),
        ReadError::Stalled {
            topic,
            partition,
            end,
            ..
        } => AnalyticsError::RebuildStalled {
            reached: state.next_offset(&topic, partition).unwrap_or(-1),
            topic,
            partition,
            wanted: end,
        },
    })?;
    // The spans were read to their ends, including any transaction markers after their last
    // records: the state's next offsets are the spans' ends (the committed offsets).
    for s in spans {
        if s.to > 0 {
            state.advance(&s.topic, s.partition, s.to - 1);
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
    if !session::connect(kafka, health, token).await? {
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
    let to_rebuild: i64 = spans.iter().map(|s| s.to - s.from).sum();
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
    // failed for good is replaced with the session.
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
        bases: &bases,
        dirty: false,
    };
    let tick = Tick::Every(commit_every);
    session::consume(
        &consumer,
        &producer,
        token,
        tick,
        probe_report,
        &mut counting,
    )
    .await?;
    // Shutdown: commit what was applied, then leave the group.
    commit(&consumer, shared, &bases, health);
    consumer.unsubscribe();
    tracing::info!("analytics consumer stopped");
    Ok(())
}

/// The session's loop: each record counted once, the applied positions committed every
/// `COMMIT_INTERVAL_MS` with their base marks.
struct Counting<'a> {
    shared: &'a Shared,
    health: &'a Health,
    metrics: &'a AnalyticsMetrics,
    dlq: &'a Dlq,
    producer: &'a FutureProducer,
    bases: &'a Bases,
    /// Applied since the last commit that worked.
    dirty: bool,
}

impl Handler<DefaultConsumerContext> for Counting<'_> {
    type Error = AnalyticsError;

    async fn message(
        &mut self,
        consumer: &StreamConsumer,
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

    async fn tick(&mut self, consumer: &StreamConsumer) -> Result<(), AnalyticsError> {
        self.dirty |= skip_to_positions(consumer, self.shared);
        if self.dirty {
            self.dirty = !commit(consumer, self.shared, self.bases, self.health);
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
