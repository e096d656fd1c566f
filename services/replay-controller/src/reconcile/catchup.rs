//! CatchingUp: after the restore, follow the group until its committed offsets pass the high
//! watermarks read when the offsets were reset (status.catchUp: records done and left,
//! records per second, the ETA, and `caughtUpAt`, when the controller first saw every
//! partition passed). Then HoldingLag (with spec.lag) or Succeeded. Past
//! spec.catchUpTimeoutSeconds the request ends Failed, reason `CatchUpTimeout`; the
//! deployments stay restored (nothing is scaled down in this phase).
//!
//! The committed offsets are read every [`Settings::catch_up_poll`](super::Settings), so
//! `caughtUpAt` is at most that late; the progress numbers (a status write) are updated every
//! [`Settings::progress_every`](super::Settings).

use chrono::SecondsFormat;
use orderflowctl::PartitionLag;

use super::{fmt_time, parse_time, secs, until, Next, Run, StepError};
use crate::crd::{
    CatchUpPartition, CatchUpStatus, PartitionOffsets, ReplayRequestStatus,
    DEFAULT_CATCH_UP_TIMEOUT_SECONDS,
};

/// The targets of a catch-up: where the reset put each partition (`offsets`) and its high
/// watermark now (`positions`, read at reset time).
pub(super) fn targets(offsets: &[PartitionOffsets], positions: &[PartitionLag]) -> CatchUpStatus {
    let partitions: Vec<CatchUpPartition> = offsets
        .iter()
        .map(|o| CatchUpPartition {
            topic: o.topic.clone(),
            partition: o.partition,
            from: o.to,
            target: positions
                .iter()
                .find(|p| p.topic == o.topic && p.partition == o.partition)
                .map_or(o.to, |p| p.high_watermark),
        })
        .collect();
    let total = partitions.iter().map(|p| (p.target - p.from).max(0)).sum();
    CatchUpStatus {
        partitions,
        records_total: total,
        records_left: total,
        ..CatchUpStatus::default()
    }
}

/// Records done (committed past, per partition at most up to its target) and whether every
/// partition is at or past its target. A partition not in `positions` counts as not moved.
pub(super) fn progress(targets: &[CatchUpPartition], positions: &[PartitionLag]) -> (i64, bool) {
    let mut done = 0;
    let mut passed = true;
    for t in targets {
        let committed = positions
            .iter()
            .find(|p| p.topic == t.topic && p.partition == t.partition)
            .and_then(|p| p.committed)
            .unwrap_or(t.from);
        done += (committed.min(t.target) - t.from).max(0);
        passed &= committed >= t.target;
    }
    (done, passed)
}

/// Where a followed group is.
pub(super) enum Followed {
    /// Passed its targets (status.catchUp says so); how, for the message.
    CaughtUp(String),
    /// Not yet, or the request failed (CatchUpTimeout): what the step returns.
    Not(Next),
}

impl Run<'_> {
    pub(super) async fn catch_up(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let group = self.spec().consumer_group.clone();
        match self.follow(st, &group).await? {
            Followed::CaughtUp(note) => self.after_catch_up(st, note).await,
            Followed::Not(next) => Ok(next),
        }
    }

    /// One look at `group` against status.catchUp (CatchingUp, and a shadow's
    /// ShadowCatchingUp): the progress, caughtUpAt, or CatchUpTimeout.
    pub(super) async fn follow(
        &self,
        st: &mut ReplayRequestStatus,
        group: &str,
    ) -> Result<Followed, StepError> {
        let spec = self.spec();
        let Some(mut cu) = st.catch_up.clone() else {
            let note = "no high watermarks were recorded at reset time: catch-up not followed";
            return Ok(Followed::CaughtUp(note.to_string()));
        };
        let positions = self.ctx.admin.positions(group, &spec.topics).await?;
        let (done, passed) = progress(&cu.partitions, &positions);
        let entered = parse_time(st.phase_started_at.as_deref()).unwrap_or(self.now);
        if passed {
            let took = (self.now - entered).num_milliseconds() as f64 / 1000.0;
            cu.records_done = cu.records_total;
            cu.records_left = 0;
            cu.eta = None;
            cu.sampled_at = Some(fmt_time(self.now));
            cu.caught_up_at = Some(fmt_time(self.now));
            if took > 0.0 {
                cu.records_per_second = Some(round1(cu.records_total as f64 / took));
            }
            let note = format!(
                "group {group} caught up ({} record(s), {took:.1} s after the restore)",
                cu.records_total
            );
            st.catch_up = Some(cu);
            return Ok(Followed::CaughtUp(note));
        }
        let (timeout, deadline) = self.catch_up_deadline(st);
        if self.now >= deadline {
            let msg = format!(
                "group {group} did not catch up within {timeout} s (spec.catchUpTimeoutSeconds): {done} of {} record(s) done, {} left; the deployments stay restored",
                cu.records_total,
                cu.records_total - done
            );
            cu.records_done = done;
            cu.records_left = cu.records_total - done;
            st.catch_up = Some(cu);
            return Ok(Followed::Not(self.fail(st, "CatchUpTimeout", msg).await?));
        }
        let last = parse_time(cu.sampled_at.as_deref());
        let due = last.is_none_or(|t| self.now >= t + self.progress_every());
        if due {
            let (since, before) = (last.unwrap_or(entered), cu.records_done);
            let dt = (self.now - since).num_milliseconds() as f64 / 1000.0;
            cu.records_done = done;
            cu.records_left = cu.records_total - done;
            cu.sampled_at = Some(fmt_time(self.now));
            if dt > 0.0 {
                let rate = (done - before).max(0) as f64 / dt;
                cu.records_per_second = Some(round1(rate));
                cu.eta = (rate > 0.0).then(|| {
                    let ms = (cu.records_left as f64 / rate * 1000.0) as i64;
                    fmt_time(self.now + chrono::Duration::milliseconds(ms))
                });
            }
            st.message = Some(format!(
                "catching up: group {group} is past {} of {} record(s), {} left{}{} (gives up at {})",
                cu.records_done,
                cu.records_total,
                cu.records_left,
                cu.records_per_second
                    .map(|r| format!(", {r:.1} records/s"))
                    .unwrap_or_default(),
                cu.eta
                    .as_deref()
                    .map(|e| format!(", ETA {e}"))
                    .unwrap_or_default(),
                deadline.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
            st.catch_up = Some(cu);
        }
        let wake = self.now
            + chrono::Duration::from_std(self.ctx.settings.catch_up_poll).unwrap_or_default();
        Ok(Followed::Not(Next::Wait(until(
            self.now,
            wake.min(deadline),
        ))))
    }

    /// spec.catchUpTimeoutSeconds (or its default), and when CatchingUp gives up: that long
    /// after the phase began.
    pub(super) fn catch_up_deadline(
        &self,
        st: &ReplayRequestStatus,
    ) -> (u32, chrono::DateTime<chrono::Utc>) {
        let entered = parse_time(st.phase_started_at.as_deref()).unwrap_or(self.now);
        let timeout = self
            .spec()
            .catch_up_timeout_seconds
            .unwrap_or(DEFAULT_CATCH_UP_TIMEOUT_SECONDS);
        (timeout, entered + secs(timeout))
    }

    fn progress_every(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.ctx.settings.progress_every).unwrap_or_default()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_up_to_each_target() {
        let offsets = vec![
            PartitionOffsets {
                topic: "orders".into(),
                partition: 0,
                from: Some(40),
                to: 0,
            },
            PartitionOffsets {
                topic: "orders".into(),
                partition: 1,
                from: Some(9),
                to: 10,
            },
        ];
        let at_reset = vec![
            PartitionLag::new("orders", 0, Some(0), 0, 40),
            PartitionLag::new("orders", 1, Some(10), 0, 10),
        ];
        let cu = targets(&offsets, &at_reset);
        assert_eq!(cu.records_total, 40);
        assert_eq!(progress(&cu.partitions, &at_reset), (0, false));
        let later = vec![
            PartitionLag::new("orders", 0, Some(25), 0, 60),
            PartitionLag::new("orders", 1, Some(12), 0, 12),
        ];
        assert_eq!(progress(&cu.partitions, &later), (25, false));
        let past = vec![
            PartitionLag::new("orders", 0, Some(55), 0, 60),
            PartitionLag::new("orders", 1, Some(12), 0, 12),
        ];
        assert_eq!(progress(&cu.partitions, &past), (40, true));
    }
}
