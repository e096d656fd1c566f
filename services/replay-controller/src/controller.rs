//! Running the controller: watch ReplayRequests (one namespace or all) and reconcile them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::{watcher, Controller};
use kube::Client;
use orderflow_runtime::Health;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::crd::ReplayRequest;
use crate::crd_apply::{self, CrdError};
use crate::reconcile::{error_policy, reconcile, Context};

#[derive(Debug, Error)]
pub enum RunError {
    #[error(
        "the ReplayRequest CRD (replayrequests.orderflow.io) is not installed: \
         kubectl apply -f helm/orderflow/crds/replayrequest.yaml, or start the controller with \
         --manage-crd (MANAGE_CRD=true)"
    )]
    CrdMissing,
    #[error(transparent)]
    Crd(#[from] CrdError),
    #[error("cannot list ReplayRequests{scope}: {source}")]
    List {
        scope: String,
        #[source]
        source: kube::Error,
    },
}

/// How long the applied CRD may take to become Established.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// Watch ReplayRequests in `namespace` (all namespaces when `None`) until `shutdown`, first
/// applying the CRD when `manage_crd` ([`crd_apply::apply`]). Marks `health` ready once the
/// CRD is found and the watch starts.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    manage_crd: bool,
    ctx: Arc<Context>,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    if manage_crd {
        crd_apply::apply(&client, CRD_ESTABLISHED_TIMEOUT).await?;
    }
    let api: Api<ReplayRequest> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let scope = namespace.as_deref().map_or_else(
        || " in all namespaces".to_string(),
        |ns| format!(" in namespace {ns}"),
    );
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Err(RunError::CrdMissing),
        Err(source) => return Err(RunError::List { scope, source }),
    }
    health.set_ready(format!("watching ReplayRequests{scope}"));
    tracing::info!("watching ReplayRequests{scope}");
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(request = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    Ok(())
}
