//! How a request fails: ending Failed (every deployment in `status.restore` restored first),
//! and Kafka errors, which fail the request when retrying cannot help and are retried with
//! backoff otherwise.

use std::time::Duration;

use chrono::SecondsFormat;
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::{conditions, fmt_time, Error, Next, Run, Settings};
use crate::crd::{Phase, ReplayRequestStatus, DEFAULT_SAMPLE_SECONDS, DEFAULT_TIMEOUT_SECONDS};
use crate::kafka::AdminError;

/// Backoff before Kafka retry `n` (1-based): base * 2^(n-1), at most `max`.
pub fn backoff(settings: &Settings, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
    settings
        .retry_base
        .saturating_mul(factor)
        .min(settings.retry_max)
}

impl Run<'_> {
    /// End Failed with DeploymentNotFound; `field` names the spec field when it is not
    /// spec.deployment.
    pub(super) async fn missing(
        &self,
        st: &mut ReplayRequestStatus,
        deployment: &str,
        field: &str,
    ) -> Result<Next, kube::Error> {
        let msg = format!("deployment {}/{deployment}{field} not found", self.ns);
        self.fail(st, "DeploymentNotFound", msg).await
    }

    /// End Failed, after restoring every deployment still listed in `status.restore`.
    pub(super) async fn fail(
        &self,
        st: &mut ReplayRequestStatus,
        reason: &str,
        message: String,
    ) -> Result<Next, kube::Error> {
        let restored = self.restore_all(&st.restore).await?;
        st.restore.clear();
        // a shadow's copy stops; its group and state topics go with the request
        if let Some(sh) = st.shadow.as_ref().filter(|s| s.removed_at.is_none()) {
            self.delete_copy(sh).await?;
        }
        let message = if restored.is_empty() {
            message
        } else {
            format!("{message} (restored {})", restored.join(", "))
        };
        tracing::warn!(request = %self.rr.name_any(), reason, "{message}");
        st.conditions = conditions(
            &st.conditions,
            &ReplayRequestStatus {
                phase: Phase::Failed,
                ..st.clone()
            },
            Some((reason, &message)),
            &fmt_time(self.now),
        );
        self.enter(st, Phase::Failed, message);
        st.completed_at = Some(fmt_time(self.now));
        Ok(Next::Done)
    }

    /// Kafka did not answer: permanent errors fail the request; others are retried with
    /// backoff, but not past the deadline while the consumers are scaled down.
    pub(super) async fn kafka_failed(
        &self,
        st: &mut ReplayRequestStatus,
        e: AdminError,
    ) -> Result<Next, Error> {
        let outcome = if let Some(reason) = e.permanent_reason() {
            self.fail(st, reason, e.to_string()).await
        } else if matches!(
            st.phase,
            Phase::ScalingDown | Phase::Resetting | Phase::Promoting
        ) && self.now >= self.deadline(st)
        {
            let msg = format!(
                "Kafka unavailable past the {} s timeout: {e}",
                self.spec()
                    .timeout_seconds
                    .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            );
            self.fail(st, "KafkaUnavailable", msg).await
        } else if matches!(st.phase, Phase::CatchingUp | Phase::ShadowCatchingUp)
            && self.now >= self.catch_up_deadline(st).1
        {
            let msg = format!(
                "group {} could not be followed to the end within {} s (spec.catchUpTimeoutSeconds): Kafka unavailable: {e}; the deployments stay restored",
                self.spec().consumer_group,
                self.catch_up_deadline(st).0
            );
            self.fail(st, "CatchUpTimeout", msg).await
        } else {
            st.retries += 1;
            let mut wait = backoff(&self.ctx.settings, st.retries);
            if st.phase == Phase::HoldingLag {
                // sampling only: never hold the deployment down longer because of it
                wait = wait.min(Duration::from_secs(u64::from(DEFAULT_SAMPLE_SECONDS)));
            }
            let at = self.now + chrono::Duration::from_std(wait).unwrap_or_default();
            st.next_attempt_at = Some(fmt_time(at));
            st.message = Some(format!(
                "Kafka unavailable in phase {} ({e}); retry {} at {}",
                st.phase,
                st.retries,
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
            tracing::warn!(request = %self.rr.name_any(), retries = st.retries, error = %e, "Kafka unavailable");
            self.ctx.metrics.failed("kafka");
            if st.retries == 1 {
                let note = st.message.clone().unwrap_or_default();
                self.event(EventType::Warning, "KafkaUnavailable", &note)
                    .await;
            }
            return Ok(Next::Wait(wait));
        };
        Ok(outcome?)
    }
}
