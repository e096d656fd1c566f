//! The controller's own CRD, kept current by the controller (`--manage-crd`): Helm installs a
//! chart's `crds/` on the first install only and never upgrades them, so a user upgrading the
//! chart would keep an old ReplayRequest CRD. As Stackable's operators do, the controller
//! server-side applies the CRD generated from its Rust types ([`ReplayRequest::crd`], the same
//! document as helm/orderflow/crds/replayrequest.yaml) at startup, with its field manager and
//! force, and waits until the API server reports it Established before it starts watching.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use serde_json::Value;
use thiserror::Error;

use crate::crd::ReplayRequest;
use crate::reconcile::MANAGER;

/// The CRD's name.
pub const CRD_NAME: &str = "replayrequests.orderflow.io";

/// What applying the CRD needs, as one sentence for the errors.
const NEEDS: &str = "the controller's service account needs get, create and patch on \
    customresourcedefinitions.apiextensions.k8s.io named replayrequests.orderflow.io (the \
    chart's ClusterRole <namespace>-<release>-replay-controller-crd, value controller.manageCrd=true); or \
    run with --manage-crd=false (MANAGE_CRD=false) and install the CRD yourself";

#[derive(Debug, Error)]
pub enum CrdError {
    #[error("not allowed to {verb} the CRD {CRD_NAME}: {message}; {NEEDS}")]
    Forbidden { verb: &'static str, message: String },
    #[error("cannot {verb} the CRD {CRD_NAME}: {source}")]
    Kube {
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the CRD {CRD_NAME} is not Established {waited:?} after it was applied: {conditions}")]
    NotEstablished {
        waited: Duration,
        conditions: String,
    },
    #[error("generating the CRD: {0}")]
    Generate(#[from] serde_json::Error),
}

impl CrdError {
    fn from_kube(verb: &'static str, source: kube::Error) -> Self {
        match source {
            kube::Error::Api(e) if e.code == 403 => Self::Forbidden {
                verb,
                message: e.message,
            },
            source => Self::Kube { verb, source },
        }
    }
}

/// Whether an API server of this version knows `x-kubernetes-validations` (the field exists
/// from 1.23; server-side apply refuses it as "field not declared in schema" before). A
/// version that does not parse (a distribution's own scheme) is taken to know it.
pub fn knows_validation_rules(version: &Info) -> bool {
    let number = |s: &str| -> Option<u32> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    match (number(&version.major), number(&version.minor)) {
        (Some(major), Some(minor)) => (major, minor) >= (1, 23),
        _ => true,
    }
}

/// Remove every `x-kubernetes-validations` (CEL rules) from a CRD document.
pub fn strip_validation_rules(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("x-kubernetes-validations");
            m.values_mut().for_each(strip_validation_rules);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_validation_rules),
        _ => {}
    }
}

/// The generated CRD as this API server accepts it: without the CEL rules where the server
/// predates them (Helm's create of the chart's file drops them silently there too; the
/// controller checks the same in `ReplayRequestSpec::validate`).
pub fn for_server(version: &Info) -> Result<Value, CrdError> {
    let mut crd = serde_json::to_value(ReplayRequest::crd())?;
    if !knows_validation_rules(version) {
        strip_validation_rules(&mut crd);
    }
    Ok(crd)
}

/// True when the CRD's `Established` condition is `True`.
pub fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Server-side apply the generated CRD (field manager `replay-controller`, forced: the fields
/// Helm or an earlier apply set become the controller's), then poll until it is Established,
/// for at most `timeout`.
pub async fn apply(client: &Client, timeout: Duration) -> Result<(), CrdError> {
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| CrdError::from_kube("read the server version before applying", e))?;
    let crd = for_server(&version)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let applied = api
        .patch(
            CRD_NAME,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| CrdError::from_kube("apply (patch)", e))?;
    let generation = applied.metadata.generation.unwrap_or_default();
    tracing::info!(
        crd = CRD_NAME,
        generation,
        server = %version.git_version,
        "applied the ReplayRequest CRD"
    );
    let started = Instant::now();
    loop {
        let current = api
            .get(CRD_NAME)
            .await
            .map_err(|e| CrdError::from_kube("get", e))?;
        if established(&current) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            let conditions = current
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    format!(
                        "{}={} ({})",
                        c.type_,
                        c.status,
                        c.message.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CrdError::NotEstablished {
                waited: timeout,
                conditions,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(major: &str, minor: &str) -> Info {
        Info {
            major: major.into(),
            minor: minor.into(),
            ..Info::default()
        }
    }

    #[test]
    fn validation_rules_are_left_out_only_where_the_server_refuses_them() {
        assert!(!knows_validation_rules(&version("1", "20")));
        assert!(!knows_validation_rules(&version("1", "22+")));
        assert!(knows_validation_rules(&version("1", "23")));
        assert!(knows_validation_rules(&version("1", "33")));
        assert!(knows_validation_rules(&version("", "")));
        let text = |v: &Value| v.to_string();
        let old = for_server(&version("1", "20")).unwrap();
        assert!(!text(&old).contains("x-kubernetes-validations"));
        let new = for_server(&version("1", "33")).unwrap();
        assert!(text(&new).contains("x-kubernetes-validations"));
        let mut stripped = new.clone();
        strip_validation_rules(&mut stripped);
        assert_eq!(stripped, old);
    }

    #[test]
    fn the_applied_document_is_the_charts_file() {
        let file: Value = serde_yaml::from_str(&crate::crd_yaml().unwrap()).unwrap();
        assert_eq!(for_server(&version("1", "33")).unwrap(), file);
        assert_eq!(file["metadata"]["name"], json!(CRD_NAME));
    }

    #[test]
    fn a_refused_apply_names_the_missing_permission() {
        let e = CrdError::from_kube(
            "apply (patch)",
            kube::Error::Api(
                kube::core::Status::failure("customresourcedefinitions is forbidden", "Forbidden")
                    .with_code(403)
                    .boxed(),
            ),
        )
        .to_string();
        assert!(e.starts_with("not allowed to apply (patch) the CRD replayrequests.orderflow.io: customresourcedefinitions is forbidden;"), "{e}");
        assert!(e.contains("needs get, create and patch on customresourcedefinitions.apiextensions.k8s.io named replayrequests.orderflow.io"), "{e}");
        assert!(e.contains("--manage-crd=false"), "{e}");
    }
}
