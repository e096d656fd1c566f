//! Bounded duplicate detection by order id: the ids of the orders decided whose event time
//! (`ts`) is within the idempotency window of now (`IDEMPOTENCY_WINDOW_MS`, 24 h by
//! default). Older ids are evicted as time passes, so memory holds one window of orders,
//! not the partition's history. Redeliveries need no id at all (they are recognised by
//! their `orders` offset, see [`super`]); this catches an order re-sent upstream under the
//! same `order_id`, at a new offset, as long as its event time is within the window.
//!
//! The ids are kept in the order they were decided (a queue), and the oldest are evicted
//! while their event time is before the window. Event times mostly grow in that order, so
//! that is nearly every id out of the window; an id placed earlier than one decided before
//! it waits behind it in memory, but [`IdempotencyWindow::contains`] compares its event
//! time with the window, so what is "within the window" is exact either way. (A queue
//! instead of a set ordered by event time: a million ids were inserted about twice as
//! fast, and each takes 28 bytes there instead of a tree's node share.)

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// The default window: 24 hours.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Order ids of the decisions within the window, evicted by event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyWindow {
    span: TimeDelta,
    /// Each id's event time (the latest, for an id inserted again).
    ids: HashMap<Uuid, DateTime<Utc>>,
    /// `(ts, id)` in the order inserted.
    queue: VecDeque<(DateTime<Utc>, Uuid)>,
    /// The window's start at the last [`IdempotencyWindow::evict`].
    horizon: DateTime<Utc>,
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
            queue: VecDeque::new(),
            horizon: DateTime::<Utc>::MIN_UTC,
        }
    }

    /// The oldest event time the window holds at `now`.
    pub fn start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.span)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Forget the ids older than the window at `now` (those not held back in memory by a
    /// newer one decided before them).
    pub fn evict(&mut self, now: DateTime<Utc>) {
        let start = self.start(now);
        self.horizon = self.horizon.max(start);
        while let Some(&(ts, id)) = self.queue.front() {
            if ts >= self.horizon {
                break;
            }
            self.queue.pop_front();
            // an id inserted again later stays, with its later time
            if self.ids.get(&id) == Some(&ts) {
                self.ids.remove(&id);
            }
        }
    }

    /// Remember `id`, of an order placed at `ts`, if that is within the window at `now`.
    pub fn insert(&mut self, id: Uuid, ts: DateTime<Utc>, now: DateTime<Utc>) {
        self.evict(now);
        if ts < self.horizon {
            return;
        }
        self.ids.insert(id, ts);
        self.queue.push_back((ts, id));
    }

    /// Whether `id` was decided with an event time within the window (as of the last
    /// [`IdempotencyWindow::evict`] or [`IdempotencyWindow::insert`]).
    pub fn contains(&self, id: &Uuid) -> bool {
        self.ids.get(id).is_some_and(|ts| *ts >= self.horizon)
    }

    /// How many ids the window keeps in memory (those within it, and the few older ones
    /// behind a newer one).
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

        /// Ids inserted again (from a small pool), with event times in any order: an id is
        /// within the window when the event time of its last remembered insert is, and the
        /// memory holds no id that was never within it.
        #[test]
        fn an_id_inserted_again_keeps_its_last_time(
            events in proptest::collection::vec((0usize..12, 0i64..1000, 0i64..50), 1..300),
            span in 1u64..200,
        ) {
            let pool: Vec<Uuid> = (0..12).map(|_| Uuid::new_v4()).collect();
            let mut w = IdempotencyWindow::new(Duration::from_secs(span));
            let mut last: HashMap<Uuid, i64> = HashMap::new();
            let mut now = 0i64;
            for (i, ts, step) in events {
                now += step;
                w.insert(pool[i], at(ts), at(now));
                if ts >= now - span as i64 {
                    last.insert(pool[i], ts);
                }
            }
            w.evict(at(now));
            for id in &pool {
                let within = last.get(id).is_some_and(|ts| *ts >= now - span as i64);
                prop_assert_eq!(w.contains(id), within);
            }
            prop_assert!(w.len() <= last.len());
        }
    }
}
