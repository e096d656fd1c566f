//! Generating the orders of a bulk run: items drawn from a menu, quantities 1-3, users from
//! a pool, event times either "now" or spread evenly over the past `spread_minutes`
//! (increasing, so record timestamps grow along each partition like real traffic).

use chrono::{DateTime, Duration, Utc};
use orderflow_events::OrderPlaced;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How many users a bulk run's orders come from.
const USERS: usize = 500;

/// A plan for `count` orders; [`BulkPlan::order`] makes the i-th one on demand so that a
/// million-order run never holds a million orders in memory.
pub struct BulkPlan {
    count: u64,
    items: Vec<String>,
    /// `user-0` to `user-499`, made once rather than formatted for each order
    users: Vec<String>,
    start: DateTime<Utc>,
    step_ms: f64,
    rng: StdRng,
}

impl BulkPlan {
    pub fn new(
        count: u64,
        items: Vec<String>,
        spread_minutes: u32,
        now: DateTime<Utc>,
        seed: u64,
    ) -> Self {
        let spread_ms = i64::from(spread_minutes) * 60_000;
        let step_ms = if count > 0 {
            spread_ms as f64 / count as f64
        } else {
            0.0
        };
        Self {
            count,
            items,
            users: (0..USERS).map(|u| format!("user-{u}")).collect(),
            start: now - Duration::milliseconds(spread_ms),
            step_ms,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `i`-th order (call with increasing `i`).
    pub fn order(&mut self, i: u64) -> OrderPlaced {
        let item = &self.items[self.rng.random_range(0..self.items.len())];
        let qty = self.rng.random_range(1..=3);
        let user = self.users[self.rng.random_range(0..USERS)].clone();
        let ts = self.start + Duration::milliseconds((i as f64 * self.step_ms) as i64);
        OrderPlaced::new(item.as_str(), qty, user, ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn spreads_event_time_evenly_and_increasing() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let mut plan = BulkPlan::new(600, vec!["a".into(), "b".into()], 10, now, 1);
        let orders: Vec<_> = (0..600).map(|i| plan.order(i)).collect();
        assert_eq!(orders[0].ts, now - Duration::minutes(10));
        assert!(orders.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(orders.last().unwrap().ts < now);
        // 60 orders per minute over 10 minutes
        let first_minute = orders
            .iter()
            .filter(|o| o.ts < now - Duration::minutes(9))
            .count();
        assert_eq!(first_minute, 60);
        assert!(orders
            .iter()
            .all(|o| (1..=3).contains(&o.qty) && (o.item == "a" || o.item == "b")));
    }

    #[test]
    fn no_spread_means_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let mut plan = BulkPlan::new(3, vec!["a".into()], 0, now, 1);
        assert!((0..3).all(|i| plan.order(i).ts == now));
    }
}
