//! Plan, then execute (spec.dryRun): a dry run measures the group's consume rate, writes the
//! plan (status.plan) and stops in Planned, touching nothing; setting spec.dryRun to false
//! executes it, making the plan again first (status.previousPlan keeps the dry run's when
//! they differ).
//!
//! The consume rate is measured from two reads of the group's committed offsets on
//! spec.topics, [`Settings::rate_window`](super::Settings) apart (the first one is kept in
//! status.rateSample, so a restarted controller does not start over): the growth of their
//! sum over the time between them. It is what the group consumed, not what it could: a group
//! that is caught up consumes only what is produced. A group that committed nothing in that
//! time (idle or stopped), or never committed there, has no rate: the estimate is absent and
//! status.plan.estimateMissingReason says why.

use chrono::{DateTime, Utc};
use orderflowctl::{OffsetChange, PartitionLag};

use super::{fmt_time, parse_time, until, Next, Run, StepError};
use crate::crd::{PartitionPlan, PlanTotals, RateSample, ReplayPlan, ReplayRequestStatus};

/// The plan of `changes` (a reset's targets) against `positions` (committed offsets and high
/// watermarks, read now).
pub(super) fn make_plan(
    now: DateTime<Utc>,
    changes: &[OffsetChange],
    positions: &[PartitionLag],
) -> ReplayPlan {
    let partitions: Vec<PartitionPlan> = changes
        .iter()
        .map(|c| {
            let high = positions
                .iter()
                .find(|p| p.topic == c.topic && p.partition == c.partition)
                .map_or(c.to, |p| p.high_watermark);
            PartitionPlan {
                topic: c.topic.clone(),
                partition: c.partition,
                current: c.from,
                target: c.to,
                high_watermark: high,
                records_to_reprocess: (high - c.to).max(0),
            }
        })
        .collect();
    let totals = PlanTotals {
        partitions: partitions.len() as i64,
        records_to_reprocess: partitions.iter().map(|p| p.records_to_reprocess).sum(),
    };
    ReplayPlan {
        made_at: fmt_time(now),
        partitions,
        totals,
        ..ReplayPlan::default()
    }
}

/// The sum of the committed offsets (`None`: the group committed on none of the partitions).
pub(super) fn committed_sum(positions: &[PartitionLag]) -> Option<i64> {
    let c: Vec<i64> = positions.iter().filter_map(|p| p.committed).collect();
    (!c.is_empty()).then(|| c.iter().sum())
}

/// Set the plan's estimate from a consume rate (records/s) measured over `over` seconds.
pub(super) fn estimate(plan: &mut ReplayPlan, rate: f64, over: f64) {
    plan.consume_rate = Some(round2(rate));
    plan.rate_measured_over_seconds = Some(round2(over));
    plan.estimated_catch_up_seconds = Some(round2(plan.totals.records_to_reprocess as f64 / rate));
    plan.estimate_missing_reason = None;
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// "N record(s) to reprocess on P partition(s); catch-up estimated at S s (R records/s)", or
/// with the reason there is no estimate.
pub(super) fn plan_note(plan: &ReplayPlan) -> String {
    let estimate = match (plan.estimated_catch_up_seconds, plan.consume_rate) {
        (Some(s), Some(r)) => format!("catch-up estimated at {s:.1} s ({r:.1} records/s)"),
        _ => format!(
            "no catch-up estimate: {}",
            plan.estimate_missing_reason.as_deref().unwrap_or("unknown")
        ),
    };
    format!(
        "{} record(s) to reprocess on {} partition(s); {estimate}",
        plan.totals.records_to_reprocess, plan.totals.partitions
    )
}

impl Run<'_> {
    /// Pending with spec.dryRun: the first read of the rate measurement, then (once the window
    /// has passed) the second read and the plan, and Planned.
    pub(super) async fn dry_run(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let to = match self.target().await? {
            Ok(to) => to,
            Err((reason, msg)) => return Ok(self.fail(st, reason, msg).await?),
        };
        let admin = &self.ctx.admin;
        let window = self.ctx.settings.rate_window;
        let Some(first) = st.rate_sample.clone() else {
            let positions = admin.positions(&spec.consumer_group, &spec.topics).await?;
            st.rate_sample = Some(RateSample {
                at: fmt_time(self.now),
                committed: committed_sum(&positions),
            });
            st.message = Some(format!(
                "dry run: measuring the consume rate of group {}: its committed offsets are read again in {:.1} s",
                spec.consumer_group,
                window.as_secs_f64()
            ));
            return Ok(Next::Wait(window));
        };
        let first_at = parse_time(Some(&first.at)).unwrap_or(self.now);
        let ready = first_at + chrono::Duration::from_std(window).unwrap_or_default();
        if self.now < ready {
            return Ok(Next::Wait(until(self.now, ready)));
        }
        let changes = admin.plan(&spec.consumer_group, &spec.topics, to).await?;
        let positions = admin.positions(&spec.consumer_group, &spec.topics).await?;
        let mut plan = make_plan(self.now, &changes, &positions);
        let over = (self.now - first_at).num_milliseconds() as f64 / 1000.0;
        match (first.committed, committed_sum(&positions)) {
            (Some(a), Some(b)) if b > a && over > 0.0 => {
                estimate(&mut plan, (b - a) as f64 / over, over)
            }
            (_, None) => {
                plan.estimate_missing_reason = Some(format!(
                    "group {} has no committed offset on {}: its consume rate is unknown",
                    spec.consumer_group,
                    spec.topics.join(", ")
                ))
            }
            _ => {
                plan.estimate_missing_reason = Some(format!(
                    "group {} committed nothing in the {over:.1} s measured (idle or stopped): its consume rate is unknown",
                    spec.consumer_group
                ))
            }
        }
        let msg = format!(
            "dry run: resetting group {} on {} to {} would mean {}; nothing was scaled or reset (set spec.dryRun to false to execute)",
            spec.consumer_group,
            spec.topics.join(", "),
            super::phases::reset_label(spec),
            plan_note(&plan)
        );
        st.rate_sample = None;
        st.plan = Some(plan);
        self.enter(st, crate::crd::Phase::Planned, msg);
        Ok(Next::Done)
    }

    /// The plan as it is now, made when a request starts executing: it replaces status.plan,
    /// keeping the dry run's consume rate for the estimate, and the dry run's plan in
    /// status.previousPlan when the offsets differ. Returns a note for the message when they
    /// do.
    pub(super) async fn replan(
        &self,
        st: &mut ReplayRequestStatus,
        to: orderflowctl::ResetTo,
    ) -> Result<Option<String>, StepError> {
        let spec = self.spec();
        let admin = &self.ctx.admin;
        let changes = admin.plan(&spec.consumer_group, &spec.topics, to).await?;
        let positions = admin.positions(&spec.consumer_group, &spec.topics).await?;
        let mut plan = make_plan(self.now, &changes, &positions);
        let mut note = None;
        match st.plan.take() {
            Some(old) => {
                match (old.consume_rate, old.rate_measured_over_seconds) {
                    (Some(r), Some(over)) if r > 0.0 => estimate(&mut plan, r, over),
                    _ => plan.estimate_missing_reason = old.estimate_missing_reason.clone(),
                }
                if !plan.same_offsets(&old) {
                    note = Some(format!(
                        "; the plan changed since the dry run: {} record(s) to reprocess (the dry run said {}; see status.previousPlan)",
                        plan.totals.records_to_reprocess, old.totals.records_to_reprocess
                    ));
                    st.previous_plan = Some(old);
                }
            }
            None => {
                plan.estimate_missing_reason = Some(
                    "not measured: a dry run (spec.dryRun: true) measures the group's consume rate"
                        .to_string(),
                )
            }
        }
        st.plan = Some(plan);
        st.rate_sample = None;
        Ok(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(p: i32, from: Option<i64>, to: i64) -> OffsetChange {
        OffsetChange {
            topic: "orders".to_string(),
            partition: p,
            from,
            to,
            history_truncated: None,
        }
    }

    #[test]
    fn a_plan_counts_the_records_from_the_target_to_the_high_watermark() {
        let positions = vec![
            PartitionLag::new("orders", 0, Some(40), 0, 40),
            PartitionLag::new("orders", 1, None, 5, 12),
        ];
        let plan = make_plan(
            Utc::now(),
            &[change(0, Some(40), 0), change(1, None, 5)],
            &positions,
        );
        let got: Vec<(Option<i64>, i64, i64, i64)> = plan
            .partitions
            .iter()
            .map(|p| {
                (
                    p.current,
                    p.target,
                    p.high_watermark,
                    p.records_to_reprocess,
                )
            })
            .collect();
        assert_eq!(got, vec![(Some(40), 0, 40, 40), (None, 5, 12, 7)]);
        assert_eq!(plan.totals.records_to_reprocess, 47);
        assert_eq!(plan.totals.partitions, 2);
        assert_eq!(committed_sum(&positions), Some(40));
        assert_eq!(committed_sum(&positions[1..]), None);
        let mut plan = plan;
        estimate(&mut plan, 10.0, 5.0);
        assert_eq!(plan.estimated_catch_up_seconds, Some(4.7));
        assert!(plan_note(&plan)
            .contains("47 record(s) to reprocess on 2 partition(s); catch-up estimated at 4.7 s"));
    }
}
