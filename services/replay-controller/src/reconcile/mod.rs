//! The ReplayRequest state machine.
//!
//! Pending -> ScalingDown -> Resetting -> Restoring -> CatchingUp [-> HoldingLag] ->
//! Succeeded, or Failed; a dry run: Pending -> Planned, executed from there once spec.dryRun
//! is false.
//! a drill without a reset (`resetTo: none`): Pending -> HoldingLag -> Succeeded;
//! a shadow replay: Pending -> ShadowStarting -> ShadowCatchingUp -> Shadowing, and on
//! spec.promote Promoting -> Restoring -> CatchingUp -> Succeeded.
//!
//! The status is the controller's only memory, so every step is written so that a restart
//! at any point resumes correctly:
//! - the replica count to restore is written to `status.restore` *before* a deployment is
//!   scaled, and removed only after it was restored; Failed and deletion (finalizer)
//!   restore whatever is still listed there;
//! - scaling is idempotent (set `spec.replicas` through the scale subresource);
//! - the reset tags each partition's commit metadata with the request's uid, so a reset made
//!   just before a crash is recognised and not made again;
//! - each reconcile reads the request fresh from the API server (not from the watch cache),
//!   so a step never acts on a status older than the last one written;
//! - a dry run (Pending with spec.dryRun, then Planned) only reads: its first read of the
//!   committed offsets is kept in status.rateSample, so a restart waits out the same window
//!   instead of starting over, and a Planned request is left as it is (no second plan, no
//!   Event) until spec.dryRun is false. Executing it starts like a new request: the replica
//!   count is written before scaling, the plan is made again and written with it;
//! - the high watermarks a replay must pass are read after the reset and written with the
//!   Restoring status (status.catchUp); a crash before that write finds the reset made (uid)
//!   and reads them again then. CatchingUp only reads Kafka: a restart resumes it from the
//!   status, and its end (caughtUpAt) is written with the next phase, HoldingLag's restore
//!   entry before spec.lag's deployment is scaled, as for every other scale. A crash between
//!   seeing the group caught up and writing that status makes the restarted controller see
//!   it again, later: caughtUpAt is then the restarted controller's first sight.
//!
//! Status is written with server-side apply, only when it changed; every phase change is
//! also a Kubernetes Event, and so is a reset that cannot replay the whole history asked for
//! (Warning, reason `HistoryTruncated`: its target lay before the oldest record Kafka still
//! holds on some partition, listed in status.historyTruncated). The Event and the phase's log
//! line follow the status write, so a crash between them loses that one Event (the restart
//! sees the phase already written and does not post it again): Events are at most once, the
//! status is the record.
//!
//! The finalizer `orderflow.io/restore-deployments` is held only while deleting the request
//! may have something to restore:
//! - it is added (kube-runtime's `finalizer` helper) before the first step of a request, so
//!   nothing is scaled down without it;
//! - a request that is finished, Succeeded or Failed with `status.restore` empty, has its
//!   finalizer removed (`release`) and is never handed to the `finalizer` helper again (it
//!   would add the finalizer back), so it can be deleted, with its namespace, when no
//!   controller runs (after `helm uninstall`);
//! - the terminal status is written first and the finalizer removed after it: a crash in
//!   between leaves a finished request holding the finalizer, which the next reconcile (the
//!   watch's initial list after a restart) removes. The removal reads the request fresh and
//!   patches with its resourceVersion, so a concurrent change is retried, never overwritten;
//! - a terminal request whose `status.restore` is not empty keeps its finalizer: deleting it
//!   still restores what is listed.
//!
//! This module is the driver: [`reconcile`] and [`error_policy`] for the kube-runtime
//! Controller, apply (run the steps of the current phase until one waits) and cleanup (the
//! finalizer's restore). A step works on `Run`, one request during one reconcile; its methods
//! are in the submodules:
//! - `phases`: the step of each phase from Pending to Restoring, and which other request a
//!   new one waits for ([`blocker`]);
//! - `plan`: spec.dryRun, the consume-rate measurement, Planned, and the plan made again
//!   when a request executes;
//! - `catchup`: CatchingUp, following the group until it passes the high watermarks read at
//!   reset time (CatchUpTimeout past spec.catchUpTimeoutSeconds);
//! - `autoscaler`: refusing (AutoscalerConflict) a deployment a HorizontalPodAutoscaler
//!   scales;
//! - `lag`: HoldingLag, the lag experiment of `spec.lag`;
//! - `drill`: drills, `resetTo: none` and the verdict of `spec.lag.maxDrainSeconds`;
//! - `failure`: ending Failed (restoring first) and Kafka retries with [`backoff`];
//! - `status`: the [`conditions`], the status patch and the Events;
//! - `history`: a reset whose target lay before the oldest record Kafka still holds
//!   (status.historyTruncated, the Warning Event `HistoryTruncated`);
//! - `targets`: an undo's offsets read from the undone request, and the plan made before
//!   anything changes (the retention guard, reason BeforeRetention);
//! - `shadow`: shadow replays (spec.strategy Shadow), from ShadowStarting to Shadowing, and
//!   removing a shadow (its own crash-safety rules are in its module docs); `promote`: its
//!   promotion (Promoting, and the removal after the live group's CatchingUp);
//! - `scale`: reading, scaling and restoring Deployments;
//! - `release`: a finished request lets go of its finalizer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Client, ResourceExt};
use thiserror::Error;

use crate::crd::{ReplayRequest, ReplayRequestSpec, ReplayRequestStatus};
use crate::kafka::{AdminError, GroupAdmin};
use crate::metrics::Metrics;

mod autoscaler;
mod catchup;
mod drill;
mod failure;
mod history;
mod lag;
mod phases;
mod plan;
mod promote;
mod release;
mod routing;
mod scale;
mod shadow;
mod status;
mod targets;

pub use failure::backoff;
pub use phases::blocker;
pub use status::conditions;

/// Finalizer held on every request until its deployments are restored.
pub const FINALIZER: &str = "orderflow.io/restore-deployments";
/// Field manager of the status (server-side apply).
pub const MANAGER: &str = "replay-controller";
/// Appended to "deployment <ns>/<name>" when the missing deployment is spec.lag's.
const LAG_FIELD: &str = " (spec.lag.deployment)";
/// Phase changes one reconcile may make before it yields.
const MAX_STEPS: usize = 12;

/// Timings of the controller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a waiting request looks again (group still has members, another request
    /// for the same group is running).
    pub poll: Duration,
    /// First retry delay after Kafka was unreachable; doubled per retry up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Delay after a failed reconcile (Kubernetes API errors).
    pub error_requeue: Duration,
    /// A dry run's consume rate: the time between its two reads of the committed offsets.
    pub rate_window: Duration,
    /// CatchingUp: how often the committed offsets are read (bounds how late caughtUpAt is).
    pub catch_up_poll: Duration,
    /// CatchingUp: how often the progress in status.catchUp is updated.
    pub progress_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            error_requeue: Duration::from_secs(5),
            rate_window: Duration::from_secs(5),
            catch_up_poll: Duration::from_millis(500),
            progress_every: Duration::from_secs(2),
        }
    }
}

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub admin: Arc<dyn GroupAdmin>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub settings: Settings,
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("ReplayRequest {0} has no namespace")]
    NoNamespace(String),
    /// Deleting a shadow's group or state topics failed, or must wait (its pods stopping).
    #[error("removing the shadow: {0}")]
    Shadow(String),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Finalizer(_) => "finalizer",
            Self::NoNamespace(_) => "invalid",
            Self::Shadow(_) => "shadow",
        }
    }
}

/// What a step failed on.
enum StepError {
    Kube(kube::Error),
    Kafka(AdminError),
}

impl From<kube::Error> for StepError {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e)
    }
}

impl From<AdminError> for StepError {
    fn from(e: AdminError) -> Self {
        Self::Kafka(e)
    }
}

/// After a step.
#[derive(Debug, PartialEq)]
enum Next {
    /// Go on with the next phase now.
    Continue,
    /// Look again after this long.
    Wait(Duration),
    /// Final phase reached.
    Done,
}

/// Entry point for the kube-runtime Controller.
pub async fn reconcile(rr: Arc<ReplayRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = rr
        .namespace()
        .ok_or_else(|| Error::NoNamespace(rr.name_any()))?;
    let api: Api<ReplayRequest> = Api::namespaced(ctx.client.clone(), &ns);
    let result = if release::finished(&rr) {
        ctx.metrics.replay(
            &groups(&rr.spec, rr.status.as_ref()),
            &ns,
            &rr.name_any(),
            false,
        );
        // not through `finalizer`: it adds the finalizer to a request that lacks it
        release::release(&api, &rr.name_any()).await
    } else {
        finalizer(&api, FINALIZER, rr, |event| async {
            match event {
                Finalizer::Apply(rr) => apply(&rr, &ctx, &ns).await,
                Finalizer::Cleanup(rr) => cleanup(&rr, &ctx, &ns).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    };
    ctx.metrics.reconciled(started.elapsed(), result.is_ok());
    result
}

/// Called by the Controller when [`reconcile`] failed: log, count, retry later.
pub fn error_policy(rr: Arc<ReplayRequest>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(request = %rr.name_any(), error = %error, "reconcile failed; retrying");
    ctx.metrics.failed(error.kind());
    Action::requeue(ctx.settings.error_requeue)
}

async fn apply(rr: &ReplayRequest, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let name = rr.name_any();
    let rrs: Api<ReplayRequest> = Api::namespaced(ctx.client.clone(), ns);
    // Fresh from the API server: the watch cache may not have our last status write yet.
    let fresh = rrs.get_status(&name).await?;
    let run = Run::new(&fresh, ctx, ns);
    let mut saved = fresh.status.clone().unwrap_or_default();
    let group = |st: &ReplayRequestStatus| {
        groups(&fresh.spec, Some(st))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    ctx.metrics
        .replay(&strs(&group(&saved)), ns, &name, saved.phase.is_active());
    if saved.phase.is_final() {
        // the watch cache had not seen the terminal status yet
        return release::release(&rrs, &name).await;
    }
    // Kafka retry backoff: a status write wakes the controller at once; wait out the delay.
    if let Some(at) = parse_time(saved.next_attempt_at.as_deref()) {
        if run.now < at {
            return Ok(Action::requeue(until(run.now, at)));
        }
    }
    let mut st = saved.clone();
    for _ in 0..MAX_STEPS {
        // each step reads the clock afresh: several phases can pass in one reconcile
        let run = Run::new(&fresh, ctx, ns);
        let before = st.phase;
        let next = match run.step(&mut st).await {
            Ok(next) => {
                st.retries = 0;
                st.next_attempt_at = None;
                next
            }
            Err(StepError::Kube(e)) => return Err(e.into()),
            Err(StepError::Kafka(e)) => run.kafka_failed(&mut st, e).await?,
        };
        run.save(&saved, &mut st, before).await?;
        ctx.metrics
            .replay(&strs(&group(&st)), ns, &name, st.phase.is_active());
        saved = st.clone();
        match next {
            Next::Continue => continue,
            Next::Wait(d) => return Ok(Action::requeue(d)),
            // the terminal status is written: the finalizer can go (a crash here is
            // resolved by the next reconcile, which finds the request finished)
            Next::Done => return release::release(&rrs, &name).await,
        }
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// The request is being deleted: restore what it scaled, then let it go.
async fn cleanup(rr: &ReplayRequest, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let rrs: Api<ReplayRequest> = Api::namespaced(ctx.client.clone(), ns);
    let fresh = match rrs.get_status(&rr.name_any()).await {
        Ok(o) => o,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    let run = Run::new(&fresh, ctx, ns);
    let st = fresh.status.clone().unwrap_or_default();
    let restored = run.restore_all(&st.restore).await?;
    if let Some(mut sh) = st.shadow.clone() {
        match run.remove_shadow(&mut sh).await {
            Ok(None) => {}
            Ok(Some(wait)) => return Err(Error::Shadow(wait)),
            Err(StepError::Kube(e)) => return Err(e.into()),
            Err(StepError::Kafka(e)) => return Err(Error::Shadow(e.to_string())),
        }
    }
    let note = if restored.is_empty() {
        format!("deleted in phase {}; nothing to restore", st.phase)
    } else {
        format!(
            "deleted in phase {}; restored {}",
            st.phase,
            restored.join(", ")
        )
    };
    tracing::info!(request = %fresh.name_any(), "{note}");
    run.event(EventType::Normal, "Deleted", &note).await;
    ctx.metrics.replay(
        &groups(&fresh.spec, fresh.status.as_ref()),
        ns,
        &fresh.name_any(),
        false,
    );
    Ok(Action::await_change())
}

/// The consumer groups a request moves: spec.consumerGroup, and spec.lag's group (the
/// `group` labels of orderflow_replay_in_progress); while a shadow runs beside the live
/// group, only the shadow's (the live group's alerts stay on).
fn groups<'a>(spec: &'a ReplayRequestSpec, st: Option<&'a ReplayRequestStatus>) -> Vec<&'a str> {
    if let Some(sh) = st
        .filter(|s| s.phase.is_shadow())
        .and_then(|s| s.shadow.as_ref())
    {
        return vec![sh.consumer_group.as_str()];
    }
    let mut g = vec![spec.consumer_group.as_str()];
    if let Some(lag) = &spec.lag {
        if lag.group() != spec.consumer_group {
            g.push(lag.group());
        }
    }
    g
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

fn secs(n: u32) -> chrono::Duration {
    chrono::Duration::seconds(i64::from(n))
}

/// One request during one step: the request as read at the start of the reconcile, its
/// namespace's APIs, and the time the step reads (once, so one step sees one instant).
struct Run<'a> {
    rr: &'a ReplayRequest,
    ctx: &'a Context,
    ns: &'a str,
    rrs: Api<ReplayRequest>,
    deployments: Api<Deployment>,
    now: DateTime<Utc>,
}

impl<'a> Run<'a> {
    fn new(rr: &'a ReplayRequest, ctx: &'a Context, ns: &'a str) -> Self {
        Self {
            rr,
            ctx,
            ns,
            rrs: Api::namespaced(ctx.client.clone(), ns),
            deployments: Api::namespaced(ctx.client.clone(), ns),
            now: Utc::now(),
        }
    }

    fn spec(&self) -> &ReplayRequestSpec {
        &self.rr.spec
    }
}
