//! The ReplayRequest's status types (re-exported by [`crate::crd`]): what the controller
//! has done and seen, written by the controller only.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{
    CatchUpStatus, DrillVerdict, Phase, RateSample, ReplayPlan, ShadowStatus, MAX_LAG_SAMPLES,
};

/// What the controller has done and seen. Written by the controller only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRequestStatus {
    /// Pending, Planned, ScalingDown, Resetting, Restoring, CatchingUp, HoldingLag, Succeeded
    /// or Failed.
    #[serde(default)]
    pub phase: Phase,

    /// What is happening now, or why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Ready (request completed), Progressing, Failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Every partition's committed offset before (from; absent when the group had never
    /// committed there) and after (to) the reset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<PartitionOffsets>,

    /// Partitions where the reset's target lay before the oldest record Kafka still holds
    /// (records deleted by retention or DeleteRecords): their offset went to the log start
    /// offset instead, and the deleted history is not replayed. Absent when the whole
    /// history asked for was there. Also a Warning Event, reason HistoryTruncated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history_truncated: Vec<TruncatedPartition>,

    /// Consumer lag recorded with spec.lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagStatus>,

    /// The plan: what the reset does per partition, the totals, the estimated catch-up time.
    /// Made by a dry run, and again when the request starts executing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ReplayPlan>,

    /// The dry run's plan, kept when the plan made at execution (status.plan) differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_plan: Option<ReplayPlan>,

    /// A dry run measuring the consume rate: its first read of the committed offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_sample: Option<RateSample>,

    /// The group catching up after the restore (phase CatchingUp), and when it had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpStatus>,

    /// A shadow replay (spec.strategy Shadow): its group, its copy, their numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,

    /// Deployments this request scaled and has not restored yet, with the replica count to
    /// restore. Written before scaling, so a restarted controller (or a deletion) restores
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<Restore>,

    /// When the request started (left Pending), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,

    /// When the current phase began, RFC 3339 (deadlines count from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started_at: Option<String>,

    /// When the request ended (Succeeded or Failed), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,

    /// Consecutive failed attempts to reach Kafka (retried with backoff); 0 after a success.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,

    /// When Kafka is tried again after it was unreachable, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,

    /// The metadata.generation this status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A status condition (the usual Kubernetes shape).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Progressing or Failed.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the condition last changed status, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// One partition's offsets around the reset.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// Committed offset before the reset (absent: the group had never committed here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// Committed offset after the reset.
    pub to: i64,
}

/// A partition whose reset target lay before the oldest record Kafka still holds.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TruncatedPartition {
    pub topic: String,
    pub partition: i32,
    /// The partition's log start offset: the oldest offset Kafka still holds, where the
    /// group's offset went.
    pub log_start_offset: i64,
    /// Records of the history asked for that are gone, when known (resetTo earliest: every
    /// offset below the log start offset). Absent for a timestamp: how many of the deleted
    /// records were at or after it cannot be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_deleted: Option<i64>,
    /// When the oldest record still held was written, RFC 3339 (absent when the partition
    /// holds none, or it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_record_at: Option<String>,
}

/// A deployment to restore.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    pub deployment: String,
    /// Replica count before this request scaled it.
    pub replicas: i32,
}

/// The lag created with spec.lag.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LagStatus {
    /// The consumer group sampled.
    pub consumer_group: String,
    /// Highest total lag sampled.
    pub peak: i64,
    /// Highest lag in seconds sampled (largest over the partitions: now minus the timestamp
    /// of the record at the committed offset), when one was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_seconds: Option<f64>,
    /// With spec.lag.maxDrainSeconds: Passed or Failed, once the drain is measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillVerdict>,
    /// Seconds from restoring the deployment until the lag was 0 (absent until drained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_after_seconds: Option<f64>,
    /// When holding ends, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<String>,
    /// When the deployment was restored, RFC 3339 (absent while holding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<String>,
    /// Total lag over time (at most 300 kept; older ones thinned out).
    #[serde(default)]
    pub samples: Vec<LagPoint>,
}

/// One lag sample.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LagPoint {
    /// When, RFC 3339.
    pub at: String,
    /// Total lag over the sampled topics' partitions.
    pub lag: i64,
    /// The largest lag in seconds over those partitions (absent when not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

impl LagStatus {
    /// Add a sample, keeping the peak, and at most [`MAX_LAG_SAMPLES`] samples (every other
    /// one of the oldest half dropped when full, so the whole span stays covered).
    pub fn push(&mut self, at: String, lag: i64, seconds: Option<f64>) {
        self.peak = self.peak.max(lag);
        if let Some(s) = seconds {
            self.peak_seconds = Some(self.peak_seconds.map_or(s, |p| p.max(s)));
        }
        if self.samples.len() >= MAX_LAG_SAMPLES {
            let half = self.samples.len() / 2;
            let mut kept = Vec::with_capacity(MAX_LAG_SAMPLES);
            kept.extend(self.samples[..half].iter().step_by(2).cloned());
            kept.extend(self.samples[half..].iter().cloned());
            self.samples = kept;
        }
        self.samples.push(LagPoint { at, lag, seconds });
    }
}
