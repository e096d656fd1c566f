//! A Deployment that a HorizontalPodAutoscaler scales would be scaled back up under the
//! controller while the group's offsets are reset (and the reset refused, the group having
//! members again). Before scaling anything, a request looks for an HPA (autoscaling/v2) whose
//! scaleTargetRef is one of its deployments, and refuses with reason `AutoscalerConflict`,
//! naming it. (RBAC: list on horizontalpodautoscalers, which the chart's Role grants.)

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::{Run, LAG_FIELD};

impl Run<'_> {
    /// The HPA that targets spec.deployment or spec.lag.deployment, described, if any.
    pub(super) async fn autoscaler_conflict(&self) -> Result<Option<String>, kube::Error> {
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let list = match hpas.list(&ListParams::default()).await {
            Ok(l) => l,
            // autoscaling/v2 not served: nothing autoscales
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e),
        };
        let spec = self.spec();
        let mut ours = vec![(spec.deployment.as_str(), " (spec.deployment)")];
        if let Some(lag) = &spec.lag {
            ours.push((lag.deployment.as_str(), LAG_FIELD));
        }
        for hpa in &list.items {
            let Some(s) = &hpa.spec else { continue };
            let target = &s.scale_target_ref;
            if target.kind != "Deployment" {
                continue;
            }
            if let Some((d, field)) = ours.iter().find(|(d, _)| *d == target.name) {
                return Ok(Some(format!(
                    "HorizontalPodAutoscaler {}/{} scales deployment {d}{field} ({} to {} replicas): it would scale it back up while the group's offsets are reset; nothing was scaled (delete the HPA or set its minReplicas/maxReplicas aside for the replay)",
                    self.ns,
                    hpa.name_any(),
                    s.min_replicas.unwrap_or(1),
                    s.max_replicas
                )));
            }
        }
        Ok(None)
    }
}
