//! Consumer-group work for orderflow, in one place: group state ("is the group empty"),
//! lag per partition (in records, and in seconds: [`timelag`]), committed offsets with their commit metadata, and offset resets to
//! earliest / latest / a timestamp / a duration before now / a shift / explicit offsets
//! ([`ResetTo`]), saying per partition when the target lay before the
//! oldest record Kafka still holds ([`HistoryTruncated`]). Used by the replay controller, by `make demo` and by
//! the `orderflowctl` CLI (`describe`, `lag`, `reset`).
//!
//! The Kafka functions block; async callers wrap them in `tokio::task::spawn_blocking`.
//! Their `timeout` bounds each broker request.
//!
//! The command line ([`cli`], [`mod@format`]) is behind the `cli` feature, on by default for
//! this package (its binary needs it) and off for the libraries that depend on it through
//! the workspace, so they do not compile clap for it.

#[cfg(feature = "cli")]
pub mod cli;
mod error;
#[cfg(feature = "cli")]
pub mod format;
mod groups;
mod history;
mod model;
mod plan;
#[cfg(feature = "cli")]
mod reset_cmd;
pub mod state;
mod targets;
pub mod timelag;

pub use error::{GroupError, ParseResetToError};
pub use groups::{
    committed_offsets, committed_with_watermarks, copy_changes, copy_committed, describe_group,
    lag, plan_reset_now, reset, reset_by, reset_leaving_the_check_to_kafka, sample_lag, watch_lag,
    LagProbe, WatchEnd, WatchOptions,
};
pub use history::{
    history_truncated, history_warnings, wanting_oldest, HistoryTruncated, OldestRecord,
};
pub use model::{
    partition_lag, total_lag, CommittedOffset, GroupInfo, GroupMember, LagSample, PartitionLag,
    INACTIVE_STATES,
};
pub use plan::{plan_reset, OffsetChange, ResetTo, TimeOffset};
pub use targets::{format_duration, offsets_csv, parse_duration, parse_offsets_csv, TargetOffset};
