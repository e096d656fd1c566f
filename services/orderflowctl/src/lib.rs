//! Consumer-group work for orderflow, in one place: group state ("is the group empty"),
//! lag per partition, committed offsets with their commit metadata, and offset resets to
//! earliest / latest / a timestamp. Used by the replay controller, by `make demo` and by
//! the `orderflowctl` CLI (`describe`, `lag`, `reset`).
//!
//! The Kafka functions block; async callers wrap them in `tokio::task::spawn_blocking`.
//! Their `timeout` bounds each broker request.

pub mod cli;
mod error;
pub mod format;
mod groups;
mod model;

pub use error::{GroupError, ParseResetToError};
pub use groups::{
    committed_offsets, describe_group, lag, plan_reset_now, reset, reset_by,
    reset_leaving_the_check_to_kafka, sample_lag, watch_lag, LagProbe, WatchEnd, WatchOptions,
};
pub use model::{
    is_reset_metadata, partition_lag, plan_reset, reset_metadata, reset_metadata_by,
    reset_metadata_by_of, reset_metadata_from, reset_metadata_time, total_lag, CommittedOffset,
    GroupInfo, GroupMember, LagSample, OffsetChange, PartitionLag, ResetTo, TimeOffset,
    INACTIVE_STATES, RESET_METADATA_PREFIX,
};
