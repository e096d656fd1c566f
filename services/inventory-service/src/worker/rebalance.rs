//! Partition ownership as the group protocol tells it: the rebalance callbacks mark an
//! assigned partition stale (its ledger must be rebuilt before any of its orders is
//! decided) and drop a revoked partition's ledger at once; readiness follows from it; and
//! leaving the group at the end of a session.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderflow_events::TOPIC_ORDERS;
use orderflow_runtime::Health;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::ClientContext;

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

/// State shared by the rebalance callbacks, the loop, the Kafka probe and `/readyz`.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) ownership: Mutex<Ownership>,
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
}

impl ClientContext for InventoryContext {}

impl ConsumerContext for InventoryContext {
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
pub(super) fn close_consumer(consumer: StreamConsumer<InventoryContext>, within: Duration) {
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
}
