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
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::ResourceExt;
use orderflowctl::{GroupError, ResetTo, TargetOffset};

use super::catchup::{targets as catch_up_targets, Followed};
use super::phases::{reset_by, reset_label};
use super::{fmt_time, Next, Run, StepError};
use crate::crd::{
    PartitionOffsets, Phase, ReplayRequestStatus, Restore, ShadowMetrics, ShadowStatus,
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
    pub(super) fn shadow_of(&self, st: &ReplayRequestStatus) -> ShadowStatus {
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

    pub(super) async fn deployment(&self, name: &str) -> Result<Option<Deployment>, kube::Error> {
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

    /// The copy, if it exists and this request owns it (a deployment of that name someone
    /// else made is never touched).
    pub(super) async fn own_copy(
        &self,
        sh: &ShadowStatus,
    ) -> Result<Option<Deployment>, kube::Error> {
        let uid = self.rr.uid().unwrap_or_default();
        Ok(self
            .deployment(&sh.deployment)
            .await?
            .filter(|d| d.owner_references().iter().any(|o| o.uid == uid)))
    }

    /// Delete the copy this request owns (none: fine), only that object (uid precondition).
    pub(super) async fn delete_copy(&self, sh: &ShadowStatus) -> Result<(), kube::Error> {
        let Some(copy) = self.own_copy(sh).await? else {
            return Ok(());
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: copy.uid(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match self.deployments.delete(&sh.deployment, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
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
