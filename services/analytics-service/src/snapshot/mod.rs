//! Saving the counts to the compacted topic `analytics-snapshots` and restoring them at
//! start-up (issue 18): pure, no Kafka (the writes and reads are in [`crate::store`]).
//!
//! ## Why
//! The counts are derived from `orders` and `inventory-events`, which keep 7 days. Before
//! the snapshots a restart rebuilt them by reading every record from where the state began
//! (its *base*, in the commit metadata): once Kafka deleted old records the totals shrank,
//! and the restart read the whole history. Now a restart reads the snapshot and only the
//! records after it.
//!
//! ## The topic: keys and values
//! `analytics-snapshots` has `cleanup.policy=compact`: Kafka keeps the last record per key
//! for ever. Every record goes to partition 0 (analytics is one replica, one writer: one
//! log keeps the order of its writes). The contract is `orderflow_events::snapshot`:
//!
//! - **`MinuteSnapshot`**, key = the event-time minute (`2026-12-05T10:00:00Z`): the
//!   minute's `orders`, `reserved`, `failed`, and the `positions` (topic -> partition -> next
//!   offset) they reflect. One record per minute, not one for the whole state: the state
//!   grows by a minute a minute (10,080 a week) and Kafka refuses records over 1 MB; a
//!   minute record stays a few hundred bytes, and a flush writes only the minutes changed
//!   since the last one (live traffic: one or two).
//! - **`SnapshotCheckpoint`**, key `#checkpoint`: the positions of the whole state, its
//!   totals and how many minutes it has. Written **last** in every flush, once every record
//!   before it is acknowledged, so it says: every minute record the state up to these
//!   positions needs is in the log before me.
//!
//! Every record carries the **run**: an id analytics chooses when its state starts empty
//! (first start, offset reset) and writes into its commit metadata too
//! (`orderflow.analytics.base=<base> run=<run>`, `CommitMark::AnalyticsRun`).
//!
//! ## Writing: a flush, then the commit
//! Every `COMMIT_INTERVAL_MS` (and at shutdown), when something was applied:
//! 1. tombstones for the minutes of another run still in the topic (first flush of a run);
//! 2. a `MinuteSnapshot` per changed minute, with the current positions;
//! 3. once 1 and 2 are acknowledged, the `SnapshotCheckpoint` with the same positions;
//! 4. once it is acknowledged, the group's commit of those positions, marked with the run.
//!
//! A write that fails ends the session (nothing is committed past the snapshot); the next
//! session restores from the topic.
//!
//! ## Restoring (start-up)
//! Read partition 0 to its end, latest record per key ([`Restore`]). Then [`begin`]:
//!
//! - **Snapshot**: the checkpoint is of run R, and every partition the group committed
//!   carries run R. The state is R's minute records (other runs' are ignored), its positions
//!   the checkpoint's; the group consumer reads on from the committed offsets, stepping over
//!   records below the positions (counted already). A minute record **ahead** of the
//!   checkpoint (written by a flush that crashed before its checkpoint) already counts the
//!   records below its own positions: such a minute gets a *floor*, and a record of that
//!   minute below it is not counted again ([`crate::state::Aggregates::apply`]).
//! - **Log** (anything else): the state starts as before the snapshots, per partition from
//!   the commit's base ([`crate::state::start_for`]): an offset reset (a replay: its commit
//!   carries no analytics mark) starts **empty** at the new offsets; our own base (an
//!   upgrade from before the snapshots, a partial reset, a snapshot lost) is rebuilt from
//!   the log. A new run id is chosen, and the first flush writes the whole state and
//!   tombstones every minute of the old run, so nothing of it leaks into the new totals.
//!
//! ## Why a crash between any two writes counts each record once
//! Let P be the positions of the last complete checkpoint (of run R) and C ≤ P the
//! committed offsets (the commit follows the checkpoint; the first flush of a run precedes
//! any commit carrying it).
//! - Crash after the checkpoint, before the commit (C < P): the restored state is exact at
//!   P; the consumer reads from C and steps over `[C, P)`.
//! - Crash among the minute records of the next flush (positions P' > P): each such record
//!   counts its minute's records below P'. A record at offset `o ≥ P` of minute m is
//!   counted again only when `o ≥` m's floor: if m's record was rewritten its floor is P'
//!   and `[P, P')` is in it; if not, its record's positions are at most P and nothing of
//!   `[P, ...)` is in it. Other minutes are as of P. Totals are the sums of the minutes.
//! - Crash before the checkpoint of a new run's first flush, or before its first commit:
//!   the commit still carries the old mark (a reset's, or an older run's), so the next
//!   start takes the Log path again, with another new run.
//!
//! The property test `crash_between_any_two_writes_counts_each_record_once` (tests.rs)
//! checks every crash point against a count in one pass.
//!
//! ## Retention
//! The restore reads the compacted snapshot and the tail after it: Kafka may delete
//! `orders` and `inventory-events` records older than 7 days without changing the totals.
//! A snapshot whose positions are below the low watermark (analytics stopped for longer
//! than the retention) cannot get the records between: an ERROR log line names them and
//! the state goes on from the low watermark.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use orderflow_events::{
    minute_key, MinuteSnapshot, SnapshotCheckpoint, SnapshotRecord, SCHEMA_VERSION,
};

use crate::state::Aggregates;

mod restore;

pub use restore::{
    begin, resume, start, Begin, Committed, Restore, RestoreError, Resumed, Started,
};

/// One write of a flush: a record, or a tombstone (`value` `None`) for `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub key: String,
    pub value: Option<SnapshotRecord>,
}

/// What a flush writes: first `before` (acknowledged, all of them), then `checkpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    pub before: Vec<Write>,
    pub checkpoint: SnapshotRecord,
}

impl Aggregates {
    /// The writes of a flush of run `run` at `now`: tombstones for the `stale` minutes (of
    /// another run) that the state does not write anyway, a record per changed minute, the
    /// checkpoint. Once acknowledged: [`Aggregates::flushed`].
    pub fn flush(&self, run: &str, stale: &BTreeSet<String>, now: DateTime<Utc>) -> Flush {
        let updated_at = orderflow_events::truncate_ms(now);
        let written: BTreeSet<String> = self.dirty.iter().map(|m| minute_key(*m)).collect();
        let mut before: Vec<Write> = stale
            .iter()
            .filter(|k| !written.contains(*k))
            .map(|k| Write {
                key: k.clone(),
                value: None,
            })
            .collect();
        for m in &self.dirty {
            let c = self.minutes.get(m).copied().unwrap_or_default();
            let r = SnapshotRecord::MinuteSnapshot(MinuteSnapshot {
                schema_version: SCHEMA_VERSION,
                run: run.to_string(),
                minute: *m,
                orders: c.orders,
                reserved: c.reserved,
                failed: c.failed,
                restocks: c.restocks,
                restocked_units: c.restocked_units,
                restocks_refused: c.restocks_refused,
                positions: self.consumed.clone(),
                updated_at,
            });
            before.push(Write {
                key: r.key(),
                value: Some(r),
            });
        }
        Flush {
            before,
            checkpoint: SnapshotRecord::SnapshotCheckpoint(SnapshotCheckpoint {
                schema_version: SCHEMA_VERSION,
                run: run.to_string(),
                positions: self.consumed.clone(),
                orders_total: self.orders_total,
                reserved_total: self.reserved_total,
                failed_total: self.failed_total,
                minutes: self.minutes.len() as u64,
                updated_at,
            }),
        }
    }

    /// The last [`Aggregates::flush`] is acknowledged.
    pub fn flushed(&mut self) {
        self.dirty.clear();
    }
}

/// A new run id: 32 hex digits.
pub fn new_run() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests;
