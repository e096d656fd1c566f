//! Waiting for the Services in front of the live pods to route to the pods that stay, before
//! a promotion takes the others away (the rule and its pure part: [`crate::endpoints`]).
//! (RBAC: list on services, pods and discovery.k8s.io endpointslices, which the chart's Role
//! grants.)

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::Run;
use crate::endpoints::{self, Stays, SERVICE_NAME_LABEL};

impl Run<'_> {
    /// The Services that select the pods of `live`'s template but route to no ready pod of
    /// `stays` yet (sorted; empty: all do, or no Service selects them). A cluster that
    /// serves no EndpointSlices (404) has nothing to wait for.
    pub(super) async fn not_routed(
        &self,
        live: &Deployment,
        stays: Stays<'_>,
    ) -> Result<Vec<String>, kube::Error> {
        let spec = live.spec.clone().unwrap_or_default();
        let labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        let services: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let services = services.list(&ListParams::default()).await?.items;
        if endpoints::selecting(&services, &labels).next().is_none() {
            return Ok(Vec::new());
        }
        let selector = spec.selector.match_labels.unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let pods: BTreeSet<String> = pods
            .list(&ListParams::default().labels(&stays.query(&selector)))
            .await?
            .items
            .iter()
            .filter(|p| stays.matches(&selector, p.labels()))
            .map(|p| p.name_any())
            .collect();
        let slices: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let slices = match slices
            .list(&ListParams::default().labels(SERVICE_NAME_LABEL))
            .await
        {
            Ok(l) => l.items,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(endpoints::not_routed(&services, &slices, &labels, &pods))
    }
}
