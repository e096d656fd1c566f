//! The users' flow on the bed's kind cluster, step by step (docs/kubernetes.md, README "Run on
//! Kubernetes"); [`crate::report`] writes what it measured to target/e2e-kind/report.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::ensure;
use orderflow_events::Event;
use orderflow_testkit::browser;
use orderflow_testkit::kind::Bed;
use orderflow_testkit::oracle::expected_metrics;
use orderflow_testkit::probes::data_view;
use orderflow_testkit::procs::repo_root;
use orderflow_testkit::topics::Record;
use orderflow_testkit::wait;
use serde_json::Value;

use crate::checks::{bulk, counted, identical, oracle_of_topics, s, topics, wait_rr, Log};
use crate::release::{teardown, Release};
use crate::report::{lag_svg, report_markdown, Report, Stage};

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
    pub describe_rr: String,
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
    let version: Value = serde_json::from_str(&bed.kubectl(&["version", "-o", "json"])?)?;
    let kubernetes = s(&version["serverVersion"]["gitVersion"]);
    let mut stages = Vec::new();

    // 1. the chart, with Apache Kafka in the release and the images loaded into the node
    log.line(&format!(
        "==> [1/8] helm install orderflow helm/orderflow -n {ns} --set kafka.broker.enabled=true"
    ));
    teardown(&bed); // a release left by an earlier run (E2E_KIND_KEEP=1 or an interrupted one)
    let crds = repo_root().join("helm/orderflow/crds");
    // Helm installs a chart's CRDs once and never upgrades them: apply the current one first
    // (forced: the controller of an earlier run owns its fields as `replay-controller`)
    log.line(
        bed.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &crds.display().to_string(),
        ])?
        .trim(),
    );
    let mut release = Release {
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
        "==> [2/8] POST {}/orders/bulk count={} (NodePort 30080)",
        opts.order_url, opts.orders
    ));
    let published = bulk(&opts.order_url, opts.orders).await?;
    log.line(&format!("    {published}"));
    let before = counted(&opts.analytics_url, opts.orders, Duration::from_secs(300)).await?;
    log.line(&format!(
        "    analytics (NodePort 30082) counted {} orders, failure rate {}",
        before["orders_total"], before["failure_rate"]
    ));
    // every order and decision so far has an event time before this: step 5 replays from it
    let replay_at = chrono::Utc::now();
    step_done("10k orders published and counted", &log);

    // 3. replay analytics from earliest: the same metrics again
    log.line("==> [3/8] kubectl apply -f deploy/samples/replay.yaml");
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
    let oracle = oracle_of_topics(&bed, &log)?;
    ensure!(
        data_view(&after) == oracle,
        "after the replay analytics says {} but the topics say {oracle}",
        data_view(&after)
    );
    log.line("    and identical to the oracle over the records on the topics");
    for (name, m) in [
        ("before replay-1", &before),
        ("after replay-1 (earliest)", &after),
        ("oracle (the topics read back)", &oracle),
    ] {
        stages.push(Stage {
            name: name.into(),
            metrics: data_view(m),
        });
    }
    step_done("replay-1 (earliest), metrics identical, oracle", &log);

    // 4. lag on purpose: inventory held at 0 for 60 s while 10,000 more orders arrive
    log.line("==> [4/8] kubectl apply -f deploy/samples/lag.yaml, and 10,000 orders while inventory is held at 0");
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
    // and its pods gone: each keeps consuming through its preStop sleep (preStopSleepSeconds)
    let selector = "app.kubernetes.io/component=inventory";
    wait::until(
        "the inventory pods to be gone",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let pods = bed
                .kubectl_ns(&["get", "pods", "-l", selector, "-o", "name"])
                .ok()?;
            pods.trim().is_empty().then_some(())
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
    let drained = counted(
        &opts.analytics_url,
        2 * opts.orders,
        Duration::from_secs(300),
    )
    .await?;
    let oracle = oracle_of_topics(&bed, &log)?;
    ensure!(
        data_view(&drained) == oracle,
        "after the lag analytics says {} but the topics say {oracle}",
        data_view(&drained)
    );
    stages.push(Stage {
        name: "after lag-1 (oracle equal)".into(),
        metrics: data_view(&drained),
    });
    std::fs::write(out.join("lag.svg"), lag_svg(&lag["status"]["lag"]))?;
    step_done("lag-1 (60 s hold, drained), oracle", &log);

    // 5. replay from a point in time: only the 10,000 orders of step 4 (and their decisions)
    let at = replay_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    log.line(&format!(
        "==> [5/8] kubectl apply -f deploy/samples/replay-timestamp.yaml (timestamp {at}, between steps 2 and 4)"
    ));
    let yaml = std::fs::read_to_string(sample("replay-timestamp.yaml"))?;
    let yaml = yaml.replace(
        "timestamp: \"2026-11-22T10:00:00Z\"",
        &format!("timestamp: \"{at}\""),
    );
    ensure!(
        yaml.contains(&at),
        "replay-timestamp.yaml has no timestamp line to set"
    );
    let (ok, stdout, stderr) = bed.kubectl_stdin(&["apply", "-f", "-"], &yaml)?;
    ensure!(ok, "kubectl apply replay-timestamp.yaml: {stderr}");
    log.line(stdout.trim());
    wait_rr(&bed, &log, "replay-from-time", Duration::from_secs(300)).await?;
    let (orders, decisions) = topics(&bed, &log)?;
    let since = |r: &Record| match &r.event {
        Some(Event::OrderPlaced(o)) => o.ts >= replay_at,
        Some(Event::InventoryReserved(d) | Event::InventoryFailed(d)) => d.ts >= replay_at,
        Some(e) => e.ts() >= replay_at, // restocks
        None => false,
    };
    let late_orders: Vec<Record> = orders.into_iter().filter(since).collect();
    let late_decisions: Vec<Record> = decisions.into_iter().filter(since).collect();
    ensure!(
        late_orders.len() as u64 == opts.orders,
        "{} orders have an event time at or after {at}; expected the {} of step 4",
        late_orders.len(),
        opts.orders
    );
    let expected = expected_metrics(&late_orders, &late_decisions);
    let from_t = counted(&opts.analytics_url, opts.orders, Duration::from_secs(300)).await?;
    ensure!(
        data_view(&from_t) == expected,
        "after the replay from {at} analytics says {} but the records since then say {expected}",
        data_view(&from_t)
    );
    log.line(&format!(
        "    analytics recounted {} orders: exactly those with event time >= {at}",
        opts.orders
    ));
    stages.push(Stage {
        name: format!("after replay-from-time ({at})"),
        metrics: data_view(&from_t),
    });
    stages.push(Stage {
        name: format!("oracle (event time >= {at})"),
        metrics: expected,
    });
    step_done("replay-from-time, oracle over the later records", &log);

    // 5b. a shadow replay of everything, promoted, the analytics Service answering throughout
    log.line(
        "==> [5b/8] kubectl apply -f deploy/samples/shadow.yaml; kubectl patch rr shadow-1 promote",
    );
    let promoted = crate::shadow::run(&bed, &log, &opts.analytics_url, 2 * opts.orders).await?;
    stages.push(Stage {
        name: "after shadow-1 (promoted, oracle equal)".into(),
        metrics: promoted,
    });
    step_done("shadow-1, promoted, Service polled", &log);

    // 5. kubectl get rr, and the JSON lines of kubectl logs
    log.line("==> [6/8] kubectl get rr, describe rr; kubectl logs deploy/replay-controller, deploy/inventory");
    let get_rr = bed.kubectl_ns(&["get", "rr"])?;
    log.line(&format!("$ kubectl -n {ns} get rr\n{get_rr}"));
    let get_rr_wide = bed.kubectl_ns(&["get", "rr", "-o", "wide"])?;
    log.line(&format!("$ kubectl -n {ns} get rr -o wide\n{get_rr_wide}"));
    let describe_rr = bed.kubectl_ns(&["describe", "rr"])?;
    log.line(&format!(
        "$ kubectl -n {ns} describe rr\n{}",
        describe_rr.trim_end()
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
    for name in ["replay-1", "lag-1", "replay-from-time", "shadow-1"] {
        ensure!(
            phases
                .iter()
                .any(|l| l["event"] == "phase" && l["name"] == name && l["phase"] == "Succeeded"),
            "no phase line '{name} -> Succeeded' in kubectl logs deploy/replay-controller"
        );
    }
    // every line of `kubectl logs deploy/inventory` (one of its pods) is JSON; the decisions are
    // in whichever pod had the partitions when the lag drained, so all pods are read for them
    let first = bed.json_logs("deploy/inventory")?;
    let pods = bed.kubectl_ns(&[
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/instance=orderflow,app.kubernetes.io/component=inventory",
        "-o",
        "name",
    ])?;
    let mut inv = Vec::new();
    for pod in pods.lines().filter(|l| !l.trim().is_empty()) {
        inv.extend(bed.json_logs(pod.trim())?);
    }
    let batches: Vec<&Value> = inv
        .iter()
        .filter(|l| l["message"] == "batch decided")
        .collect();
    ensure!(
        !batches.is_empty(),
        "no 'batch decided' line in kubectl logs of the inventory pods ({} lines)",
        inv.len()
    );
    log.line(&format!(
        "$ kubectl -n {ns} logs deploy/inventory: {} JSON lines; 'batch decided' in the {} inventory pods: {} of {} JSON lines, e.g.\n{}",
        first.len(), pods.lines().count(), batches.len(), inv.len(), batches[0]
    ));
    step_done("get rr, logs", &log);

    // 6. the dashboard through the analytics Service
    log.line(&format!(
        "==> [7/8] the dashboard: chromium {}/",
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

    // 8. uninstall as users do: the pre-delete hook (replay-controller drain) deletes the
    // ReplayRequests while the controller still runs, so the namespace then goes at once
    if !opts.keep {
        log.line(&format!(
            "==> [8/8] helm uninstall orderflow -n {ns}; kubectl delete namespace {ns}"
        ));
        log.line(
            bed.helm(&[
                "uninstall",
                "orderflow",
                "-n",
                ns,
                "--wait",
                "--timeout",
                "4m",
            ])?
            .trim(),
        );
        let left = bed.kubectl_ns(&["get", "rr", "-o", "name"])?;
        ensure!(
            left.trim().is_empty(),
            "ReplayRequests left after helm uninstall: {left}"
        );
        bed.delete_namespace()?;
        release.keep = true; // nothing left for the guard
        log.line("    no ReplayRequest left, the namespace deleted");
        step_done("helm uninstall (drain hook), namespace deleted", &log);
    }

    let report = Report {
        kubernetes,
        stages,
        lag_orders: opts.orders,
        lag_status: lag["status"]["lag"].clone(),
        get_rr: get_rr_wide,
        describe_rr: describe_rr.clone(),
        steps,
    };
    std::fs::write(out.join("report.md"), report_markdown(&report))?;
    log.line(&format!(
        "report: {} (lag chart lag.svg, log kind.log, screenshot dashboard.png)",
        out.join("report.md").display()
    ));
    Ok(Outcome {
        get_rr,
        describe_rr,
    })
}
