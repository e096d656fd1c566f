//! Shadow replays (spec.strategy Shadow; the copy and the names are [`crate::shadow`]):
//!
//! Pending -> ShadowStarting -> ShadowCatchingUp -> Shadowing, and on spec.promote
//! Promoting -> Restoring -> CatchingUp -> Succeeded. The live deployment runs untouched
//! until Promoting, and something serves the live Service's traffic throughout.
//!
//! Crash safety, in the spirit of the module docs of `reconcile`:
//! - status.shadow (the group and copy names) is written when the request leaves Pending,
//!   before anything exists: a deletion from then on removes whatever was made;
//! - ShadowStarting resets the shadow group (commit metadata tagged with the request's uid,
//!   so a reset made before a crash is found and not made again) and writes
//!   status.shadow.resetAt with the offsets and the catch-up targets; only then is the copy
//!   created (an AlreadyExists of a copy this request owns is a copy made before a crash).
//!   The shadow group never runs before its reset is recorded;
//! - ShadowCatchingUp and Shadowing only read Kafka;
//! - Promoting writes status.restore (the live replica count) before scaling, as a reset
//!   does. The copy first gets the live pods' selected labels, so Services route to it too
//!   (status.shadow.servingAt once its rollout is available): the live API keeps answering
//!   while the live deployment is at 0. With the live group empty, the shadow's commits and
//!   then its state topics are copied onto the live ones, the copy still running (a state
//!   read after the commits is at or past them: the consumer checkpoints before it commits,
//!   and its restore steps over what the checkpoint already counts). Both copies are
//!   idempotent (a key or commit already there is not written again), so a crash before
//!   status.shadow.promotedAt is written makes them again, newer, harmlessly. The shadow is
//!   removed only after the live group has caught up and its deployment is available
//!   (status.shadow.removedAt), then Succeeded;
//! - a request that fails deletes the copy; its group and state topics go when the request
//!   is deleted (the finalizer is kept until then, `release::finished`).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use orderflowctl::{GroupError, ResetTo, TargetOffset};

use super::catchup::{targets as catch_up_targets, Followed};
use super::phases::{reset_by, reset_label};
use super::{fmt_time, Next, Run, StepError};
use crate::crd::{
    PartitionOffsets, Phase, ReplayRequestStatus, Restore, ShadowMetrics, ShadowStatus,
    DEFAULT_TIMEOUT_SECONDS,
};
use crate::kafka::AdminError;
use crate::shadow;

/// The state topics promotion copies: `(<shadow>-x, <live>-x)` for every live state topic
/// `<live>-x` (not a shadow's own, `<live>-shadow-...`) whose shadow counterpart exists.
/// Matching on the live topics keeps the topics of a shadow whose name extends this one's
/// (`...-shadow-r1-x-...` against `...-shadow-r1-...`) out.
pub(super) fn state_pairs(
    live: &str,
    shadow: &str,
    live_topics: &[String],
    shadow_topics: &[String],
) -> Vec<(String, String)> {
    let own = format!("{live}-shadow-");
    live_topics
        .iter()
        .filter(|t| !t.starts_with(&own))
        .filter_map(|t| {
            let suffix = t.strip_prefix(&format!("{live}-"))?;
            let s = format!("{shadow}-{suffix}");
            shadow_topics.contains(&s).then(|| (s, t.clone()))
        })
        .collect()
}

impl Run<'_> {
    fn shadow_of(&self, st: &ReplayRequestStatus) -> ShadowStatus {
        st.shadow.clone().unwrap_or_else(|| {
            let spec = self.spec();
            let (consumer_group, deployment) =
                shadow::names(&spec.consumer_group, &spec.deployment, &self.rr.name_any());
            ShadowStatus {
                consumer_group,
                deployment,
                ..ShadowStatus::default()
            }
        })
    }

    async fn deployment(&self, name: &str) -> Result<Option<Deployment>, kube::Error> {
        self.deployments.get_opt(name).await
    }

    /// Pending (or an executed Planned) with strategy Shadow.
    pub(super) async fn start_shadow(
        &self,
        st: &mut ReplayRequestStatus,
    ) -> Result<Next, StepError> {
        let spec = self.spec();
        let to = match self.target().await? {
            Ok(to) => to,
            Err((reason, msg)) => return Ok(self.fail(st, reason, msg).await?),
        };
        if let Some(wait) = self.queued(st).await? {
            return Ok(wait);
        }
        let sh = self.shadow_of(st);
        let Some(live) = self.deployment(&spec.deployment).await? else {
            return Ok(self.missing(st, &spec.deployment, "").await?);
        };
        if let Err(msg) = shadow::check(&live, &spec.consumer_group, &sh.deployment) {
            return Ok(self.fail(st, "ShadowUnsupported", msg).await?);
        }
        if let Some((reason, msg)) = self.refusal(&to, true).await? {
            return Ok(self.fail(st, reason, msg).await?);
        }
        let info = self.ctx.admin.describe(&sh.consumer_group).await?;
        if !info.is_empty() {
            let msg = format!(
                "consumer group {} already has {} member(s) (state {}): another consumer uses the shadow's group",
                sh.consumer_group, info.members, info.state
            );
            return Ok(self.fail(st, "ShadowGroupInUse", msg).await?);
        }
        st.started_at = Some(fmt_time(self.now));
        let msg = format!(
            "setting the offsets of shadow group {} on {} to {} (the live group {} runs on)",
            sh.consumer_group,
            spec.topics.join(", "),
            reset_label(spec),
            spec.consumer_group
        );
        st.shadow = Some(sh);
        self.enter(st, Phase::ShadowStarting, msg);
        Ok(Next::Continue)
    }

    /// ShadowStarting: reset the shadow group (recorded), then create the copy.
    pub(super) async fn shadow_start(
        &self,
        st: &mut ReplayRequestStatus,
    ) -> Result<Next, StepError> {
        let spec = self.spec();
        let mut sh = self.shadow_of(st);
        if sh.reset_at.is_none() {
            let uid = self.rr.uid().unwrap_or_default();
            let committed = self
                .ctx
                .admin
                .committed(&sh.consumer_group, &spec.topics)
                .await?;
            let already = !uid.is_empty()
                && !committed.is_empty()
                && committed
                    .iter()
                    .all(|c| reset_by(c).is_some_and(|b| b.by == uid));
            let offsets: Vec<PartitionOffsets> = if already {
                committed
                    .iter()
                    .map(|c| PartitionOffsets {
                        topic: c.topic.clone(),
                        partition: c.partition,
                        from: None,
                        to: c.offset.unwrap_or_default(),
                    })
                    .collect()
            } else {
                let to = match self.target().await? {
                    Ok(to) => to,
                    Err((reason, msg)) => return Ok(self.fail(st, reason, msg).await?),
                };
                // the target as the live group sees it (a shift moves from the live offsets),
                // committed to the shadow group as explicit offsets
                let plan = self
                    .ctx
                    .admin
                    .plan(&spec.consumer_group, &spec.topics, to)
                    .await?;
                let explicit = ResetTo::ToOffsets(
                    plan.iter()
                        .map(|c| TargetOffset {
                            topic: c.topic.clone(),
                            partition: c.partition,
                            offset: c.to,
                        })
                        .collect(),
                );
                match self
                    .ctx
                    .admin
                    .reset(&sh.consumer_group, &spec.topics, explicit, &uid)
                    .await
                {
                    Ok(changes) => changes
                        .iter()
                        .map(|c| PartitionOffsets {
                            topic: c.topic.clone(),
                            partition: c.partition,
                            from: None,
                            to: c.to,
                        })
                        .collect(),
                    Err(e) if e.is_not_empty() => {
                        return Ok(self.fail(st, "ShadowGroupInUse", e.to_string()).await?)
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let positions = self
                .ctx
                .admin
                .positions(&sh.consumer_group, &spec.topics)
                .await?;
            st.catch_up = Some(catch_up_targets(&offsets, &positions));
            st.offsets = offsets;
            sh.reset_at = Some(fmt_time(self.now));
            st.message = Some(format!(
                "offsets of shadow group {} set on {} partition(s) (to {}); creating deployment {}",
                sh.consumer_group,
                st.offsets.len(),
                reset_label(spec),
                sh.deployment
            ));
            st.shadow = Some(sh);
            // written before the copy exists: the copy never runs on an unrecorded reset
            return Ok(Next::Continue);
        }
        let Some(live) = self.deployment(&spec.deployment).await? else {
            return Ok(self.missing(st, &spec.deployment, "").await?);
        };
        let uid = self.rr.uid().unwrap_or_default();
        let copy = shadow::copy_deployment(
            &live,
            &sh.deployment,
            &sh.consumer_group,
            (&self.rr.name_any(), &uid),
        );
        match self.deployments.create(&PostParams::default(), &copy).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let ours = self
                    .deployment(&sh.deployment)
                    .await?
                    .is_some_and(|d| d.owner_references().iter().any(|o| o.uid == uid));
                if !ours {
                    let msg = format!(
                        "deployment {} exists and is not this request's copy",
                        sh.deployment
                    );
                    return Ok(self.fail(st, "ShadowNameInUse", msg).await?);
                }
            }
            Err(e) => return Err(e.into()),
        }
        sh.created_at = Some(fmt_time(self.now));
        let total = st.catch_up.as_ref().map_or(0, |c| c.records_total);
        let msg = format!(
            "deployment {} created (1 replica, group {}); following it until it passes the high watermarks read at its reset ({total} record(s)); the live deployment {} runs untouched",
            sh.deployment, sh.consumer_group, spec.deployment
        );
        st.shadow = Some(sh);
        self.enter(st, Phase::ShadowCatchingUp, msg);
        Ok(Next::Continue)
    }

    /// ShadowCatchingUp: follow the shadow group, then Shadowing.
    pub(super) async fn shadow_catch_up(
        &self,
        st: &mut ReplayRequestStatus,
    ) -> Result<Next, StepError> {
        let mut sh = self.shadow_of(st);
        let note = match self.follow(st, &sh.consumer_group).await? {
            Followed::CaughtUp(note) => note,
            Followed::Not(next) => return Ok(next),
        };
        sh.caught_up_at = Some(fmt_time(self.now));
        sh.metrics = Some(self.metrics_now(&sh).await?);
        let msg = format!(
            "{note}; the shadow runs beside the live group {} (status.shadow.metrics): set spec.promote to move the live group to it, or delete the request to remove it",
            self.spec().consumer_group
        );
        st.shadow = Some(sh);
        self.enter(st, Phase::Shadowing, msg);
        Ok(Next::Continue)
    }

    async fn metrics_now(&self, sh: &ShadowStatus) -> Result<ShadowMetrics, StepError> {
        Ok(ShadowMetrics {
            at: fmt_time(self.now),
            shadow: self.ctx.admin.checkpoint(&sh.consumer_group).await?,
            live: self
                .ctx
                .admin
                .checkpoint(&self.spec().consumer_group)
                .await?,
        })
    }

    /// Shadowing: refresh the numbers until spec.promote.
    pub(super) async fn shadowing(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let mut sh = self.shadow_of(st);
        if spec.promote {
            let Some(replicas) = self.replicas(&spec.deployment).await? else {
                return Ok(self.missing(st, &spec.deployment, "").await?);
            };
            if let Some(conflict) = self.autoscaler_conflict().await? {
                return Ok(self.fail(st, "AutoscalerConflict", conflict).await?);
            }
            st.restore = vec![Restore {
                deployment: spec.deployment.clone(),
                replicas,
            }];
            let msg = format!(
                "promoting: the copy {} takes the live pods' labels and serves beside them; then deployment {} goes from {replicas} to 0 and group {} moves to shadow group {}'s offsets and state",
                sh.deployment, spec.deployment, spec.consumer_group, sh.consumer_group
            );
            self.enter(st, Phase::Promoting, msg);
            return Ok(Next::Continue);
        }
        let fresh = self.metrics_now(&sh).await?;
        let changed = sh
            .metrics
            .as_ref()
            .is_none_or(|m| m.shadow != fresh.shadow || m.live != fresh.live);
        if changed {
            sh.metrics = Some(fresh);
            st.shadow = Some(sh);
        }
        Ok(Next::Wait(self.ctx.settings.progress_every))
    }

    /// Promoting, without a moment where nothing serves: (1) the copy's pods get the labels
    /// the live Deployment selects on, so the Services in front of the live pods route to
    /// the copy too, and once the copy's rollout is available (2) the live deployment goes to
    /// 0 and, its group empty, the shadow's commits and then its state are copied onto the
    /// live ones while the copy keeps serving. Restoring and CatchingUp follow; the shadow is
    /// removed only once the live group has caught up and its deployment is available
    /// ([`Run::finish_promotion`]).
    pub(super) async fn promote(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let mut sh = self.shadow_of(st);
        if sh.serving_at.is_none() {
            let Some(live) = self.deployment(&spec.deployment).await? else {
                return Ok(self.missing(st, &spec.deployment, "").await?);
            };
            let patch = shadow::serving_patch(&live);
            let copy = match self
                .deployments
                .patch(
                    &sh.deployment,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(d) => d,
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    let msg = format!(
                        "the shadow's deployment {} is gone: nothing to promote",
                        sh.deployment
                    );
                    return Ok(self.fail(st, "ShadowNotFound", msg).await?);
                }
                Err(e) => return Err(e.into()),
            };
            if !shadow::available(&copy, 1) {
                if self.now >= self.deadline(st) {
                    let msg = format!(
                        "the copy {} did not become available with the live labels within {} s; the live deployment was not touched",
                        sh.deployment,
                        spec.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
                    );
                    return Ok(self.fail(st, "ShadowNotServing", msg).await?);
                }
                st.message = Some(format!(
                    "promoting: waiting for the copy {} to serve beside the live pods (rolled out with their labels)",
                    sh.deployment
                ));
                return Ok(Next::Wait(self.ctx.settings.poll));
            }
            sh.serving_at = Some(fmt_time(self.now));
            st.message = Some(format!(
                "promoting: the copy {} serves beside the live pods; scaling deployment {} to 0",
                sh.deployment, spec.deployment
            ));
            st.shadow = Some(sh);
            return Ok(Next::Continue);
        }
        if sh.promoted_at.is_none() {
            if !self.scale(&spec.deployment, 0).await? {
                return Ok(self.missing(st, &spec.deployment, "").await?);
            }
            let info = self.ctx.admin.describe(&spec.consumer_group).await?;
            if !info.is_empty() {
                if self.now >= self.deadline(st) {
                    let msg = format!(
                        "consumer group {} still has {} member(s) (state {}) {} s after scaling {} to 0; gave up and restored the deployment",
                        spec.consumer_group,
                        info.members,
                        info.state,
                        spec.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
                        spec.deployment
                    );
                    return Ok(self.fail(st, "GroupNotEmpty", msg).await?);
                }
                st.message = Some(format!(
                    "promoting: waiting for consumer group {} to become empty: {} member(s), state {}",
                    spec.consumer_group, info.members, info.state
                ));
                return Ok(Next::Wait(self.ctx.settings.poll));
            }
            // commits first, then the state: the copy runs on, and a state read after its
            // commits is at or past them (it checkpoints before it commits), which is what
            // the consumer's restore expects; made again after a crash, both are newer
            let before = self
                .ctx
                .admin
                .committed(&spec.consumer_group, &spec.topics)
                .await?;
            self.ctx
                .admin
                .copy_committed(&sh.consumer_group, &spec.consumer_group, &spec.topics)
                .await?;
            let live_topics = self.ctx.admin.state_topics(&spec.consumer_group).await?;
            let shadow_topics = self.ctx.admin.state_topics(&sh.consumer_group).await?;
            let mut copied = Vec::new();
            for (from, to) in state_pairs(
                &spec.consumer_group,
                &sh.consumer_group,
                &live_topics,
                &shadow_topics,
            ) {
                let n = self.ctx.admin.copy_state(&from, &to).await?;
                copied.push(format!("{from} -> {to} ({n} record(s) written)"));
            }
            let after = self
                .ctx
                .admin
                .committed(&spec.consumer_group, &spec.topics)
                .await?;
            st.offsets = after
                .iter()
                .map(|a| PartitionOffsets {
                    topic: a.topic.clone(),
                    partition: a.partition,
                    from: before
                        .iter()
                        .find(|b| b.topic == a.topic && b.partition == a.partition)
                        .and_then(|b| b.offset),
                    to: a.offset.unwrap_or_default(),
                })
                .collect();
            let positions = self
                .ctx
                .admin
                .positions(&spec.consumer_group, &spec.topics)
                .await?;
            st.catch_up = Some(catch_up_targets(&st.offsets, &positions));
            sh.promoted_at = Some(fmt_time(self.now));
            sh.copied = copied;
            st.shadow = Some(sh);
        }
        let msg = format!(
            "group {} moved to shadow group {}'s offsets on {} partition(s); restoring deployment {} (the copy serves meanwhile)",
            spec.consumer_group,
            self.shadow_of(st).consumer_group,
            st.offsets.len(),
            spec.deployment
        );
        self.enter(st, Phase::Restoring, msg);
        Ok(Next::Continue)
    }

    /// After a promotion's CatchingUp: once the live deployment is available again, remove
    /// the shadow. `Some(next)`: not yet (the status says why).
    pub(super) async fn finish_promotion(
        &self,
        st: &mut ReplayRequestStatus,
    ) -> Result<Option<Next>, StepError> {
        let Some(mut sh) = st
            .shadow
            .clone()
            .filter(|s| s.promoted_at.is_some() && s.removed_at.is_none())
        else {
            return Ok(None);
        };
        let spec = self.spec();
        let live = self.deployment(&spec.deployment).await?;
        let wanted = live
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        if !live.as_ref().is_some_and(|d| shadow::available(d, wanted)) {
            st.message = Some(format!(
                "group {} caught up; waiting for deployment {} to be available before removing the copy {}",
                spec.consumer_group, spec.deployment, sh.deployment
            ));
            return Ok(Some(Next::Wait(self.ctx.settings.poll)));
        }
        if let Some(wait) = self.remove_shadow(&mut sh).await? {
            st.message = Some(wait);
            st.shadow = Some(sh);
            return Ok(Some(Next::Wait(self.ctx.settings.poll)));
        }
        st.shadow = Some(sh);
        Ok(None)
    }

    /// Delete the copy (none: fine).
    pub(super) async fn delete_copy(&self, sh: &ShadowStatus) -> Result<(), kube::Error> {
        match self
            .deployments
            .delete(&sh.deployment, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Delete the copy, the shadow group and its state topics, and record it
    /// (status.shadow.removedAt). `Some(why)`: not yet, the group still has members.
    pub(super) async fn remove_shadow(
        &self,
        sh: &mut ShadowStatus,
    ) -> Result<Option<String>, StepError> {
        if sh.removed_at.is_some() {
            return Ok(None);
        }
        self.delete_copy(sh).await?;
        match self.ctx.admin.delete_group(&sh.consumer_group).await {
            Ok(_) => {}
            Err(AdminError::Group(GroupError::RefusedByKafka { .. })) => {
                return Ok(Some(format!(
                    "waiting for shadow group {} to become empty (the copy's pods are stopping) to delete it",
                    sh.consumer_group
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let live_topics = self
            .ctx
            .admin
            .state_topics(&self.spec().consumer_group)
            .await?;
        let shadow_topics = self.ctx.admin.state_topics(&sh.consumer_group).await?;
        let doomed: Vec<String> = state_pairs(
            &self.spec().consumer_group,
            &sh.consumer_group,
            &live_topics,
            &shadow_topics,
        )
        .into_iter()
        .map(|(s, _)| s)
        .collect();
        self.ctx.admin.delete_topics(&doomed).await?;
        sh.removed_at = Some(fmt_time(self.now));
        tracing::info!(request = %self.rr.name_any(), group = %sh.consumer_group, topics = ?doomed, "shadow removed");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shadows_own_counterparts_of_live_state_topics_are_paired() {
        let live = vec![
            "analytics-snapshots".to_string(),
            "analytics-shadow-r1-snapshots".to_string(),
            "analytics-shadow-r1-x-snapshots".to_string(),
        ];
        let shadow = vec![
            "analytics-shadow-r1-snapshots".to_string(),
            "analytics-shadow-r1-x-snapshots".to_string(),
        ];
        assert_eq!(
            state_pairs("analytics", "analytics-shadow-r1", &live, &shadow),
            vec![(
                "analytics-shadow-r1-snapshots".to_string(),
                "analytics-snapshots".to_string()
            )]
        );
    }
}
