//! Reading the snapshot back and deciding the start ([`start`]): the rules are in the
//! [`super`] module docs.

use std::collections::{BTreeMap, BTreeSet};

use orderflow_events::{
    decode_snapshot, CommitMark, DecodeError, SnapshotCheckpoint, SnapshotRecord,
};
use orderflow_runtime::read::Span;

use crate::state::{start_for, Aggregates, Bases, MinuteCounts, Positions, Start};

/// `analytics-snapshots` read back in log order: the latest record per key.
#[derive(Debug, Default, Clone)]
pub struct Restore {
    latest: BTreeMap<String, SnapshotRecord>,
    /// Keys whose latest record does not decode (left alone, counted, logged).
    undecodable: BTreeSet<String>,
}

/// Why a run's snapshot cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("no checkpoint of run {0}")]
    NoCheckpoint(String),
    #[error("run {run}: the checkpoint counts {want} minutes, the topic has {found}")]
    MissingMinutes { run: String, want: u64, found: u64 },
}

impl Restore {
    /// Apply a record read under `key` (`value` `None`: a tombstone).
    pub fn record(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), DecodeError> {
        let Some(k) = key.map(|k| String::from_utf8_lossy(k).into_owned()) else {
            return Err(DecodeError::Invalid(
                "a snapshot record without a key".into(),
            ));
        };
        let Some(v) = value else {
            self.latest.remove(&k);
            self.undecodable.remove(&k);
            return Ok(());
        };
        match decode_snapshot(key, v) {
            Ok(r) => {
                self.undecodable.remove(&k);
                self.latest.insert(k, r);
                Ok(())
            }
            Err(e) => {
                self.latest.remove(&k);
                self.undecodable.insert(k);
                Err(e)
            }
        }
    }

    /// The latest checkpoint.
    pub fn checkpoint(&self) -> Option<&SnapshotCheckpoint> {
        match self.latest.get(orderflow_events::SNAPSHOT_CHECKPOINT_KEY) {
            Some(SnapshotRecord::SnapshotCheckpoint(c)) => Some(c),
            _ => None,
        }
    }

    /// Minute records in the topic, of any run.
    pub fn minute_records(&self) -> usize {
        self.latest
            .values()
            .filter(|r| matches!(r, SnapshotRecord::MinuteSnapshot(_)))
            .count()
    }

    /// Minute keys whose record is not of `run`: tombstoned by `run`'s next flush.
    pub fn stale_keys(&self, run: &str) -> BTreeSet<String> {
        self.latest
            .iter()
            .filter(|(_, r)| matches!(r, SnapshotRecord::MinuteSnapshot(m) if m.run != run))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The state of `run` as its checkpoint and minute records say (see the module docs:
    /// positions of the checkpoint, floors for minutes ahead of it).
    pub fn state_of(&self, run: &str) -> Result<Aggregates, RestoreError> {
        let c = self
            .checkpoint()
            .filter(|c| c.run == run)
            .ok_or_else(|| RestoreError::NoCheckpoint(run.to_string()))?;
        let mut a = Aggregates {
            consumed: c.positions.clone(),
            ..Aggregates::default()
        };
        for r in self.latest.values() {
            let SnapshotRecord::MinuteSnapshot(m) = r else {
                continue;
            };
            if m.run != run {
                continue;
            }
            a.orders_total += m.orders;
            a.reserved_total += m.reserved;
            a.failed_total += m.failed;
            a.restocks_total += m.restocks;
            a.restocked_units_total += m.restocked_units;
            a.restocks_refused_total += m.restocks_refused;
            a.minutes.insert(
                m.minute,
                MinuteCounts {
                    orders: m.orders,
                    reserved: m.reserved,
                    failed: m.failed,
                    restocks: m.restocks,
                    restocked_units: m.restocked_units,
                    restocks_refused: m.restocks_refused,
                },
            );
            if ahead(&m.positions, &c.positions) {
                a.floors.insert(m.minute, m.positions.clone());
            }
        }
        let found = a.minutes.len() as u64;
        if found < c.minutes {
            return Err(RestoreError::MissingMinutes {
                run: run.to_string(),
                want: c.minutes,
                found,
            });
        }
        Ok(a)
    }
}

/// Whether `positions` are past `checkpoint` on some partition.
fn ahead(positions: &Positions, checkpoint: &Positions) -> bool {
    positions.iter().any(|(t, ps)| {
        ps.iter().any(|(p, o)| {
            *o > checkpoint
                .get(t)
                .and_then(|c| c.get(p))
                .copied()
                .unwrap_or(0)
        })
    })
}

/// What the group has committed on one partition, and its low watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
    pub metadata: String,
    pub low: i64,
}

/// How the state starts (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Restore run `run` from `analytics-snapshots`.
    Snapshot { run: String },
    /// Start from the log, per partition ([`start_for`]), as a new run.
    Log,
}

/// Snapshot when the checkpoint is of run R and every committed partition carries run R.
pub fn begin(committed: &[Committed], checkpoint_run: Option<&str>) -> Begin {
    let Some(run) = checkpoint_run else {
        return Begin::Log;
    };
    let mut any = false;
    for c in committed.iter().filter(|c| c.offset.is_some()) {
        match CommitMark::of(&c.metadata) {
            Some(CommitMark::AnalyticsRun { run: r, .. }) if r == run => any = true,
            _ => return Begin::Log,
        }
    }
    if any {
        Begin::Snapshot {
            run: run.to_string(),
        }
    } else {
        Begin::Log
    }
}

/// Where a restored state goes on, per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    pub bases: Bases,
    /// Committed past the snapshot (not written by analytics; read with the rebuild).
    pub rebuild: Vec<Span>,
    /// `(topic, partition, snapshot position, low watermark)`: the records between are
    /// gone (the snapshot is older than the retention).
    pub gone: Vec<(String, i32, i64, i64)>,
}

/// Fit the restored `state` to what the group committed: bases from the commit marks,
/// positions raised to the low watermarks, a rebuild of anything committed past them.
pub fn resume(state: &mut Aggregates, committed: &[Committed]) -> Resumed {
    let mut out = Resumed::default();
    for c in committed {
        let key = (c.topic.clone(), c.partition);
        let known = state.next_offset(&c.topic, c.partition);
        let mut at = known.unwrap_or(c.low).max(0);
        if at < c.low {
            out.gone.push((c.topic.clone(), c.partition, at, c.low));
            at = c.low;
        }
        state.start_at(&c.topic, c.partition, at);
        let base = match (c.offset, start_for(c.offset, &c.metadata, c.low)) {
            (Some(_), Start::Resume { base, .. }) => base.min(at),
            _ => at,
        };
        out.bases.insert(key, base);
        if let Some(committed) = c.offset.filter(|o| *o > at) {
            out.rebuild.push(Span {
                topic: c.topic.clone(),
                partition: c.partition,
                from: at,
                to: committed,
            });
        }
    }
    out
}

/// How a session starts, decided from the commits and the snapshot topic.
#[derive(Debug)]
pub struct Started {
    /// The state before the spans are read: restored, or empty at the start offsets.
    pub state: Aggregates,
    pub bases: Bases,
    /// Spans to read into the state before consuming.
    pub rebuild: Vec<Span>,
    /// The run the session writes its snapshots and commits as.
    pub run: String,
    /// Minute keys of other runs, tombstoned by the first flush.
    pub stale: BTreeSet<String>,
    /// Whether the state was restored from the snapshot.
    pub restored: bool,
    /// Why a snapshot of the committed run could not be used, if so.
    pub unusable: Option<RestoreError>,
    /// See [`Resumed::gone`].
    pub gone: Vec<(String, i32, i64, i64)>,
}

/// Restore the snapshot when [`begin`] says so and it is whole; else start from the log per
/// partition ([`start_for`]) as a new run from `new_run`.
pub fn start(
    committed: &[Committed],
    restore: &Restore,
    new_run: impl FnOnce() -> String,
) -> Started {
    let checkpoint_run = restore.checkpoint().map(|c| c.run.clone());
    let mut unusable = None;
    if let Begin::Snapshot { run } = begin(committed, checkpoint_run.as_deref()) {
        match restore.state_of(&run) {
            Ok(mut state) => {
                let resumed = resume(&mut state, committed);
                return Started {
                    state,
                    bases: resumed.bases,
                    rebuild: resumed.rebuild,
                    stale: restore.stale_keys(&run),
                    run,
                    restored: true,
                    unusable: None,
                    gone: resumed.gone,
                };
            }
            Err(e) => unusable = Some(e),
        }
    }
    let run = new_run();
    let mut state = Aggregates::default();
    let mut bases = Bases::new();
    let mut rebuild = Vec::new();
    for c in committed {
        let key = (c.topic.clone(), c.partition);
        match start_for(c.offset, &c.metadata, c.low) {
            Start::Resume { base, committed } => {
                bases.insert(key, base);
                state.start_at(&c.topic, c.partition, base);
                if committed > base {
                    rebuild.push(Span {
                        topic: c.topic.clone(),
                        partition: c.partition,
                        from: base,
                        to: committed,
                    });
                }
            }
            Start::Fresh { at } | Start::Earliest { low: at } => {
                bases.insert(key, at);
                state.start_at(&c.topic, c.partition, at);
            }
        }
    }
    Started {
        state,
        bases,
        rebuild,
        stale: restore.stale_keys(&run),
        run,
        restored: false,
        unusable,
        gone: Vec::new(),
    }
}
