//! Bounded duplicate detection by order id: the ids of the orders decided whose event time
//! (`ts`) is within the idempotency window of now (`IDEMPOTENCY_WINDOW_MS`, 24 h by
//! default). Older ids are evicted as time passes, so memory holds one window of orders,
//! not the partition's history. Redeliveries need no id at all (they are recognised by
//! their `orders` offset, see [`super`]); this catches an order re-sent upstream under the
//! same `order_id`, at a new offset, as long as its event time is within the window.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// The default window: 24 hours.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Order ids of the decisions within the window, evicted by event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyWindow {
    span: TimeDelta,
    ids: HashMap<Uuid, DateTime<Utc>>,
    by_time: BTreeSet<(DateTime<Utc>, Uuid)>,
}

impl Default for IdempotencyWindow {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl IdempotencyWindow {
    pub fn new(span: Duration) -> Self {
        Self {
            span: TimeDelta::from_std(span).unwrap_or(TimeDelta::MAX),
            ids: HashMap::new(),
            by_time: BTreeSet::new(),
        }
    }

    /// The oldest event time the window holds at `now`.
    pub fn start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.span)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Forget the ids older than the window at `now`.
    pub fn evict(&mut self, now: DateTime<Utc>) {
        let start = self.start(now);
        while let Some(&(ts, id)) = self.by_time.first() {
            if ts >= start {
                break;
            }
            self.by_time.pop_first();
            self.ids.remove(&id);
        }
    }

    /// Remember `id`, of an order placed at `ts`, if that is within the window at `now`.
    pub fn insert(&mut self, id: Uuid, ts: DateTime<Utc>, now: DateTime<Utc>) {
        self.evict(now);
        if ts < self.start(now) {
            return;
        }
        if let Some(old) = self.ids.insert(id, ts) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((ts, id));
    }

    /// Whether `id` was decided within the window.
    pub fn contains(&self, id: &Uuid) -> bool {
        self.ids.contains_key(id)
    }

    /// How many ids the window holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn ids_are_kept_for_the_window_then_forgotten() {
        let mut w = IdempotencyWindow::new(Duration::from_secs(60));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        w.insert(a, at(0), at(0));
        w.insert(b, at(30), at(30));
        assert!(w.contains(&a) && w.contains(&b));
        w.evict(at(60));
        assert!(w.contains(&a), "exactly at the window's edge: still in");
        w.evict(at(61));
        assert!(!w.contains(&a) && w.contains(&b));
        // An order placed before the window is not remembered at all.
        let old = Uuid::new_v4();
        w.insert(old, at(0), at(61));
        assert!(!w.contains(&old));
        assert_eq!(w.len(), 1);
    }

    proptest! {
        /// Whatever the order of event times, the window holds exactly the ids whose event
        /// time is within it: bounded by the window, not by how many were ever inserted.
        #[test]
        fn holds_exactly_the_ids_within_the_window(
            events in proptest::collection::vec((0i64..1000, 0i64..50), 1..300),
            span in 1u64..200,
        ) {
            let mut w = IdempotencyWindow::new(Duration::from_secs(span));
            let mut now = 0i64;
            let mut all = Vec::new();
            for (ts, step) in events {
                now += step;
                let id = Uuid::new_v4();
                w.insert(id, at(ts), at(now));
                all.push((id, ts));
            }
            w.evict(at(now));
            for (id, ts) in all {
                prop_assert_eq!(w.contains(&id), ts >= now - span as i64, "ts {} now {}", ts, now);
            }
        }
    }
}
