//! HoldingLag, the lag experiment of `spec.lag`: hold a deployment at `lag.replicas` until
//! `holdUntil`, restore it, and sample its group's lag until it drains or the drain timeout
//! passes.

use chrono::SecondsFormat;

use super::{fmt_time, parse_time, secs, until, Next, Run, StepError, LAG_FIELD};
use crate::crd::{ReplayRequestStatus, DEFAULT_DRAIN_TIMEOUT_SECONDS, DEFAULT_SAMPLE_SECONDS};

impl Run<'_> {
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
                    ls.push(fmt_time(self.now), v);
                }
                st.message = Some(format!(
                    "holding deployment {} at {} replica(s) until {}: lag of {group} {} (peak {})",
                    lag.deployment,
                    lag.replicas,
                    hold_until.to_rfc3339_opts(SecondsFormat::Secs, true),
                    ls.samples.last().map_or(0, |s| s.lag),
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
            ls.push(fmt_time(self.now), v);
            if v == 0 {
                let after = (self.now - restored_at).num_milliseconds() as f64 / 1000.0;
                ls.drained_after_seconds = Some(after);
                let msg = format!(
                    "lag of {group} peaked at {} and drained {after:.1} s after {} was restored",
                    ls.peak, lag.deployment
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
            let msg = format!(
                "lag of {group} peaked at {} and was still {} when the drain timeout passed ({} s); deployments restored",
                ls.peak,
                ls.samples.last().map_or(0, |s| s.lag),
                lag.drain_timeout_seconds.unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECONDS)
            );
            st.lag = Some(ls);
            self.succeed(st, msg);
            return Ok(Next::Continue);
        }
        st.message = Some(format!(
            "waiting for the lag of {group} to drain: {} (peak {})",
            ls.samples.last().map_or(0, |s| s.lag),
            ls.peak
        ));
        st.lag = Some(ls);
        let wake = if due { self.now + every } else { next_sample };
        Ok(Next::Wait(until(self.now, wake.min(drain_deadline))))
    }
}
