//! Deployments through their scale subresource: read the replica count, scale, and restore
//! the counts recorded in `status.restore`.

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::Run;
use crate::crd::{ReplayRequestStatus, Restore};

impl Run<'_> {
    /// A deployment's `spec.replicas` (`None`: no such deployment).
    pub(super) async fn replicas(&self, name: &str) -> Result<Option<i32>, kube::Error> {
        match self.deployments.get_scale(name).await {
            Ok(s) => Ok(Some(s.spec.and_then(|s| s.replicas).unwrap_or(0))),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Set a deployment's `spec.replicas` (false: no such deployment).
    pub(super) async fn scale(&self, name: &str, replicas: i32) -> Result<bool, kube::Error> {
        let patch = json!({"spec": {"replicas": replicas}});
        match self
            .deployments
            .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Scale `deployment` back to its count in `status.restore`, then drop it from the list.
    pub(super) async fn restore_one(
        &self,
        st: &mut ReplayRequestStatus,
        deployment: &str,
    ) -> Result<Option<Restore>, kube::Error> {
        let Some(r) = st
            .restore
            .iter()
            .find(|r| r.deployment == deployment)
            .cloned()
        else {
            return Ok(None);
        };
        self.scale(&r.deployment, r.replicas).await?;
        st.restore.retain(|x| x.deployment != r.deployment);
        Ok(Some(r))
    }

    /// Scale every listed deployment back; returns "name to N" for each one that exists.
    pub(super) async fn restore_all(&self, list: &[Restore]) -> Result<Vec<String>, kube::Error> {
        let mut done = Vec::new();
        for r in list {
            if self.scale(&r.deployment, r.replicas).await? {
                done.push(format!("{} to {} replica(s)", r.deployment, r.replicas));
            }
        }
        Ok(done)
    }
}
