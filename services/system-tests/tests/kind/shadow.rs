//! Step 5b of the flow: a shadow replay on the real cluster, where a real Service, kube-proxy,
//! kubelet and deployment controller decide what answers. `kubectl apply -f
//! deploy/samples/shadow.yaml` (byDuration PT1H: every record of this run), the shadow's
//! numbers in the status equal the topics' oracle while the live analytics keeps its own,
//! `kubectl patch ... promote`, then analytics serves the oracle's numbers and the copy is
//! gone. The analytics Service (its NodePort) is polled every 100 ms from before the request
//! to after the promotion: every poll must be answered 2xx.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use orderflow_testkit::kind::Bed;
use orderflow_testkit::probes::data_view;
use orderflow_testkit::procs::repo_root;
use orderflow_testkit::wait;
use serde_json::Value;

use crate::checks::{counted, oracle_of_topics, wait_rr, Log};

const NAME: &str = "shadow-1";

/// Polls of the analytics Service: answered 2xx, and the others (with why).
#[derive(Default)]
struct Polls {
    ok: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
    stop: AtomicBool,
}

fn poll_service(url: String, polls: Arc<Polls>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while !polls.stop.load(Ordering::SeqCst) {
            let r = http
                .get(format!("{url}/api/metrics"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    polls.ok.fetch_add(1, Ordering::SeqCst);
                }
                other => {
                    let why = match other {
                        Ok(r) => r.status().to_string(),
                        Err(e) => error_chain(&e),
                    };
                    if let Ok(mut f) = polls.failed.lock() {
                        f.push(format!(
                            "{} {why}",
                            chrono::Utc::now().format("%H:%M:%S%.3f")
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// An error with its sources (reqwest's own text hides whether the connection was refused,
/// reset or closed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn rr_json(bed: &Bed) -> Option<Value> {
    serde_json::from_str(&bed.kubectl_ns(&["get", "rr", NAME, "-o", "json"]).ok()?).ok()
}

/// Run the step; returns analytics' numbers after the promotion (the data view).
pub async fn run(bed: &Bed, log: &Log, analytics_url: &str, orders: u64) -> anyhow::Result<Value> {
    let oracle = oracle_of_topics(bed, log)?;
    let polls = Arc::new(Polls::default());
    let poller = poll_service(analytics_url.to_string(), polls.clone());
    let sample = repo_root().join("deploy/samples/shadow.yaml");
    log.line(
        bed.kubectl_ns(&["apply", "-f", &sample.display().to_string()])?
            .trim(),
    );
    let shadowing = wait::until(
        "shadow-1 to shadow with the replayed numbers",
        Duration::from_secs(300),
        Duration::from_secs(1),
        || async {
            let rr = rr_json(bed)?;
            let phase = rr["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if phase == "Failed" {
                return Some(rr);
            }
            let n = rr["status"]["shadow"]["metrics"]["shadow"]["ordersTotal"].as_u64();
            (phase == "Shadowing" && n == oracle["orders_total"].as_u64()).then_some(rr)
        },
    )
    .await?;
    let st = &shadowing["status"];
    ensure!(st["phase"] == "Shadowing", "shadow-1: {}", st["message"]);
    let m = &st["shadow"]["metrics"];
    log.line(&format!(
        "    Shadowing: copy {} (group {}) counts {} orders, failure rate {}; live {} orders",
        st["shadow"]["deployment"],
        st["shadow"]["consumerGroup"],
        m["shadow"]["ordersTotal"],
        m["shadow"]["failureRate"],
        m["live"]["ordersTotal"]
    ));
    let pods = bed.kubectl_ns(&[
        "get",
        "pods",
        "-l",
        "orderflow.io/shadow-of=shadow-1",
        "-o",
        "name",
    ])?;
    ensure!(!pods.trim().is_empty(), "no pod of the shadow's copy");
    log.line(&format!("    the copy's pod: {}", pods.trim()));

    log.line(&format!(
        "$ kubectl -n {} patch rr {NAME} --type merge -p '{{\"spec\":{{\"promote\":true}}}}'",
        bed.namespace
    ));
    bed.kubectl_ns(&[
        "patch",
        "rr",
        NAME,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"promote":true}}"#,
    ])?;
    let done = wait_rr(bed, log, NAME, Duration::from_secs(300)).await?;
    let sh = &done["status"]["shadow"];
    log.line(&format!(
        "    promoted: serving {}, promoted {}, removed {}; copied {}",
        sh["servingAt"], sh["promotedAt"], sh["removedAt"], sh["copied"]
    ));
    let after = counted(analytics_url, orders, Duration::from_secs(300)).await?;
    polls.stop.store(true, Ordering::SeqCst);
    poller.await?;
    let failed = polls.failed.lock().map(|f| f.clone()).unwrap_or_default();
    let ok = polls.ok.load(Ordering::SeqCst);
    log.line(&format!(
        "    the analytics Service answered {ok} polls (every 100 ms) 2xx, {} not",
        failed.len()
    ));
    ensure!(
        failed.is_empty(),
        "the analytics Service did not answer: {failed:?}"
    );
    ensure!(
        data_view(&after) == oracle,
        "after the promotion analytics says {} but the topics say {oracle}",
        data_view(&after)
    );
    let copy = bed.kubectl_ns(&[
        "get",
        "deploy",
        "-l",
        "orderflow.io/shadow-of=shadow-1",
        "-o",
        "name",
    ])?;
    ensure!(copy.trim().is_empty(), "the copy is still there: {copy}");
    Ok(data_view(&after))
}
