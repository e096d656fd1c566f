//! The snapshot rules without Kafka: a log of writes (key, value or tombstone) stands for
//! partition 0 of `analytics-snapshots`, a map for the group's commits.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use orderflow_events::{CommitMark, Event, OrderPlaced, SnapshotRecord};
use proptest::prelude::*;

use super::*;
use crate::state::{Aggregates, Positions};

const ORDERS: &str = "orders";
const EVENTS: &str = "inventory-events";

type Log = Vec<(String, Option<Vec<u8>>)>;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap() + TimeDelta::minutes(minute.into())
}

/// One record of the input: topic, partition, offset, event.
type Rec = (&'static str, i32, i64, Event);

/// `kinds`: per record (topic 0/1, partition 0/1, minute 0..6, failed?): offsets in order.
fn records(kinds: &[(bool, i32, u32, bool)]) -> Vec<Rec> {
    let mut next = std::collections::HashMap::new();
    kinds
        .iter()
        .map(|(decision, p, minute, failed)| {
            let topic = if *decision { EVENTS } else { ORDERS };
            let o = OrderPlaced::new("pizza", 1, "u", at(*minute) + TimeDelta::seconds(7));
            let e = if *decision {
                o.decide(failed.then(|| "insufficient stock".to_string()), at(9))
                    .into_event()
            } else {
                Event::OrderPlaced(o)
            };
            let off = next.entry((topic, *p)).or_insert(0i64);
            *off += 1;
            (topic, *p, *off - 1, e)
        })
        .collect()
}

fn empty_state() -> Aggregates {
    let mut a = Aggregates::default();
    for t in [ORDERS, EVENTS] {
        for p in 0..2 {
            a.start_at(t, p, 0);
        }
    }
    a
}

fn one_pass(recs: &[Rec]) -> Aggregates {
    let mut a = empty_state();
    for (t, p, o, e) in recs {
        a.apply(t, *p, *o, e);
    }
    a
}

fn write(log: &mut Log, flush: &Flush) {
    for w in &flush.before {
        log.push((w.key.clone(), w.value.as_ref().map(SnapshotRecord::encode)));
    }
    log.push((flush.checkpoint.key(), Some(flush.checkpoint.encode())));
}

fn restore(log: &[(String, Option<Vec<u8>>)], compact: bool) -> Restore {
    let mut entries: Vec<&(String, Option<Vec<u8>>)> = log.iter().collect();
    if compact {
        // What compaction may leave: the last record of each key, in log order.
        let last: std::collections::HashMap<&str, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), i))
            .collect();
        entries = entries
            .into_iter()
            .enumerate()
            .filter(|(i, (k, _))| last[k.as_str()] == *i)
            .map(|(_, e)| e)
            .collect();
    }
    let mut r = Restore::default();
    for (k, v) in entries {
        r.record(Some(k.as_bytes()), v.as_deref()).unwrap();
    }
    r
}

fn committed_list(commits: Option<&Positions>, metadata: &str) -> Vec<Committed> {
    let mut out = Vec::new();
    for t in [ORDERS, EVENTS] {
        for p in 0..2 {
            out.push(Committed {
                topic: t.to_string(),
                partition: p,
                offset: commits
                    .and_then(|c| c.get(t))
                    .and_then(|c| c.get(&p))
                    .copied(),
                metadata: metadata.to_string(),
                low: 0,
            });
        }
    }
    out
}

/// A restart: [`start`], the rebuild of its spans, then the group consumer from the
/// committed offsets, stepping over what is applied (as consumer.rs does).
fn restart(recs: &[Rec], committed: &[Committed], r: &Restore) -> (Started, Aggregates) {
    let started = start(committed, r, || "run-b".to_string());
    let mut state = started.state.clone();
    for span in &started.rebuild {
        for (t, p, o, e) in recs {
            if *t == span.topic && *p == span.partition && *o >= span.from && *o < span.to {
                state.apply(t, *p, *o, e);
            }
        }
    }
    for (t, p, o, e) in recs {
        let from = committed
            .iter()
            .find(|c| c.topic == *t && c.partition == *p)
            .and_then(|c| c.offset)
            .unwrap_or(0);
        if *o >= from && *o >= state.next_offset(t, *p).unwrap_or(0) {
            state.apply(t, *p, *o, e);
        }
    }
    (started, state)
}

fn run_mark(run: &str) -> String {
    CommitMark::AnalyticsRun {
        base: 0,
        run: run.into(),
    }
    .to_string()
}

#[test]
fn a_flushed_state_restores_to_itself() {
    let recs = records(&[
        (false, 0, 0, false),
        (false, 1, 1, false),
        (true, 0, 0, false),
        (true, 1, 1, true),
        (false, 0, 3, false),
    ]);
    let a = one_pass(&recs);
    let mut log = Log::new();
    write(&mut log, &a.flush("run-a", &BTreeSet::new(), at(10)));
    let r = restore(&log, false);
    let back = r.state_of("run-a").unwrap();
    assert_eq!(back.view(), a.view());
    assert!(back.floors.is_empty(), "nothing ahead of the checkpoint");
    assert_eq!(r.checkpoint().unwrap().minutes, 3);
    assert_eq!(
        r.state_of("other"),
        Err(RestoreError::NoCheckpoint("other".into()))
    );
}

#[test]
fn restocks_are_snapshotted_and_restored_with_the_minutes() {
    let mut recs = records(&[(false, 0, 0, false), (true, 0, 0, false)]);
    let req = orderflow_events::StockRestockRequested::new("pizza", 500, at(2));
    recs.push((ORDERS, 0, 1, Event::StockRestockRequested(req.clone())));
    recs.push((EVENTS, 0, 1, req.decide(None, 800, at(2)).into_event()));
    let refused = req.decide(Some("beyond MAX_STOCK".into()), 800, at(3));
    recs.push((EVENTS, 0, 2, refused.into_event()));
    let a = one_pass(&recs);
    let v = a.view();
    assert_eq!(
        (
            v.restocks_total,
            v.restocked_units_total,
            v.restocks_refused_total
        ),
        (1, 500, 1)
    );
    assert_eq!(
        (v.orders_total, v.reserved_total, v.failed_total),
        (1, 1, 0)
    );
    let mut log = Log::new();
    write(&mut log, &a.flush("run-a", &BTreeSet::new(), at(10)));
    let back = restore(&log, true).state_of("run-a").unwrap();
    assert_eq!(
        back.view(),
        v,
        "the restock counts come back from the snapshot"
    );
}

#[test]
fn a_flush_writes_only_changed_minutes_then_the_checkpoint() {
    let mut a = one_pass(&records(&[(false, 0, 0, false), (false, 0, 1, false)]));
    a.flushed();
    a.apply(ORDERS, 0, 2, &records(&[(false, 0, 1, false)])[0].3);
    let stale = BTreeSet::from([
        "2026-12-05T09:00:00Z".to_string(),
        "2026-12-05T10:01:00Z".to_string(),
    ]);
    let f = a.flush("run-a", &stale, at(10));
    let keys: Vec<(&str, bool)> = f
        .before
        .iter()
        .map(|w| (w.key.as_str(), w.value.is_some()))
        .collect();
    assert_eq!(
        keys,
        [
            ("2026-12-05T09:00:00Z", false),
            ("2026-12-05T10:01:00Z", true)
        ],
        "a tombstone for the stale minute the flush does not rewrite, then the changed minute"
    );
    let SnapshotRecord::SnapshotCheckpoint(c) = &f.checkpoint else {
        panic!("the checkpoint comes last")
    };
    assert_eq!((c.orders_total, c.minutes), (3, 2));
    assert_eq!(c.positions[ORDERS][&0], 3);
}

#[test]
fn begin_restores_only_the_run_every_commit_names() {
    let ours = committed_list(Some(&empty_state().consumed), &run_mark("r1"));
    assert_eq!(
        begin(&ours, Some("r1")),
        Begin::Snapshot { run: "r1".into() }
    );
    assert_eq!(
        begin(&ours, Some("r2")),
        Begin::Log,
        "another run's checkpoint"
    );
    assert_eq!(begin(&ours, None), Begin::Log, "no snapshot");
    let mut mixed = ours.clone();
    mixed[1].metadata = CommitMark::reset(at(0)).to_string();
    mixed[1].offset = Some(5);
    assert_eq!(begin(&mixed, Some("r1")), Begin::Log, "a reset partition");
    mixed[1].metadata = CommitMark::AnalyticsBase(0).to_string();
    assert_eq!(
        begin(&mixed, Some("r1")),
        Begin::Log,
        "before the snapshots"
    );
    let none = committed_list(None, "");
    assert_eq!(begin(&none, Some("r1")), Begin::Log, "nothing committed");
}

#[test]
fn resume_raises_positions_to_the_low_watermark_and_reads_what_is_committed_past() {
    let mut a = one_pass(&records(&[(false, 0, 0, false); 4]));
    let mut committed = committed_list(None, &run_mark("r1"));
    committed[0].offset = Some(4);
    committed[0].low = 2;
    committed[1].offset = Some(3);
    committed[1].low = 3; // snapshot at 0 on orders/1: [0, 3) is gone
    committed[2].offset = Some(6); // committed past the snapshot (0): read [0, 6)
    let r = resume(&mut a, &committed);
    assert_eq!(r.gone, vec![(ORDERS.to_string(), 1, 0, 3)]);
    assert_eq!(a.next_offset(ORDERS, 1), Some(3));
    assert_eq!(a.next_offset(ORDERS, 0), Some(4));
    assert_eq!(r.rebuild.len(), 1);
    assert_eq!((r.rebuild[0].from, r.rebuild[0].to), (0, 6));
    assert_eq!(
        r.bases[&(ORDERS.to_string(), 0)],
        2,
        "the base, raised to the low watermark"
    );
}

#[test]
fn a_checkpoint_missing_minutes_is_not_used() {
    let a = one_pass(&records(&[(false, 0, 0, false), (false, 0, 2, false)]));
    let f = a.flush("r1", &BTreeSet::new(), at(10));
    let mut log = Log::new();
    write(&mut log, &f);
    log.remove(0); // a minute record lost
    let r = restore(&log, false);
    assert!(matches!(
        r.state_of("r1"),
        Err(RestoreError::MissingMinutes {
            want: 2,
            found: 1,
            ..
        })
    ));
    let committed = committed_list(Some(&a.consumed), &run_mark("r1"));
    let recs = records(&[(false, 0, 0, false), (false, 0, 2, false)]);
    let (started, state) = restart(&recs, &committed, &r);
    assert!(!started.restored && started.unusable.is_some());
    assert_eq!(
        state.view(),
        a.view(),
        "rebuilt from the log from the commit's base"
    );
}

#[test]
fn a_replay_starts_empty_and_the_old_run_leaves_no_trace() {
    let recs = records(&[
        (false, 0, 0, false),
        (false, 0, 1, false),
        (true, 0, 0, false),
    ]);
    let a = one_pass(&recs);
    let mut log = Log::new();
    write(&mut log, &a.flush("r1", &BTreeSet::new(), at(10)));
    // An offset reset to orders/0 offset 1, events/0 offset 0 (the others: their ends).
    let mut committed = committed_list(Some(&a.consumed), &CommitMark::reset(at(20)).to_string());
    committed[0].offset = Some(1);
    let r = restore(&log, false);
    let (started, mut state) = restart(&recs, &committed, &r);
    assert!(!started.restored);
    assert_eq!(started.run, "run-b");
    assert_eq!(state.view().orders_total, 1, "only what is after the reset");
    assert_eq!(state.view().reserved_total, 0);
    assert_eq!(
        started.stale,
        BTreeSet::from(["2026-12-05T10:00:00Z".into(), "2026-12-05T10:01:00Z".into()])
    );
    // The new run's first flush: tombstones, then its own minutes; r1's minutes are gone.
    write(&mut log, &state.flush(&started.run, &started.stale, at(21)));
    state.flushed();
    for compact in [false, true] {
        let r = restore(&log, compact);
        assert!(r.stale_keys("run-b").is_empty());
        assert_eq!(r.minute_records(), 1);
        assert_eq!(r.state_of("run-b").unwrap().view(), state.view());
    }
}

proptest! {
    /// Flush after random chunks of records; crash after any write of the snapshot log
    /// (and, after a checkpoint, before or after its commit); the log compacted or not.
    /// The restart counts exactly what one pass over every record counts.
    #[test]
    fn crash_between_any_two_writes_counts_each_record_once(
        kinds in proptest::collection::vec((any::<bool>(), 0i32..2, 0u32..6, any::<bool>()), 1..60),
        cuts in proptest::collection::vec(1usize..12, 1..12),
        crash in any::<proptest::sample::Index>(),
        before_commit in any::<bool>(),
        compact in any::<bool>(),
    ) {
        let recs = records(&kinds);
        let mut state = empty_state();
        let mut log = Log::new();
        // (index of the checkpoint write, positions committed after it)
        let mut commits: Vec<(usize, Positions)> = Vec::new();
        let mut i = 0;
        let mut cut = cuts.iter().cycle();
        let mut n = 0;
        while i < recs.len() {
            let end = (i + cut.next().copied().unwrap_or(1)).min(recs.len());
            for (t, p, o, e) in &recs[i..end] {
                state.apply(t, *p, *o, e);
            }
            i = end;
            n += 1;
            let f = state.flush("run-a", &BTreeSet::new(), at(30 + n));
            write(&mut log, &f);
            state.flushed();
            commits.push((log.len() - 1, state.consumed.clone()));
        }
        let k = crash.index(log.len() + 1);
        let done: Vec<&(usize, Positions)> = commits
            .iter()
            .filter(|(ci, _)| *ci < k && !(before_commit && *ci + 1 == k))
            .collect();
        let committed = committed_list(done.last().map(|(_, p)| p), &run_mark("run-a"));
        let r = restore(&log[..k], compact);
        let (_, after) = restart(&recs, &committed, &r);
        let want = one_pass(&recs);
        prop_assert_eq!(after.view(), want.view());
    }
}
