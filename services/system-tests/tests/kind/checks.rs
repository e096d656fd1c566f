//! The checks the flow on the kind bed repeats: orders over HTTP, analytics' metrics polled
//! until they match, a ReplayRequest polled until it ends, the topics read back in the cluster.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use orderflow_events::{TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_testkit::kind::Bed;
use orderflow_testkit::oracle::expected_metrics;
use orderflow_testkit::probes::compare_metrics;
use orderflow_testkit::procs::get_json;
use orderflow_testkit::topics::Record;
use orderflow_testkit::wait;
use serde_json::{json, Value};

/// The chart's in-cluster Kafka (`kafka.broker.enabled`, clusterName orderflow).
const BROKER: &str = "statefulset/orderflow-kafka";

pub type Log = orderflow_testkit::progress::ProgressLog;

/// The records on `orders` and `inventory-events`, read back from the broker in the cluster.
pub fn topics(bed: &Bed, log: &Log) -> anyhow::Result<(Vec<Record>, Vec<Record>)> {
    let orders = bed.read_topic(BROKER, TOPIC_ORDERS)?;
    let decisions = bed.read_topic(BROKER, TOPIC_INVENTORY_EVENTS)?;
    log.line(&format!(
        "    read back from the topics in the cluster: {} records on orders, {} on inventory-events",
        orders.len(),
        decisions.len()
    ));
    Ok((orders, decisions))
}

/// What analytics should report, computed from the records on the topics.
pub fn oracle_of_topics(bed: &Bed, log: &Log) -> anyhow::Result<Value> {
    let (orders, decisions) = topics(bed, log)?;
    Ok(expected_metrics(&orders, &decisions))
}

pub fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

pub async fn bulk(order_url: &str, count: u64) -> anyhow::Result<Value> {
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
pub async fn counted(url: &str, orders: u64, timeout: Duration) -> anyhow::Result<Value> {
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
pub async fn identical(url: &str, before: &Value, timeout: Duration) -> anyhow::Result<Value> {
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
pub async fn wait_rr(bed: &Bed, log: &Log, name: &str, timeout: Duration) -> anyhow::Result<Value> {
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
