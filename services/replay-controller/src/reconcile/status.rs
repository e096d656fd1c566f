//! The status: its conditions, the server-side apply patch that writes it, and the Events
//! and log line of a phase change.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::phases::reset_label;
use super::{drill, fmt_time, history, Error, Run, MANAGER};
use crate::crd::{Condition, Phase, ReplayRequestStatus};

/// The conditions for a status: Ready, Progressing and Failed (and DrillPassed once a drill
/// has its verdict), keeping each condition's
/// lastTransitionTime while its status does not change.
pub fn conditions(
    old: &[Condition],
    st: &ReplayRequestStatus,
    failure: Option<(&str, &str)>,
    now: &str,
) -> Vec<Condition> {
    let progressing_reason = if st.retries > 0 {
        "KafkaUnavailable"
    } else {
        st.phase.as_str()
    };
    let previous_failure = old
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        });
    let failed = match (st.phase, failure) {
        (Phase::Failed, Some((r, m))) => ("True", r.to_string(), m.to_string()),
        (Phase::Failed, None) => {
            let (r, m) = previous_failure.unwrap_or_default();
            ("True", r, m)
        }
        _ => ("False", "NoFailure".to_string(), String::new()),
    };
    let wanted = [
        (
            "Ready",
            if st.phase == Phase::Succeeded {
                "True"
            } else {
                "False"
            },
            st.phase.as_str().to_string(),
            st.message.clone().unwrap_or_default(),
        ),
        (
            "Progressing",
            if st.phase.is_final() || st.phase == Phase::Planned {
                "False"
            } else {
                "True"
            },
            progressing_reason.to_string(),
            st.message.clone().unwrap_or_default(),
        ),
        ("Failed", failed.0, failed.1, failed.2),
    ];
    wanted
        .into_iter()
        .chain(drill::condition(st))
        .map(|(type_, status, reason, message)| {
            let since = old
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.to_string());
            Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason),
                message: (!message.is_empty()).then_some(message),
                last_transition_time: Some(since),
            }
        })
        .collect()
}

impl Run<'_> {
    /// Write the status when it changed; an Event when the phase changed, and a Warning
    /// Event `HistoryTruncated` when the reset's truncated partitions were first recorded.
    pub(super) async fn save(
        &self,
        old: &ReplayRequestStatus,
        st: &mut ReplayRequestStatus,
        before: Phase,
    ) -> Result<(), Error> {
        st.observed_generation = self.rr.meta().generation;
        // st.conditions: the saved ones, or the Failed ones fail() just set
        let now = fmt_time(self.now);
        let mut conds = conditions(&st.conditions, st, None, &now);
        conds.extend(history::condition(&st.conditions, st, &self.rr.spec, &now));
        st.conditions = conds;
        if st == old {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": "orderflow.io/v1alpha1",
            "kind": "ReplayRequest",
            "status": st,
        });
        self.rrs
            .patch_status(
                &self.rr.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        if st.phase != before {
            self.ctx.metrics.entered(st.phase.as_str());
            let message = st.message.clone().unwrap_or_default();
            // one line per phase change, its text the phase's message; `event: "phase"` selects
            // them: `kubectl logs deploy/replay-controller | jq 'select(.event == "phase")'`
            tracing::info!(
                event = "phase",
                name = %self.rr.name_any(),
                namespace = self.rr.metadata.namespace.as_deref().unwrap_or_default(),
                phase = %st.phase,
                from = %before,
                group = %self.rr.spec.consumer_group,
                "{message}"
            );
            let kind = if st.phase == Phase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.event(kind, st.phase.as_str(), &message).await;
        }
        if old.history_truncated.is_empty() && !st.history_truncated.is_empty() {
            let note = history::event_note(
                &self.rr.spec.consumer_group,
                &reset_label(&self.rr.spec),
                &st.history_truncated,
            );
            tracing::warn!(
                event = "history_truncated",
                name = %self.rr.name_any(),
                namespace = self.rr.metadata.namespace.as_deref().unwrap_or_default(),
                group = %self.rr.spec.consumer_group,
                partitions = st.history_truncated.len(),
                "{note}"
            );
            self.event(EventType::Warning, history::REASON, &note).await;
        }
        self.announce_verdict(old, st).await;
        Ok(())
    }

    pub(super) async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&ev, &self.rr.object_ref(&()))
            .await
        {
            tracing::warn!(request = %self.rr.name_any(), error = %e, "could not publish an Event");
        }
    }
}
