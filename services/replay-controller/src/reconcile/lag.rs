//! HoldingLag, the lag experiment of `spec.lag`: hold a deployment at `lag.replicas` until
//! `holdUntil`, restore it, and sample its group's lag (total records, and the largest lag
//! in seconds) until it drains or the drain timeout passes; a drill gets its verdict then
//! (`drill`).

use chrono::SecondsFormat;

use super::drill::judge;
use super::{fmt_time, parse_time, secs, until, Next, Run, StepError, LAG_FIELD};
use crate::crd::{
    LagSpec, LagStatus, Phase, ReplayRequestStatus, Restore, DEFAULT_DRAIN_TIMEOUT_SECONDS,
    DEFAULT_SAMPLE_SECONDS,
};

impl Run<'_> {
    /// Enter HoldingLag for `lag`: its deployment's current count is listed in
    /// status.restore first (it is scaled down by the next step, after this is saved).
    /// `lead` begins the message.
    pub(super) async fn begin_hold(
        &self,
        st: &mut ReplayRequestStatus,
        lag: &LagSpec,
        lead: String,
    ) -> Result<Next, StepError> {
        let Some(current) = self.replicas(&lag.deployment).await? else {
            return Ok(self.missing(st, &lag.deployment, LAG_FIELD).await?);
        };
        st.restore.push(Restore {
            deployment: lag.deployment.clone(),
            replicas: current,
        });
        let hold_until = self.now + secs(lag.hold_seconds);
        st.lag = Some(LagStatus {
            consumer_group: lag.group().to_string(),
            hold_until: Some(fmt_time(hold_until)),
            ..LagStatus::default()
        });
        let msg = format!(
            "{lead}; holding deployment {} at {} replica(s) until {}, then back to {current}",
            lag.deployment,
            lag.replicas,
            hold_until.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        self.enter(st, Phase::HoldingLag, msg);
        Ok(Next::Continue)
    }

    pub(super) async fn hold(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let Some(lag) = self.spec().lag.clone() else {
            self.succeed(st, "spec.lag was removed; nothing to hold".to_string());
            return Ok(Next::Continue);
        };
        let mut ls = st.lag.clone().unwrap_or_default();
        let every = secs(lag.sample_seconds.unwrap_or(DEFAULT_SAMPLE_SECONDS));
        let last_at = ls.samples.last().and_then(|s| parse_time(Some(&s.at)));
        let due =
            last_at.is_none_or(|t| self.now >= t + every - chrono::Duration::milliseconds(100));
        let next_sample = last_at.map_or(self.now, |t| t + every);
        let group = ls.consumer_group.clone();
        let Some(restored_at) = parse_time(ls.restored_at.as_deref()) else {
            let hold_until = parse_time(ls.hold_until.as_deref()).unwrap_or(self.now);
            if self.now < hold_until {
                if !self.scale(&lag.deployment, lag.replicas).await? {
                    return Ok(self.missing(st, &lag.deployment, LAG_FIELD).await?);
                }
                if due {
                    let v = self.ctx.admin.lag(&group, &lag.topics()).await?;
                    ls.push(fmt_time(self.now), v.records, v.seconds);
                }
                st.message = Some(format!(
                    "holding deployment {} at {} replica(s) until {}: lag of {group} {}{} (peak {})",
                    lag.deployment,
                    lag.replicas,
                    hold_until.to_rfc3339_opts(SecondsFormat::Secs, true),
                    ls.samples.last().map_or(0, |s| s.lag),
                    behind(&ls),
                    ls.peak
                ));
                st.lag = Some(ls);
                let wake = if due { self.now + every } else { next_sample };
                return Ok(Next::Wait(until(self.now, wake.min(hold_until))));
            }
            self.restore_one(st, &lag.deployment).await?;
            ls.restored_at = Some(fmt_time(self.now));
            st.message = Some(format!(
                "deployment {} restored; waiting for the lag of {group} to drain (peak {})",
                lag.deployment, ls.peak
            ));
            st.lag = Some(ls);
            return Ok(Next::Continue);
        };
        if due {
            let v = self.ctx.admin.lag(&group, &lag.topics()).await?;
            ls.push(fmt_time(self.now), v.records, v.seconds);
            if v.records == 0 {
                let after = (self.now - restored_at).num_milliseconds() as f64 / 1000.0;
                ls.drained_after_seconds = Some(after);
                let verdict = judge(&lag, &mut ls, Some(after));
                let msg = format!(
                    "lag of {group} peaked at {}{} and drained {after:.1} s after {} was restored{verdict}",
                    ls.peak,
                    peak_seconds(&ls),
                    lag.deployment
                );
                st.lag = Some(ls);
                self.succeed(st, msg);
                return Ok(Next::Continue);
            }
        }
        let drain_deadline = restored_at
            + secs(
                lag.drain_timeout_seconds
                    .unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECONDS),
            );
        if self.now >= drain_deadline {
            let verdict = judge(&lag, &mut ls, None);
            let msg = format!(
                "lag of {group} peaked at {}{} and was still {} when the drain timeout passed ({} s); deployments restored{verdict}",
                ls.peak,
                peak_seconds(&ls),
                ls.samples.last().map_or(0, |s| s.lag),
                lag.drain_timeout_seconds.unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECONDS)
            );
            st.lag = Some(ls);
            self.succeed(st, msg);
            return Ok(Next::Continue);
        }
        st.message = Some(format!(
            "waiting for the lag of {group} to drain: {}{} (peak {})",
            ls.samples.last().map_or(0, |s| s.lag),
            behind(&ls),
            ls.peak
        ));
        st.lag = Some(ls);
        let wake = if due { self.now + every } else { next_sample };
        Ok(Next::Wait(until(self.now, wake.min(drain_deadline))))
    }
}

/// ` (12.3 s behind)` for the last sample, when its lag in seconds is known.
fn behind(ls: &LagStatus) -> String {
    ls.samples
        .last()
        .and_then(|s| s.seconds)
        .map(|s| format!(" ({s:.1} s behind)"))
        .unwrap_or_default()
}

/// ` (45.0 s behind at most)`, when the peak in seconds is known.
fn peak_seconds(ls: &LagStatus) -> String {
    ls.peak_seconds
        .map(|s| format!(" ({s:.1} s behind at most)"))
        .unwrap_or_default()
}
