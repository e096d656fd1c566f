//! A finished request lets go of its finalizer: once a request is Succeeded or Failed with
//! nothing left in `status.restore`, deleting it has nothing to restore, and holding
//! [`FINALIZER`] would only make its deletion (and its namespace's) wait for a controller
//! that may be gone (`helm uninstall`).

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use super::{Error, FINALIZER};
use crate::crd::{Phase, ReplayRequest};

/// Terminal (or a dry run that is Planned, which touched nothing), with no deployment left
/// to restore and no shadow left to remove: needs no finalizer.
pub(super) fn finished(rr: &ReplayRequest) -> bool {
    rr.status.as_ref().is_some_and(|s| {
        (s.phase.is_final() || (s.phase == Phase::Planned && rr.spec.dry_run))
            && s.restore.is_empty()
            && s.shadow.as_ref().is_none_or(|sh| sh.removed_at.is_some())
    })
}

/// Remove [`FINALIZER`] from request `name` if, read fresh, it is [`finished`] and holds it.
/// A merge patch of the remaining finalizers with the read's resourceVersion: a concurrent
/// change makes it fail with a conflict (and the reconcile is retried), so another party's
/// finalizer is never dropped.
pub(super) async fn release(rrs: &Api<ReplayRequest>, name: &str) -> Result<Action, Error> {
    let fresh = match rrs.get_status(name).await {
        Ok(o) => o,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    if !finished(&fresh) || !fresh.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let keep: Vec<&String> = fresh
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch =
        json!({"metadata": {"finalizers": keep, "resourceVersion": fresh.resource_version()}});
    rrs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(request = %name, "finished: finalizer {FINALIZER} released");
    Ok(Action::await_change())
}
