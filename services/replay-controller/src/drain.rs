//! `replay-controller drain`: delete a namespace's ReplayRequests and wait until they are
//! gone. The chart runs it as a pre-delete hook, while the controller still runs: a request
//! in flight holds the finalizer `orderflow.io/restore-deployments` until the controller has
//! restored the deployments it scaled down, and once `helm uninstall` has removed the
//! controller nobody would (the namespace's deletion would hang on it).
//!
//! The logic works on [`Requests`] (the Kubernetes API in [`KubeRequests`], an in-memory
//! fake in the tests) and polls with a deadline.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use thiserror::Error;

use crate::crd::{Phase, ReplayRequest};

/// A request still there.
#[derive(Debug, Clone, PartialEq)]
pub struct Left {
    pub name: String,
    pub phase: Phase,
    pub finalizers: Vec<String>,
    /// Deletion requested already (`metadata.deletionTimestamp` set).
    pub deleting: bool,
}

impl std::fmt::Display for Left {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (phase {}", self.name, self.phase)?;
        if !self.finalizers.is_empty() {
            write!(f, ", finalizers {}", self.finalizers.join(" "))?;
        }
        write!(f, ")")
    }
}

/// The ReplayRequests of one namespace.
#[async_trait]
pub trait Requests: Send + Sync {
    /// The namespace, for messages.
    fn namespace(&self) -> &str;
    /// The requests there now.
    async fn list(&self) -> Result<Vec<Left>, kube::Error>;
    /// Ask for request `name` to be deleted (gone already is fine).
    async fn delete(&self, name: &str) -> Result<(), kube::Error>;
}

#[derive(Debug, Error)]
pub enum DrainError {
    #[error("draining the ReplayRequests of namespace {ns}: {source}")]
    Kube {
        ns: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "timed out after {:?}: {} ReplayRequest(s) of namespace {ns} still there: {}. \
         The replay-controller removes a request's finalizer once it has restored the \
         deployments the request scaled down: is it running (kubectl -n {ns} get deploy \
         replay-controller; kubectl -n {ns} logs deploy/replay-controller)? Without it, \
         restore the deployments listed in the request's status.restore by hand, then \
         kubectl -n {ns} patch rr NAME --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'",
        .waited, .left.len(), left_list(.left)
    )]
    Timeout {
        ns: String,
        waited: Duration,
        left: Vec<Left>,
    },
}

fn left_list(left: &[Left]) -> String {
    left.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Delete every request in `reqs` (also ones created meanwhile) and poll every `poll` until
/// none is left, for at most `timeout`. Returns how many were deleted.
pub async fn drain(
    reqs: &dyn Requests,
    timeout: Duration,
    poll: Duration,
) -> Result<usize, DrainError> {
    let kube = |source| DrainError::Kube {
        ns: reqs.namespace().to_string(),
        source,
    };
    let started = Instant::now();
    let mut deleted = 0;
    loop {
        let left = reqs.list().await.map_err(kube)?;
        if left.is_empty() {
            return Ok(deleted);
        }
        for r in left.iter().filter(|r| !r.deleting) {
            reqs.delete(&r.name).await.map_err(kube)?;
            tracing::info!(request = %r.name, phase = %r.phase, "deleted");
            deleted += 1;
        }
        if started.elapsed() >= timeout {
            return Err(DrainError::Timeout {
                ns: reqs.namespace().to_string(),
                waited: timeout,
                left,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// [`Requests`] on the Kubernetes API: needs list and delete on replayrequests.
pub struct KubeRequests {
    api: Api<ReplayRequest>,
    ns: String,
}

impl KubeRequests {
    pub fn new(client: Client, ns: &str) -> Self {
        Self {
            api: Api::namespaced(client, ns),
            ns: ns.to_string(),
        }
    }
}

#[async_trait]
impl Requests for KubeRequests {
    fn namespace(&self) -> &str {
        &self.ns
    }

    async fn list(&self) -> Result<Vec<Left>, kube::Error> {
        let list = self.api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .map(|r| Left {
                name: r.name_any(),
                phase: r.status.as_ref().map(|s| s.phase).unwrap_or_default(),
                finalizers: r.finalizers().to_vec(),
                deleting: r.metadata.deletion_timestamp.is_some(),
            })
            .collect())
    }

    async fn delete(&self, name: &str) -> Result<(), kube::Error> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use crate::reconcile::FINALIZER;

    /// Requests in memory; a deleted one holding the finalizer goes after `release_after`
    /// more lists (the controller restoring its deployments), never when `None`.
    struct Fake {
        reqs: Mutex<BTreeMap<String, (Left, u32)>>,
        release_after: Option<u32>,
        deletes: Mutex<Vec<String>>,
    }

    fn left(name: &str, phase: Phase, finalizer: bool) -> Left {
        Left {
            name: name.into(),
            phase,
            finalizers: if finalizer {
                vec![FINALIZER.into()]
            } else {
                vec![]
            },
            deleting: false,
        }
    }

    fn fake(reqs: Vec<Left>, release_after: Option<u32>) -> Fake {
        Fake {
            reqs: Mutex::new(reqs.into_iter().map(|l| (l.name.clone(), (l, 0))).collect()),
            release_after,
            deletes: Mutex::new(Vec::new()),
        }
    }

    #[async_trait]
    impl Requests for Fake {
        fn namespace(&self) -> &str {
            "orderflow"
        }

        async fn list(&self) -> Result<Vec<Left>, kube::Error> {
            let mut reqs = self.reqs.lock().unwrap();
            for (l, lists) in reqs.values_mut().filter(|(l, _)| l.deleting) {
                *lists += 1;
                if self.release_after.is_some_and(|n| *lists > n) {
                    l.finalizers.clear();
                }
            }
            reqs.retain(|_, (l, _)| !(l.deleting && l.finalizers.is_empty()));
            Ok(reqs.values().map(|(l, _)| l.clone()).collect())
        }

        async fn delete(&self, name: &str) -> Result<(), kube::Error> {
            self.deletes.lock().unwrap().push(name.to_string());
            let mut reqs = self.reqs.lock().unwrap();
            if let Some((l, _)) = reqs.get_mut(name) {
                l.deleting = true;
                if l.finalizers.is_empty() {
                    reqs.remove(name);
                }
            }
            Ok(())
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn every_request_is_deleted_once_and_waited_for() {
        let f = fake(
            vec![
                left("done", Phase::Succeeded, false),
                left("busy", Phase::HoldingLag, true),
            ],
            Some(3),
        );
        assert_eq!(drain(&f, Duration::from_secs(10), MS).await.unwrap(), 2);
        assert!(f.reqs.lock().unwrap().is_empty());
        // each deleted once: a request already being deleted is not deleted again
        assert_eq!(*f.deletes.lock().unwrap(), vec!["busy", "done"]);
    }

    #[tokio::test]
    async fn nothing_to_drain_is_done_at_once() {
        let f = fake(vec![], None);
        assert_eq!(drain(&f, Duration::ZERO, MS).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_finalizer_nobody_releases_ends_in_a_timeout_naming_the_request() {
        let f = fake(
            vec![
                left("done", Phase::Failed, false),
                left("stuck", Phase::Restoring, true),
            ],
            None,
        );
        let e = drain(&f, Duration::from_millis(50), MS).await.unwrap_err();
        let DrainError::Timeout { left, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(left.len(), 1);
        let e = e.to_string();
        assert!(
            e.starts_with(
                "timed out after 50ms: 1 ReplayRequest(s) of namespace orderflow still there: \
                 stuck (phase Restoring, finalizers orderflow.io/restore-deployments)."
            ),
            "{e}"
        );
        assert!(e.contains("is it running"), "{e}");
    }
}
