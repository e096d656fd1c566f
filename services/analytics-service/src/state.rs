//! The analytics state: counts derived from recorded events, bucketed by event time.
//! Pure: no Kafka here, so every rule is unit-tested. How the state is saved to and
//! restored from `analytics-snapshots`: [`crate::snapshot`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_events::{CommitMark, Event};
use serde::Serialize;

/// The start of the minute `ts` falls in (event-time window arithmetic): whole seconds
/// rounded down to a multiple of 60 (what chrono's `duration_trunc` by a minute gives, for
/// any time and not only those within its nanosecond range, at a fraction of its cost).
pub fn minute_start(ts: DateTime<Utc>) -> DateTime<Utc> {
    let secs = ts.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(60), 0).unwrap_or(ts)
}

/// `failed / (reserved + failed)`, 0 when nothing was decided.
pub fn failure_rate(reserved: u64, failed: u64) -> f64 {
    let decided = reserved + failed;
    if decided == 0 {
        0.0
    } else {
        failed as f64 / decided as f64
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MinuteCounts {
    pub(crate) orders: u64,
    pub(crate) reserved: u64,
    pub(crate) failed: u64,
    pub(crate) restocks: u64,
    pub(crate) restocked_units: u64,
    pub(crate) restocks_refused: u64,
}

/// Topic -> partition -> offset.
pub type Positions = BTreeMap<String, BTreeMap<i32, i64>>;

/// Counts of one analytics run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Aggregates {
    pub(crate) orders_total: u64,
    pub(crate) reserved_total: u64,
    pub(crate) failed_total: u64,
    /// Restocks recorded by inventory: applied, their units, refused (not orders: the
    /// per-minute order counts and the failure rate ignore them).
    pub(crate) restocks_total: u64,
    pub(crate) restocked_units_total: u64,
    pub(crate) restocks_refused_total: u64,
    pub(crate) minutes: BTreeMap<DateTime<Utc>, MinuteCounts>,
    /// Next offset to read per (topic, partition): what has been applied.
    pub(crate) consumed: Positions,
    /// Minutes changed since the last snapshot flush.
    pub(crate) dirty: BTreeSet<DateTime<Utc>>,
    /// Minutes restored from a snapshot record written ahead of its checkpoint: a record
    /// below these positions whose event falls in the minute is already counted there
    /// (the restore rule of [`crate::snapshot`]).
    pub(crate) floors: BTreeMap<DateTime<Utc>, Positions>,
}

/// One entry of `orders_per_minute`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MinuteView {
    pub minute: String,
    pub orders: u64,
    pub failed: u64,
    pub reserved: u64,
}

/// The `GET /api/metrics` document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricsView {
    pub orders_total: u64,
    pub reserved_total: u64,
    pub failed_total: u64,
    pub failure_rate: f64,
    pub restocks_total: u64,
    pub restocked_units_total: u64,
    pub restocks_refused_total: u64,
    pub orders_per_minute: Vec<MinuteView>,
    pub consumed: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Aggregates {
    /// Apply the event read at `topic`/`partition`/`offset`.
    pub fn apply(&mut self, topic: &str, partition: i32, offset: i64, event: &Event) {
        let minute = minute_start(match event {
            Event::OrderPlaced(o) => o.ts,
            Event::InventoryReserved(d) | Event::InventoryFailed(d) => d.ts,
            Event::StockRestockRequested(r) => r.ts,
            Event::InventoryRestocked(r) | Event::InventoryRestockRefused(r) => r.ts,
        });
        let floor = self
            .floors
            .get(&minute)
            .and_then(|f| f.get(topic))
            .and_then(|f| f.get(&partition))
            .copied()
            .unwrap_or(0);
        // A restock request is counted when inventory records its outcome, like an order's
        // decision; restocks are kept per minute too, so the snapshots carry them.
        let counted = !matches!(event, Event::StockRestockRequested(_));
        if offset >= floor && counted {
            let m = self.minutes.entry(minute).or_default();
            match event {
                Event::OrderPlaced(_) => {
                    self.orders_total += 1;
                    m.orders += 1;
                }
                Event::InventoryReserved(_) => {
                    self.reserved_total += 1;
                    m.reserved += 1;
                }
                Event::InventoryFailed(_) => {
                    self.failed_total += 1;
                    m.failed += 1;
                }
                Event::InventoryRestocked(r) => {
                    self.restocks_total += 1;
                    self.restocked_units_total += u64::from(r.qty);
                    m.restocks += 1;
                    m.restocked_units += u64::from(r.qty);
                }
                Event::InventoryRestockRefused(_) => {
                    self.restocks_refused_total += 1;
                    m.restocks_refused += 1;
                }
                Event::StockRestockRequested(_) => {}
            }
            self.dirty.insert(minute);
        }
        self.advance(topic, partition, offset);
    }

    /// Move past a record without counting it (a record sent to the DLQ).
    pub fn advance(&mut self, topic: &str, partition: i32, offset: i64) {
        // the topic's name is copied only the first time (once per record was a measured cost)
        let partitions = match self.consumed.get_mut(topic) {
            Some(p) => p,
            None => self.consumed.entry(topic.to_string()).or_default(),
        };
        let next = partitions.entry(partition).or_insert(0);
        *next = (*next).max(offset + 1);
    }

    /// Set where reading starts on a partition (its base) before anything is applied.
    pub fn start_at(&mut self, topic: &str, partition: i32, offset: i64) {
        self.consumed
            .entry(topic.to_string())
            .or_default()
            .insert(partition, offset);
    }

    /// Next offset to read on `topic`/`partition`, if known.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.consumed
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied()
    }

    /// All known (topic, partition, next offset).
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.consumed
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| (t.clone(), *p, *o)))
            .collect()
    }

    pub fn orders_total(&self) -> u64 {
        self.orders_total
    }

    pub fn failure_rate(&self) -> f64 {
        failure_rate(self.reserved_total, self.failed_total)
    }

    pub fn view(&self) -> MetricsView {
        MetricsView {
            orders_total: self.orders_total,
            reserved_total: self.reserved_total,
            failed_total: self.failed_total,
            failure_rate: failure_rate(self.reserved_total, self.failed_total),
            restocks_total: self.restocks_total,
            restocked_units_total: self.restocked_units_total,
            restocks_refused_total: self.restocks_refused_total,
            // a minute that saw only restocks is not a minute of orders
            orders_per_minute: self
                .minutes
                .iter()
                .filter(|(_, c)| c.orders + c.reserved + c.failed > 0)
                .map(|(m, c)| MinuteView {
                    minute: m.to_rfc3339_opts(SecondsFormat::Secs, true),
                    orders: c.orders,
                    failed: c.failed,
                    reserved: c.reserved,
                })
                .collect(),
            consumed: self
                .consumed
                .iter()
                .map(|(t, ps)| {
                    (
                        t.clone(),
                        ps.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// Where the state of a partition starts, given what the group has committed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Our own commit: rebuild `[base, committed)` from the log, then consume from `committed`.
    Resume { base: i64, committed: i64 },
    /// Committed by someone else (an offset reset): start empty at `committed`.
    Fresh { at: i64 },
    /// Never committed: start empty at the earliest offset.
    Earliest { low: i64 },
}

/// Decide how to start a partition from the log (when its state is not restored from a
/// snapshot: [`crate::snapshot::begin`]), from its committed offset, commit metadata and low
/// watermark. Analytics commits with [`CommitMark::AnalyticsRun`] (before its snapshots,
/// [`CommitMark::AnalyticsBase`]): where its state began.
pub fn start_for(committed: Option<i64>, metadata: &str, low_watermark: i64) -> Start {
    match committed {
        None => Start::Earliest { low: low_watermark },
        Some(c) => match CommitMark::of(metadata).and_then(|m| m.analytics_base()) {
            // Records before the low watermark are gone (retention): rebuild what is left.
            Some(base) if base <= c => Start::Resume {
                base: base.max(low_watermark).min(c),
                committed: c,
            },
            _ => Start::Fresh {
                at: c.max(low_watermark),
            },
        },
    }
}

/// Per-partition base offsets, kept for the commit metadata.
pub type Bases = HashMap<(String, i32), i64>;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use orderflow_events::OrderPlaced;

    fn base(b: i64) -> String {
        CommitMark::AnalyticsBase(b).to_string()
    }

    fn at(h: u32, m: u32, s: u32, ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap() + TimeDelta::milliseconds(ms)
    }

    #[test]
    fn minute_windows() {
        assert_eq!(minute_start(at(10, 5, 59, 999)), at(10, 5, 0, 0));
        assert_eq!(minute_start(at(10, 6, 0, 0)), at(10, 6, 0, 0));
        assert_eq!(minute_start(at(23, 59, 59, 999)), at(23, 59, 0, 0));
        let plus2 = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:05:30.5+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            minute_start(plus2),
            at(10, 5, 0, 0),
            "offsets normalise to UTC"
        );
    }

    #[test]
    fn a_minute_starts_where_chrono_truncates_by_a_minute() {
        use chrono::DurationRound;
        // before and after 1970, on and off minute boundaries, both ends of chrono's
        // nanosecond range
        let mut ms = -9_000_000_000_000i64;
        while ms < 9_000_000_000_000 {
            let ts = DateTime::from_timestamp_millis(ms).unwrap();
            assert_eq!(
                minute_start(ts),
                ts.duration_trunc(TimeDelta::minutes(1)).unwrap(),
                "{ts}"
            );
            ms += 7_919_999_977;
        }
        let ts = DateTime::from_timestamp_millis(-30_500).unwrap();
        assert_eq!(minute_start(ts).timestamp(), -60);
        // beyond chrono's nanoseconds (year 2262) a minute still starts on its minute
        let far = Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 59).unwrap();
        assert_eq!(
            minute_start(far),
            Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn failure_rate_edges() {
        assert_eq!(failure_rate(0, 0), 0.0);
        assert_eq!(failure_rate(3, 1), 0.25);
        assert_eq!(failure_rate(0, 5), 1.0);
    }

    #[test]
    fn counts_by_event_time_minute() {
        let mut a = Aggregates::default();
        let o1 = OrderPlaced::new("pizza", 1, "u", at(10, 0, 10, 0));
        let o2 = OrderPlaced::new("pizza", 1, "u", at(10, 0, 59, 999));
        let o3 = OrderPlaced::new("taco", 1, "u", at(10, 1, 0, 0));
        for (i, o) in [&o1, &o2, &o3].iter().enumerate() {
            a.apply("orders", 0, i as i64, &Event::OrderPlaced((*o).clone()));
        }
        // decided much later: still counted in the order's minute
        a.apply(
            "inventory-events",
            0,
            0,
            &o1.decide(None, at(11, 0, 0, 0)).into_event(),
        );
        a.apply(
            "inventory-events",
            0,
            1,
            &o3.decide(Some("insufficient stock".into()), at(11, 0, 0, 0))
                .into_event(),
        );
        let v = a.view();
        assert_eq!(
            (v.orders_total, v.reserved_total, v.failed_total),
            (3, 1, 1)
        );
        assert_eq!(v.failure_rate, 0.5);
        assert_eq!(v.orders_per_minute.len(), 2);
        assert_eq!(
            v.orders_per_minute[0],
            MinuteView {
                minute: "2026-11-22T10:00:00Z".into(),
                orders: 2,
                failed: 0,
                reserved: 1
            }
        );
        assert_eq!(
            v.orders_per_minute[1],
            MinuteView {
                minute: "2026-11-22T10:01:00Z".into(),
                orders: 1,
                failed: 1,
                reserved: 0
            }
        );
        assert_eq!(v.consumed["orders"]["0"], 3);
        assert_eq!(v.consumed["inventory-events"]["0"], 2);
    }

    #[test]
    fn restocks_are_counted_apart_from_orders() {
        let mut a = Aggregates::default();
        let o = OrderPlaced::new("pizza", 1, "u", at(10, 0, 10, 0));
        a.apply("orders", 0, 0, &Event::OrderPlaced(o.clone()));
        let r = orderflow_events::StockRestockRequested::new("pizza", 500, at(10, 0, 20, 0));
        a.apply("orders", 0, 1, &Event::StockRestockRequested(r.clone()));
        a.apply(
            "inventory-events",
            0,
            0,
            &o.decide(None, at(10, 0, 30, 0)).into_event(),
        );
        let at2 = at(10, 0, 40, 0);
        a.apply(
            "inventory-events",
            0,
            1,
            &r.decide(None, 2500, at2).into_event(),
        );
        let refused = r.decide(Some("unknown item".into()), 0, at2).into_event();
        a.apply("inventory-events", 0, 2, &refused);
        let v = a.view();
        assert_eq!(
            (v.orders_total, v.reserved_total, v.failed_total),
            (1, 1, 0)
        );
        assert_eq!(v.failure_rate, 0.0);
        assert_eq!(
            (
                v.restocks_total,
                v.restocked_units_total,
                v.restocks_refused_total
            ),
            (1, 500, 1)
        );
        assert_eq!(v.orders_per_minute.len(), 1);
        assert_eq!(v.orders_per_minute[0].orders, 1);
        assert_eq!(v.consumed["orders"]["0"], 2);
        assert_eq!(v.consumed["inventory-events"]["0"], 3);
    }

    #[test]
    fn rebuilding_a_prefix_then_continuing_equals_one_pass() {
        let events: Vec<Event> = (0..50)
            .map(|i| Event::OrderPlaced(OrderPlaced::new("x", 1, "u", at(10, i % 7, 0, 0))))
            .collect();
        let mut once = Aggregates::default();
        for (i, e) in events.iter().enumerate() {
            once.apply("orders", 0, i as i64, e);
        }
        // crash after 20 applied but only 12 committed: the restart rebuilds [0, 12) and consumes from 12
        let mut restarted = Aggregates::default();
        let (rebuilt, consumed) = events.split_at(12);
        for (i, e) in rebuilt.iter().enumerate() {
            restarted.apply("orders", 0, i as i64, e);
        }
        for (i, e) in consumed.iter().enumerate() {
            restarted.apply("orders", 0, (i + rebuilt.len()) as i64, e);
        }
        assert_eq!(once, restarted);
    }

    #[test]
    fn start_decisions() {
        assert_eq!(start_for(None, "", 0), Start::Earliest { low: 0 });
        assert_eq!(
            start_for(Some(40), &base(0), 0),
            Start::Resume {
                base: 0,
                committed: 40
            }
        );
        assert_eq!(
            start_for(Some(40), &base(10), 0),
            Start::Resume {
                base: 10,
                committed: 40
            }
        );
        assert_eq!(
            start_for(Some(40), &base(0), 5),
            Start::Resume {
                base: 5,
                committed: 40
            },
            "retention"
        );
        assert_eq!(
            start_for(Some(40), "orderflow.reset=2026-11-22T10:00:00.000Z", 0),
            Start::Fresh { at: 40 }
        );
        assert_eq!(start_for(Some(0), "", 0), Start::Fresh { at: 0 });
        assert_eq!(
            start_for(Some(40), &base(50), 0),
            Start::Fresh { at: 40 },
            "a base past the commit is not ours"
        );
        assert_eq!(
            start_for(Some(40), "orderflow.analytics.base=garbage", 0),
            Start::Fresh { at: 40 }
        );
        assert_eq!(
            start_for(Some(40), "orderflow.analytics.base=10 run=5f0c", 3),
            Start::Resume {
                base: 10,
                committed: 40
            },
            "a run's base, when its snapshot cannot be used"
        );
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(Aggregates::default().view()).unwrap();
        for k in [
            "orders_total",
            "reserved_total",
            "failed_total",
            "failure_rate",
            "restocks_total",
            "restocked_units_total",
            "restocks_refused_total",
            "orders_per_minute",
            "consumed",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
