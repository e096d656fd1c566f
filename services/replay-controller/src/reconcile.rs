//! The ReplayRequest state machine.
//!
//! Pending -> ScalingDown -> Resetting -> Restoring [-> HoldingLag] -> Succeeded, or Failed.
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
//!   so a step never acts on a status older than the last one written.
//!
//! Status is written with server-side apply, only when it changed; every phase change is
//! also a Kubernetes Event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Client, Resource, ResourceExt};
use orderflowctl::{reset_metadata_by_of, reset_metadata_from};
use serde_json::json;
use thiserror::Error;

use crate::crd::{
    Condition, LagStatus, PartitionOffsets, Phase, ReplayRequest, ReplayRequestSpec,
    ReplayRequestStatus, Restore, DEFAULT_DRAIN_TIMEOUT_SECONDS, DEFAULT_SAMPLE_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
};
use crate::kafka::{AdminError, GroupAdmin};
use crate::metrics::Metrics;

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            error_requeue: Duration::from_secs(5),
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
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Finalizer(_) => "finalizer",
            Self::NoNamespace(_) => "invalid",
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
    let result = finalizer(&api, FINALIZER, rr, |event| async {
        match event {
            Finalizer::Apply(rr) => apply(&rr, &ctx, &ns).await,
            Finalizer::Cleanup(rr) => cleanup(&rr, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
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
    if saved.phase.is_final() {
        return Ok(Action::await_change());
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
        saved = st.clone();
        match next {
            Next::Continue => continue,
            Next::Wait(d) => return Ok(Action::requeue(d)),
            Next::Done => return Ok(Action::await_change()),
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
    Ok(Action::await_change())
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

/// Backoff before Kafka retry `n` (1-based): base * 2^(n-1), at most `max`.
pub fn backoff(settings: &Settings, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
    settings
        .retry_base
        .saturating_mul(factor)
        .min(settings.retry_max)
}

/// The conditions for a status: Ready, Progressing and Failed, keeping each condition's
/// lastTransitionTime while its status does not change.
pub fn conditions(
    old: &[Condition],
    st: &ReplayRequestStatus,
    failure: Option<(&str, &str)>,
    now: &str,
) -> Vec<Condition> {
    let progressing_reason = if st.retries > 0 {
        "KafkaUnavailable"
    } else {
        st.phase.as_str()
    };
    let previous_failure = old
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        });
    let failed = match (st.phase, failure) {
        (Phase::Failed, Some((r, m))) => ("True", r.to_string(), m.to_string()),
        (Phase::Failed, None) => {
            let (r, m) = previous_failure.unwrap_or_default();
            ("True", r, m)
        }
        _ => ("False", "NoFailure".to_string(), String::new()),
    };
    let wanted = [
        (
            "Ready",
            if st.phase == Phase::Succeeded {
                "True"
            } else {
                "False"
            },
            st.phase.as_str().to_string(),
            st.message.clone().unwrap_or_default(),
        ),
        (
            "Progressing",
            if st.phase.is_final() { "False" } else { "True" },
            progressing_reason.to_string(),
            st.message.clone().unwrap_or_default(),
        ),
        ("Failed", failed.0, failed.1, failed.2),
    ];
    wanted
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let since = old
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.to_string());
            Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason),
                message: (!message.is_empty()).then_some(message),
                last_transition_time: Some(since),
            }
        })
        .collect()
}

/// Another request that must finish before `rr` starts: one touching the same consumer
/// group or deployments that is running, or that is pending and was created earlier.
pub fn blocker<'a>(rr: &ReplayRequest, others: &'a [ReplayRequest]) -> Option<&'a ReplayRequest> {
    let touched = |r: &ReplayRequest| {
        let mut d = vec![r.spec.deployment.clone()];
        if let Some(l) = &r.spec.lag {
            d.push(l.deployment.clone());
        }
        d
    };
    let mine = touched(rr);
    let key = |r: &ReplayRequest| (r.meta().creation_timestamp.clone(), r.name_any());
    others.iter().find(|o| {
        if o.uid() == rr.uid() || o.meta().deletion_timestamp.is_some() {
            return false;
        }
        let overlaps = o.spec.consumer_group == rr.spec.consumer_group
            || touched(o).iter().any(|d| mine.contains(d));
        let phase = o.status.as_ref().map(|s| s.phase).unwrap_or_default();
        overlaps && (phase.is_active() || (phase == Phase::Pending && key(o) < key(rr)))
    })
}

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

    async fn step(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        match st.phase {
            Phase::Pending => self.start(st).await,
            Phase::ScalingDown => self.scale_down(st).await,
            Phase::Resetting => self.reset(st).await,
            Phase::Restoring => self.restore(st).await,
            Phase::HoldingLag => self.hold(st).await,
            Phase::Succeeded | Phase::Failed => Ok(Next::Done),
        }
    }

    fn enter(&self, st: &mut ReplayRequestStatus, phase: Phase, message: String) {
        st.phase = phase;
        st.phase_started_at = Some(fmt_time(self.now));
        st.message = Some(message);
    }

    /// When the deployment must be back up at the latest (ScalingDown and Resetting).
    fn deadline(&self, st: &ReplayRequestStatus) -> DateTime<Utc> {
        let started = parse_time(st.started_at.as_deref()).unwrap_or(self.now);
        started
            + secs(
                self.spec()
                    .timeout_seconds
                    .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            )
    }

    async fn start(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let to = match spec.validate() {
            Ok(to) => to,
            Err(msg) => return Ok(self.fail(st, "InvalidSpec", msg).await?),
        };
        let others = self.rrs.list(&ListParams::default()).await?;
        if let Some(b) = blocker(self.rr, &others.items) {
            st.message = Some(format!(
                "waiting for ReplayRequest {} (phase {}) to finish: same consumer group or deployment",
                b.name_any(),
                b.status.as_ref().map(|s| s.phase).unwrap_or_default()
            ));
            return Ok(Next::Wait(self.ctx.settings.poll));
        }
        let Some(replicas) = self.replicas(&spec.deployment).await? else {
            return Ok(self.missing(st, &spec.deployment, "").await?);
        };
        if let Some(lag) = &spec.lag {
            if self.replicas(&lag.deployment).await?.is_none() {
                return Ok(self.missing(st, &lag.deployment, LAG_FIELD).await?);
            }
        }
        st.started_at = Some(fmt_time(self.now));
        st.restore = vec![Restore {
            deployment: spec.deployment.clone(),
            replicas,
        }];
        let msg = format!(
            "scaling deployment {} from {replicas} to 0 replicas to stop consumer group {} (reset to {to})",
            spec.deployment, spec.consumer_group
        );
        self.enter(st, Phase::ScalingDown, msg);
        Ok(Next::Continue)
    }

    async fn scale_down(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        if !self.scale(&spec.deployment, 0).await? {
            return Ok(self.missing(st, &spec.deployment, "").await?);
        }
        let info = self.ctx.admin.describe(&spec.consumer_group).await?;
        if info.is_empty() {
            let msg = format!(
                "consumer group {} is empty (state {}); resetting its offsets on {} to {}",
                spec.consumer_group,
                info.state,
                spec.topics.join(", "),
                reset_label(spec)
            );
            self.enter(st, Phase::Resetting, msg);
            return Ok(Next::Continue);
        }
        let deadline = self.deadline(st);
        if self.now >= deadline {
            let msg = format!(
                "consumer group {} still has {} member(s) (state {}) {} s after scaling {} to 0; gave up and restored the deployment",
                spec.consumer_group,
                info.members,
                info.state,
                spec.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
                spec.deployment
            );
            return Ok(self.fail(st, "GroupNotEmpty", msg).await?);
        }
        st.message = Some(format!(
            "waiting for consumer group {} to become empty: {} member(s), state {} (gives up at {})",
            spec.consumer_group,
            info.members,
            info.state,
            deadline.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
        Ok(Next::Wait(self.ctx.settings.poll))
    }

    async fn reset(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let to = match spec.validate() {
            Ok(to) => to,
            Err(msg) => return Ok(self.fail(st, "InvalidSpec", msg).await?),
        };
        let uid = self.rr.uid().unwrap_or_default();
        let committed = self
            .ctx
            .admin
            .committed(&spec.consumer_group, &spec.topics)
            .await?;
        let already = !uid.is_empty()
            && !committed.is_empty()
            && committed
                .iter()
                .all(|c| reset_metadata_by_of(&c.metadata) == Some(uid.as_str()));
        let (offsets, how) = if already {
            // Made before a controller restart (the status write was lost): not again.
            let offsets = committed
                .iter()
                .map(|c| PartitionOffsets {
                    topic: c.topic.clone(),
                    partition: c.partition,
                    from: reset_metadata_from(&c.metadata).flatten(),
                    to: c.offset.unwrap_or_default(),
                })
                .collect();
            (offsets, "found already made by this request")
        } else {
            match self
                .ctx
                .admin
                .reset(&spec.consumer_group, &spec.topics, to, &uid)
                .await
            {
                Ok(changes) => (
                    changes
                        .into_iter()
                        .map(|c| PartitionOffsets {
                            topic: c.topic,
                            partition: c.partition,
                            from: c.from,
                            to: c.to,
                        })
                        .collect(),
                    "reset",
                ),
                Err(e) if e.is_not_empty() => {
                    let msg = format!("{e}; waiting for the group to become empty again");
                    self.enter(st, Phase::ScalingDown, msg);
                    return Ok(Next::Wait(self.ctx.settings.poll));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let restore_to = st
            .restore
            .iter()
            .find(|r| r.deployment == spec.deployment)
            .map_or(0, |r| r.replicas);
        st.offsets = offsets;
        let msg = format!(
            "offsets of {} on {} partition(s) {how} (to {}); restoring deployment {} to {restore_to} replica(s)",
            spec.consumer_group,
            st.offsets.len(),
            reset_label(spec),
            spec.deployment
        );
        self.enter(st, Phase::Restoring, msg);
        Ok(Next::Continue)
    }

    async fn restore(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let spec = self.spec();
        let restored = match self.restore_one(st, &spec.deployment).await? {
            Some(r) => format!("{} restored to {} replica(s)", r.deployment, r.replicas),
            None => String::new(),
        };
        let summary = format!(
            "reset {} on {} partition(s) of {} to {}; {restored}",
            spec.consumer_group,
            st.offsets.len(),
            spec.topics.join(", "),
            reset_label(spec)
        );
        let Some(lag) = &spec.lag else {
            self.succeed(st, summary);
            return Ok(Next::Continue);
        };
        let Some(current) = self.replicas(&lag.deployment).await? else {
            return Ok(self.missing(st, &lag.deployment, LAG_FIELD).await?);
        };
        st.restore.push(Restore {
            deployment: lag.deployment.clone(),
            replicas: current,
        });
        let hold_until = self.now + secs(lag.hold_seconds);
        st.lag = Some(LagStatus {
            consumer_group: lag.group().to_string(),
            hold_until: Some(fmt_time(hold_until)),
            ..LagStatus::default()
        });
        let msg = format!(
            "{summary}; holding deployment {} at {} replica(s) until {}, then back to {current}",
            lag.deployment,
            lag.replicas,
            hold_until.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        self.enter(st, Phase::HoldingLag, msg);
        Ok(Next::Continue)
    }

    async fn hold(&self, st: &mut ReplayRequestStatus) -> Result<Next, StepError> {
        let Some(lag) = self.spec().lag.clone() else {
            self.succeed(st, "spec.lag was removed; nothing to hold".to_string());
            return Ok(Next::Continue);
        };
        let mut ls = st.lag.clone().unwrap_or_default();
        let every = secs(lag.sample_seconds.unwrap_or(DEFAULT_SAMPLE_SECONDS));
        let last_at = ls.samples.last().and_then(|s| parse_time(Some(&s.at)));
        let due =
            last_at.is_none_or(|t| self.now >= t + every - chrono::Duration::milliseconds(100));
        let next_sample = last_at.map_or(self.now, |t| t + every);
        let group = ls.consumer_group.clone();
        let Some(restored_at) = parse_time(ls.restored_at.as_deref()) else {
            let hold_until = parse_time(ls.hold_until.as_deref()).unwrap_or(self.now);
            if self.now < hold_until {
                if !self.scale(&lag.deployment, lag.replicas).await? {
                    return Ok(self.missing(st, &lag.deployment, LAG_FIELD).await?);
                }
                if due {
                    let v = self.ctx.admin.lag(&group, &lag.topics()).await?;
                    ls.push(fmt_time(self.now), v);
                }
                st.message = Some(format!(
                    "holding deployment {} at {} replica(s) until {}: lag of {group} {} (peak {})",
                    lag.deployment,
                    lag.replicas,
                    hold_until.to_rfc3339_opts(SecondsFormat::Secs, true),
                    ls.samples.last().map_or(0, |s| s.lag),
                    ls.peak
                ));
                st.lag = Some(ls);
                let wake = if due { self.now + every } else { next_sample };
                return Ok(Next::Wait(until(self.now, wake.min(hold_until))));
            }
            self.restore_one(st, &lag.deployment).await?;
            ls.restored_at = Some(fmt_time(self.now));
            st.message = Some(format!(
                "deployment {} restored; waiting for the lag of {group} to drain (peak {})",
                lag.deployment, ls.peak
            ));
            st.lag = Some(ls);
            return Ok(Next::Continue);
        };
        if due {
            let v = self.ctx.admin.lag(&group, &lag.topics()).await?;
            ls.push(fmt_time(self.now), v);
            if v == 0 {
                let after = (self.now - restored_at).num_milliseconds() as f64 / 1000.0;
                ls.drained_after_seconds = Some(after);
                let msg = format!(
                    "lag of {group} peaked at {} and drained {after:.1} s after {} was restored",
                    ls.peak, lag.deployment
                );
                st.lag = Some(ls);
                self.succeed(st, msg);
                return Ok(Next::Continue);
            }
        }
        let drain_deadline = restored_at
            + secs(
                lag.drain_timeout_seconds
                    .unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECONDS),
            );
        if self.now >= drain_deadline {
            let msg = format!(
                "lag of {group} peaked at {} and was still {} when the drain timeout passed ({} s); deployments restored",
                ls.peak,
                ls.samples.last().map_or(0, |s| s.lag),
                lag.drain_timeout_seconds.unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECONDS)
            );
            st.lag = Some(ls);
            self.succeed(st, msg);
            return Ok(Next::Continue);
        }
        st.message = Some(format!(
            "waiting for the lag of {group} to drain: {} (peak {})",
            ls.samples.last().map_or(0, |s| s.lag),
            ls.peak
        ));
        st.lag = Some(ls);
        let wake = if due { self.now + every } else { next_sample };
        Ok(Next::Wait(until(self.now, wake.min(drain_deadline))))
    }

    fn succeed(&self, st: &mut ReplayRequestStatus, message: String) {
        self.enter(st, Phase::Succeeded, message);
        st.completed_at = Some(fmt_time(self.now));
    }

    /// End Failed with DeploymentNotFound; `field` names the spec field when it is not
    /// spec.deployment.
    async fn missing(
        &self,
        st: &mut ReplayRequestStatus,
        deployment: &str,
        field: &str,
    ) -> Result<Next, kube::Error> {
        let msg = format!("deployment {}/{deployment}{field} not found", self.ns);
        self.fail(st, "DeploymentNotFound", msg).await
    }

    /// End Failed, after restoring every deployment still listed in `status.restore`.
    async fn fail(
        &self,
        st: &mut ReplayRequestStatus,
        reason: &str,
        message: String,
    ) -> Result<Next, kube::Error> {
        let restored = self.restore_all(&st.restore).await?;
        st.restore.clear();
        let message = if restored.is_empty() {
            message
        } else {
            format!("{message} (restored {})", restored.join(", "))
        };
        tracing::warn!(request = %self.rr.name_any(), reason, "{message}");
        st.conditions = conditions(
            &st.conditions,
            &ReplayRequestStatus {
                phase: Phase::Failed,
                ..st.clone()
            },
            Some((reason, &message)),
            &fmt_time(self.now),
        );
        self.enter(st, Phase::Failed, message);
        st.completed_at = Some(fmt_time(self.now));
        Ok(Next::Done)
    }

    /// Kafka did not answer: permanent errors fail the request; others are retried with
    /// backoff, but not past the deadline while the consumers are scaled down.
    async fn kafka_failed(
        &self,
        st: &mut ReplayRequestStatus,
        e: AdminError,
    ) -> Result<Next, Error> {
        let outcome = if let Some(reason) = e.permanent_reason() {
            self.fail(st, reason, e.to_string()).await
        } else if matches!(st.phase, Phase::ScalingDown | Phase::Resetting)
            && self.now >= self.deadline(st)
        {
            let msg = format!(
                "Kafka unavailable past the {} s timeout: {e}",
                self.spec()
                    .timeout_seconds
                    .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            );
            self.fail(st, "KafkaUnavailable", msg).await
        } else {
            st.retries += 1;
            let mut wait = backoff(&self.ctx.settings, st.retries);
            if st.phase == Phase::HoldingLag {
                // sampling only: never hold the deployment down longer because of it
                wait = wait.min(Duration::from_secs(u64::from(DEFAULT_SAMPLE_SECONDS)));
            }
            let at = self.now + chrono::Duration::from_std(wait).unwrap_or_default();
            st.next_attempt_at = Some(fmt_time(at));
            st.message = Some(format!(
                "Kafka unavailable in phase {} ({e}); retry {} at {}",
                st.phase,
                st.retries,
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
            tracing::warn!(request = %self.rr.name_any(), retries = st.retries, error = %e, "Kafka unavailable");
            self.ctx.metrics.failed("kafka");
            if st.retries == 1 {
                let note = st.message.clone().unwrap_or_default();
                self.event(EventType::Warning, "KafkaUnavailable", &note)
                    .await;
            }
            return Ok(Next::Wait(wait));
        };
        Ok(outcome?)
    }

    /// Write the status when it changed; an Event when the phase changed.
    async fn save(
        &self,
        old: &ReplayRequestStatus,
        st: &mut ReplayRequestStatus,
        before: Phase,
    ) -> Result<(), Error> {
        st.observed_generation = self.rr.meta().generation;
        // st.conditions: the saved ones, or the Failed ones fail() just set
        st.conditions = conditions(&st.conditions, st, None, &fmt_time(self.now));
        if st == old {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": "orderflow.io/v1alpha1",
            "kind": "ReplayRequest",
            "status": st,
        });
        self.rrs
            .patch_status(
                &self.rr.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        if st.phase != before {
            self.ctx.metrics.entered(st.phase.as_str());
            let message = st.message.clone().unwrap_or_default();
            // one line per phase change, its text the phase's message; `event: "phase"` selects
            // them: `kubectl logs deploy/replay-controller | jq 'select(.event == "phase")'`
            tracing::info!(
                event = "phase",
                name = %self.rr.name_any(),
                namespace = self.rr.metadata.namespace.as_deref().unwrap_or_default(),
                phase = %st.phase,
                from = %before,
                group = %self.rr.spec.consumer_group,
                "{message}"
            );
            let kind = if st.phase == Phase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.event(kind, st.phase.as_str(), &message).await;
        }
        Ok(())
    }

    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&ev, &self.rr.object_ref(&()))
            .await
        {
            tracing::warn!(request = %self.rr.name_any(), error = %e, "could not publish an Event");
        }
    }

    /// A deployment's `spec.replicas` (`None`: no such deployment).
    async fn replicas(&self, name: &str) -> Result<Option<i32>, kube::Error> {
        match self.deployments.get_scale(name).await {
            Ok(s) => Ok(Some(s.spec.and_then(|s| s.replicas).unwrap_or(0))),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Set a deployment's `spec.replicas` (false: no such deployment).
    async fn scale(&self, name: &str, replicas: i32) -> Result<bool, kube::Error> {
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
    async fn restore_one(
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
    async fn restore_all(&self, list: &[Restore]) -> Result<Vec<String>, kube::Error> {
        let mut done = Vec::new();
        for r in list {
            if self.scale(&r.deployment, r.replicas).await? {
                done.push(format!("{} to {} replica(s)", r.deployment, r.replicas));
            }
        }
        Ok(done)
    }
}

fn reset_label(spec: &ReplayRequestSpec) -> String {
    match (&spec.reset_to, &spec.timestamp) {
        (crate::crd::ResetTarget::Timestamp, Some(t)) => format!("timestamp {t}"),
        (t, _) => t.as_str().to_string(),
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
