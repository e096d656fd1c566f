//! Partition ownership as the group protocol tells it: the rebalance callbacks mark an
//! assigned partition stale (its ledger must be rebuilt before any of its orders is
//! decided) and drop a revoked partition's ledger at once, but only once the batches in
//! flight are committed ([`TailGate`]); readiness follows from it; and leaving the group at
//! the end of a session.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use orderflow_events::TOPIC_ORDERS;
use orderflow_runtime::fetch_watch::{FetchWatch, Watched};
use orderflow_runtime::Health;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Statistics};

use super::ahead::LogEnds;
use super::Ledgers;
use crate::ready::{self, Snapshot};

/// Partition ownership as the group protocol tells it.
#[derive(Debug, Default)]
pub(super) struct Ownership {
    /// `None` until the first assignment.
    pub(super) assigned: Option<BTreeSet<i32>>,
    /// Assigned since their ledger was last rebuilt: must be rebuilt before deciding.
    pub(super) stale: BTreeSet<i32>,
}

/// How many batches' tails (their acknowledgements, ledger records and commits) are in flight
/// while the loop goes on ([`super::tail`]). A revoke waits here until none is: the
/// partitions are given up only once every batch decided is committed (or failed), as when
/// the loop was strictly one batch at a time, so their next owner reads a changelog to which
/// nothing of this replica is still on its way.
#[derive(Debug, Default)]
pub(super) struct TailGate {
    busy: Mutex<usize>,
    idle: Condvar,
}

impl TailGate {
    /// A tail is about to be spawned; [`TailGate::done`] when it ends, however it ends.
    pub(super) fn start(&self) {
        if let Ok(mut b) = self.busy.lock() {
            *b += 1;
        }
    }

    pub(super) fn done(&self) {
        if let Ok(mut b) = self.busy.lock() {
            *b = b.saturating_sub(1);
        }
        self.idle.notify_all();
    }

    /// Tails in flight now.
    pub(super) fn in_flight(&self) -> usize {
        self.busy.lock().map(|b| *b).unwrap_or(0)
    }

    /// Block until no tail is in flight, at most `bound`; `false`: some still are.
    pub(super) fn wait_idle(&self, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        let Ok(mut busy) = self.busy.lock() else {
            return false;
        };
        while *busy > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            busy = match self.idle.wait_timeout(busy, left) {
                Ok((b, _)) => b,
                Err(_) => return false,
            };
        }
        true
    }
}

/// The most a revoke waits for the batches in flight: a tail's own bounds (acknowledgements,
/// ledger records, commit) together, with a margin (the tails of a chain overlap).
const TAIL_WAIT: Duration = Duration::from_secs(240);

/// State shared by the rebalance callbacks, the loop, the Kafka probe and `/readyz`.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) ownership: Mutex<Ownership>,
    pub(super) tail: Arc<TailGate>,
    /// With transactions: where each partition's next decision lands (`ahead`).
    pub(super) log_ends: LogEnds,
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

    /// Some assigned partition's ledger is still to be rebuilt.
    pub(super) fn has_stale(&self) -> bool {
        self.ownership
            .lock()
            .map(|o| !o.stale.is_empty())
            .unwrap_or(true)
    }

    pub(super) fn set_kafka_error(&self, e: Option<String>) {
        if let Ok(mut k) = self.kafka_error.lock() {
            *k = e;
        }
    }

    /// The session ends: not ready from now on.
    pub(super) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(super) fn publish(&self, health: &Health) {
        match ready::verdict(&self.snapshot()) {
            Ok(detail) => health.set_ready(detail),
            Err(reason) => health.set_not_ready(reason),
        }
    }
}

pub(super) struct InventoryContext {
    pub(super) shared: Arc<Shared>,
    pub(super) ledgers: Ledgers,
    /// Assigned partitions that do not start fetching end the session (see the runtime's
    /// `fetch_watch`).
    pub(super) watch: FetchWatch,
}

impl ClientContext for InventoryContext {
    fn stats(&self, statistics: Statistics) {
        self.watch.observe_stats(&statistics);
    }
}

impl Watched for InventoryContext {
    fn fetch_watch(&self) -> &FetchWatch {
        &self.watch
    }
}

impl ConsumerContext for InventoryContext {
    /// A revoke first lets the batches in flight finish (see [`TailGate`]). This runs inside
    /// the loop's `recv()`, on an async worker: `block_in_place` hands that worker's other
    /// tasks (the tail among them) to another thread meanwhile.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let gate = &self.shared.tail;
            let (in_flight, t0) = (gate.in_flight(), Instant::now());
            if !tokio::task::block_in_place(|| gate.wait_idle(TAIL_WAIT)) {
                tracing::error!(
                    seconds = TAIL_WAIT.as_secs(),
                    "the batches in flight did not finish before the revoke; their partitions are given up anyway"
                );
            } else if in_flight > 0 {
                tracing::info!(
                    batches = in_flight,
                    waited_ms = t0.elapsed().as_millis() as u64,
                    "revoke: waited for the batches in flight to be committed"
                );
            }
        }
    }

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

/// How long closing the consumer (leaving the group) may take at shutdown.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Close the consumer: it leaves the group (unless `GROUP_INSTANCE_ID` makes it a static
/// member), so its partitions move to the other replicas at once. The close runs on its own
/// thread and is abandoned after `within` (a coordinator stuck in a rebalance must not keep
/// a stopping process alive; the member then expires after `session.timeout.ms`).
pub(super) fn close_consumer(consumer: Arc<StreamConsumer<InventoryContext>>, within: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_revoke_waits_for_the_tail_in_flight() {
        let gate = Arc::new(TailGate::default());
        assert!(gate.wait_idle(Duration::ZERO), "idle: no wait");
        gate.start();
        gate.start();
        assert_eq!(gate.in_flight(), 2);
        gate.done();
        assert!(
            !gate.wait_idle(Duration::from_millis(20)),
            "one is still in flight"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || tx.send(gate.wait_idle(Duration::from_secs(30))))
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "the revoke still waits while the tail is in flight"
        );
        gate.done();
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(true));
        waiter.join().unwrap().unwrap();
    }
}
