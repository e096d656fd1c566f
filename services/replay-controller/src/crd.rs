//! The ReplayRequest custom resource (group `orderflow.io`, version `v1alpha1`), derived
//! from these types: `crdgen` prints the CRD and helm/orderflow/crds/replayrequest.yaml is
//! its committed output. Doc comments become the schema's descriptions (`kubectl explain`).

use kube::CustomResource;

pub use crate::drill::DrillVerdict;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::crd_plan::{
    CatchUpPartition, CatchUpStatus, PartitionPlan, PlanTotals, RateSample, ReplayPlan,
};
pub use crate::crd_status::{
    Condition, LagPoint, LagStatus, PartitionOffsets, ReplayRequestStatus, Restore,
    TruncatedPartition,
};
pub use crate::shadow::{ShadowMetrics, ShadowStatus, StateMetrics, Strategy};
pub use crate::targets::Target;

/// Seconds the consumers may stay scaled down waiting for the group to empty and the reset
/// to be made, when `spec.timeoutSeconds` is not given.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 300;
/// Seconds to wait for the lag to drain after the lag deployment is restored, by default.
pub const DEFAULT_DRAIN_TIMEOUT_SECONDS: u32 = 600;
/// Seconds the group may take to catch up after the restore (phase CatchingUp), when
/// `spec.catchUpTimeoutSeconds` is not given.
pub const DEFAULT_CATCH_UP_TIMEOUT_SECONDS: u32 = 3600;
/// Seconds between two lag samples, by default.
pub const DEFAULT_SAMPLE_SECONDS: u32 = 2;
/// At most this many lag samples are kept in the status (older ones are thinned out).
pub const MAX_LAG_SAMPLES: usize = 300;

/// Reset a consumer group's committed offsets (stopping its consumers while doing so), and
/// optionally create consumer lag on purpose by scaling another deployment down for a while.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "orderflow.io",
    version = "v1alpha1",
    kind = "ReplayRequest",
    namespaced,
    shortname = "rr",
    status = "ReplayRequestStatus",
    doc = "Replays a consumer group from earliest, latest, a point in time, a duration ago, \
           a shift or explicit offsets, or undoes an earlier request: the group's deployment \
           is scaled to 0, its offsets are reset, and it is restored. Optionally creates \
           consumer lag on purpose and records it.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".spec.consumerGroup"}"#,
    printcolumn = r#"{"name":"Reset","type":"string","jsonPath":".spec.resetTo"}"#,
    printcolumn = r#"{"name":"Lag Peak","type":"integer","jsonPath":".status.lag.peak"}"#,
    printcolumn = r#"{"name":"Reprocess","type":"integer","jsonPath":".status.plan.totals.recordsToReprocess"}"#,
    printcolumn = r#"{"name":"Drill","type":"string","jsonPath":".status.lag.drill"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
// CEL rules the API server (1.25+) enforces on create and update: what the schema alone cannot
// say. `validate` checks the same in the controller (for older servers): crate::targets.
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.resetTo) && self.resetTo == 'timestamp' ? has(self.timestamp) : !has(self.timestamp)",
        "message": "spec.timestamp is required when spec.resetTo is timestamp, and allowed only then"
    },
    {
        "rule": "has(self.resetTo) && self.resetTo == 'byDuration' ? has(self.duration) : !has(self.duration)",
        "message": "spec.duration is required when spec.resetTo is byDuration, and allowed only then"
    },
    {
        "rule": "has(self.resetTo) && self.resetTo == 'shiftBy' ? has(self.shiftBy) : !has(self.shiftBy)",
        "message": "spec.shiftBy is required when spec.resetTo is shiftBy, and allowed only then"
    },
    {
        "rule": "has(self.resetTo) && self.resetTo == 'toOffsets' ? has(self.offsets) : !has(self.offsets)",
        "message": "spec.offsets is required when spec.resetTo is toOffsets, and allowed only then"
    },
    {
        "rule": "has(self.resetTo) != has(self.undoOf)",
        "message": "exactly one of spec.resetTo and spec.undoOf is required: a request resets to a target, or undoes another request"
    },
    {
        "rule": "(has(self.resetTo) && self.resetTo == 'none') || (has(self.consumerGroup) && has(self.deployment) && has(self.topics))",
        "message": "spec.consumerGroup, spec.deployment and spec.topics are required unless spec.resetTo is none"
    },
    {
        "rule": "!has(self.resetTo) || self.resetTo != 'none' || (has(self.lag) && !has(self.consumerGroup) && !has(self.deployment) && !has(self.topics))",
        "message": "spec.resetTo none is a drill without a reset: spec.lag is required, and spec.consumerGroup, spec.deployment and spec.topics are not used (leave them out)"
    },
    {
        "rule": "!has(self.strategy) || self.strategy != 'Shadow' || (has(self.resetTo) && self.resetTo != 'none' && !has(self.lag))",
        "message": "spec.strategy Shadow replays to a target (spec.resetTo, not none) without spec.lag"
    },
    {
        "rule": "!has(self.promote) || !self.promote || (has(self.strategy) && self.strategy == 'Shadow')",
        "message": "spec.promote applies to spec.strategy Shadow only"
    }
]))]
pub struct ReplayRequestSpec {
    /// The consumer group whose committed offsets are reset (e.g. analytics). Required
    /// unless resetTo is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 249))]
    pub consumer_group: String,

    /// The Deployment (same namespace) that runs the group's consumers. It is scaled to 0
    /// while the offsets are reset (Kafka refuses a reset while the group has members), then
    /// restored to its previous replica count. Required unless resetTo is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 253))]
    pub deployment: String,

    /// The topics whose offsets are reset, every partition of each. Required unless resetTo
    /// is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1), inner(length(min = 1, max = 249)))]
    pub topics: Vec<String>,

    /// Where the offsets go: earliest (oldest retained record), latest (log end: skip
    /// everything so far), timestamp (first record at or after spec.timestamp), byDuration
    /// (first record at or after now minus spec.duration), shiftBy (each committed offset
    /// moved by spec.shiftBy records), toOffsets (spec.offsets) or none (a drill, nothing is
    /// reset: only spec.lag runs (scale its deployment down, hold, restore, measure the
    /// drain), and spec.lag is required). Every target is kept
    /// inside each partition's oldest and log-end offsets. Required unless spec.undoOf is
    /// given (not with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_to: Option<ResetTarget>,

    /// RFC 3339 time, only with resetTo: timestamp (e.g. 2026-11-22T10:00:00Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,

    /// ISO 8601 duration before now, only with resetTo: byDuration (e.g. PT1H, P1DT12H; as
    /// kafka-consumer-groups --by-duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 64),
        regex(pattern = r"^P([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+(\.[0-9]{1,9})?S)?)?$")
    )]
    pub duration: Option<String>,

    /// Records to move each partition's committed offset by (negative: back), only with
    /// resetTo: shiftBy (as kafka-consumer-groups --shift-by). A partition the group never
    /// committed on has nothing to shift from: the request fails (NoCommittedOffset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_by: Option<i64>,

    /// Explicit offsets, only with resetTo: toOffsets; only the partitions listed are reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10000))]
    pub offsets: Option<Vec<TopicPartitionOffset>>,

    /// With resetTo timestamp or byDuration: when the target lies before the oldest record
    /// Kafka still holds on a partition (records deleted by retention), go on from that
    /// partition's earliest offset (recorded in status.historyTruncated, a HistoryTruncated
    /// condition and a Warning Event) instead of failing with reason BeforeRetention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_truncated: Option<bool>,

    /// The name of a Succeeded ReplayRequest (same namespace, same consumerGroup and topics)
    /// to undo: its status.offsets' `from` offsets are restored, with the same scale-down,
    /// reset and restore. Not with resetTo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub undo_of: Option<String>,

    /// Optional: create consumer lag on purpose after the replay, and record it in
    /// status.lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagSpec>,

    /// How long (seconds) the deployment may stay scaled down waiting for the group to become
    /// empty and for the reset to be made (Kafka unreachable counts against it). Past it the
    /// request fails and the deployment is restored. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: Option<u32>,

    /// Plan only: measure the group's consume rate, write the plan (status.plan: per
    /// partition the current offset, the target and the records to reprocess, the totals and
    /// an estimated catch-up time) and stop in phase Planned; nothing is scaled or reset.
    /// Setting it to false afterwards executes the request (the plan is made again; when it
    /// differs, the dry run's is kept in status.previousPlan). Set on a request that has
    /// already started (past Pending), it changes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,

    /// How long (seconds) the group may take to catch up after the restore (phase
    /// CatchingUp: until its committed offsets pass the high watermarks read at reset time).
    /// Past it the request ends Failed with reason CatchUpTimeout; the deployments stay
    /// restored. Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub catch_up_timeout_seconds: Option<u32>,

    /// InPlace (default): stop the consumers, reset their group, start them again. Shadow:
    /// leave them running and replay in a copy of the deployment under the group
    /// `<group>-shadow-<request>` (phases ShadowStarting, ShadowCatchingUp, Shadowing);
    /// status.shadow shows the copy's numbers beside the live ones. The deployment must take
    /// its group from env CONSUMER_GROUP (docs/replay-controller.md).
    #[serde(default, skip_serializing_if = "Strategy::is_default")]
    pub strategy: Strategy,

    /// With strategy Shadow: move the live group (and its state topics) to where the shadow
    /// stands, through the same scale-down/restore as a reset, then delete the copy, its
    /// group and its state topics. Without it, deleting the request removes the shadow.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote: bool,
}

impl ReplayRequestSpec {
    /// Check the spec beyond what the CRD schema can say: the reset target with its fields
    /// ([`crate::targets`]), or the request to undo.
    pub fn validate(&self) -> Result<Target, String> {
        crate::drill::check_reset_fields(self)?;
        if self.strategy == Strategy::Shadow
            && (self.lag.is_some() || matches!(self.reset_to, None | Some(ResetTarget::None)))
        {
            return Err(
                "spec.strategy Shadow replays to a target (spec.resetTo, not none) without spec.lag"
                    .to_string(),
            );
        }
        if self.promote && self.strategy != Strategy::Shadow {
            return Err("spec.promote applies to spec.strategy Shadow only".to_string());
        }
        if self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("spec.topics has an empty topic name".to_string());
        }
        if let Some(lag) = &self.lag {
            if lag.replicas < 0 {
                return Err(format!(
                    "spec.lag.replicas must be 0 or more (got {})",
                    lag.replicas
                ));
            }
        }
        crate::targets::target(self)
    }
}

/// The reset target.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResetTarget {
    Earliest,
    Latest,
    Timestamp,
    ByDuration,
    ShiftBy,
    ToOffsets,
    /// No reset: a drill of spec.lag alone.
    None,
}

impl ResetTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
            Self::Timestamp => "timestamp",
            Self::ByDuration => "byDuration",
            Self::ShiftBy => "shiftBy",
            Self::ToOffsets => "toOffsets",
            Self::None => "none",
        }
    }
}

/// One partition's target offset (spec.offsets).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicPartitionOffset {
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    #[schemars(range(min = 0))]
    pub partition: i32,
    #[schemars(range(min = 0))]
    pub offset: i64,
}

/// Consumer lag on purpose: scale a deployment to `replicas` for `holdSeconds`, then restore
/// it, sampling its group's lag while holding and while it drains.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LagSpec {
    /// The Deployment (same namespace) to scale down, e.g. inventory.
    #[schemars(length(min = 1, max = 253))]
    pub deployment: String,

    /// Replicas while holding (0 stops consuming entirely).
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Seconds to hold the deployment at `replicas` before restoring its previous count.
    #[schemars(range(min = 0, max = 86400))]
    pub hold_seconds: u32,

    /// The consumer group whose lag is sampled. Default: the deployment's name (orderflow's
    /// inventory deployment consumes as group inventory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub consumer_group: Option<String>,

    /// The topics whose lag is sampled. Default: [orders].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,

    /// Seconds between two lag samples. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub sample_seconds: Option<u32>,

    /// How long (seconds) to wait for the lag to drain to 0 after restoring. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub drain_timeout_seconds: Option<u32>,

    /// Makes this a drill with a verdict: the lag must drain to 0 within this many seconds
    /// of restoring the deployment. The request records status.lag.drill Passed or Failed
    /// (also the condition DrillPassed and an Event DrillPassed / DrillFailed) with the
    /// measured status.lag.drainedAfterSeconds; not drained by drainTimeoutSeconds fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_drain_seconds: Option<u32>,
}

impl LagSpec {
    pub fn group(&self) -> &str {
        self.consumer_group.as_deref().unwrap_or(&self.deployment)
    }

    pub fn topics(&self) -> Vec<String> {
        self.topics
            .clone()
            .unwrap_or_else(|| vec![orderflow_events::TOPIC_ORDERS.to_string()])
    }
}

/// Where a request is. Pending -> ScalingDown -> Resetting -> Restoring -> CatchingUp
/// [-> HoldingLag] -> Succeeded, or Failed from any of them (deployments restored first); a
/// dry run (spec.dryRun) goes Pending -> Planned and stays there until spec.dryRun is false;
/// a drill (resetTo none): Pending -> HoldingLag -> Succeeded; a shadow replay: Pending ->
/// ShadowStarting -> ShadowCatchingUp -> Shadowing [-> Promoting -> Restoring -> CatchingUp]
/// -> Succeeded.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Planned,
    ScalingDown,
    Resetting,
    Restoring,
    CatchingUp,
    HoldingLag,
    /// Shadow: the shadow group's offsets are set to the target and the copy is created.
    ShadowStarting,
    /// Shadow: following the copy until it passes the high watermarks read at its reset.
    ShadowCatchingUp,
    /// Shadow: caught up; the copy runs beside the live consumer until spec.promote.
    Shadowing,
    /// Shadow: the live group and state are moved to the shadow's, the shadow removed.
    Promoting,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Planned => "Planned",
            Self::ScalingDown => "ScalingDown",
            Self::Resetting => "Resetting",
            Self::Restoring => "Restoring",
            Self::CatchingUp => "CatchingUp",
            Self::HoldingLag => "HoldingLag",
            Self::ShadowStarting => "ShadowStarting",
            Self::ShadowCatchingUp => "ShadowCatchingUp",
            Self::Shadowing => "Shadowing",
            Self::Promoting => "Promoting",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    /// Succeeded or Failed: nothing more happens.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// Started and not finished: deployments may be scaled down, or the group is catching
    /// up on a replay, or a shadow runs (Pending and Planned have touched nothing).
    pub fn is_active(self) -> bool {
        !self.is_final() && !matches!(self, Self::Pending | Self::Planned)
    }

    /// A shadow runs beside the live consumer, which nothing has touched yet.
    pub fn is_shadow(self) -> bool {
        matches!(
            self,
            Self::ShadowStarting | Self::ShadowCatchingUp | Self::Shadowing
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
