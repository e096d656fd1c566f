//! Whether the Services in front of a Deployment's pods route to given pods yet.
//!
//! A Deployment is "available" once its pods are Ready; the Services in front of them route
//! to a pod only after the EndpointSlice controller has listed it as a ready endpoint (and
//! kube-proxy has programmed that, which the pods' preStop sleep covers). A shadow's
//! promotion takes the serving pods away twice: the live ones once the copy serves, and the
//! copy once the live ones serve again. Each time it first waits until every Service that
//! selects the live pods has a ready endpoint on a pod that stays ([`not_routed`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::shadow::SHADOW_LABEL;

/// Which pods of a promotion are to keep serving.
#[derive(Clone, Copy, Debug)]
pub enum Stays<'a> {
    /// The copy's, of the request named so (its [`SHADOW_LABEL`]).
    Copy(&'a str),
    /// The live deployment's: its selector, without a copy's pods.
    Live,
}

impl Stays<'_> {
    /// The label selector (query syntax) of these pods, given the live `selector`.
    pub fn query(&self, selector: &BTreeMap<String, String>) -> String {
        match self {
            Stays::Copy(rr) => format!("{SHADOW_LABEL}={rr}"),
            Stays::Live => {
                let mut q: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                q.push(format!("!{SHADOW_LABEL}"));
                q.join(",")
            }
        }
    }

    /// Whether a pod labelled `labels` is one of these, given the live `selector`.
    pub fn matches(
        &self,
        selector: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        match self {
            Stays::Copy(rr) => labels.get(SHADOW_LABEL).map(String::as_str) == Some(*rr),
            Stays::Live => !labels.contains_key(SHADOW_LABEL) && carries(labels, selector),
        }
    }
}

/// The label an EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether `selector` (a Service's) selects pods labelled `labels`: a Service without a
/// selector (or with an empty one) selects nothing by itself.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && carries(labels, selector)
}

/// Whether `labels` hold every pair of `selector`.
fn carries(labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Services among `services` that select pods labelled `labels`.
pub fn selecting<'a>(
    services: &'a [Service],
    labels: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = &'a Service> + 'a {
    services.iter().filter(move |s| {
        s.spec
            .as_ref()
            .and_then(|sp| sp.selector.as_ref())
            .is_some_and(|sel| selects(sel, labels))
    })
}

/// The names of the Services that select pods labelled `labels` but have no ready endpoint
/// on one of `pods` in `slices`, sorted. Empty: every such Service routes to `pods` (or no
/// Service selects them). An endpoint without a ready condition counts as ready, as the
/// EndpointSlice API says.
pub fn not_routed(
    services: &[Service],
    slices: &[EndpointSlice],
    labels: &BTreeMap<String, String>,
    pods: &BTreeSet<String>,
) -> Vec<String> {
    let mut missing: Vec<String> = selecting(services, labels)
        .map(|s| s.name_any())
        .filter(|name| {
            !slices
                .iter()
                .filter(|sl| sl.labels().get(SERVICE_NAME_LABEL) == Some(name))
                .flat_map(|sl| sl.endpoints.iter())
                .any(|e| {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    let pod = e
                        .target_ref
                        .as_ref()
                        .filter(|r| r.kind.as_deref() == Some("Pod"))
                        .and_then(|r| r.name.as_ref());
                    ready && pod.is_some_and(|p| pods.contains(p))
                })
        })
        .collect();
    missing.sort();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn service(name: &str, selector: Option<&[(&str, &str)]>) -> Service {
        let mut s = json!({"metadata": {"name": name}, "spec": {}});
        if let Some(sel) = selector {
            s["spec"]["selector"] = json!(labels(sel));
        }
        serde_json::from_value(s).unwrap()
    }

    fn slice(service: &str, endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
        let endpoints: Vec<_> = endpoints
            .iter()
            .map(|(pod, ready)| {
                json!({"addresses": ["10.0.0.1"], "conditions": {"ready": ready},
                       "targetRef": {"kind": "Pod", "name": pod}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-x"), "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "endpoints": endpoints}))
        .unwrap()
    }

    fn pods(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const LIVE: &[(&str, &str)] = &[("app", "analytics"), ("tier", "web")];

    #[test]
    fn a_service_selects_pods_carrying_all_of_its_selector() {
        assert!(selects(&labels(&[("app", "analytics")]), &labels(LIVE)));
        assert!(!selects(&labels(&[("app", "inventory")]), &labels(LIVE)));
        assert!(!selects(
            &labels(&[("app", "analytics"), ("x", "y")]),
            &labels(LIVE)
        ));
        assert!(!selects(&labels(&[]), &labels(LIVE)));
    }

    #[test]
    fn routed_once_every_selecting_service_has_a_ready_endpoint_on_the_pods() {
        let services = [
            service("analytics", Some(&[("app", "analytics")])),
            service("analytics-web", Some(&[("tier", "web")])),
            service("inventory", Some(&[("app", "inventory")])),
            service("external", None),
        ];
        let copy = pods(&["copy-1"]);
        // nothing listed yet: both Services that select the live pods are missing
        assert_eq!(
            not_routed(&services, &[], &labels(LIVE), &copy),
            ["analytics", "analytics-web"]
        );
        // one routes to the copy, the other only to the live pod
        let slices = [
            slice(
                "analytics",
                &[("live-1", Some(true)), ("copy-1", Some(true))],
            ),
            slice("analytics-web", &[("live-1", Some(true))]),
        ];
        assert_eq!(
            not_routed(&services, &slices, &labels(LIVE), &copy),
            ["analytics-web"]
        );
        let slices = [
            slice("analytics", &[("copy-1", None)]),
            slice("analytics-web", &[("copy-1", Some(true))]),
        ];
        assert!(not_routed(&services, &slices, &labels(LIVE), &copy).is_empty());
    }

    #[test]
    fn the_pods_that_stay_are_the_copy_s_or_the_live_ones_without_a_copy_s() {
        let sel = labels(&[("app", "analytics")]);
        let copy = labels(&[("app", "analytics"), (SHADOW_LABEL, "shadow-1")]);
        let live = labels(&[("app", "analytics"), ("v", "2")]);
        assert_eq!(
            Stays::Copy("shadow-1").query(&sel),
            format!("{SHADOW_LABEL}=shadow-1")
        );
        assert_eq!(
            Stays::Live.query(&sel),
            format!("app=analytics,!{SHADOW_LABEL}")
        );
        assert!(Stays::Copy("shadow-1").matches(&sel, &copy));
        assert!(!Stays::Copy("shadow-2").matches(&sel, &copy));
        assert!(!Stays::Copy("shadow-1").matches(&sel, &live));
        assert!(Stays::Live.matches(&sel, &live));
        assert!(!Stays::Live.matches(&sel, &copy));
        assert!(!Stays::Live.matches(&sel, &labels(&[("app", "inventory")])));
    }

    #[test]
    fn a_listed_but_not_ready_endpoint_does_not_count() {
        let services = [service("analytics", Some(&[("app", "analytics")]))];
        let slices = [slice(
            "analytics",
            &[("live-1", Some(false)), ("copy-1", Some(false))],
        )];
        assert_eq!(
            not_routed(&services, &slices, &labels(LIVE), &pods(&["copy-1"])),
            ["analytics"]
        );
    }

    #[test]
    fn no_service_in_front_of_the_pods_means_nothing_to_wait_for() {
        let services = [service("inventory", Some(&[("app", "inventory")]))];
        assert!(not_routed(&services, &[], &labels(LIVE), &pods(&["copy-1"])).is_empty());
    }
}
