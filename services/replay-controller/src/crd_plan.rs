//! The parts of the ReplayRequest status that plan a replay and follow it (issue 19): the
//! plan a dry run shows (`status.plan`, and `status.previousPlan` when the plan made at
//! execution differs), the consume-rate measurement behind its estimate
//! (`status.rateSample`), and the progress of the group after the restore
//! (`status.catchUp`). Kept beside [`crate::crd`], which holds the fields.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a reset would do, partition by partition, and how long catching up would take.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayPlan {
    /// When the plan was made, RFC 3339.
    pub made_at: String,
    /// Every partition of spec.topics.
    #[serde(default)]
    pub partitions: Vec<PartitionPlan>,
    /// Sums over the partitions.
    #[serde(default)]
    pub totals: PlanTotals,
    /// The group's consume rate (records per second) as measured: the growth of the sum of
    /// its committed offsets on spec.topics between two reads some seconds apart (a dry run
    /// measures it; it is what the group consumed, which is below what it can consume when it
    /// is caught up). Absent when it could not be measured (see estimateMissingReason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_rate: Option<f64>,
    /// Seconds between the two reads the consume rate was measured from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_measured_over_seconds: Option<f64>,
    /// totals.recordsToReprocess / consumeRate: the estimated seconds the group needs to
    /// catch up after the reset. Absent with estimateMissingReason when the rate is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_catch_up_seconds: Option<f64>,
    /// Why there is no estimate (the group was idle or never committed while measured, or
    /// the request was not a dry run, which is when the rate is measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_missing_reason: Option<String>,
}

impl ReplayPlan {
    /// The same offsets on the same partitions (when and the estimate aside).
    pub fn same_offsets(&self, other: &ReplayPlan) -> bool {
        self.partitions == other.partitions
    }
}

/// One partition of a plan.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionPlan {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset now (absent: it never committed here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    /// Where the reset puts it.
    pub target: i64,
    /// The partition's high watermark (log end offset) now.
    pub high_watermark: i64,
    /// Records the group reads after the reset: from the target to the high watermark (0 when
    /// the target is at or past it).
    pub records_to_reprocess: i64,
}

/// Sums over a plan's partitions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanTotals {
    pub partitions: i64,
    pub records_to_reprocess: i64,
}

/// The first read of a consume-rate measurement (a dry run waits for the second one).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateSample {
    /// When, RFC 3339.
    pub at: String,
    /// The sum of the group's committed offsets on spec.topics then (absent: none
    /// committed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<i64>,
}

/// The group catching up after the restore (phase CatchingUp), against the high watermarks
/// read when the offsets were reset.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatchUpStatus {
    /// Each partition's target: its high watermark when the offsets were reset.
    #[serde(default)]
    pub partitions: Vec<CatchUpPartition>,
    /// Records between the reset offsets and the targets.
    pub records_total: i64,
    /// Of them, those the group has committed past.
    pub records_done: i64,
    /// recordsTotal - recordsDone.
    pub records_left: i64,
    /// Records per second between the last two progress reads (absent before the second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_second: Option<f64>,
    /// When the group would pass the targets at that rate, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// When the last progress was read, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_at: Option<String>,
    /// When the controller first saw every committed offset at or past its target, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_at: Option<String>,
}

/// One partition the group must catch up on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatchUpPartition {
    pub topic: String,
    pub partition: i32,
    /// Where the reset put the group's offset.
    pub from: i64,
    /// The high watermark when the offsets were reset: the group has caught up here once its
    /// committed offset is at or past it.
    pub target: i64,
}
