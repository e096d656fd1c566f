//! Drills (see [`crate::drill`]): a request with `resetTo: none` starts holding spec.lag
//! straight from Pending (nothing reset, spec.deployment not scaled); a drained (or timed
//! out) lag with spec.lag.maxDrainSeconds gets its verdict, which becomes the condition
//! `DrillPassed`, an Event `DrillPassed` / `DrillFailed` (Warning) and the metric
//! `orderflow_replay_drill_drain_seconds`, once, when the status recording it is written.

use chrono::{DateTime, Utc};
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::{fmt_time, parse_time, Next, Run, StepError};
use crate::crd::{LagSpec, LagStatus, ReplayRequestStatus};
use crate::drill::{check_spec, describe, verdict, DrillVerdict};

/// The condition `DrillPassed` of a status whose drill has a verdict: (type, status,
/// reason, message).
pub fn condition(st: &ReplayRequestStatus) -> Option<(&'static str, &'static str, String, String)> {
    let lag = st.lag.as_ref()?;
    let v = lag.drill?;
    let status = match v {
        DrillVerdict::Passed => "True",
        DrillVerdict::Failed => "False",
    };
    // the final message: the lag's peak, the drain and the verdict
    let message = st.message.clone().unwrap_or_default();
    Some(("DrillPassed", status, v.reason().to_string(), message))
}

/// Give the drill of `lag` its verdict in `ls`, drained `drained_after` seconds after the
/// restore (`None`: not within the drain timeout); returns the sentence saying so. Nothing
/// when spec.lag has no maxDrainSeconds (a lag experiment without a verdict).
pub(super) fn judge(lag: &LagSpec, ls: &mut LagStatus, drained_after: Option<f64>) -> String {
    let Some(max) = lag.max_drain_seconds else {
        return String::new();
    };
    let v = verdict(drained_after, max);
    let text = describe(v, &ls.consumer_group, drained_after, max);
    ls.drill = Some(v);
    format!("; {text}")
}

impl Run<'_> {
    /// Pending of a drill without a reset (resetTo none): check the spec, wait for other
    /// requests on the same deployments, then hold spec.lag.
    pub(super) async fn start_drill(
        &self,
        st: &mut ReplayRequestStatus,
    ) -> Result<Next, StepError> {
        let spec = self.spec();
        if let Err(msg) = check_spec(spec) {
            return Ok(self.fail(st, "InvalidSpec", msg).await?);
        }
        let Some(lag) = &spec.lag else {
            return Ok(self
                .fail(st, "InvalidSpec", "spec.lag is required".into())
                .await?);
        };
        if let Some(wait) = self.queued(st).await? {
            return Ok(wait);
        }
        st.started_at = Some(fmt_time(self.now));
        let lead = format!(
            "drill without a reset (resetTo none) of the lag of {}",
            lag.group()
        );
        self.begin_hold(st, lag, lead).await
    }

    /// After the status recording a verdict was written: its Event, log line and metric.
    pub(super) async fn announce_verdict(
        &self,
        old: &ReplayRequestStatus,
        st: &ReplayRequestStatus,
    ) {
        let before = old.lag.as_ref().and_then(|l| l.drill);
        let Some(ls) = st
            .lag
            .as_ref()
            .filter(|l| before.is_none() && l.drill.is_some())
        else {
            return;
        };
        let Some(v) = ls.drill else { return };
        let note = st.message.clone().unwrap_or_default();
        let measured = ls
            .drained_after_seconds
            .or_else(|| since(ls.restored_at.as_deref(), self.now))
            .unwrap_or_default();
        self.ctx.metrics.drill(&ls.consumer_group, v, measured);
        tracing::info!(
            event = "drill",
            name = %self.rr.name_any(),
            namespace = self.rr.metadata.namespace.as_deref().unwrap_or_default(),
            group = %ls.consumer_group,
            verdict = v.label(),
            drained_after_seconds = ls.drained_after_seconds,
            "{note}"
        );
        let kind = match v {
            DrillVerdict::Passed => EventType::Normal,
            DrillVerdict::Failed => EventType::Warning,
        };
        self.event(kind, v.reason(), &note).await;
    }
}

/// Seconds from `from` (RFC 3339) until `now`.
fn since(from: Option<&str>, now: DateTime<Utc>) -> Option<f64> {
    parse_time(from).map(|t| (now - t).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(max: Option<u32>) -> LagSpec {
        LagSpec {
            deployment: "inventory".into(),
            replicas: 0,
            hold_seconds: 5,
            consumer_group: None,
            topics: None,
            sample_seconds: None,
            drain_timeout_seconds: None,
            max_drain_seconds: max,
        }
    }

    #[test]
    fn a_verdict_only_with_max_drain_seconds_and_its_condition() {
        let mut ls = LagStatus {
            consumer_group: "inventory".into(),
            ..LagStatus::default()
        };
        assert_eq!(judge(&lag(None), &mut ls, Some(3.0)), "");
        assert_eq!(ls.drill, None);
        let st = ReplayRequestStatus {
            lag: Some(ls.clone()),
            ..ReplayRequestStatus::default()
        };
        assert_eq!(condition(&st), None);

        let note = judge(&lag(Some(2)), &mut ls, Some(3.0));
        assert!(note.starts_with("; drill failed: the lag of inventory drained in 3.0 s"));
        assert_eq!(ls.drill, Some(DrillVerdict::Failed));
        let st = ReplayRequestStatus {
            lag: Some(ls.clone()),
            message: Some(format!("lag of inventory peaked at 9{note}")),
            ..ReplayRequestStatus::default()
        };
        let (t, s, r, m) = condition(&st).unwrap();
        assert_eq!((t, s, r.as_str()), ("DrillPassed", "False", "DrillFailed"));
        assert!(m.contains("more than spec.lag.maxDrainSeconds 2"), "{m}");

        judge(&lag(Some(10)), &mut ls, Some(3.0));
        let st = ReplayRequestStatus {
            lag: Some(ls),
            ..ReplayRequestStatus::default()
        };
        let (_, s, r, _) = condition(&st).unwrap();
        assert_eq!((s, r.as_str()), ("True", "DrillPassed"));
    }

    #[test]
    fn seconds_since_the_restore() {
        let now = parse_time(Some("2026-11-22T10:00:07.500Z")).unwrap();
        assert_eq!(since(Some("2026-11-22T10:00:00.000Z"), now), Some(7.5));
        assert_eq!(since(None, now), None);
    }
}
