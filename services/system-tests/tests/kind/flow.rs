//! The users' flow on the bed's kind cluster, step by step (docs/kubernetes.md, README "Run on
//! Kubernetes"), with the time of each step in target/e2e-kind/report.md.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use orderflow_testkit::browser;
use orderflow_testkit::kind::Bed;
use orderflow_testkit::probes::{compare_metrics, data_view};
use orderflow_testkit::procs::{get_json, repo_root};
use orderflow_testkit::wait;
use serde_json::{json, Value};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Orders published with one POST /orders/bulk (and as many again while inventory is held).
    pub orders: u64,
    pub namespace: String,
    /// order-service and analytics-service through their NodePorts (kind-config.yaml maps
    /// 30080 and 30082 to these on 127.0.0.1).
    pub order_url: String,
    pub analytics_url: String,
    pub out_dir: PathBuf,
    /// Leave the release running at the end (E2E_KIND_KEEP=1), to look at it.
    pub keep: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            orders: 10_000,
            namespace: "orderflow".into(),
            order_url: "http://127.0.0.1:8080".into(),
            analytics_url: "http://127.0.0.1:8082".into(),
            out_dir: repo_root().join("target/e2e-kind"),
            keep: std::env::var("E2E_KIND_KEEP").is_ok_and(|v| v == "1"),
        }
    }
}

pub struct Outcome {
    pub get_rr: String,
}

type Log = orderflow_testkit::progress::ProgressLog;

/// Uninstalls the release and deletes its namespace when dropped (also on failure).
struct Release<'a> {
    bed: &'a Bed,
    keep: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if !self.keep {
            teardown(self.bed);
        }
    }
}

/// Remove the release and its namespace. The ReplayRequests go first, while the controller runs
/// and removes their finalizer (orderflow.io/restore-deployments): after `helm uninstall` nothing
/// would, and the namespace would stay Terminating. Left over from an earlier run without a
/// controller, their finalizer is removed here (test cleanup only).
fn teardown(bed: &Bed) {
    if bed
        .kubectl_ns(&["delete", "rr", "--all", "--wait=true", "--timeout=60s"])
        .is_err()
    {
        let names = bed
            .kubectl_ns(&["get", "rr", "-o", "name"])
            .unwrap_or_default();
        for rr in names.lines() {
            let _ = bed.kubectl_ns(&[
                "patch",
                rr,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }
    let _ = bed.helm(&[
        "uninstall",
        "orderflow",
        "-n",
        &bed.namespace,
        "--wait",
        "--timeout",
        "2m",
    ]);
    let _ = bed.delete_namespace();
}

pub async fn run(opts: &Options) -> anyhow::Result<Outcome> {
    let out = &opts.out_dir;
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out)?;
    let log = Log::create("kind", &out.join("kind.log"))?;
    let mut steps: Vec<(String, f64)> = Vec::new();
    let mut clock = Instant::now();
    let mut step_done = |name: &str, log: &Log| {
        let secs = clock.elapsed().as_secs_f64();
        log.line(&format!("    ({name}: {secs:.1} s)"));
        steps.push((name.to_string(), secs));
        clock = Instant::now();
    };
    let ns = opts.namespace.as_str();
    let bed = Bed::connect(ns)?;
    log.line(&bed.kubectl(&["version"])?);

    // 1. the chart, with Apache Kafka in the release and the images loaded into the node
    log.line(&format!(
        "==> [1/6] helm install orderflow helm/orderflow -n {ns} --set kafka.broker.enabled=true"
    ));
    teardown(&bed); // a release left by an earlier run (E2E_KIND_KEEP=1 or an interrupted one)
    let crds = repo_root().join("helm/orderflow/crds");
    // Helm installs a chart's CRDs once and never upgrades them: apply the current one first
    log.line(
        bed.kubectl(&["apply", "--server-side", "-f", &crds.display().to_string()])?
            .trim(),
    );
    let _release = Release {
        bed: &bed,
        keep: opts.keep,
    };
    let chart = repo_root().join("helm/orderflow");
    let installed = bed.helm(&[
        "install",
        "orderflow",
        &chart.display().to_string(),
        "-n",
        ns,
        "--create-namespace",
        "--set",
        "kafka.broker.enabled=true",
        "--set",
        "image.pullPolicy=Never",
        "--wait",
        "--timeout",
        "6m",
    ]);
    if let Err(e) = installed {
        log.line(
            &bed.kubectl_ns(&["get", "pods", "-o", "wide"])
                .unwrap_or_default(),
        );
        log.line(
            &bed.kubectl_ns(&["get", "events", "--sort-by=.lastTimestamp"])
                .unwrap_or_default(),
        );
        return Err(e);
    }
    log.line(&bed.kubectl_ns(&["get", "deploy,statefulset,svc,pods", "-o", "wide"])?);
    for (deploy, bin) in [
        ("order", "order-service"),
        ("inventory", "inventory-service"),
        ("analytics", "analytics-service"),
        ("replay-controller", "replay-controller"),
    ] {
        let target = format!("deploy/{deploy}");
        let uid = bed.kubectl_ns(&["exec", &target, "--", "id", "-u"])?;
        let pid1 = bed.kubectl_ns(&["exec", &target, "--", "cat", "/proc/1/comm"])?;
        let write = bed.kubectl_ns(&[
            "exec",
            &target,
            "--",
            "sh",
            "-c",
            "echo x > /usr/local/write-test",
        ]);
        ensure!(uid.trim() == "65532", "{deploy} runs as uid {uid}");
        ensure!(bin.starts_with(pid1.trim()), "{deploy}: PID 1 is {pid1}");
        ensure!(write.is_err(), "{deploy}: the root filesystem took a write");
        log.line(&format!(
            "    {deploy}: uid 65532, PID 1 {}, read-only root filesystem",
            pid1.trim()
        ));
    }
    step_done("helm install (Kafka + 4 services Ready)", &log);

    // 2. 10,000 orders through the order Service, counted by analytics through its Service
    log.line(&format!(
        "==> [2/6] POST {}/orders/bulk count={} (NodePort 30080)",
        opts.order_url, opts.orders
    ));
    let published = bulk(&opts.order_url, opts.orders).await?;
    log.line(&format!("    {published}"));
    let before = counted(&opts.analytics_url, opts.orders, Duration::from_secs(300)).await?;
    log.line(&format!(
        "    analytics (NodePort 30082) counted {} orders, failure rate {}",
        before["orders_total"], before["failure_rate"]
    ));
    step_done("10k orders published and counted", &log);

    // 3. replay analytics from earliest: the same metrics again
    log.line("==> [3/6] kubectl apply -f deploy/samples/replay.yaml");
    let sample = |f: &str| {
        repo_root()
            .join("deploy/samples")
            .join(f)
            .display()
            .to_string()
    };
    log.line(
        bed.kubectl_ns(&["apply", "-f", &sample("replay.yaml")])?
            .trim(),
    );
    wait_rr(&bed, &log, "replay-1", Duration::from_secs(300)).await?;
    let after = identical(&opts.analytics_url, &before, Duration::from_secs(300)).await?;
    log.line(&format!(
        "    after the replay: {} (identical to before)",
        data_view(&after)["orders_total"]
    ));
    step_done("replay-1 (earliest), metrics identical", &log);

    // 4. lag on purpose: inventory held at 0 for 60 s while 10,000 more orders arrive
    log.line("==> [4/6] kubectl apply -f deploy/samples/lag.yaml, and 10,000 orders while inventory is held at 0");
    log.line(
        bed.kubectl_ns(&["apply", "-f", &sample("lag.yaml")])?
            .trim(),
    );
    wait::until(
        "inventory to be scaled to 0",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || async {
            let r = bed
                .kubectl_ns(&[
                    "get",
                    "deploy",
                    "inventory",
                    "-o",
                    "jsonpath={.spec.replicas}",
                ])
                .ok()?;
            (r.trim() == "0").then_some(())
        },
    )
    .await?;
    log.line(&format!(
        "    {}",
        bulk(&opts.order_url, opts.orders).await?
    ));
    let lag = wait_rr(&bed, &log, "lag-1", Duration::from_secs(600)).await?;
    let peak = lag["status"]["lag"]["peak"].as_i64().unwrap_or(0);
    log.line(&format!(
        "    lag peak {peak}, drained after {} s",
        lag["status"]["lag"]["drainedAfterSeconds"]
    ));
    ensure!(peak > 0, "lag-1 recorded no lag: {}", lag["status"]["lag"]);
    counted(
        &opts.analytics_url,
        2 * opts.orders,
        Duration::from_secs(300),
    )
    .await?;
    step_done("lag-1 (60 s hold, drained)", &log);

    // 5. kubectl get rr, and the JSON lines of kubectl logs
    log.line("==> [5/6] kubectl get rr; kubectl logs deploy/replay-controller, deploy/inventory");
    let get_rr = bed.kubectl_ns(&["get", "rr"])?;
    log.line(&format!("$ kubectl -n {ns} get rr\n{get_rr}"));
    log.line(&format!(
        "$ kubectl -n {ns} get rr -o wide\n{}",
        bed.kubectl_ns(&["get", "rr", "-o", "wide"])?
    ));
    let phases = bed.json_logs("deploy/replay-controller")?;
    let lines: Vec<String> = phases
        .iter()
        .filter(|l| l["event"] == "phase")
        .map(|l| {
            format!(
                "{} {}/{} {} -> {}: {}",
                s(&l["timestamp"]),
                s(&l["namespace"]),
                s(&l["name"]),
                s(&l["from"]),
                s(&l["phase"]),
                s(&l["message"])
            )
        })
        .collect();
    log.line(&format!("$ kubectl -n {ns} logs deploy/replay-controller | jq 'select(.event == \"phase\")' ({} JSON lines)\n{}", phases.len(), lines.join("\n")));
    for name in ["replay-1", "lag-1"] {
        ensure!(
            phases
                .iter()
                .any(|l| l["event"] == "phase" && l["name"] == name && l["phase"] == "Succeeded"),
            "no phase line '{name} -> Succeeded' in kubectl logs deploy/replay-controller"
        );
    }
    let inv = bed.json_logs("deploy/inventory")?;
    let batches: Vec<&Value> = inv
        .iter()
        .filter(|l| l["message"] == "batch decided")
        .collect();
    ensure!(
        !batches.is_empty(),
        "no 'batch decided' line in kubectl logs deploy/inventory ({} lines)",
        inv.len()
    );
    log.line(&format!(
        "$ kubectl -n {ns} logs deploy/inventory | jq 'select(.message == \"batch decided\")' ({} of {} JSON lines), e.g.\n{}",
        batches.len(), inv.len(), batches[0]
    ));
    step_done("get rr, logs", &log);

    // 6. the dashboard through the analytics Service
    log.line(&format!(
        "==> [6/6] the dashboard: chromium {}/",
        opts.analytics_url
    ));
    let png = out.join("dashboard.png");
    let url = format!("{}/", opts.analytics_url);
    browser::screenshot(out, &url, &png, (1400, 1000), 8000).await?;
    let bytes = std::fs::read(&png)?;
    ensure!(browser::is_png(&bytes), "{} is not a PNG", png.display());
    let dom = browser::dump_dom(out, &url, 8000).await?;
    ensure!(
        dom.contains("lag-1"),
        "the dashboard does not list ReplayRequest lag-1"
    );
    log.line(&format!(
        "    {} ({} bytes); the page lists lag-1 and replay-1",
        png.display(),
        bytes.len()
    ));
    step_done("dashboard screenshot", &log);

    let mut md = String::from("# orderflow on the kind test bed (Kubernetes v1.33, real kubelet)\n\n| step | seconds |\n|---|---|\n");
    for (name, secs) in &steps {
        md.push_str(&format!("| {name} | {secs:.1} |\n"));
    }
    md.push_str(&format!("\n```\n$ kubectl -n {ns} get rr\n{get_rr}```\n"));
    std::fs::write(out.join("report.md"), md)?;
    Ok(Outcome { get_rr })
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

async fn bulk(order_url: &str, count: u64) -> anyhow::Result<Value> {
    let r = reqwest::Client::new()
        .post(format!("{order_url}/orders/bulk"))
        .json(&json!({ "count": count }))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .with_context(|| format!("POST {order_url}/orders/bulk"))?;
    let status = r.status();
    let body: Value = r.json().await?;
    ensure!(
        status.is_success() && body["published"] == count,
        "POST /orders/bulk: {status} {body}"
    );
    Ok(body)
}

/// Poll analytics' /api/metrics until it counted `orders` orders and as many decisions.
async fn counted(url: &str, orders: u64, timeout: Duration) -> anyhow::Result<Value> {
    wait::until(
        &format!("analytics to count {orders} orders and decisions"),
        timeout,
        Duration::from_millis(500),
        || async {
            let m = get_json(url, "/api/metrics").await.ok()?;
            let decided =
                m["reserved_total"].as_u64().unwrap_or(0) + m["failed_total"].as_u64().unwrap_or(0);
            (m["orders_total"].as_u64() == Some(orders) && decided == orders).then_some(m)
        },
    )
    .await
}

/// Poll until analytics' data fields equal `before` again (after a replay restarted it).
async fn identical(url: &str, before: &Value, timeout: Duration) -> anyhow::Result<Value> {
    let last = Mutex::new(Value::Null);
    let r = wait::until(
        "analytics to report the same metrics again",
        timeout,
        Duration::from_millis(500),
        || async {
            let m = get_json(url, "/api/metrics").await.ok()?;
            let same = compare_metrics(before, &m).is_empty();
            if let Ok(mut l) = last.lock() {
                *l = m.clone();
            }
            same.then_some(m)
        },
    )
    .await;
    r.with_context(|| {
        let l = last.lock().map(|l| l.clone()).unwrap_or_default();
        format!("differences: {:?}", compare_metrics(before, &l))
    })
}

/// Poll the ReplayRequest until it ends, logging each phase; fails when it ends Failed.
async fn wait_rr(bed: &Bed, log: &Log, name: &str, timeout: Duration) -> anyhow::Result<Value> {
    let seen = Mutex::new(String::new());
    let rr = wait::until(
        &format!("ReplayRequest {name} to end"),
        timeout,
        Duration::from_millis(500),
        || async {
            let rr: Value =
                serde_json::from_str(&bed.kubectl_ns(&["get", "rr", name, "-o", "json"]).ok()?)
                    .ok()?;
            let phase = rr["status"]["phase"].as_str().unwrap_or("").to_string();
            if let Ok(mut seen) = seen.lock() {
                if !phase.is_empty() && *seen != phase {
                    log.line(&format!(
                        "    {name}: {phase}: {}",
                        rr["status"]["message"].as_str().unwrap_or("")
                    ));
                    *seen = phase.clone();
                }
            }
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(rr)
        },
    )
    .await?;
    if rr["status"]["phase"] == "Failed" {
        bail!("ReplayRequest {name} failed: {}", rr["status"]["message"]);
    }
    Ok(rr)
}
