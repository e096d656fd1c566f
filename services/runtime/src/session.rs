//! The skeleton of one Kafka session of a consuming service (inventory's decisions,
//! analytics' counts), run again and again by [`crate::supervise::sessions`]:
//!
//! 1. [`connect`]: wait for Kafka (as long as it takes) and create the topics;
//! 2. the service opens its group consumer and a producer;
//! 3. [`consume`]: a probe keeps `/readyz` honest while the loop hands each record to the
//!    service's [`Handler`], and a tick between them, until the token is cancelled (`Ok`),
//!    the handler fails, or a client fails for good ([`ClientFailed`]: a fatal error, or
//!    an assigned partition that never starts fetching, [`crate::fetch_watch`]);
//! 4. the service finishes (commits, aborts, leaves the group) as its outcome requires.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, Producer};
use thiserror::Error;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::fetch_watch::{Watched, STALL_AFTER};
use crate::{kafka, topics, Health, KafkaConfig};

/// How long the loop waits after a consume error before it receives again. Short: librdkafka
/// queues an error per failed connection attempt while a broker is gone, and the loop must
/// get through that queue quickly once the broker is back (at half a second
/// per error, 133 queued errors held inventory for over a minute after the broker was back). Its own
/// reconnect back-off already paces the errors; this only keeps a storm from spinning.
pub const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// How often the same consume error is logged while it repeats.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

/// How often the loop asks the [`crate::fetch_watch`] whether an assigned partition stalled:
/// at the end of a pass (a tick, an error, or every [`CHECK_EVERY_PASSES`]-th with records),
/// at most this often, so a stall is caught under steady traffic on the other partitions as
/// well as when idle.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// In a run of passes that brought records (a record for analytics, a batch for inventory),
/// the loop looks for a fatal error and a stall after every this many (after a tick or an
/// error at once): each look reads the clock and asks librdkafka twice, which was a measured
/// share of analytics' replay at a record per pass.
const CHECK_EVERY_PASSES: u32 = 64;

/// A Kafka client failed for good (librdkafka's fatal error: a consumer fenced as a static
/// member, an idempotent producer whose sequence a restarted broker no longer knows). The
/// session ends; the next one opens new clients, so the service recovers.
#[derive(Debug, Error)]
#[error("{0}; new Kafka clients take over")]
pub struct ClientFailed(pub String);

/// When a session's [`Handler::tick`] runs.
#[derive(Debug, Clone, Copy)]
pub enum Tick {
    /// After this long without a record (inventory: rebuild what was just assigned).
    Idle(Duration),
    /// Every this long, records or not (analytics: commit what was applied).
    Every(Duration),
}

/// What a service does in its session's loop.
pub trait Handler<C: ConsumerContext + 'static> {
    type Error: From<ClientFailed>;

    /// A record arrived. A handler that works in batches takes more from `consumer`.
    fn message(
        &mut self,
        consumer: &StreamConsumer<C>,
        m: BorrowedMessage<'_>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The [`Tick`] came.
    fn tick(
        &mut self,
        consumer: &StreamConsumer<C>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Receiving failed (the clients still work): say so, e.g. in `/readyz`. The loop
    /// receives again after [`ERROR_PAUSE`].
    fn consume_error(&mut self, e: &KafkaError);
}

/// Wait for Kafka as long as it takes, `/readyz` saying so meanwhile; locally the topics
/// are created then (under Strimzi they exist already). `Ok(false)`: cancelled first.
pub async fn connect(
    kafka: &KafkaConfig,
    health: &Health,
    token: &CancellationToken,
) -> Result<bool, topics::TopicError> {
    health.set_not_ready("connecting to Kafka");
    topics::connect(kafka, health, token).await
}

/// Run the session's loop (see the module docs). `producer` is the session's producer: the
/// probe asks the broker for metadata through it every 2 s and hands each outcome to
/// `probe_report` (`None`: Kafka answered), because a consumer with nothing to read does
/// not notice a broker that is gone. The probe is stopped before this returns.
pub async fn consume<C, H>(
    consumer: &StreamConsumer<C>,
    producer: &FutureProducer,
    token: &CancellationToken,
    tick: Tick,
    probe_report: impl FnMut(Option<String>) + Send + 'static,
    handler: &mut H,
) -> Result<(), H::Error>
where
    C: ConsumerContext + Watched + 'static,
    H: Handler<C>,
{
    let probe_token = token.child_token();
    let probe = tokio::spawn(kafka::probe_reachable(
        producer.clone(),
        probe_token.clone(),
        probe_report,
    ));
    let outcome = run_loop(consumer, producer, token, tick, handler).await;
    probe_token.cancel();
    let _ = probe.await;
    outcome
}

async fn run_loop<C, H>(
    consumer: &StreamConsumer<C>,
    producer: &FutureProducer,
    token: &CancellationToken,
    tick: Tick,
    handler: &mut H,
) -> Result<(), H::Error>
where
    C: ConsumerContext + Watched + 'static,
    H: Handler<C>,
{
    let mut errors = ErrorLog::default();
    let mut watched = Instant::now();
    let mut every = match tick {
        Tick::Every(d) => {
            let mut i = tokio::time::interval(d);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Some(i)
        }
        Tick::Idle(_) => None,
    };
    let mut passes_unchecked = 0u32;
    loop {
        let ticked = async {
            match (every.as_mut(), tick) {
                (Some(i), _) => {
                    i.tick().await;
                }
                (None, Tick::Idle(d) | Tick::Every(d)) => tokio::time::sleep(d).await,
            }
        };
        tokio::select! {
            biased;
            _ = token.cancelled() => return Ok(()),
            _ = ticked => handler.tick(consumer).await?,
            m = consumer.recv() => match m {
                Ok(m) => {
                    handler.message(consumer, m).await?;
                    passes_unchecked += 1;
                    if passes_unchecked < CHECK_EVERY_PASSES {
                        continue;
                    }
                }
                Err(e) => {
                    failed(consumer, producer)?;
                    let text = e.to_string();
                    if let Some(repeated) = errors.log(&text, Instant::now()) {
                        tracing::warn!(error = %text, repeated, "consume error");
                    }
                    handler.consume_error(&e);
                    tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
            },
        }
        passes_unchecked = 0;
        failed(consumer, producer)?;
        let now = Instant::now();
        if now.duration_since(watched) >= WATCH_EVERY {
            watched = now;
            stalled(consumer, now)?;
        }
    }
}

/// [`ClientFailed`] when an assigned partition has not started fetching for
/// [`STALL_AFTER`] ([`crate::fetch_watch`]): new clients, a new assignment.
fn stalled<C: ConsumerContext + Watched>(
    consumer: &StreamConsumer<C>,
    now: Instant,
) -> Result<(), ClientFailed> {
    match consumer.context().fetch_watch().stalled(now, STALL_AFTER) {
        Some(why) => Err(ClientFailed(why)),
        None => Ok(()),
    }
}

/// [`ClientFailed`] when the consumer or the producer had a fatal error.
fn failed<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    producer: &FutureProducer,
) -> Result<(), ClientFailed> {
    match kafka::fatal(consumer.client()).or_else(|| kafka::fatal(producer.client())) {
        Some(reason) => Err(ClientFailed(reason)),
        None => Ok(()),
    }
}

/// Which consume errors are logged: each kind at once, then at most every
/// [`ERROR_LOG_EVERY`] while it repeats, with how often it came meanwhile (a broker that is
/// gone brings two kinds in turn: transport failure, all brokers down).
#[derive(Debug, Default)]
struct ErrorLog {
    seen: HashMap<String, (Instant, u64)>,
}

impl ErrorLog {
    /// Kinds of error remembered; past this many, the oldest memory is dropped.
    const KINDS: usize = 16;

    /// `Some(times it came since it was last logged)`: log it now.
    fn log(&mut self, error: &str, now: Instant) -> Option<u64> {
        if let Some((at, repeated)) = self.seen.get_mut(error) {
            if now.duration_since(*at) < ERROR_LOG_EVERY {
                *repeated += 1;
                return None;
            }
            let n = std::mem::take(repeated);
            *at = now;
            return Some(n);
        }
        if self.seen.len() >= Self::KINDS {
            self.seen.clear();
        }
        self.seen.insert(error.to_string(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_logged_every_few_seconds_with_its_count() {
        let t0 = Instant::now();
        let mut log = ErrorLog::default();
        assert_eq!(log.log("all brokers down", t0), Some(0));
        for i in 1..=9 {
            assert_eq!(
                log.log("all brokers down", t0 + Duration::from_millis(100 * i)),
                None
            );
        }
        // another kind is logged at once, and does not reset the first one's count
        assert_eq!(log.log("transport failure", t0), Some(0));
        assert_eq!(
            log.log("transport failure", t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(log.log("all brokers down", t0 + ERROR_LOG_EVERY), Some(9));
        assert_eq!(log.log("all brokers down", t0 + ERROR_LOG_EVERY), None);
    }
}
