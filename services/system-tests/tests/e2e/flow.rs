//! The users' flow end to end, on a local control plane: `make e2e`, and part of `make test`
//! (the test in main.rs runs [`run`]; [`crate::report`] writes what it measured).
//!
//! A real kube-apiserver + etcd with RBAC (scripts/envtest), a local Apache Kafka, `helm install`
//! of helm/orderflow, and [`Kubelet`] running the chart's Deployments as local processes (the
//! only stand-in: no kubelet runs here). Orders go in over HTTP; ReplayRequests are applied
//! with `kubectl apply` from deploy/samples; results are read back from `kubectl`, the
//! services' HTTP APIs and the topics themselves.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::StreamExt;
use orderflow_events::{Event, DEFAULT_ITEMS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::envtest::ControlPlane;
use orderflow_testkit::kubelet::Kubelet;
use orderflow_testkit::oracle::expected_metrics;
use orderflow_testkit::probes::{caught_up_now, data_view};
use orderflow_testkit::procs::{repo_root, Broker};
use orderflow_testkit::topics::{read_all, Record};
use orderflow_testkit::wait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::report::{lag_svg, report_markdown, Outcome, Stage};

/// The chart's Deployments, as ReplayRequests name them.
const ORDER: &str = "order";
const INVENTORY: &str = "inventory";
const ANALYTICS: &str = "analytics";
const CONTROLLER: &str = "replay-controller";
const SELECTOR: &str = "app.kubernetes.io/name=orderflow";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Orders published over HTTP in step 2 (half before the replay timestamp, half after).
    pub orders: u64,
    /// spec.lag.holdSeconds of the lag request.
    pub hold_seconds: u32,
    /// Orders per second published while the lag request runs.
    pub lag_rate: u64,
    /// Namespace of the release.
    pub namespace: String,
    /// Where report.md, lag.svg, e2e.log, logs/ and the local state go.
    pub out_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            orders: 10_000,
            hold_seconds: 20,
            lag_rate: 200,
            namespace: "orderflow".into(),
            out_dir: repo_root().join("target/e2e"),
        }
    }
}

pub type Log = orderflow_testkit::progress::ProgressLog;

/// Run the whole flow; everything started is stopped when this returns, also on error.
pub async fn run(opts: &Options) -> anyhow::Result<Outcome> {
    let out = &opts.out_dir;
    // only what this flow writes: target/e2e also holds the dashboard test's screenshot
    for own in ["e2e.log", "report.md", "lag.svg", "dashboard-k8s.png"] {
        let _ = std::fs::remove_file(out.join(own));
    }
    for own in ["logs", "kube", "broker"] {
        let _ = std::fs::remove_dir_all(out.join(own));
    }
    std::fs::create_dir_all(out)?;
    let log = Log::create("e2e", &out.join("e2e.log"))?;
    let ns = opts.namespace.as_str();
    let mut steps = Vec::new();
    let mut clock = Instant::now();
    let mut step_done = |name: &str, log: &Log| {
        let secs = clock.elapsed().as_secs_f64();
        log.line(&format!("    ({name}: {secs:.1} s)"));
        steps.push((name.to_string(), secs));
        clock = Instant::now();
    };

    // 1. control plane, broker, helm install, the chart's Deployments running
    log.line("==> [1/6] kube-apiserver + etcd (RBAC), Apache Kafka, helm install");
    let cp = ControlPlane::start_rbac(&out.join("kube"))?;
    let broker = Broker::start_local(&out.join("broker"))?;
    let kafka = broker.kafka();
    let client = cp.client().await?;
    let kubelet = Kubelet::for_chart(client, ns, SELECTOR, &cp.kubeconfig, out.join("logs"));
    let chart = repo_root().join("helm/orderflow");
    let installed = cp.helm(&[
        "install",
        "orderflow",
        &chart.display().to_string(),
        "--namespace",
        ns,
        "--create-namespace",
        "--set",
        &format!("kafka.bootstrap={}", broker.bootstrap),
    ])?;
    log.line(&format!(
        "$ helm install orderflow helm/orderflow -n {ns} --create-namespace --set kafka.bootstrap={}\n{}",
        broker.bootstrap,
        installed.trim()
    ));
    for (d, n) in [(ORDER, 1), (INVENTORY, 2), (ANALYTICS, 1), (CONTROLLER, 1)] {
        running(&kubelet, d, n, Duration::from_secs(120)).await?;
    }
    log.line(&cp.kubectl(&["-n", ns, "get", "deploy,sa,role,rolebinding,svc"])?);
    let order_url = first_url(&kubelet, ORDER)?;
    step_done("install", &log);

    // 2. 10,000 orders over HTTP, with a replay timestamp between the halves
    let half = opts.orders / 2;
    log.line(&format!(
        "==> [2/6] publishing {} orders with POST /orders ({half}, a timestamp, {})",
        opts.orders,
        opts.orders - half
    ));
    let first = publish(&order_url, 0, half, 16).await?;
    ensure!(first == half, "only {first} of {half} orders were accepted");
    counted(&kafka, &kubelet, first, Duration::from_secs(120)).await?;
    let replay_at = next_second(Utc::now());
    wait::until(
        "the replay timestamp to pass",
        Duration::from_secs(3),
        Duration::from_millis(10),
        || async { (Utc::now() >= replay_at).then_some(()) },
    )
    .await?;
    let second = publish(&order_url, half, opts.orders - half, 16).await?;
    ensure!(
        first + second == opts.orders,
        "only {} of {} orders were accepted",
        first + second,
        opts.orders
    );
    let m1 = counted(&kafka, &kubelet, opts.orders, Duration::from_secs(120)).await?;
    log.line(&format!(
        "    analytics counted {} orders; failure rate {:.4}; replay timestamp {}",
        m1["orders_total"],
        m1["failure_rate"].as_f64().unwrap_or(0.0),
        rfc3339(replay_at)
    ));
    step_done("publish 10k", &log);

    // 3. lag on purpose while orders keep arriving
    log.line(&format!(
        "==> [3/6] kubectl apply deploy/samples/lag.yaml (holdSeconds {}) while {} orders/s arrive",
        opts.hold_seconds, opts.lag_rate
    ));
    let lag_yaml = sample(
        "lag.yaml",
        "holdSeconds: 60",
        &format!("holdSeconds: {}", opts.hold_seconds),
    )?;
    let stop = CancellationToken::new();
    let accepted = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn(publish_steadily(
        order_url.clone(),
        opts.orders,
        opts.lag_rate,
        accepted.clone(),
        stop.clone(),
    ));
    log.line(
        cp.kubectl_stdin(&["-n", ns, "apply", "-f", "-"], &lag_yaml)?
            .trim(),
    );
    // publish until the controller brings inventory back, then let the lag drain
    let restored = wait::until(
        "inventory to be scaled to 0 and restored to 2",
        Duration::from_secs(180),
        Duration::from_millis(100),
        || async { kubelet.seen(INVENTORY).ends_with(&[0, 2]).then_some(()) },
    )
    .await;
    stop.cancel();
    let published = publisher.await.context("publisher")??;
    restored?;
    let lag_orders = accepted.load(Ordering::SeqCst);
    ensure!(
        published == lag_orders,
        "the steady publisher saw {published} accepted, counted {lag_orders}"
    );
    let lag_rr = wait_rr(&cp, &log, ns, "lag-1", Duration::from_secs(300)).await?;
    let lag_status = lag_rr["status"]["lag"].clone();
    log.line(&format!(
        "    {lag_orders} orders during the request; lag peak {}, drained {} s after inventory came back",
        lag_status["peak"], lag_status["drainedAfterSeconds"]
    ));
    ensure!(
        lag_status["peak"].as_i64().unwrap_or(0) > 0,
        "lag peak is not above 0: {lag_status}"
    );
    ensure!(
        lag_status["drainedAfterSeconds"].is_number(),
        "the lag did not drain: {lag_status}"
    );
    let last = lag_status["samples"]
        .as_array()
        .and_then(|s| s.last())
        .cloned();
    ensure!(
        last.as_ref().and_then(|s| s["lag"].as_i64()) == Some(0),
        "the last lag sample is not 0: {last:?}"
    );
    ensure!(
        kubelet.seen(INVENTORY) == [2, 0, 2],
        "inventory replicas went {:?}",
        kubelet.seen(INVENTORY)
    );
    step_done("lag request", &log);

    // 4. replay analytics from the beginning
    let total = opts.orders + lag_orders;
    let before = counted(&kafka, &kubelet, total, Duration::from_secs(180)).await?;
    log.line(&format!(
        "==> [4/6] kubectl apply deploy/samples/replay.yaml (analytics counted {total} orders before)"
    ));
    let replay_yaml = sample("replay.yaml", "", "")?;
    log.line(
        cp.kubectl_stdin(&["-n", ns, "apply", "-f", "-"], &replay_yaml)?
            .trim(),
    );
    wait_rr(&cp, &log, ns, "replay-1", Duration::from_secs(300)).await?;
    let after = counted(&kafka, &kubelet, total, Duration::from_secs(180)).await?;
    let differences = orderflow_testkit::probes::compare_metrics(&before, &after);
    ensure!(
        differences.is_empty(),
        "the replay changed the metrics: {differences:?}"
    );
    let (orders, decisions) = read_topics(&kafka).await?;
    let oracle = expected_metrics(&orders, &decisions);
    ensure!(
        data_view(&after) == oracle,
        "after the replay analytics says {} but the topics say {oracle}",
        data_view(&after)
    );
    log.line("    identical to the record before the replay, and to the oracle over the topics");
    step_done("replay to earliest", &log);

    // 5. replay from the timestamp between the halves of step 2
    let at = rfc3339(replay_at);
    log.line(&format!(
        "==> [5/6] kubectl apply deploy/samples/replay-timestamp.yaml (timestamp {at})"
    ));
    let ts_yaml = sample(
        "replay-timestamp.yaml",
        "timestamp: \"2026-11-22T10:00:00Z\"",
        &format!("timestamp: \"{at}\""),
    )?;
    log.line(
        cp.kubectl_stdin(&["-n", ns, "apply", "-f", "-"], &ts_yaml)?
            .trim(),
    );
    wait_rr(&cp, &log, ns, "replay-from-time", Duration::from_secs(300)).await?;
    let since = |r: &Record| match &r.event {
        Some(Event::OrderPlaced(o)) => o.ts >= replay_at,
        Some(Event::InventoryReserved(d) | Event::InventoryFailed(d)) => d.ts >= replay_at,
        None => false,
    };
    let late_orders: Vec<Record> = orders.iter().filter(|r| since(r)).cloned().collect();
    let late_decisions: Vec<Record> = decisions.iter().filter(|r| since(r)).cloned().collect();
    let expected_late = expected_metrics(&late_orders, &late_decisions);
    let want = late_orders.len() as u64;
    ensure!(
        want == opts.orders - half + lag_orders,
        "{want} orders have an event time at or after {at}; expected {}",
        opts.orders - half + lag_orders
    );
    let from_t = counted(&kafka, &kubelet, want, Duration::from_secs(180)).await?;
    ensure!(
        data_view(&from_t) == expected_late,
        "after the replay from {at} analytics says {} but the orders since then say {expected_late}",
        data_view(&from_t)
    );
    log.line(&format!(
        "    analytics recounted {want} orders: exactly those with event time >= {at}"
    ));
    step_done("replay from timestamp", &log);

    // 6. what users look at
    log.line("==> [6/6] kubectl get rr, kubectl describe rr, report");
    let get_rr = cp.kubectl(&["-n", ns, "get", "rr", "-o", "wide"])?;
    log.line(&format!(
        "$ kubectl -n {ns} get rr -o wide\n{}",
        get_rr.trim_end()
    ));
    let describe_rr = cp.kubectl(&["-n", ns, "describe", "rr"])?;
    log.line(&format!(
        "$ kubectl -n {ns} describe rr\n{}",
        describe_rr.trim_end()
    ));
    // one JSON log line per phase change (`kubectl logs deploy/replay-controller | jq`)
    let ctl_log = std::fs::read_to_string(out.join("logs").join("replay-controller-0.log"))?;
    let phases: Vec<Value> = ctl_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "phase")
        .collect();
    for name in ["lag-1", "replay-1", "replay-from-time"] {
        let seen: Vec<&str> = phases
            .iter()
            .filter(|l| l["name"] == name && l["namespace"] == ns)
            .filter_map(|l| l["phase"].as_str())
            .collect();
        ensure!(
            seen.first() == Some(&"ScalingDown") && seen.last() == Some(&"Succeeded"),
            "replay-controller's phase log lines of {name}: {seen:?}"
        );
        log.line(&format!("    log: {name}: {}", seen.join(" -> ")));
    }
    // the dashboard's ReplayRequests panel: analytics lists them with its own ServiceAccount
    // (the chart's Role: get/list/watch replayrequests), and shows each one's outcome
    let url = first_url(&kubelet, ANALYTICS)?;
    let panel = wait::until(
        "analytics' dashboard to list the three ReplayRequests as Succeeded",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let doc = orderflow_testkit::procs::get_json(&url, "/api/dashboard")
                .await
                .ok()?;
            let items = doc["replays"]["items"].as_array()?.clone();
            let done = ["lag-1", "replay-1", "replay-from-time"].iter().all(|n| {
                items.iter().any(|i| {
                    i["name"] == *n && i["phase"] == "Succeeded" && i["completed_at"].is_string()
                })
            });
            (doc["replays"]["available"] == true && done).then_some(doc["replays"].clone())
        },
    )
    .await?;
    log.line(&format!(
        "    dashboard: ReplayRequests panel lists {} request(s), all Succeeded",
        panel["items"].as_array().map_or(0, |i| i.len())
    ));
    let png = out.join("dashboard-k8s.png");
    orderflow_testkit::browser::screenshot(out, &format!("{url}/"), &png, (1400, 1000), 6000)
        .await?;
    log.line(&format!("    dashboard screenshot: {}", png.display()));
    step_done("report", &log);

    let outcome = Outcome {
        stages: vec![
            Stage {
                name: format!("after {} orders", opts.orders),
                metrics: data_view(&m1),
            },
            Stage {
                name: "before replay-1".into(),
                metrics: data_view(&before),
            },
            Stage {
                name: "after replay-1 (earliest)".into(),
                metrics: data_view(&after),
            },
            Stage {
                name: "oracle (all records)".into(),
                metrics: oracle,
            },
            Stage {
                name: format!("after replay-from-time ({at})"),
                metrics: data_view(&from_t),
            },
            Stage {
                name: format!("oracle (event time >= {at})"),
                metrics: expected_late,
            },
        ],
        replay_timestamp: at,
        lag_orders,
        lag_status,
        get_rr,
        describe_rr,
        steps,
    };
    std::fs::write(out.join("lag.svg"), lag_svg(&outcome.lag_status))?;
    std::fs::write(out.join("report.md"), report_markdown(&outcome))?;
    log.line(&format!(
        "wrote {} and {}",
        out.join("report.md").display(),
        out.join("lag.svg").display()
    ));
    kubelet.shutdown().await;
    drop(broker);
    drop(cp);
    Ok(outcome)
}

/// Wait until `deployment` has `n` processes running (failing early on a start-up error that
/// persists until the deadline).
async fn running(
    kubelet: &Kubelet,
    deployment: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let r = wait::until(
        &format!("{n} process(es) of Deployment {deployment}"),
        timeout,
        Duration::from_millis(100),
        || async { (kubelet.urls(deployment).len() == n).then_some(()) },
    )
    .await;
    match (r, kubelet.error(deployment)) {
        (Err(e), Some(why)) => Err(e.context(why)),
        (r, _) => r,
    }
}

fn first_url(kubelet: &Kubelet, deployment: &str) -> anyhow::Result<String> {
    kubelet
        .urls(deployment)
        .into_iter()
        .next()
        .with_context(|| format!("Deployment {deployment} has no running process"))
}

/// Wait until analytics (whichever process runs it now) has consumed both topics to their
/// ends and counted `orders` orders and as many decisions; returns its `/api/metrics`.
async fn counted(
    kafka: &KafkaConfig,
    kubelet: &Kubelet,
    orders: u64,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let last = Mutex::new(Value::Null);
    let r = wait::until(
        &format!("analytics to count {orders} orders and as many decisions"),
        timeout,
        Duration::from_millis(200),
        || async {
            let url = kubelet.urls(ANALYTICS).into_iter().next()?;
            let m = caught_up_now(kafka, &url).await?;
            let decided =
                m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0);
            let done = m["orders_total"].as_u64() == Some(orders) && decided == orders;
            if let Ok(mut l) = last.lock() {
                *l = m.clone();
            }
            done.then_some(m)
        },
    )
    .await;
    r.with_context(|| {
        let l = last.lock().map(|l| l.clone()).unwrap_or_default();
        format!(
            "last caught-up metrics: orders_total {} reserved_total {} failed_total {}",
            l["orders_total"], l["reserved_total"], l["failed_total"]
        )
    })
}

/// The body of order number `i`.
pub fn order_body(i: u64) -> Value {
    let items = DEFAULT_ITEMS.len() as u64;
    json!({
        "item": DEFAULT_ITEMS[(i % items) as usize],
        "qty": 1 + (i / items) % 3,
        "user_id": format!("e2e-user-{}", i % 100),
    })
}

/// POST orders `from..from+count` one by one (`concurrency` in flight); returns how many
/// were accepted (202).
async fn publish(url: &str, from: u64, count: u64, concurrency: usize) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let endpoint = format!("{url}/orders");
    let results: Vec<bool> = futures::stream::iter(from..from + count)
        .map(|i| {
            let (http, endpoint) = (http.clone(), endpoint.clone());
            async move {
                http.post(&endpoint)
                    .json(&order_body(i))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 202)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Ok(results.into_iter().filter(|ok| *ok).count() as u64)
}

/// POST orders at `rate` per second until `stop`; counts the accepted ones in `accepted` and
/// returns the count.
async fn publish_steadily(
    url: String,
    first: u64,
    rate: u64,
    accepted: Arc<AtomicU64>,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let per_tick = (rate / 20).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut next = first + 1_000_000;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ok = publish(&url, next, per_tick, per_tick as usize).await?;
        next += per_tick;
        accepted.fetch_add(ok, Ordering::SeqCst);
    }
    Ok(accepted.load(Ordering::SeqCst))
}

/// Poll `kubectl get rr <name> -o json` until it ends; logs each phase change. Fails when it
/// ends Failed.
async fn wait_rr(
    cp: &ControlPlane,
    log: &Log,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let mut seen = String::new();
    let rr = wait::until(
        &format!("ReplayRequest {name} to end"),
        timeout,
        Duration::from_millis(500),
        || {
            let got = cp
                .kubectl(&["-n", ns, "get", "rr", name, "-o", "json"])
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok());
            if let Some(rr) = &got {
                let phase = rr["status"]["phase"].as_str().unwrap_or("").to_string();
                if !phase.is_empty() && phase != seen {
                    log.line(&format!(
                        "    {name}: {phase}: {}",
                        rr["status"]["message"].as_str().unwrap_or("")
                    ));
                    seen = phase;
                }
            }
            let done = got.filter(|rr| {
                matches!(rr["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            });
            async move { done }
        },
    )
    .await?;
    if rr["status"]["phase"] == "Failed" {
        bail!(
            "ReplayRequest {name} failed: {}",
            rr["status"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(rr)
}

/// deploy/samples/<file> with `from` replaced by `to` (which must occur when given).
fn sample(file: &str, from: &str, to: &str) -> anyhow::Result<String> {
    let path = repo_root().join("deploy/samples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if from.is_empty() {
        return Ok(text);
    }
    ensure!(
        text.contains(from),
        "{} no longer contains {from:?}",
        path.display()
    );
    Ok(text.replace(from, to))
}

async fn read_topics(kafka: &KafkaConfig) -> anyhow::Result<(Vec<Record>, Vec<Record>)> {
    let k = kafka.clone();
    tokio::task::spawn_blocking(move || {
        Ok((
            read_all(&k, orderflow_events::TOPIC_ORDERS)?,
            read_all(&k, orderflow_events::TOPIC_INVENTORY_EVENTS)?,
        ))
    })
    .await
    .context("reading the topics")?
}

/// The first whole second after `t`.
pub fn next_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t) + TimeDelta::seconds(1)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_second_is_strictly_later_and_whole() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 5).unwrap() + TimeDelta::milliseconds(1);
        assert_eq!(rfc3339(next_second(t)), "2026-11-22T10:00:06Z");
        let whole = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 5).unwrap();
        assert_eq!(rfc3339(next_second(whole)), "2026-11-22T10:00:06Z");
    }

    #[test]
    fn orders_cycle_through_the_menu() {
        assert_eq!(
            order_body(0),
            json!({"item": "burger", "qty": 1, "user_id": "e2e-user-0"})
        );
        assert_eq!(order_body(9)["item"], "pizza");
        assert_eq!(order_body(9)["qty"], 2);
    }
}
