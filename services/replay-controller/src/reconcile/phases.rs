//! The step of each phase of a request, from Pending to Restoring (a dry run and Planned are
//! in `plan`, CatchingUp in `catchup`, HoldingLag in `lag`), and the order in which requests
//! for the same consumer group or deployments run.

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::ListParams;
use kube::{Resource, ResourceExt};
use orderflow_events::ResetBy;
use orderflowctl::{CommittedOffset, GroupInfo};

use super::catchup::targets as catch_up_targets;
use super::history::{summary, truncated_of};
use super::targets::reset_partitions;
use super::{fmt_time, parse_time, secs, Next, Run, StepError, LAG_FIELD};
use crate::crd::{
    PartitionOffsets, Phase, ReplayRequest, ReplayRequestSpec, ReplayRequestStatus, ResetTarget,
    Restore, Strategy, DEFAULT_TIMEOUT_SECONDS,
};

/// Another request that must finish before `rr` starts: one touching the same consumer
/// group or deployments that is running, or that is pending and was created earlier.
pub fn blocker<'a>(rr: &ReplayRequest, others: &'a [ReplayRequest]) -> Option<&'a ReplayRequest> {
    // a drill (resetTo none) names no group or deployment of its own: "" overlaps nothing
    let touched = |r: &ReplayRequest| {
        let mut d = vec![r.spec.deployment.clone()];
        if let Some(l) = &r.spec.lag {
            d.push(l.deployment.clone());
        }
        d.retain(|d| !d.is_empty());
        d
    };
    let mine = touched(rr);
    let key = |r: &ReplayRequest| (r.meta().creation_timestamp.clone(), r.name_any());
    others.iter().find(|o| {
        // a dry run touches nothing: it waits for nobody and nobody waits for it
        if o.uid() == rr.uid() || o.meta().deletion_timestamp.is_some() || o.spec.dry_run {
            return false;
        }
        let overlaps = (o.spec.consumer_group == rr.spec.consumer_group
            && !rr.spec.consumer_group.is_empty())
            || touched(o).iter().any(|d| mine.contains(d));
        let phase = o.status.as_ref().map(|s| s.phase).unwrap_or_default();
        overlaps && (phase.is_active() || (phase == Phase::Pending && key(o) < key(rr)))
    })
}

impl Run<'_> {
    /// The step of the phase `st` is in; it changes `st`, which the driver then saves.
    pub(super) async fn step(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        match st.phase {
            Phase::Pending if self.spec().dry_run => self.dry_run(st).await,
            Phase::Planned if self.spec().dry_run => Ok(Next::Done),
            Phase::Pending | Phase::Planned if self.spec().strategy == Strategy::Shadow => {
                self.start_shadow(st).await
            }
            Phase::Pending | Phase::Planned => self.start(st).await,
            Phase::ShadowStarting => self.shadow_start(st).await,
            Phase::ShadowCatchingUp => self.shadow_catch_up(st).await,
            Phase::Shadowing => self.shadowing(st).await,
            Phase::Promoting => self.promote(st).await,
            Phase::ScalingDown => self.scale_down(st).await,
            Phase::Resetting => self.reset(st).await,
            Phase::Restoring => self.restore(st).await,
            Phase::CatchingUp => self.catch_up(st).await,
            Phase::HoldingLag => self.hold(st).await,
            Phase::Succeeded | Phase::Failed => Ok(Next::Done),
        }
    }

    pub(super) fn enter(&self, st: &mut ReplayRequestStatus, phase: Phase, message: String) {
        st.phase = phase;
        st.phase_started_at = Some(fmt_time(self.now));
        st.message = Some(message);
    }

    /// When the deployment must be back up at the latest (ScalingDown and Resetting).
    pub(super) fn deadline(&self, st: &ReplayRequestStatus) -> DateTime<Utc> {
        let since = if st.phase == Phase::Promoting {
            &st.phase_started_at
        } else {
            &st.started_at
        };
        let started = parse_time(since.as_deref()).unwrap_or(self.now);
        started
            + secs(
                self.spec()
                    .timeout_seconds
                    .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            )
    }

    /// Another request must finish first ([`blocker`]): says so and waits.
    pub(super) async fn queued(
        &self,
        st: &mut ReplayRequestStatus,
    ) -> Result<Option<Next>, StepError> {
        let others = self.rrs.list(&ListParams::default()).await?;
        let Some(b) = blocker(self.rr, &others.items) else {
            return Ok(None);
        };
        st.message = Some(format!(
            "waiting for ReplayRequest {} (phase {}) to finish: same consumer group or deployment",
            b.name_any(),
            b.status.as_ref().map(|s| s.phase).unwrap_or_default()
        ));
        Ok(Some(Next::Wait(self.ctx.settings.poll)))
    }

    async fn start(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        if spec.reset_to == Some(ResetTarget::None) {
            return self.start_drill(st).await;
        }
        let to = match self.target().await? {
            Ok(to) => to,
            Err((reason, msg)) => return Ok(self.fail(st, reason, msg).await?),
        };
        if let Some(wait) = self.queued(st).await? {
            return Ok(wait);
        }
        let Some(replicas) = self.replicas(&spec.deployment).await? else {
            return Ok(self.missing(st, &spec.deployment, "").await?);
        };
        if let Some(lag) = &spec.lag {
            if self.replicas(&lag.deployment).await?.is_none() {
                return Ok(self.missing(st, &lag.deployment, LAG_FIELD).await?);
            }
        }
        if let Some(conflict) = self.autoscaler_conflict().await? {
            return Ok(self.fail(st, "AutoscalerConflict", conflict).await?);
        }
        if let Some((reason, msg)) = self.refusal(&to, true).await? {
            return Ok(self.fail(st, reason, msg).await?);
        }
        // the plan is best effort: Kafka unreachable here is retried (and bounded by the
        // timeout) while scaled down, as before plans existed
        let replanned = match self.replan(st, to.clone()).await {
            Ok(note) => note.unwrap_or_default(),
            Err(StepError::Kafka(e)) if e.permanent_reason().is_none() => {
                tracing::warn!(request = %self.rr.name_any(), error = %e, "no plan: Kafka unavailable");
                format!("; no plan made: Kafka unavailable ({e})")
            }
            Err(e) => return Err(e),
        };
        st.started_at = Some(fmt_time(self.now));
        st.restore = vec![Restore {
            deployment: spec.deployment.clone(),
            replicas,
        }];
        let msg = format!(
            "scaling deployment {} from {replicas} to 0 replicas to stop consumer group {} (reset to {}){replanned}",
            spec.deployment,
            spec.consumer_group,
            reset_label(spec)
        );
        self.enter(st, Phase::ScalingDown, msg);
        Ok(Next::Continue)
    }

    async fn scale_down(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        if !self.scale(&spec.deployment, 0).await? {
            return Ok(self.missing(st, &spec.deployment, "").await?);
        }
        let info = self.ctx.admin.describe(&spec.consumer_group).await?;
        if info.is_empty() {
            let msg = format!(
                "consumer group {} is empty (state {}); resetting its offsets on {} to {}",
                spec.consumer_group,
                info.state,
                spec.topics.join(", "),
                reset_label(spec)
            );
            self.enter(st, Phase::Resetting, msg);
            return Ok(Next::Continue);
        }
        let deadline = self.deadline(st);
        if self.now >= deadline {
            return Ok(self.fail(st, "GroupNotEmpty", self.gave_up(&info)).await?);
        }
        st.message = Some(format!(
            "waiting for consumer group {} to become empty: {} member(s), state {} (gives up at {})",
            spec.consumer_group,
            info.members,
            info.state,
            deadline.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
        Ok(Next::Wait(self.ctx.settings.poll))
    }

    /// GroupNotEmpty's message: the group still has members at the deadline.
    pub(super) fn gave_up(&self, info: &GroupInfo) -> String {
        let spec = self.spec();
        format!(
            "consumer group {} still has {} member(s) (state {}) {} s after scaling {} to 0; gave up and restored the deployment",
            spec.consumer_group,
            info.members,
            info.state,
            spec.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            spec.deployment
        )
    }

    async fn reset(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let to = match self.target().await? {
            Ok(to) => to,
            Err((reason, msg)) => return Ok(self.fail(st, reason, msg).await?),
        };
        let uid = self.rr.uid().unwrap_or_default();
        let committed = reset_partitions(
            &to,
            self.ctx
                .admin
                .committed(&spec.consumer_group, &spec.topics)
                .await?,
        );
        let already = !uid.is_empty()
            && !committed.is_empty()
            && committed
                .iter()
                .all(|c| reset_by(c).is_some_and(|b| b.by == uid));
        let (offsets, truncated, how): (Vec<PartitionOffsets>, _, _) = if already {
            // Made before a controller restart (the status write was lost): not again. What
            // that write said about deleted history is asked again: the plan as it is now.
            let offsets = committed
                .iter()
                .map(|c| PartitionOffsets {
                    topic: c.topic.clone(),
                    partition: c.partition,
                    from: reset_by(c).and_then(|b| b.from),
                    to: c.offset.unwrap_or_default(),
                })
                .collect();
            let plan = self
                .ctx
                .admin
                .plan(&spec.consumer_group, &spec.topics, to.clone())
                .await?;
            (
                offsets,
                truncated_of(&plan),
                "found already made by this request",
            )
        } else {
            // the history may have gone since Pending looked (retention runs all the time)
            if let Some((reason, msg)) = self.refusal(&to, false).await? {
                return Ok(self.fail(st, reason, msg).await?);
            }
            match self
                .ctx
                .admin
                .reset(&spec.consumer_group, &spec.topics, to, &uid)
                .await
            {
                Ok(changes) => (
                    changes
                        .iter()
                        .map(|c| PartitionOffsets {
                            topic: c.topic.clone(),
                            partition: c.partition,
                            from: c.from,
                            to: c.to,
                        })
                        .collect(),
                    truncated_of(&changes),
                    "reset",
                ),
                Err(e) if e.is_not_empty() => {
                    let msg = format!("{e}; waiting for the group to become empty again");
                    self.enter(st, Phase::ScalingDown, msg);
                    return Ok(Next::Wait(self.ctx.settings.poll));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let restore_to = st
            .restore
            .iter()
            .find(|r| r.deployment == spec.deployment)
            .map_or(0, |r| r.replicas);
        // what the group must pass to have caught up: the high watermarks now
        let positions = self
            .ctx
            .admin
            .positions(&spec.consumer_group, &spec.topics)
            .await?;
        st.catch_up = Some(catch_up_targets(&offsets, &positions));
        st.offsets = offsets;
        st.history_truncated = truncated;
        let msg = format!(
            "offsets of {} on {} partition(s) {how} (to {}){}; restoring deployment {} to {restore_to} replica(s)",
            spec.consumer_group,
            st.offsets.len(),
            reset_label(spec),
            truncated_note(st),
            spec.deployment
        );
        self.enter(st, Phase::Restoring, msg);
        Ok(Next::Continue)
    }

    async fn restore(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let restored = match self.restore_one(st, &spec.deployment).await? {
            Some(r) => format!("{} restored to {} replica(s)", r.deployment, r.replicas),
            None => String::new(),
        };
        let total = st.catch_up.as_ref().map_or(0, |c| c.records_total);
        let msg = format!(
            "{}; {restored}; following group {} until it passes the high watermarks read at reset time ({total} record(s) to catch up)",
            self.summary(st),
            spec.consumer_group
        );
        self.enter(st, Phase::CatchingUp, msg);
        Ok(Next::Continue)
    }

    /// "reset analytics on 3 partition(s) of orders to earliest[; history truncated: ...]".
    fn summary(&self, st: &ReplayRequestStatus) -> String {
        let spec = self.spec();
        if let Some(sh) = st.shadow.as_ref().filter(|s| s.promoted_at.is_some()) {
            return format!(
                "promoted shadow group {} (replayed from {}): {} on {} partition(s) of {} at its offsets",
                sh.consumer_group,
                reset_label(spec),
                spec.consumer_group,
                st.offsets.len(),
                spec.topics.join(", ")
            );
        }
        format!(
            "reset {} on {} partition(s) of {} to {}{}",
            spec.consumer_group,
            st.offsets.len(),
            spec.topics.join(", "),
            reset_label(spec),
            truncated_note(st)
        )
    }

    /// The group has caught up (`note` says how): HoldingLag with spec.lag, else Succeeded.
    pub(super) async fn after_catch_up(
        &self,
        st: &mut ReplayRequestStatus,
        note: String,
    ) -> Result<Next, StepError> {
        let spec = self.spec();
        if let Some(wait) = self.finish_promotion(st).await? {
            return Ok(wait);
        }
        let summary = format!("{}; {note}", self.summary(st));
        let Some(lag) = &spec.lag else {
            self.succeed(st, summary);
            return Ok(Next::Continue);
        };
        self.begin_hold(st, lag, summary).await
    }

    pub(super) fn succeed(&self, st: &mut ReplayRequestStatus, message: String) {
        self.enter(st, Phase::Succeeded, message);
        st.completed_at = Some(fmt_time(self.now));
    }
}

/// `; history truncated: orders[1] from log start offset 5 (...)`, or nothing.
fn truncated_note(st: &ReplayRequestStatus) -> String {
    if st.history_truncated.is_empty() {
        String::new()
    } else {
        format!("; history truncated: {}", summary(&st.history_truncated))
    }
}

pub(super) fn reset_label(spec: &ReplayRequestSpec) -> String {
    crate::targets::label(spec)
}

/// Whom the reset that committed `c` was made for, if a tagged reset committed it.
pub(super) fn reset_by(c: &CommittedOffset) -> Option<ResetBy> {
    c.mark().and_then(|m| m.reset_by_of().cloned())
}
