//! The Kafka Streams peers (bench/peers/streams, built by scripts/bench-tools.sh) proven equal
//! to orderflow before anything is timed against them: on a fresh local Kafka, N orders (over
//! the menu and one item not on it, with restocks applied and refused, an order re-sent under
//! its id and a record that is not JSON) go to `orders`; inventory-service decides them into
//! `inventory-events` and the Streams inventory peer into [`STREAMS_DECISIONS`], in one
//! guarantee: inventory-service with transactions (its default) and the peers with
//! `exactly_once_v2`, or `TRANSACTIONS=false` and `at_least_once`. Both topics are read back: every order
//! id and restock id must have the same decision (type, reason, stock after a restock). Then
//! analytics-service and the Streams analytics peer count the same two topics, `orders` and
//! `inventory-events`: the same totals, failure rate and per-minute counts.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use chrono::{TimeDelta, Utc};
use orderflow_events::{
    decode_inventory_record, encode, Event, InventoryRecord, OrderPlaced, StockRestockRequested,
    DEFAULT_ITEMS, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use serde::Serialize;
use serde_json::Value;

use super::peers::run_killable;
use super::{say, Tools};
use crate::probes::{caught_up_now, lag_of};
use crate::procs::{Broker, Service, ServiceKind};
use crate::wait;

/// Where the Streams inventory peer writes its decisions.
pub const STREAMS_DECISIONS: &str = "bench-streams-inventory-events";

/// What the proof compared, and found equal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamsEquality {
    /// `true`: transactions and exactly-once v2; `false`: at-least-once.
    pub exactly_once: bool,
    /// Orders decided by both (distinct order ids).
    pub orders: u64,
    /// Restock requests decided by both.
    pub restocks: u64,
    pub reserved: u64,
    pub failed: u64,
    pub restocks_refused: u64,
    /// Minutes of `orders_per_minute` both analytics reported.
    pub minutes: usize,
    pub failure_rate: f64,
}

/// The input: how many records went to `orders`, and the initial stock both inventories use.
struct Input {
    records: u64,
    /// Restock requests among them (each decided once).
    restocks: u64,
    stock: String,
}

/// Run the proof on `n` orders in `dir` (a broker of its own), in the guarantee
/// `exactly_once` says; fails on the first difference.
pub async fn prove_equal(
    tools: &Tools,
    n: u64,
    dir: &Path,
    exactly_once: bool,
) -> anyhow::Result<StreamsEquality> {
    ensure!(n >= 100, "the proof needs at least 100 orders, not {n}");
    for (what, path) in [("JAVA", &tools.java), ("STREAMS_JAR", &tools.streams_jar)] {
        ensure!(
            path.is_file(),
            "{what}={} is missing: run scripts/bench-tools.sh, which builds the Kafka Streams \
             peers (bench/peers/streams) with Maven and needs a JDK 17+ and mvn",
            path.display()
        );
    }
    // a fresh broker and fresh Streams state each time (the bench reuses its out dir)
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let b = broker.bootstrap.clone();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    orderflow_runtime::topics::ensure_named_topics(&kafka, &[STREAMS_DECISIONS]).await?;
    let file = dir.join("streams-input.tsv");
    let input = write_input(&file, n)?;
    run_killable(
        Command::new(&tools.kcat)
            .args(["-P", "-b", &b, "-t", TOPIC_ORDERS, "-K", "\\t", "-z", "lz4"])
            .args(["-X", "acks=all", "-X", "enable.idempotence=true", "-l"])
            .arg(&file),
        "kcat -P (the proof's input)",
    )
    .await?;

    say(&format!(
        "    deciding {} records of orders with inventory-service and the Streams peer",
        input.records
    ));
    let env = [
        ("INITIAL_STOCK", input.stock.clone()),
        ("TRANSACTIONS", exactly_once.to_string()),
    ];
    let java = |mode: &str, app_id: &str| java(tools, mode, &b, app_id, dir, exactly_once);
    let inventory = Service::start(ServiceKind::Inventory, &b, &env, &logs).await?;
    wait::until(
        "inventory-service to decide every order",
        Duration::from_secs(600),
        Duration::from_millis(50),
        || async {
            let lags = lag_of(&kafka, GROUP_INVENTORY, &[TOPIC_ORDERS])
                .await
                .ok()?;
            lags.iter()
                .all(|l| l.committed == Some(l.high_watermark))
                .then_some(())
        },
    )
    .await?;
    inventory.stop(Duration::from_secs(20)).await?;
    let out = run_killable(
        java("inventory", "bench-streams-inventory")
            .args([
                "--output",
                STREAMS_DECISIONS,
                "--initial-stock",
                &input.stock,
            ])
            .args(["--expect", &input.records.to_string()]),
        "the Streams inventory peer",
    )
    .await?;
    ensure!(
        out.contains(&format!("\"handled\": {}", input.records)),
        "the Streams inventory peer: {out}"
    );
    let ours = read_decisions(tools, &b, TOPIC_INVENTORY_EVENTS).await?;
    let theirs = read_decisions(tools, &b, STREAMS_DECISIONS).await?;
    let mut eq = compare_decisions(&ours, &theirs)?;
    eq.exactly_once = exactly_once;
    ensure!(
        eq.orders == n && eq.restocks == input.restocks,
        "inventory-service decided {} orders and {} restocks, not {n} and {}",
        eq.orders,
        eq.restocks,
        input.restocks
    );

    say("    counting both topics with analytics-service and the Streams peer");
    let analytics = Service::start(ServiceKind::Analytics, &b, &[], &logs).await?;
    let metrics = wait::until(
        "analytics-service to count both topics",
        Duration::from_secs(600),
        Duration::from_millis(50),
        || caught_up_now(&kafka, &analytics.url),
    )
    .await?;
    analytics.stop(Duration::from_secs(20)).await?;
    let expect = input.records + ours.len() as u64;
    let out = run_killable(
        java("analytics", "bench-streams-analytics").args(["--expect", &expect.to_string()]),
        "the Streams analytics peer",
    )
    .await?;
    let peer: Value = serde_json::from_str(out.trim())
        .with_context(|| format!("the Streams analytics peer's output: {out}"))?;
    eq.minutes = compare_counts(&metrics, &peer)?;
    eq.failure_rate = metrics["failure_rate"].as_f64().unwrap_or(f64::NAN);
    say(&format!(
        "    the Streams peers agree with orderflow: {eq:?}"
    ));
    drop(broker);
    Ok(eq)
}

/// `java -jar <peers> <mode>` against `bootstrap`, its state under `dir`, and its temporary
/// files too (RocksDB's native library, unpacked at each start and deleted only at a clean
/// exit: a peer stopped by a signal would leave one in /tmp each time).
pub(super) fn java(
    tools: &Tools,
    mode: &str,
    bootstrap: &str,
    app_id: &str,
    dir: &Path,
    exactly_once: bool,
) -> Command {
    let tmp = dir.join("jvm-tmp");
    // a directory that cannot be made shows as the JVM's own error when it starts
    let _ = std::fs::create_dir_all(&tmp);
    let mut c = Command::new(&tools.java);
    c.arg("-Xmx512m")
        .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
        .arg("-jar")
        .arg(&tools.streams_jar)
        .args([mode, "--bootstrap", bootstrap, "--application-id", app_id])
        .args(["--timeout-s", "600", "--state-dir"])
        .arg(dir.join("streams-state"));
    if exactly_once {
        c.arg("--exactly-once");
    }
    c
}

/// `n` orders as kcat's input (`item<TAB>json` lines) over three minutes of event time: the
/// menu and, one in 50, an item not on it; a restock per quarter, one of an unknown item and
/// one beyond the maximum stock; the first order again (same id); a record that is not JSON.
/// Stock is a fifth of the orders per item, so that about a fifth of them fail.
fn write_input(path: &Path, n: u64) -> anyhow::Result<Input> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let start = Utc::now() - TimeDelta::minutes(3);
    let items = DEFAULT_ITEMS.len() as u64;
    let mut records = 0u64;
    let mut line = |w: &mut std::io::BufWriter<std::fs::File>, item: &str, value: &[u8]| {
        records += 1;
        w.write_all(item.as_bytes())
            .and_then(|_| w.write_all(b"\t"))
            .and_then(|_| w.write_all(value))
            .and_then(|_| w.write_all(b"\n"))
    };
    let mut first = None;
    let mut restocks = 2;
    for i in 0..n {
        let ts = start + TimeDelta::milliseconds((i * 180_000 / n) as i64);
        let item = if i % 50 == 49 {
            "tofu"
        } else {
            DEFAULT_ITEMS[(i % items) as usize]
        };
        let qty = 1 + ((i / items) % 3) as u32;
        let order =
            Event::OrderPlaced(OrderPlaced::new(item, qty, format!("user-{}", i % 100), ts));
        line(&mut w, item, &encode(&order))?;
        first.get_or_insert(order);
        if i % (n / 4) == n / 8 {
            restocks += 1;
            let item = DEFAULT_ITEMS[(i % items) as usize];
            line(
                &mut w,
                item,
                &encode(&Event::StockRestockRequested(StockRestockRequested::new(
                    item, 100, ts,
                ))),
            )?;
        }
    }
    let ts = start + TimeDelta::minutes(3);
    for (item, qty) in [("tofu", 5), ("pizza", 1_000_000_000)] {
        let r = StockRestockRequested::new(item, qty, ts);
        line(&mut w, item, &encode(&Event::StockRestockRequested(r)))?;
    }
    if let Some(order) = &first {
        line(&mut w, order.item(), &encode(order))?;
    }
    line(&mut w, "pizza", b"not json")?;
    w.flush()?;
    let per_item = (n / 5).max(1);
    let stock = DEFAULT_ITEMS
        .iter()
        .map(|i| format!("{i}={per_item}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Input {
        records,
        restocks,
        stock,
    })
}

/// One decision as the proof compares it: its type, reason and (restocks) stock after it.
type Decision = (String, Option<String>, Option<u64>);

/// Every decision of `topic` (committed ones), by "order <id>" / "restock <id>".
async fn read_decisions(
    tools: &Tools,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<BTreeMap<String, Decision>> {
    let out = run_killable(
        Command::new(&tools.kcat)
            .args([
                "-C",
                "-b",
                bootstrap,
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-q",
            ])
            .args(["-X", "isolation.level=read_committed", "-f", "%s\\n"]),
        "kcat -C (reading decisions back)",
    )
    .await?;
    let mut all = BTreeMap::new();
    for l in out.lines().filter(|l| !l.is_empty()) {
        let rec = decode_inventory_record(l.as_bytes())
            .with_context(|| format!("a record of {topic} is not a decision: {l}"))?;
        let (key, decision) = match rec {
            InventoryRecord::Order(d) => {
                let kind = d.clone().into_event().type_name().to_string();
                (format!("order {}", d.order_id), (kind, d.reason, None))
            }
            InventoryRecord::Restock(r) => {
                let kind = r.clone().into_event().type_name().to_string();
                (
                    format!("restock {}", r.restock_id),
                    (kind, r.reason, Some(r.stock)),
                )
            }
        };
        if all.insert(key.clone(), decision).is_some() {
            bail!("{topic} holds two decisions about {key}");
        }
    }
    Ok(all)
}

/// The same ids with the same decisions, or the differences (the first ten).
fn compare_decisions(
    ours: &BTreeMap<String, Decision>,
    theirs: &BTreeMap<String, Decision>,
) -> anyhow::Result<StreamsEquality> {
    let diffs: Vec<String> = ours
        .keys()
        .chain(theirs.keys().filter(|k| !ours.contains_key(*k)))
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .map(|k| {
            format!(
                "{k}: orderflow {:?}, streams {:?}",
                ours.get(k),
                theirs.get(k)
            )
        })
        .collect();
    ensure!(
        diffs.is_empty(),
        "{} of {} decisions differ between inventory-service and the Streams peer:\n{}",
        diffs.len(),
        ours.len(),
        diffs
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let count = |kind: &str| ours.values().filter(|d| d.0 == kind).count() as u64;
    Ok(StreamsEquality {
        exactly_once: true,
        orders: ours.keys().filter(|k| k.starts_with("order ")).count() as u64,
        restocks: ours.keys().filter(|k| k.starts_with("restock ")).count() as u64,
        reserved: count("InventoryReserved"),
        failed: count("InventoryFailed"),
        restocks_refused: count("InventoryRestockRefused"),
        minutes: 0,
        failure_rate: f64::NAN,
    })
}

/// The same totals, failure rate and `orders_per_minute` in analytics-service's `/api/metrics`
/// and the Streams peer's document; returns the number of minutes.
fn compare_counts(ours: &Value, theirs: &Value) -> anyhow::Result<usize> {
    for k in ["orders_total", "reserved_total", "failed_total"] {
        ensure!(
            ours[k].as_u64().is_some() && ours[k] == theirs[k],
            "{k}: analytics-service {}, the Streams peer {}",
            ours[k],
            theirs[k]
        );
    }
    let (a, b) = (
        ours["failure_rate"].as_f64(),
        theirs["failure_rate"].as_f64(),
    );
    ensure!(
        matches!((a, b), (Some(a), Some(b)) if (a - b).abs() < 1e-12),
        "failure_rate: analytics-service {a:?}, the Streams peer {b:?}"
    );
    let minutes = ours["orders_per_minute"].as_array().map_or(0, Vec::len);
    ensure!(
        minutes > 0 && ours["orders_per_minute"] == theirs["orders_per_minute"],
        "orders_per_minute: analytics-service {}, the Streams peer {}",
        ours["orders_per_minute"],
        theirs["orders_per_minute"]
    );
    Ok(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision(kind: &str, reason: Option<&str>) -> Decision {
        (kind.to_string(), reason.map(str::to_string), None)
    }

    #[test]
    fn decisions_must_match_id_for_id() {
        let ours = BTreeMap::from([
            ("order a".to_string(), decision("InventoryReserved", None)),
            (
                "order b".to_string(),
                decision("InventoryFailed", Some("x")),
            ),
        ]);
        let eq = compare_decisions(&ours, &ours.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((eq.orders, eq.reserved, eq.failed), (2, 1, 1));
        let mut theirs = ours.clone();
        theirs.insert("order b".into(), decision("InventoryFailed", Some("y")));
        theirs.insert("order c".into(), decision("InventoryReserved", None));
        let e = compare_decisions(&ours, &theirs).unwrap_err().to_string();
        assert!(
            e.contains("2 of 2 decisions differ") && e.contains("order c"),
            "{e}"
        );
    }

    #[test]
    fn counts_must_match_minute_for_minute() {
        let ours = json!({"orders_total": 3, "reserved_total": 2, "failed_total": 1,
            "failure_rate": 1.0 / 3.0, "consumed": {},
            "orders_per_minute": [{"minute": "2026-12-06T07:00:00Z", "orders": 3, "failed": 1, "reserved": 2}]});
        let mut theirs = ours.clone();
        theirs["consumed"] = json!(null);
        assert_eq!(
            compare_counts(&ours, &theirs).unwrap_or_else(|e| panic!("{e}")),
            1
        );
        theirs["orders_per_minute"][0]["failed"] = json!(0);
        let e = compare_counts(&ours, &theirs).unwrap_err().to_string();
        assert!(e.contains("orders_per_minute"), "{e}");
    }

    #[tokio::test]
    async fn without_the_jar_the_proof_fails_naming_bench_tools() {
        let dir =
            std::env::temp_dir().join(format!("orderflow-streams-nojar-{}", std::process::id()));
        let tools = Tools {
            kcat: "kcat".into(),
            python: "python3".into(),
            oha: "oha".into(),
            java: dir.join("no-java"),
            streams_jar: dir.join("no.jar"),
            kafka_libs: dir.join("libs"),
        };
        let e = prove_equal(&tools, 1000, &dir, true)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("scripts/bench-tools.sh") && e.contains("JAVA="),
            "{e}"
        );
        assert!(!dir.exists(), "nothing was started");
    }

    #[test]
    fn the_input_has_every_kind_of_record() {
        let dir =
            std::env::temp_dir().join(format!("orderflow-streams-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("in.tsv");
        let input = write_input(&file, 200).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        // 200 orders, 4 restocks, 2 more restocks, 1 re-sent order, 1 bad record
        assert_eq!((input.records, input.restocks), (208, 6));
        assert_eq!(text.lines().count(), 208);
        assert!(text.contains("tofu\t{") && text.ends_with("pizza\tnot json\n"));
        assert!(input.stock.contains("burger=40,"), "{}", input.stock);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
