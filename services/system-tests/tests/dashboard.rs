//! Watching it work: the three services on a local Apache Kafka, a bulk of orders that creates
//! consumer lag (inventory throttled, stock small enough to run out), then
//! - `/metrics` of every service counts what happened (records produced = orders posted,
//!   decisions, consumed records, refusals by reason, HTTP requests by route and status),
//! - analytics' lag gauges equal what orderflowctl reads from the broker,
//! - the log lines are JSON with order_id / partition / offset where they apply,
//! - headless Chromium renders the dashboard with data in its three charts (`data-points`),
//!   and a screenshot is saved to target/e2e/dashboard.png.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use orderflow_events::{GROUP_ANALYTICS, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_lab::chart::{line_chart, Series};
use orderflow_testkit::probes::{analytics_caught_up, lag_of};
use orderflow_testkit::procs::{metric_sum, repo_root, test_dir};
use orderflow_testkit::{browser, wait, Broker, Service, ServiceKind};
use serde_json::{json, Value};

const BULK: u64 = 3000;
const SINGLE: usize = 5;
static INVENTORY_TOPICS: [&str; 1] = [TOPIC_ORDERS];
static ANALYTICS_TOPICS: [&str; 2] = [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS];

/// Every non-empty line of a service log, parsed as JSON (fails on a line that is not).
fn json_lines(path: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l}")))
        .collect()
}

/// `(group, topic, partition) -> value` of a per-partition gauge in `/metrics` text.
fn gauges(text: &str, name: &str) -> BTreeMap<(String, String, i32), i64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if let (Some(g), Some(t), Some(p), Ok(v)) = (
            label("group"),
            label("topic"),
            label("partition").and_then(|p| p.parse().ok()),
            value.trim().parse::<i64>(),
        ) {
            out.insert((g, t, p), v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_lag_gauges_logs_and_the_dashboard_in_a_browser() -> anyhow::Result<()> {
    let dir = test_dir("dashboard");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let b = broker.bootstrap.clone();
    let logs = dir.join("logs");
    let order = Service::start(ServiceKind::Order, &b, &[], &logs).await?;
    let inventory = Service::start(
        ServiceKind::Inventory,
        &b,
        &[
            ("THROTTLE_MS", "1".into()),
            // small stock: failures, so the failure-rate chart has something to show
            ("INITIAL_STOCK", "burger=150,pizza=150,sushi=150".into()),
            // per-order decision lines are DEBUG (see inventory-service/src/logs.rs): on here
            ("RUST_LOG", "info,inventory_service::logs=debug".into()),
        ],
        &logs,
    )
    .await?;
    let analytics = Service::start(
        ServiceKind::Analytics,
        &b,
        &[("LAG_INTERVAL_MS", "300".into())],
        &logs,
    )
    .await?;

    // traffic: single orders, one refused request, one bulk spread over 10 minutes
    let mut order_ids = Vec::new();
    for i in 0..SINGLE {
        let (status, body) = order
            .post_json(
                "/orders",
                &json!({"item": "pizza", "qty": 1, "user_id": format!("u{i}")}),
                Duration::from_secs(20),
            )
            .await?;
        assert_eq!(status, 202, "{body}");
        order_ids.push(body["order_id"].as_str().unwrap_or_default().to_string());
    }
    let (status, _) = order
        .post_json(
            "/orders",
            &json!({"item": "pizza", "qty": 0, "user_id": "u"}),
            Duration::from_secs(20),
        )
        .await?;
    assert_eq!(status, 400);
    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": BULK, "spread_minutes": 10, "seed": 7}),
            Duration::from_secs(120),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let total = BULK + SINGLE as u64;

    // the lag exporter saw the inventory group lag, then everything drained
    wait::until(
        "the dashboard's lag history to show inventory lag > 0",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let doc = analytics.get_json("/api/dashboard").await.ok()?;
            let history = doc["lag"]["history"].as_array()?.clone();
            history
                .iter()
                .any(|p| p["groups"]["inventory"].as_i64().unwrap_or(0) > 0)
                .then_some(())
        },
    )
    .await?;
    let kafka = broker.kafka();
    wait::until(
        "inventory to drain its lag",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async {
            let lags = lag_of(&kafka, GROUP_INVENTORY, &[TOPIC_ORDERS])
                .await
                .ok()?;
            lags.iter().all(|l| l.lag == 0).then_some(())
        },
    )
    .await?;
    let after = analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(60)).await?;
    assert_eq!(after["orders_total"], total);
    let failed = after["failed_total"].as_u64().unwrap_or(0);
    assert!(failed > 0, "stock was meant to run out: {after}");

    // ---- /metrics of each service
    let (_, om) = order.get("/metrics").await?;
    assert_eq!(
        metric_sum(&om, "orderflow_orders_published_total", &[]),
        total as f64
    );
    let http = "orderflow_http_requests_total";
    let route = |r: &'static str, s: &'static str| [("route", r), ("status", s)];
    assert_eq!(
        metric_sum(&om, http, &route("/orders", "202")),
        SINGLE as f64
    );
    assert_eq!(metric_sum(&om, http, &route("/orders", "400")), 1.0);
    assert_eq!(metric_sum(&om, http, &route("/orders/bulk", "200")), 1.0);
    assert_eq!(
        metric_sum(
            &om,
            "orderflow_http_request_duration_seconds_count",
            &route("/orders/bulk", "200")
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &om,
            "orderflow_orders_rejected_requests_total",
            &[("reason", "invalid_field")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(&om, "orderflow_orders_publish_seconds_count", &[]),
        SINGLE as f64
    );

    let (_, im) = inventory.get("/metrics").await?;
    let decisions = "orderflow_inventory_decisions_total";
    assert_eq!(metric_sum(&im, decisions, &[]), total as f64);
    assert_eq!(
        metric_sum(&im, decisions, &[("status", "failed")]),
        failed as f64
    );
    // one consumer, no rebalance on a fresh broker: each order read once
    assert_eq!(
        metric_sum(&im, "orderflow_inventory_orders_consumed_total", &[]),
        total as f64
    );
    assert_eq!(
        metric_sum(&im, "orderflow_inventory_produce_failures_total", &[]),
        0.0
    );
    assert!(metric_sum(&im, "orderflow_inventory_batch_seconds_count", &[]) >= 1.0);

    let (_, am) = analytics.get("/metrics").await?;
    let records = "orderflow_analytics_records_total";
    assert_eq!(
        metric_sum(&am, records, &[("topic", TOPIC_ORDERS)]),
        total as f64
    );
    assert_eq!(
        metric_sum(&am, records, &[("topic", TOPIC_INVENTORY_EVENTS)]),
        total as f64
    );
    assert_eq!(
        metric_sum(&am, "orderflow_analytics_apply_seconds_count", &[]),
        2.0 * total as f64
    );
    assert_eq!(metric_sum(&am, "orderflow_dlq_records_total", &[]), 0.0);

    // ---- the lag gauges equal what orderflowctl reads (everything is idle now: stable)
    let exported = wait::until(
        "analytics' lag gauges to equal orderflowctl's reading",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let mut want = BTreeMap::new();
            let mut want_hw = BTreeMap::new();
            let mut want_lag = BTreeMap::new();
            for (group, topics) in [
                (GROUP_INVENTORY, &INVENTORY_TOPICS[..]),
                (GROUP_ANALYTICS, &ANALYTICS_TOPICS[..]),
            ] {
                for l in lag_of(&kafka, group, topics).await.ok()? {
                    let key = (group.to_string(), l.topic.clone(), l.partition);
                    want.insert(key.clone(), l.committed?);
                    want_hw.insert(key.clone(), l.high_watermark);
                    want_lag.insert(key, l.lag);
                }
            }
            let (_, text) = analytics.get("/metrics").await.ok()?;
            let got = gauges(&text, "orderflow_consumergroup_committed_offset");
            let got_hw = gauges(&text, "orderflow_consumergroup_high_watermark");
            let got_lag = gauges(&text, "orderflow_consumergroup_lag");
            (got == want && got_hw == want_hw && got_lag == want_lag && want.len() == 9)
                .then_some(got)
        },
    )
    .await?;
    let committed_orders: i64 = exported
        .iter()
        .filter(|((g, t, _), _)| g == GROUP_INVENTORY && t == TOPIC_ORDERS)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        committed_orders, total as i64,
        "inventory committed every order"
    );

    // ---- JSON log lines with order_id / partition / offset
    let order_log = json_lines(&order.log)?;
    for id in &order_ids {
        let line = order_log
            .iter()
            .find(|l| l["message"] == "order accepted" && l["order_id"] == id.as_str())
            .with_context(|| format!("no 'order accepted' line for {id}"))?;
        assert!(
            line["partition"].is_i64() && line["offset"].is_i64(),
            "{line}"
        );
        assert_eq!(line["level"], "INFO");
    }
    let inv_log = json_lines(&inventory.log)?;
    let decided: Vec<&Value> = inv_log
        .iter()
        .filter(|l| l["message"] == "order decided")
        .collect();
    assert_eq!(decided.len() as u64, total, "one line per decision");
    let failed_lines = decided.iter().filter(|l| l["status"] == "failed").count();
    assert_eq!(failed_lines as u64, failed);
    for id in &order_ids {
        let d = decided
            .iter()
            .find(|l| l["order_id"] == id.as_str())
            .with_context(|| format!("no 'order decided' line for {id}"))?;
        assert!(
            d["partition"].is_i64() && d["offset"].is_i64() && d["item"] == "pizza",
            "{d}"
        );
        assert_eq!(d["level"], "DEBUG");
    }
    assert!(
        inv_log.iter().any(|l| l["message"] == "batch decided"
            && l["offsets"].as_str().is_some_and(|o| o.contains(':'))),
        "a 'batch decided' line with offset ranges"
    );
    json_lines(&analytics.log)?;

    // ---- the dashboard: served page references nothing outside, renders data in a browser
    let (status, html) = analytics.get("/").await?;
    assert_eq!(status, 200);
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external URL in the page"
    );
    let doc = analytics.get_json("/api/dashboard").await?;
    assert_eq!(doc["replays"]["available"], false, "not in Kubernetes here");

    let url = format!("{}/", analytics.url);
    let dom = browser::dump_dom(&dir, &url, 8000).await?;
    for chart in [
        "chart-orders",
        "chart-failure",
        "chart-lag",
        "chart-lag-seconds",
    ] {
        let n: u64 = browser::attribute_of(&dom, chart, "data-points")
            .with_context(|| format!("#{chart} has no data-points in the rendered DOM"))?
            .parse()?;
        assert!(n > 0, "#{chart} shows no data (data-points={n})");
    }
    assert!(dom.contains("<canvas"), "uPlot drew no canvas");
    let total_text = format!("{},{:03}", total / 1000, total % 1000);
    assert!(
        dom.contains(&total_text),
        "the orders KPI {total_text} is not on the page"
    );
    assert!(
        dom.contains("Not available"),
        "the ReplayRequests panel says why it is empty"
    );

    let png = repo_root().join("target/e2e/dashboard.png");
    browser::screenshot(&dir, &url, &png, (1400, 1000), 8000).await?;
    let bytes = std::fs::read(&png)?;
    assert!(browser::is_png(&bytes), "not a PNG: {}", png.display());
    if bytes.len() < 20_000 {
        bail!(
            "{} is only {} bytes: a blank page?",
            png.display(),
            bytes.len()
        );
    }
    println!("screenshot: {} ({} bytes)", png.display(), bytes.len());

    // the lag chart of the README: the exporter's history of both groups, from /api/dashboard
    let history = doc["lag"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let t0 = history
        .first()
        .and_then(|p| p["at_ms"].as_i64())
        .unwrap_or(0);
    let series: Vec<Series> = [GROUP_INVENTORY, GROUP_ANALYTICS]
        .iter()
        .map(|g| Series {
            name: format!("group {g}"),
            points: history
                .iter()
                .filter_map(|p| {
                    let at = p["at_ms"].as_i64()?;
                    let lag = p["groups"][*g].as_i64()?;
                    Some(((at - t0) as f64 / 1000.0, lag as f64))
                })
                .collect(),
        })
        .collect();
    assert!(
        series.iter().all(|s| !s.points.is_empty()),
        "a group has no lag history: {history:?}"
    );
    let svg = line_chart(
        "Consumer lag per group (analytics-service's lag exporter)",
        "seconds",
        "records behind",
        &series,
    );
    std::fs::write(repo_root().join("target/e2e/dashboard-lag.svg"), svg)?;

    drop((order, inventory, analytics));
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
