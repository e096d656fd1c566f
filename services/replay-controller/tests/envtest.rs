//! The controller against a real kube-apiserver + etcd (scripts/envtest) and the real local
//! broker: the generated CRD applied, Deployments created, ReplayRequests applied, and the
//! results read back from Kubernetes (spec.replicas, status, Events) and Kafka (offsets).
//!
//! No kubelet runs here, so a Deployment's spec.replicas starts nothing by itself. The tests
//! stand in for it (harness `StandIn`): while the analytics / inventory Deployment has
//! replicas > 0 they run one real analytics-service / inventory-service process, and stop it
//! with SIGTERM (as Kubernetes stops a pod) when the controller scales it to 0.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use orderflow_events::{GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_harness::envtest::{ControlPlane, StandIn};
use orderflow_harness::{wait, Broker, Service, ServiceKind};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use replay_controller::crd::{Phase, ReplayRequest};
use serde_json::{json, Value};

fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("orderflow-rc-{name}-{}", std::process::id()))
}

struct Env {
    cp: ControlPlane,
    broker: Broker,
    client: Client,
    dir: PathBuf,
}

async fn setup(name: &str) -> anyhow::Result<Env> {
    let dir = out_dir(name);
    let cp = ControlPlane::start(&dir.join("kube"))?;
    let broker = Broker::start_local(&dir.join("broker"))?;
    orderflow_runtime::topics::ensure_topics(&broker.kafka()).await?;
    let client = cp.client().await?;
    // the CRD exactly as the chart ships it (crdgen's output)
    let crd: CustomResourceDefinition = serde_yaml::from_str(&replay_controller::crd_yaml()?)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "replayrequests.orderflow.io",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    wait::until(
        "the ReplayRequest CRD to be established",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let crds = crds.clone();
            async move {
                let c = crds.get("replayrequests.orderflow.io").await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        },
    )
    .await?;
    Ok(Env {
        cp,
        broker,
        client,
        dir,
    })
}

async fn create_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": format!("orderflow/{name}:test")}]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await?;
    Ok(())
}

async fn replicas(client: &Client, ns: &str, name: &str) -> anyhow::Result<i32> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    Ok(d.spec.and_then(|s| s.replicas).unwrap_or(-1))
}

async fn apply_rr(client: &Client, ns: &str, body: Value) -> anyhow::Result<()> {
    let rr: ReplayRequest = serde_json::from_value(body)?;
    Api::<ReplayRequest>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rr)
        .await?;
    Ok(())
}

fn rr(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "orderflow.io/v1alpha1", "kind": "ReplayRequest",
           "metadata": {"name": name}, "spec": spec})
}

/// Poll the request until `pred` holds on it.
async fn wait_rr(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&ReplayRequest) -> bool,
) -> anyhow::Result<ReplayRequest> {
    let api: Api<ReplayRequest> = Api::namespaced(client.clone(), ns);
    let r = wait::until(
        &format!("{name}: {what}"),
        timeout,
        Duration::from_millis(100),
        || {
            let api = api.clone();
            let pred = &pred;
            async move { api.get(name).await.ok().filter(|o| pred(o)) }
        },
    )
    .await;
    if r.is_err() {
        if let Ok(o) = api.get(name).await {
            eprintln!(
                "{name} is now: {}",
                serde_json::to_string_pretty(&o.status)?
            );
        }
    }
    r
}

fn phase(o: &ReplayRequest) -> Phase {
    o.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn failed_reason(o: &ReplayRequest) -> String {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Failed"))
        .and_then(|c| c.reason.clone())
        .unwrap_or_default()
}

/// Reasons of the Events about request `name`, oldest first.
async fn event_reasons(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    Ok(list.into_iter().filter_map(|e| e.reason).collect())
}

async fn start_controller(env: &Env, extra: &[(&str, String)]) -> anyhow::Result<Service> {
    let mut vars = vec![
        ("KUBECONFIG", env.cp.kubeconfig.display().to_string()),
        ("POLL_MS", "300".to_string()),
        ("RETRY_BASE_MS", "300".to_string()),
        ("RETRY_MAX_MS", "1000".to_string()),
        ("KAFKA_TIMEOUT_MS", "2000".to_string()),
        ("RUST_LOG", "info,kube=warn".to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    Service::start(
        ServiceKind::ReplayController,
        &env.broker.bootstrap,
        &vars,
        &env.dir.join("logs"),
    )
    .await
}

/// The users' flow: replay analytics to earliest with lag on inventory, with the
/// controller SIGKILLed and restarted while it holds inventory down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_with_lag_completes_once_across_a_controller_crash() -> anyhow::Result<()> {
    let env = setup("flow").await?;
    let (c, ns) = (env.client.clone(), "default");
    let kafka = env.broker.kafka();
    create_deployment(&c, ns, "analytics", 1).await?;
    create_deployment(&c, ns, "inventory", 2).await?;
    let logs = env.dir.join("logs");
    let analytics = StandIn::spawn(
        c.clone(),
        ns,
        "analytics",
        ServiceKind::Analytics,
        env.broker.bootstrap.clone(),
        vec![("COMMIT_INTERVAL_MS", "200".to_string())],
        logs.clone(),
    );
    let inventory = StandIn::spawn(
        c.clone(),
        ns,
        "inventory",
        ServiceKind::Inventory,
        env.broker.bootstrap.clone(),
        vec![],
        logs.clone(),
    );
    let order = Service::start(ServiceKind::Order, &env.broker.bootstrap, &[], &logs).await?;
    let (status, _) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 2000}),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(status, 200);
    let before = metrics_when(&analytics, "analytics to count 2000 decided orders", |m| {
        m["orders_total"] == 2000
            && m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0)
                == 2000
    })
    .await?;
    // analytics has applied every record: when it is stopped it commits the log ends, and
    // the reset must report them as `from`
    let ends_before = log_ends(&kafka).await?;

    let mut ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;
    apply_rr(
        &c,
        ns,
        rr(
            "replay-1",
            json!({"consumerGroup": "analytics", "deployment": "analytics",
                   "topics": ["orders", "inventory-events"], "resetTo": "earliest",
                   "lag": {"deployment": "inventory", "replicas": 0, "holdSeconds": 20, "sampleSeconds": 1}}),
        ),
    )
    .await?;
    let holding = wait_rr(
        &c,
        ns,
        "replay-1",
        "HoldingLag",
        Duration::from_secs(60),
        |o| phase(o) == Phase::HoldingLag,
    )
    .await?;
    // while inventory is held at 0 (and its stand-in process has stopped), orders pile up: lag
    wait::until(
        "the inventory stand-in to stop its process",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let stopped = inventory.url().is_none();
            async move { stopped.then_some(()) }
        },
    )
    .await?;
    let (status, _) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 1000}),
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(status, 200);
    wait_rr(
        &c,
        ns,
        "replay-1",
        "a lag sample of 1000",
        Duration::from_secs(30),
        |o| {
            o.status
                .as_ref()
                .and_then(|s| s.lag.as_ref())
                .is_some_and(|l| l.peak >= 1000)
        },
    )
    .await?;
    // crash in the middle of the request, then start again
    assert_eq!(replicas(&c, ns, "inventory").await?, 0);
    ctl.kill();
    ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;

    let done = wait_rr(
        &c,
        ns,
        "replay-1",
        "Succeeded",
        Duration::from_secs(120),
        |o| phase(o).is_final(),
    )
    .await?;
    let st = done.status.clone().unwrap_or_default();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    assert!(st.restore.is_empty());

    // spec.replicas went down and back, in this order, once each
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);
    assert_eq!(replicas(&c, ns, "inventory").await?, 2);
    wait::until(
        "stand-ins to see the restored replicas",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let ok = analytics.seen().last() == Some(&1) && inventory.seen().last() == Some(&2);
            async move { ok.then_some(()) }
        },
    )
    .await?;
    assert_eq!(analytics.seen(), vec![1, 0, 1]);
    assert_eq!(inventory.seen(), vec![2, 0, 2]);

    // every partition of both topics, from what analytics had committed, to earliest (0)
    assert_eq!(st.offsets.len(), 6);
    for o in &st.offsets {
        assert_eq!(o.to, 0, "{o:?}");
        let end = ends_before
            .iter()
            .find(|p| p.topic == o.topic && p.partition == o.partition)
            .map(|p| p.high_watermark);
        assert_eq!(o.from, end, "{o:?}");
    }
    let lag = st.lag.clone().unwrap_or_default();
    assert!(lag.peak >= 1000, "peak {}", lag.peak);
    assert!(lag.drained_after_seconds.is_some(), "{lag:?}");
    assert!(lag.samples.iter().any(|s| s.lag >= 1000));
    assert_eq!(lag.samples.last().map(|s| s.lag), Some(0));
    assert!(holding.status.and_then(|s| s.lag).is_some());

    // one Event per phase; the crash did not repeat the reset
    let reasons = event_reasons(&c, ns, "replay-1").await?;
    assert_eq!(
        reasons,
        [
            "ScalingDown",
            "Resetting",
            "Restoring",
            "HoldingLag",
            "Succeeded"
        ],
        "{reasons:?}"
    );

    // the replay: analytics rebuilt from offset 0 and counts all 3000 orders
    let after = metrics_when(&analytics, "analytics to count 3000 decided orders", |m| {
        m["orders_total"] == 3000
            && m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0)
                == 3000
    })
    .await?;
    assert!(before["consumed"].is_object() && after["consumed"].is_object());

    // the controller's own metrics
    let m = reqwest::get(format!("{}/metrics", ctl.url))
        .await?
        .text()
        .await?;
    assert!(m.contains("orderflow_replay_reconciles_total"), "{m}");
    assert!(
        m.contains("orderflow_replay_phase_transitions_total{phase=\"Succeeded\"} 1"),
        "{m}"
    );

    ctl.stop(Duration::from_secs(10)).await?;
    analytics.shutdown().await;
    inventory.shutdown().await;
    drop(order);
    Ok(())
}

async fn metrics_when(
    standin: &StandIn,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait::until(
        what,
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let url = standin.url();
            let pred = &pred;
            async move {
                let m: Value = reqwest::get(format!("{}/api/metrics", url?))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                pred(&m).then_some(m)
            }
        },
    )
    .await
}

async fn log_ends(kafka: &KafkaConfig) -> anyhow::Result<Vec<orderflowctl::PartitionLag>> {
    let k = kafka.clone();
    Ok(tokio::task::spawn_blocking(move || {
        orderflowctl::lag(
            &k,
            GROUP_ANALYTICS,
            &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
            Duration::from_secs(10),
        )
    })
    .await??)
}

/// A consumer in group `analytics` outside any Deployment (e.g. someone's laptop): the
/// group never becomes empty while it runs.
fn stray_consumer(
    kafka: &KafkaConfig,
) -> anyhow::Result<(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let consumer: BaseConsumer = kafka.consumer(GROUP_ANALYTICS, "stray").create()?;
    consumer.subscribe(&[TOPIC_ORDERS])?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        consumer.unsubscribe();
    });
    Ok((stop, t))
}

async fn wait_group_members(kafka: &KafkaConfig, n: usize) -> anyhow::Result<()> {
    wait::until(
        "the stray consumer to join",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let k = kafka.clone();
            async move {
                let info = tokio::task::spawn_blocking(move || {
                    orderflowctl::describe_group(&k, GROUP_ANALYTICS, Duration::from_secs(5))
                })
                .await
                .ok()?
                .ok()?;
                (info.members == n && info.state == "Stable").then_some(())
            }
        },
    )
    .await
}

/// Refusals, waiting, one request per group at a time, deletion mid-flight, timeouts and an
/// unreachable Kafka: every path ends with the deployments at their previous replica counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_queueing_deletion_and_timeouts_restore_the_deployments() -> anyhow::Result<()> {
    let env = setup("safety").await?;
    let (c, ns) = (env.client.clone(), "default");
    let kafka = env.broker.kafka();
    create_deployment(&c, ns, "analytics", 1).await?;
    create_deployment(&c, ns, "inventory", 3).await?;

    // 1. the CRD schema refuses what it can (kubectl, as a user would apply it)
    for (bad, why) in [
        ("resetTo: yesterday", "Unsupported value: \"yesterday\""),
        (
            "resetTo: earliest\n  lag: {deployment: inventory, replicas: -1, holdSeconds: 5}",
            "should be greater than or equal to 0",
        ),
        ("resetTo: timestamp\n  timestamp: not-a-time", "timestamp"),
    ] {
        let yaml = format!(
            "apiVersion: orderflow.io/v1alpha1\nkind: ReplayRequest\nmetadata: {{name: bad}}\nspec:\n  consumerGroup: analytics\n  deployment: analytics\n  topics: [orders]\n  {bad}\n"
        );
        let file = env.dir.join("bad.yaml");
        std::fs::write(&file, yaml)?;
        let err = env
            .cp
            .kubectl(&["apply", "-f", &file.display().to_string()])
            .expect_err(bad);
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }

    let ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;

    // 2. what the schema cannot say ends Failed with a reason, deployments untouched
    apply_rr(&c, ns, rr("no-time", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "timestamp"}))).await?;
    apply_rr(&c, ns, rr("no-deploy", json!({"consumerGroup": "analytics", "deployment": "analytix", "topics": ["orders"], "resetTo": "earliest"}))).await?;
    let o = wait_rr(&c, ns, "no-time", "Failed", Duration::from_secs(30), |o| {
        phase(o) == Phase::Failed
    })
    .await?;
    assert_eq!(failed_reason(&o), "InvalidSpec");
    assert!(o
        .status
        .and_then(|s| s.message)
        .unwrap_or_default()
        .contains("needs a timestamp"));
    let o = wait_rr(
        &c,
        ns,
        "no-deploy",
        "Failed",
        Duration::from_secs(30),
        |o| phase(o) == Phase::Failed,
    )
    .await?;
    assert_eq!(failed_reason(&o), "DeploymentNotFound");
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);

    // 3. a consumer outside the deployment keeps the group busy: the request waits,
    //    saying so; a second request for the same group queues behind it
    let (stop_stray, stray) = stray_consumer(&kafka)?;
    wait_group_members(&kafka, 1).await?;
    apply_rr(&c, ns, rr("first", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "latest"}))).await?;
    let o = wait_rr(
        &c,
        ns,
        "first",
        "waiting for the group",
        Duration::from_secs(30),
        |o| {
            phase(o) == Phase::ScalingDown
                && o.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| {
                        m.contains(
                            "waiting for consumer group analytics to become empty: 1 member(s)",
                        )
                    })
        },
    )
    .await?;
    assert_eq!(o.status.map(|s| s.restore.len()), Some(1));
    assert_eq!(replicas(&c, ns, "analytics").await?, 0);
    apply_rr(&c, ns, rr("second", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "earliest", "timeoutSeconds": 3}))).await?;
    wait_rr(
        &c,
        ns,
        "second",
        "queued behind first",
        Duration::from_secs(30),
        |o| {
            phase(o) == Phase::Pending
                && o.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.contains("waiting for ReplayRequest first"))
        },
    )
    .await?;

    // 4. deleting the first mid-flight restores analytics (finalizer) and lets it go
    Api::<ReplayRequest>::namespaced(c.clone(), ns)
        .delete("first", &DeleteParams::default())
        .await?;
    wait::until(
        "first to be gone",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let api = Api::<ReplayRequest>::namespaced(c.clone(), ns);
            async move { matches!(api.get_opt("first").await, Ok(None)).then_some(()) }
        },
    )
    .await?;

    // 5. the second starts, the stray consumer is still there: after timeoutSeconds it
    //    fails and analytics is back at 1
    let o = wait_rr(&c, ns, "second", "Failed", Duration::from_secs(60), |o| {
        phase(o) == Phase::Failed
    })
    .await?;
    assert_eq!(failed_reason(&o), "GroupNotEmpty");
    assert!(o
        .status
        .and_then(|s| s.message)
        .unwrap_or_default()
        .contains("restored analytics to 1"));
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);
    let reasons = event_reasons(&c, ns, "first").await?;
    assert!(reasons.contains(&"Deleted".to_string()), "{reasons:?}");
    stop_stray.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stray.join();

    // 6. Kafka unreachable: retried with backoff and shown in the status, then Failed at
    //    the timeout with the deployment restored (a controller for namespace "other",
    //    pointed at a port nothing listens on)
    env.cp.kubectl(&["create", "namespace", "other"])?;
    create_deployment(&c, "other", "analytics", 2).await?;
    let dead = orderflow_harness::procs::free_port()?;
    let ctl2 = start_controller(
        &env,
        &[
            ("WATCH_NAMESPACE", "other".to_string()),
            ("KAFKA_BOOTSTRAP", format!("127.0.0.1:{dead}")),
            ("KAFKA_TIMEOUT_MS", "500".to_string()),
        ],
    )
    .await?;
    apply_rr(&c, "other", rr("offline", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "earliest", "timeoutSeconds": 5}))).await?;
    let o = wait_rr(
        &c,
        "other",
        "offline",
        "Kafka retries in the status",
        Duration::from_secs(30),
        |o| {
            o.status.as_ref().is_some_and(|s| {
                s.retries >= 1
                    && s.message
                        .as_deref()
                        .unwrap_or("")
                        .contains("Kafka unavailable")
            })
        },
    )
    .await?;
    let progressing = o.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .cloned()
    });
    assert_eq!(
        progressing.and_then(|c| c.reason).as_deref(),
        Some("KafkaUnavailable")
    );
    let o = wait_rr(
        &c,
        "other",
        "offline",
        "Failed",
        Duration::from_secs(60),
        |o| phase(o) == Phase::Failed,
    )
    .await?;
    assert_eq!(failed_reason(&o), "KafkaUnavailable");
    assert_eq!(replicas(&c, "other", "analytics").await?, 2);
    assert!(event_reasons(&c, "other", "offline")
        .await?
        .contains(&"KafkaUnavailable".to_string()));

    ctl2.stop(Duration::from_secs(10)).await?;
    ctl.stop(Duration::from_secs(10)).await?;
    Ok(())
}
