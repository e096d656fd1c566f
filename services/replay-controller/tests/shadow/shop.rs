//! The shadow tests' world: the pipeline a shadow replays (stand-in kubelets for analytics
//! and its copy, inventory and order processes, two batches of orders around a target) and
//! the Service `app: analytics` played as kube-proxy would (see main.rs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use orderflow_testkit::envtest::StandIn;
use orderflow_testkit::{wait, Service, ServiceKind};
use serde_json::{json, Value};

use crate::common::{metrics_when, setup};

pub const COPY: &str = "analytics-shadow-s1";

/// The analytics Deployment as the chart makes it: its group from CONSUMER_GROUP.
async fn create_analytics(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "analytics", "labels": {"app": "analytics"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "analytics"}},
            "template": {
                "metadata": {"labels": {"app": "analytics", "tier": "metrics"}},
                "spec": {"containers": [{"name": "analytics", "image": "orderflow/analytics:test",
                                         "env": [{"name": "CONSUMER_GROUP", "value": "analytics"}]}]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await?;
    Ok(())
}

/// What the Service poller saw.
#[derive(Default)]
pub struct Polls {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub stop: AtomicBool,
}

/// Poll the Service `app: analytics` every 50 ms (see the module docs) until stopped.
pub fn play_the_service(
    client: kube::Client,
    ns: String,
    endpoints: Vec<(&'static str, Arc<StandIn>)>,
    polls: Arc<Polls>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let api: Api<Deployment> = Api::namespaced(client, &ns);
        let http = reqwest::Client::new();
        let mut failures = Vec::new();
        while !polls.stop.load(Ordering::SeqCst) {
            let mut answered = None;
            for (name, standin) in &endpoints {
                let selected = api.get_opt(name).await.ok().flatten().is_some_and(|d| {
                    d.spec
                        .and_then(|s| s.template.metadata)
                        .and_then(|m| m.labels)
                        .is_some_and(|l| l.get("app").map(String::as_str) == Some("analytics"))
                });
                let Some(url) = standin.url().filter(|_| selected) else {
                    continue;
                };
                let ready = http.get(format!("{url}/readyz")).send().await;
                if !ready.is_ok_and(|r| r.status().is_success()) {
                    continue;
                }
                answered = Some(
                    http.get(format!("{url}/api/metrics"))
                        .send()
                        .await
                        .map(|r| r.status().as_u16()),
                );
                break;
            }
            match answered {
                Some(Ok(code)) if (200..300).contains(&code) => {
                    polls.ok.fetch_add(1, Ordering::SeqCst);
                }
                other => {
                    polls.failed.fetch_add(1, Ordering::SeqCst);
                    failures.push(format!("{other:?}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        failures
    })
}

/// The numbers a replay recomputes.
pub fn numbers(m: &Value) -> Value {
    json!({"orders_total": m["orders_total"], "reserved_total": m["reserved_total"],
           "failed_total": m["failed_total"], "failure_rate": m["failure_rate"],
           "orders_per_minute": m["orders_per_minute"]})
}

pub fn decided(m: &Value) -> u64 {
    m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0)
}

/// The pipeline a shadow replays: analytics (live, a stand-in that runs the copy too),
/// inventory and order processes; 1200 orders decided before the target, 500 after.
pub struct Shop {
    pub env: crate::common::Env,
    pub live: Arc<StandIn>,
    pub copy: Arc<StandIn>,
    /// The replay target: after every record of the first batch.
    pub target: String,
    /// The live numbers once all 1700 orders are decided.
    pub all: Value,
    _procs: (Service, Service),
}

impl Shop {
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let env = setup(name).await?;
        let (c, ns) = (env.client.clone(), "default");
        let logs = env.dir.join("logs");
        create_analytics(&c, ns).await?;
        let standin = |name: &str| {
            Arc::new(StandIn::spawn_with_pod_env(
                c.clone(),
                ns,
                name,
                ServiceKind::Analytics,
                env.broker.bootstrap.clone(),
                vec![("COMMIT_INTERVAL_MS", "200".to_string())],
                logs.clone(),
            ))
        };
        let (live, copy) = (standin("analytics"), standin(COPY));
        let inventory =
            Service::start(ServiceKind::Inventory, &env.broker.bootstrap, &[], &logs).await?;
        let order = Service::start(ServiceKind::Order, &env.broker.bootstrap, &[], &logs).await?;
        let post = |count: u64| {
            let order = &order;
            async move {
                let (status, _) = order
                    .post_json(
                        "/orders/bulk",
                        &json!({"count": count}),
                        Duration::from_secs(60),
                    )
                    .await?;
                anyhow::ensure!(status == 200, "POST /orders/bulk: {status}");
                anyhow::Ok(())
            }
        };
        post(1200).await?;
        metrics_when(&live, "live analytics to count 1200 decided orders", |m| {
            m["orders_total"] == 1200 && decided(m) == 1200
        })
        .await?;
        let target = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        wait::until(
            "the clock to pass the target",
            Duration::from_secs(5),
            Duration::from_millis(5),
            || {
                let t = target.clone();
                async move {
                    (chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true) > t)
                        .then_some(())
                }
            },
        )
        .await?;
        post(500).await?;
        let all = metrics_when(&live, "live analytics to count 1700 decided orders", |m| {
            m["orders_total"] == 1700 && decided(m) == 1700
        })
        .await?;
        Ok(Self {
            env,
            live,
            copy,
            target,
            all,
            _procs: (order, inventory),
        })
    }

    pub fn spec(&self, strategy: &str) -> Value {
        json!({"consumerGroup": "analytics", "deployment": "analytics",
               "topics": ["orders", "inventory-events"], "resetTo": "timestamp",
               "timestamp": self.target, "strategy": strategy})
    }

    pub async fn promote(&self, name: &str) -> anyhow::Result<()> {
        let rrs: Api<replay_controller::ReplayRequest> =
            Api::namespaced(self.env.client.clone(), "default");
        let patch = json!({"spec": {"promote": true}});
        rrs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// The shadow is gone: copy, group, state topic. The controller deletes them in that order
    /// (the group once the copy's process has left it), and Kafka deletes a topic
    /// asynchronously: polled with a deadline.
    pub async fn shadow_removed(&self) -> anyhow::Result<()> {
        let api = Api::<Deployment>::namespaced(self.env.client.clone(), "default");
        let kafka = self.env.broker.kafka();
        wait::until(
            "the copy, the shadow group and its state topic to be deleted",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let (api, k) = (api.clone(), kafka.clone());
                async move {
                    if api.get_opt(COPY).await.ok()?.is_some() {
                        return None;
                    }
                    let (group, topics) = tokio::task::spawn_blocking(move || {
                        let t = Duration::from_secs(10);
                        Some((
                            orderflowctl::describe_group(&k, COPY, t).ok()?,
                            orderflowctl::state::state_topics(&k, COPY, t).ok()?,
                        ))
                    })
                    .await
                    .ok()??;
                    (group.state == "Dead" && topics.is_empty()).then_some(())
                }
            },
        )
        .await
    }

    /// The test passed: stop the stand-ins and processes, then what `Env::passed` does.
    pub async fn shutdown(self) {
        for s in [self.live, self.copy] {
            if let Ok(s) = Arc::try_unwrap(s) {
                s.shutdown().await;
            }
        }
        drop(self._procs);
        self.env.passed();
    }
}

pub fn poller_stop(polls: &Polls) {
    polls.stop.store(true, Ordering::SeqCst);
}
