//! Drills: a lag experiment (`spec.lag`) with a verdict. With `spec.lag.maxDrainSeconds`
//! the lag must drain to 0 within that many seconds of restoring the deployment; the
//! request records the verdict ([`DrillVerdict`]) in status.lag.drill, the condition
//! `DrillPassed` and an Event, next to the measured status.lag.drainedAfterSeconds.
//!
//! `resetTo: none` is a drill without a reset: nothing is reset and spec.deployment is not
//! scaled; only spec.lag runs (scale its deployment down, hold, restore, measure). It then
//! needs spec.lag, and spec.consumerGroup / deployment / topics are left out
//! ([`check_spec`]; the CRD's CEL rules say the same).
//!
//! Pure: the reconciler's part is in `reconcile::drill`.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{ReplayRequestSpec, ResetTarget};

/// A drill's verdict.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DrillVerdict {
    /// The lag drained within spec.lag.maxDrainSeconds.
    Passed,
    /// It drained later, or not within spec.lag.drainTimeoutSeconds.
    Failed,
}

impl DrillVerdict {
    /// The reason of the condition and of the Event: `DrillPassed` or `DrillFailed`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Passed => "DrillPassed",
            Self::Failed => "DrillFailed",
        }
    }

    /// The metric label: `passed` or `failed`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for DrillVerdict {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.label())
    }
}

/// The verdict on a drain measured `drained_after_seconds` after the restore (`None`: it did
/// not drain within the drain timeout) against `max_drain_seconds`.
pub fn verdict(drained_after_seconds: Option<f64>, max_drain_seconds: u32) -> DrillVerdict {
    match drained_after_seconds {
        Some(s) if s <= f64::from(max_drain_seconds) => DrillVerdict::Passed,
        _ => DrillVerdict::Failed,
    }
}

/// One sentence on the verdict, for the status message, the condition and the Event.
pub fn describe(
    v: DrillVerdict,
    group: &str,
    drained_after_seconds: Option<f64>,
    max_drain_seconds: u32,
) -> String {
    match (v, drained_after_seconds) {
        (DrillVerdict::Passed, Some(s)) => format!(
            "drill passed: the lag of {group} drained in {s:.1} s, within spec.lag.maxDrainSeconds {max_drain_seconds}"
        ),
        (_, Some(s)) => format!(
            "drill failed: the lag of {group} drained in {s:.1} s, more than spec.lag.maxDrainSeconds {max_drain_seconds}"
        ),
        (_, None) => format!(
            "drill failed: the lag of {group} did not drain within spec.lag.drainTimeoutSeconds (spec.lag.maxDrainSeconds {max_drain_seconds})"
        ),
    }
}

/// A reset (resetTo other than none) names what it resets: spec.consumerGroup,
/// spec.deployment and spec.topics are required (optional in the schema for drills).
pub fn check_reset_fields(spec: &ReplayRequestSpec) -> Result<(), String> {
    let missing: Vec<&str> = [
        ("spec.consumerGroup", spec.consumer_group.trim().is_empty()),
        ("spec.deployment", spec.deployment.trim().is_empty()),
        ("spec.topics", spec.topics.is_empty()),
    ]
    .into_iter()
    .filter_map(|(f, empty)| empty.then_some(f))
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} required with spec.resetTo {} (only resetTo none, a drill, goes without)",
            missing.join(", "),
            spec.reset_to.map_or("(undoOf)", |r| r.as_str())
        ))
    }
}

/// A drill without a reset (resetTo none): spec.lag is required, and the reset's fields
/// are left out (they would suggest something is reset or scaled that is not).
pub fn check_spec(spec: &ReplayRequestSpec) -> Result<(), String> {
    if spec.reset_to != Some(ResetTarget::None) {
        return check_reset_fields(spec);
    }
    let Some(lag) = &spec.lag else {
        return Err(
            "spec.lag is required with spec.resetTo none (a drill: nothing is reset, spec.lag \
             says which deployment to scale down and whose lag to measure)"
                .to_string(),
        );
    };
    if lag.replicas < 0 {
        return Err(format!(
            "spec.lag.replicas must be 0 or more (got {})",
            lag.replicas
        ));
    }
    let extra: Vec<&str> = [
        ("spec.consumerGroup", !spec.consumer_group.is_empty()),
        ("spec.deployment", !spec.deployment.is_empty()),
        ("spec.topics", !spec.topics.is_empty()),
        ("spec.timestamp", spec.timestamp.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} not used with spec.resetTo none (nothing is reset; the drill scales \
             spec.lag.deployment): leave it out",
            extra.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> ReplayRequestSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_verdict_compares_the_drain_with_the_maximum() {
        assert_eq!(verdict(Some(4.9), 5), DrillVerdict::Passed);
        assert_eq!(verdict(Some(5.0), 5), DrillVerdict::Passed);
        assert_eq!(verdict(Some(5.1), 5), DrillVerdict::Failed);
        assert_eq!(verdict(Some(0.0), 0), DrillVerdict::Passed);
        // never drained (drain timeout): failed, whatever the maximum
        assert_eq!(verdict(None, 86400), DrillVerdict::Failed);
        assert_eq!(
            describe(DrillVerdict::Failed, "inventory", Some(7.25), 5),
            "drill failed: the lag of inventory drained in 7.2 s, more than spec.lag.maxDrainSeconds 5"
        );
        assert_eq!(
            describe(DrillVerdict::Passed, "inventory", Some(2.0), 5),
            "drill passed: the lag of inventory drained in 2.0 s, within spec.lag.maxDrainSeconds 5"
        );
        assert!(describe(DrillVerdict::Failed, "inventory", None, 5).contains("did not drain"));
        assert_eq!(
            serde_json::to_value(DrillVerdict::Failed).unwrap(),
            serde_json::json!("Failed")
        );
        assert_eq!(
            (DrillVerdict::Passed.reason(), DrillVerdict::Failed.label()),
            ("DrillPassed", "failed")
        );
    }

    #[test]
    fn a_drill_without_a_reset_needs_lag_and_nothing_of_a_reset() {
        let lag = serde_json::json!({"deployment": "inventory", "replicas": 0, "holdSeconds": 5});
        let ok = spec(serde_json::json!({"resetTo": "none", "lag": lag}));
        assert_eq!(check_spec(&ok), Ok(()));
        let no_lag = spec(serde_json::json!({"resetTo": "none"}));
        assert!(check_spec(&no_lag)
            .unwrap_err()
            .starts_with("spec.lag is required with spec.resetTo none"));
        let extra = spec(serde_json::json!({"resetTo": "none", "lag": lag,
                                            "deployment": "analytics", "topics": ["orders"]}));
        assert_eq!(
            check_spec(&extra).unwrap_err(),
            "spec.deployment, spec.topics not used with spec.resetTo none (nothing is reset; \
             the drill scales spec.lag.deployment): leave it out"
        );
        // a reset still needs what it resets, named in the error
        let reset = spec(serde_json::json!({"resetTo": "earliest", "deployment": "analytics"}));
        assert_eq!(
            reset.validate().unwrap_err(),
            "spec.consumerGroup, spec.topics required with spec.resetTo earliest (only resetTo \
             none, a drill, goes without)"
        );
        assert!(check_spec(&reset).is_err());
    }
}
