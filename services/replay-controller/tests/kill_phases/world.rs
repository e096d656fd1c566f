//! The kill test's world: the pipeline between two requests (stand-ins, the analytics
//! metrics every replay must recompute, the environment) and the reads of Kafka and the
//! controller it checks each round with.

use std::time::Duration;

use anyhow::anyhow;
use kube::api::Api;
use orderflow_events::{GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::envtest::StandIn;
use orderflow_testkit::probes::compare_metrics;
use orderflow_testkit::{wait, Service};
use orderflowctl::PartitionLag;
use replay_controller::crd::{Phase, ReplayRequest};
use serde_json::{json, Value};

use crate::common::{
    apply_rr, event_reasons_with, log_ends, metrics_when, phase, refuse_phase, replicas, rr,
    start_controller, wait_rr, Env,
};

pub(crate) const NS: &str = "default";
pub(crate) const ORDERS: u64 = 1500;
/// Orders published while inventory is held at 0 in the HoldingLag round: the lag.
pub(crate) const LAG_ORDERS: u64 = 300;
/// Every phase a request with spec.lag passes, one Event each (and Planned first, once, for
/// a dry run executed afterwards).
pub(crate) const ALL_PHASES: [&str; 6] = [
    "ScalingDown",
    "Resetting",
    "Restoring",
    "CatchingUp",
    "HoldingLag",
    "Succeeded",
];

pub(crate) fn spec(hold_seconds: u32) -> Value {
    json!({"consumerGroup": "analytics", "deployment": "analytics",
           "topics": [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS], "resetTo": "earliest",
           "lag": {"deployment": "inventory", "replicas": 0, "holdSeconds": hold_seconds,
                   "sampleSeconds": 1}})
}

/// Failed reconciles of this controller process (a refused status write is one).
pub(crate) async fn failed_reconciles(ctl: &Service) -> f64 {
    ctl.metric("orderflow_replay_reconciles_total", &[("result", "error")])
        .await
        .unwrap_or(0.0)
}

/// The analytics group's committed offsets and the log ends.
pub(crate) async fn group_offsets(kafka: &KafkaConfig) -> Option<Vec<PartitionLag>> {
    log_ends(kafka).await.ok()
}

/// The analytics group's commit metadata on every partition of both topics.
pub(crate) async fn commit_metadata(kafka: &KafkaConfig) -> Option<Vec<String>> {
    let k = kafka.clone();
    let committed = tokio::task::spawn_blocking(move || {
        orderflowctl::committed_offsets(
            &k,
            GROUP_ANALYTICS,
            &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
            Duration::from_secs(5),
        )
    })
    .await
    .ok()?
    .ok()?;
    Some(committed.into_iter().map(|c| c.metadata).collect())
}

pub(crate) async fn group_is_empty(kafka: &KafkaConfig) -> bool {
    let k = kafka.clone();
    tokio::task::spawn_blocking(move || {
        orderflowctl::describe_group(&k, GROUP_ANALYTICS, Duration::from_secs(5))
    })
    .await
    .ok()
    .and_then(Result::ok)
    .is_some_and(|g| g.is_empty())
}

/// The pipeline between two requests. (Fields drop in order: the stand-ins stop their
/// processes while the API server they watch is still up.)
pub(crate) struct World {
    pub(crate) analytics: StandIn,
    pub(crate) inventory: StandIn,
    /// analytics' metrics before the replays: every replay must recompute them.
    pub(crate) before: Value,
    pub(crate) env: Env,
}

/// Where a request starts from: analytics has recomputed `before` and committed the log
/// ends (so a reset reports them as `from`), and how many replica changes the stand-ins had
/// seen.
pub(crate) struct Start {
    pub(crate) ends: Vec<PartitionLag>,
    pub(crate) analytics_seen: usize,
    pub(crate) inventory_seen: usize,
}

impl World {
    pub(crate) fn client(&self) -> kube::Client {
        self.env.client.clone()
    }

    pub(crate) fn kafka(&self) -> KafkaConfig {
        self.env.broker.kafka()
    }

    pub(crate) async fn controller(&self) -> anyhow::Result<Service> {
        start_controller(&self.env, &[("WATCH_NAMESPACE", NS.to_string())]).await
    }

    /// Wait until both deployments' processes run, and the last replay is recomputed
    /// (identical metrics) and committed.
    pub(crate) async fn settled(&self) -> anyhow::Result<Start> {
        self.running().await?;
        let before = self.before.clone();
        metrics_when(
            &self.analytics,
            "analytics to recompute the metrics from before the replays",
            move |m| compare_metrics(&before, m).is_empty(),
        )
        .await?;
        let kafka = self.kafka();
        let ends = wait::until(
            "analytics to commit the log ends",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let kafka = kafka.clone();
                async move {
                    let p = group_offsets(&kafka).await?;
                    (p.len() == 6 && p.iter().all(|p| p.committed == Some(p.high_watermark)))
                        .then_some(p)
                }
            },
        )
        .await?;
        Ok(Start {
            ends,
            analytics_seen: self.analytics.seen().len(),
            inventory_seen: self.inventory.seen().len(),
        })
    }

    /// Wait until the stand-ins run both deployments' processes (ready).
    pub(crate) async fn running(&self) -> anyhow::Result<()> {
        wait::until(
            "the analytics and inventory processes to run",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let up = self.analytics.url().is_some() && self.inventory.url().is_some();
                async move { up.then_some(()) }
            },
        )
        .await
    }

    pub(crate) async fn wait(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&ReplayRequest) -> bool,
    ) -> anyhow::Result<ReplayRequest> {
        wait_rr(
            &self.client(),
            NS,
            name,
            what,
            Duration::from_secs(60),
            pred,
        )
        .await
    }

    /// The request ended Succeeded, once: one Event per phase, every partition of both
    /// topics reset once to earliest (from the committed `ends` when given: a second reset
    /// would report 0), the lag recorded and drained, nothing left to restore. `at_kill`,
    /// the request as it was when the controller was killed: the restarted one resumed it
    /// (same start time) and kept the reset it had recorded.
    pub(crate) async fn succeeded_once(
        &self,
        name: &str,
        ends: Option<&[PartitionLag]>,
        at_kill: Option<&ReplayRequest>,
    ) -> anyhow::Result<ReplayRequest> {
        let done = self
            .wait(name, "a final phase", |o| phase(o).is_final())
            .await?;
        let st = done.status.clone().unwrap_or_default();
        assert_eq!(st.phase, Phase::Succeeded, "{name}: {:?}", st.message);
        assert!(st.restore.is_empty(), "{name}: {:?}", st.restore);
        assert!(st.completed_at.is_some(), "{name}");
        assert_eq!(st.offsets.len(), 6, "{name}: {:?}", st.offsets);
        for o in &st.offsets {
            assert_eq!(o.to, 0, "{name}: {o:?}");
            if let Some(ends) = ends {
                let end = ends
                    .iter()
                    .find(|p| p.topic == o.topic && p.partition == o.partition)
                    .map(|p| p.high_watermark);
                assert_eq!(o.from, end, "{name}: {o:?}");
            }
        }
        if let Some(killed) = at_kill.and_then(|o| o.status.as_ref()) {
            assert_eq!(st.started_at, killed.started_at, "{name}");
            if !killed.offsets.is_empty() {
                assert_eq!(st.offsets, killed.offsets, "{name}");
            }
        }
        let lag = st.lag.clone().unwrap_or_default();
        assert!(lag.drained_after_seconds.is_some(), "{name}: {lag:?}");
        assert_eq!(lag.samples.last().map(|s| s.lag), Some(0), "{name}");
        let all = event_reasons_with(&self.client(), NS, name, "Succeeded").await?;
        let reasons: Vec<&String> = all.iter().filter(|r| *r != "Planned").collect();
        assert_eq!(reasons, ALL_PHASES, "{name}: {all:?}");
        assert!(
            all.iter().filter(|r| *r == "Planned").count() <= 1,
            "{name}: {all:?}"
        );
        let cu = st.catch_up.clone().unwrap_or_default();
        assert!(
            cu.caught_up_at.is_some() && cu.records_left == 0,
            "{name}: {cu:?}"
        );
        Ok(done)
    }

    /// Both deployments back at their replica counts, and the stand-ins saw `analytics` and
    /// `inventory` (the replica counts set since `start`) and nothing else: no deployment
    /// was scaled down twice or left down. Their processes run again.
    pub(crate) async fn restored(
        &self,
        start: &Start,
        analytics: &[i32],
        inventory: &[i32],
    ) -> anyhow::Result<()> {
        let c = self.client();
        assert_eq!(replicas(&c, NS, "analytics").await?, 1);
        assert_eq!(replicas(&c, NS, "inventory").await?, 2);
        wait::until(
            "the stand-ins to see the restored replica counts",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let a = self.analytics.seen();
                let i = self.inventory.seen();
                let ok = a.get(start.analytics_seen..) == Some(analytics)
                    && i.get(start.inventory_seen..) == Some(inventory);
                async move { ok.then_some(()) }
            },
        )
        .await
        .map_err(|e| {
            anyhow!(
                "{e}: analytics saw {:?}, inventory saw {:?}",
                self.analytics.seen(),
                self.inventory.seen()
            )
        })?;
        self.running().await
    }

    /// SIGKILL the controller (by PID) and start a new one.
    pub(crate) async fn crash(&self, ctl: Service) -> anyhow::Result<Service> {
        ctl.kill();
        self.controller().await
    }

    /// One request held between `phase` and the next one by refusing the status write that
    /// leaves it; `held` must hold on the persisted request and the world once the
    /// controller has done the phase's work. Kill there, accept the write again, restart.
    pub(crate) async fn kill_refusing(
        &self,
        ctl: Service,
        name: &str,
        refused: Phase,
        held: impl AsyncFn(&ReplayRequest) -> bool,
    ) -> anyhow::Result<(Service, Start, ReplayRequest)> {
        let start = self.settled().await?;
        let failed_before = failed_reconciles(&ctl).await;
        refuse_phase(&self.env, refused, true).await?;
        apply_rr(&self.client(), NS, rr(name, spec(1))).await?;
        let api: Api<ReplayRequest> = Api::namespaced(self.client(), NS);
        let (api, ctl_ref, held) = (&api, &ctl, &held);
        let at_kill = wait::until(
            &format!("{name}: held before {refused} by the refused status write"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            move || async move {
                let o = api.get(name).await.ok()?;
                (failed_reconciles(ctl_ref).await > failed_before && held(&o).await).then_some(o)
            },
        )
        .await?;
        ctl.kill();
        refuse_phase(&self.env, refused, false).await?;
        Ok((self.controller().await?, start, at_kill))
    }
}
