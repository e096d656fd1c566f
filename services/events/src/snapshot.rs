//! The records of analytics' compacted state store, `analytics-snapshots` (issue 18). Why the
//! keys and values are what they are, and how they are written and read back, is in
//! analytics-service's `snapshot` module docs; this is the wire contract.
//!
//! Every record is written to partition [`SNAPSHOT_PARTITION`] (one writer, one log, so Kafka
//! keeps their order). One JSON object per record, tagged by `type` and `schema_version`
//! like the events, and each carries the `run` it belongs to (the id analytics also writes
//! in its commit metadata, [`crate::CommitMark::AnalyticsRun`]):
//!
//! - `MinuteSnapshot`, key = the minute ([`minute_key`], RFC 3339 seconds, UTC, e.g.
//!   `2026-12-05T10:00:00Z`): `run`, `minute`, the `orders`, `reserved` and `failed` (and the restocks: `restocks`, `restocked_units`, `restocks_refused`) counted
//!   in that event-time minute, and `positions` (topic -> partition -> next offset): every
//!   record below them whose event falls in this minute is counted here; `updated_at`.
//! - `SnapshotCheckpoint`, key [`SNAPSHOT_CHECKPOINT_KEY`]: `run`, the `positions` of the
//!   whole state, its totals (`orders_total`, `reserved_total`, `failed_total`), `minutes`
//!   (how many minute records the state has), `updated_at`.
//!
//! A record with no value (a tombstone) under a minute key deletes that minute from the
//! topic; analytics writes them for the minutes of an earlier run.
//!
//! Decoding validates (a run id that is not empty and has no whitespace, a whole minute,
//! topics named, partitions and offsets not negative) and checks the record's key against
//! its value: a record under the wrong key would overwrite another minute on compaction.

use std::collections::BTreeMap;

#[cfg(test)]
use crate::SCHEMA_VERSION;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
#[cfg(test)]
use serde_json::Value;

use crate::codec::{from_value, DecodeError};
use crate::model::rfc3339_ms;

/// Key of the checkpoint record. Not a minute (a minute key is an RFC 3339 time).
pub const SNAPSHOT_CHECKPOINT_KEY: &str = "#checkpoint";
/// The partition of `analytics-snapshots` every record is written to.
pub const SNAPSHOT_PARTITION: i32 = 0;

/// Topic -> partition -> next offset.
pub type Positions = BTreeMap<String, BTreeMap<i32, i64>>;

/// The key of the record of `minute`: RFC 3339, seconds, UTC.
pub fn minute_key(minute: DateTime<Utc>) -> String {
    minute.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The counts of one event-time minute, as of `positions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinuteSnapshot {
    pub schema_version: u32,
    pub run: String,
    #[serde(with = "rfc3339_ms")]
    pub minute: DateTime<Utc>,
    pub orders: u64,
    pub reserved: u64,
    pub failed: u64,
    /// Restocks recorded in this minute (`InventoryRestocked`), their units, and refused
    /// restocks (`InventoryRestockRefused`); absent (0) in records written before restocks.
    #[serde(default)]
    pub restocks: u64,
    #[serde(default)]
    pub restocked_units: u64,
    #[serde(default)]
    pub restocks_refused: u64,
    /// Every record below these offsets whose event falls in this minute is counted.
    pub positions: Positions,
    #[serde(with = "rfc3339_ms")]
    pub updated_at: DateTime<Utc>,
}

/// The position of the whole state: every minute record it needs is in the log before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCheckpoint {
    pub schema_version: u32,
    pub run: String,
    pub positions: Positions,
    pub orders_total: u64,
    pub reserved_total: u64,
    pub failed_total: u64,
    /// Minute records of the state as of this checkpoint.
    pub minutes: u64,
    #[serde(with = "rfc3339_ms")]
    pub updated_at: DateTime<Utc>,
}

/// A record of `analytics-snapshots`, tagged by its `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SnapshotRecord {
    MinuteSnapshot(MinuteSnapshot),
    SnapshotCheckpoint(SnapshotCheckpoint),
}

impl SnapshotRecord {
    /// The record key: [`minute_key`], or [`SNAPSHOT_CHECKPOINT_KEY`].
    pub fn key(&self) -> String {
        match self {
            Self::MinuteSnapshot(m) => minute_key(m.minute),
            Self::SnapshotCheckpoint(_) => SNAPSHOT_CHECKPOINT_KEY.to_string(),
        }
    }

    /// The run the record belongs to.
    pub fn run(&self) -> &str {
        match self {
            Self::MinuteSnapshot(m) => &m.run,
            Self::SnapshotCheckpoint(c) => &c.run,
        }
    }

    /// The record's JSON value.
    pub fn encode(&self) -> Vec<u8> {
        // Plain structs with string and integer keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Parse and validate a record of `analytics-snapshots` read under `key` (a tombstone, a
/// record without a value, is not passed here).
pub fn decode_snapshot(key: Option<&[u8]>, bytes: &[u8]) -> Result<SnapshotRecord, DecodeError> {
    let (type_name, fields) = crate::codec::tagged_fields(bytes)?;
    let record = match type_name.as_str() {
        "MinuteSnapshot" => SnapshotRecord::MinuteSnapshot(from_value(fields)?),
        "SnapshotCheckpoint" => SnapshotRecord::SnapshotCheckpoint(from_value(fields)?),
        other => return Err(DecodeError::UnknownType(other.to_string())),
    };
    validate(&record)?;
    if key != Some(record.key().as_bytes()) {
        return Err(DecodeError::Invalid(format!(
            "record key {:?} does not match its value (expected {:?})",
            key.map(String::from_utf8_lossy),
            record.key()
        )));
    }
    Ok(record)
}

fn validate(record: &SnapshotRecord) -> Result<(), DecodeError> {
    let run = record.run();
    if run.is_empty() || run.chars().any(char::is_whitespace) {
        return Err(DecodeError::Invalid(
            "`run` is empty or has whitespace".into(),
        ));
    }
    let positions = match record {
        SnapshotRecord::MinuteSnapshot(m) => {
            if m.minute.second() != 0 || m.minute.nanosecond() != 0 {
                return Err(DecodeError::Invalid(format!(
                    "`minute` {} is not the start of a minute",
                    minute_key(m.minute)
                )));
            }
            &m.positions
        }
        SnapshotRecord::SnapshotCheckpoint(c) => &c.positions,
    };
    for (topic, parts) in positions {
        if topic.trim().is_empty() {
            return Err(DecodeError::Invalid(
                "`positions` names an empty topic".into(),
            ));
        }
        if parts.iter().any(|(p, o)| *p < 0 || *o < 0) {
            return Err(DecodeError::Invalid(format!(
                "`positions` of {topic}: partitions and offsets must not be negative"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
