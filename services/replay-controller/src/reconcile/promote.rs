//! Promoting a shadow (spec.promote; the crash-safety rules are in the module docs of
//! `shadow`): the copy serves the live Services first, the live group and state are moved to
//! the shadow's, and after the live group's CatchingUp the shadow is removed.

use kube::api::{Patch, PatchParams};
use kube::ResourceExt;

use super::catchup::targets as catch_up_targets;
use super::shadow::state_pairs;
use super::{fmt_time, Next, Run, StepError};
use crate::crd::{PartitionOffsets, Phase, ReplayRequestStatus, DEFAULT_TIMEOUT_SECONDS};
use crate::endpoints::Stays;
use crate::shadow;

impl Run<'_> {
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
            if self.own_copy(&sh).await?.is_none() {
                let msg = format!(
                    "the shadow's deployment {} is gone (or not this request's): nothing to promote",
                    sh.deployment
                );
                return Ok(self.fail(st, "ShadowNotFound", msg).await?);
            }
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
            let missing = self
                .not_routed(&live, Stays::Copy(&self.rr.name_any()))
                .await?;
            if !missing.is_empty() {
                if self.now >= self.deadline(st) {
                    let msg = format!(
                        "Service(s) {} did not route to the copy {} within {} s (no ready endpoint on its pod in their EndpointSlices); the live deployment was not touched",
                        missing.join(", "),
                        sh.deployment,
                        spec.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
                    );
                    return Ok(self.fail(st, "ShadowNotServing", msg).await?);
                }
                st.message = Some(format!(
                    "promoting: the copy {} is available; waiting for Service(s) {} to list its pod as a ready endpoint",
                    sh.deployment,
                    missing.join(", ")
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
                    return Ok(self.fail(st, "GroupNotEmpty", self.gave_up(&info)).await?);
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
        let copy_serves = self.own_copy(&sh).await?.is_some();
        if let Some(live) = live.filter(|_| copy_serves) {
            let missing = self.not_routed(&live, Stays::Live).await?;
            if !missing.is_empty() {
                st.message = Some(format!(
                    "group {} caught up; waiting for Service(s) {} to list a pod of deployment {} as a ready endpoint before removing the copy {}",
                    spec.consumer_group,
                    missing.join(", "),
                    spec.deployment,
                    sh.deployment
                ));
                return Ok(Some(Next::Wait(self.ctx.settings.poll)));
            }
        }
        if let Some(wait) = self.remove_shadow(&mut sh).await? {
            st.message = Some(wait);
            st.shadow = Some(sh);
            return Ok(Some(Next::Wait(self.ctx.settings.poll)));
        }
        st.shadow = Some(sh);
        Ok(None)
    }
}
