//! inventory-service against Apache Kafka: SIGKILLed twice mid-stream and restarted,
//! with some orders also delivered twice upstream, it still records exactly one decision per
//! order_id and never reserves more than the stock. Then SIGTERM exits 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use orderflow_events::{
    decode_ledger, encode, record_key, Event, LedgerRecord, OrderPlaced, DEFAULT_ITEMS,
    TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER, TOPIC_ORDERS,
};
use orderflow_runtime::{kafka, KafkaConfig};
use orderflow_testkit::oracle::inventory_violations;
use orderflow_testkit::probes::{inventory_drained, log_end, wait_decisions};
use orderflow_testkit::procs::free_port;
use orderflow_testkit::{topics, wait, Broker};
use rdkafka::producer::{FutureProducer, FutureRecord};

const ORDERS: usize = 6000;
const REPEATED: usize = 200;
const STOCK_PER_ITEM: u64 = 300;

/// The service binary as a child process; killed (by PID) when dropped.
struct Inventory {
    child: Child,
    url: String,
}

impl Inventory {
    async fn start(bootstrap: &str, log: &Path, transactions: bool) -> anyhow::Result<Self> {
        let port = free_port()?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let stock = DEFAULT_ITEMS
            .iter()
            .map(|i| format!("{i}={STOCK_PER_ITEM}"))
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new(env!("CARGO_BIN_EXE_inventory-service"))
            .env("KAFKA_BOOTSTRAP", bootstrap)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("INITIAL_STOCK", stock)
            // Slow enough that a kill lands mid-stream, with decisions sent but not committed.
            .env("THROTTLE_MS", "1")
            // A dynamic member: Kafka expires the killed process after its session timeout
            // (the broker's minimum, 6 s), then the restarted one gets the partitions.
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("LOG_FORMAT", "json")
            .env("TRANSACTIONS", transactions.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut svc = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", svc.url);
        wait::until(
            "inventory-service /readyz",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let exited = svc.child.try_wait().ok().flatten();
                let req = client.get(&url).timeout(Duration::from_secs(2)).send();
                async move {
                    if let Some(status) = exited {
                        return Some(Err(anyhow::anyhow!("exited at start-up: {status}")));
                    }
                    let ok = req.await.ok()?.status().is_success();
                    ok.then_some(Ok(()))
                }
            },
        )
        .await??;
        Ok(svc)
    }

    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL: nothing flushed, nothing committed
        let _ = self.child.wait();
    }

    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let body = reqwest::get(format!("{}/metrics", self.url))
            .await?
            .text()
            .await?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{name} not in /metrics:\n{body}"))
    }

    /// SIGTERM and wait for the exit status.
    async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let child = &mut self.child;
        wait::until(
            "inventory-service to exit after SIGTERM",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let s = child.try_wait().ok().flatten();
                async move { s }
            },
        )
        .await
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn publish(producer: &FutureProducer, orders: &[OrderPlaced]) -> anyhow::Result<()> {
    let mut acks = Vec::new();
    for o in orders {
        let payload = encode(&Event::OrderPlaced(o.clone()));
        let record = FutureRecord::to(TOPIC_ORDERS)
            .key(record_key(&o.item))
            .payload(&payload);
        acks.push(kafka::enqueue(producer, record)?);
    }
    for r in join_all(acks).await {
        if let Some(e) = kafka::delivery_error(r) {
            anyhow::bail!("producing an order failed: {e}");
        }
    }
    Ok(())
}

async fn kill_after_decisions(kafka: &KafkaConfig, svc: Inventory, n: i64) -> anyhow::Result<()> {
    wait_decisions(kafka, n).await?;
    svc.kill9();
    Ok(())
}

/// Every checkpoint on `inventory-ledger` (each one, not only the latest) names the end of
/// the decisions it counts: its partition's order decisions below its `events_offset` are
/// exactly its `decided`. Returns how many were checked.
fn checkpoints_name_their_decisions_end(kafka: &KafkaConfig) -> anyhow::Result<usize> {
    let decisions = topics::read_all(kafka, TOPIC_INVENTORY_EVENTS)?;
    let mut checked = 0;
    for r in topics::read_all(kafka, TOPIC_INVENTORY_LEDGER)? {
        let Ok(LedgerRecord::LedgerCheckpoint(c)) = decode_ledger(r.key.as_deref(), &r.raw) else {
            continue;
        };
        let below = decisions
            .iter()
            .filter(|d| d.partition == r.partition && d.offset < c.events_offset)
            .filter(|d| {
                matches!(
                    d.event,
                    Some(Event::InventoryReserved(_) | Event::InventoryFailed(_))
                )
            })
            .count() as u64;
        anyhow::ensure!(
            below == c.decided,
            "the checkpoint at inventory-ledger/{}@{} counts {} decisions below \
             inventory-events offset {}, where there are {below}",
            r.partition,
            r.offset,
            c.decided,
            c.events_offset
        );
        checked += 1;
    }
    anyhow::ensure!(checked > 0, "no checkpoint on inventory-ledger");
    Ok(checked)
}

fn out_dir(mode: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "orderflow-inventory-ledger-restart-{mode}-{}",
        std::process::id()
    ))
}

/// Idempotent mode (`TRANSACTIONS=false`): the rebuilt ledger skips the orders redelivered
/// after a kill (by offset) and the ones re-sent upstream (by order id, within the window).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_stream_decides_each_order_once_without_oversell() -> anyhow::Result<()> {
    killed_mid_stream(false).await
}

/// `TRANSACTIONS=true`: a kill leaves a transaction open, the restarted process aborts it
/// (same transactional.id per partition) and decides those orders again; a read_committed
/// reader sees each order decided once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_transactions_killed_mid_batch_decides_each_order_once() -> anyhow::Result<()> {
    killed_mid_stream(true).await
}

async fn killed_mid_stream(transactions: bool) -> anyhow::Result<()> {
    let dir = out_dir(if transactions { "txn" } else { "idempotent" });
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let log = dir.join("inventory-service.log");
    // Three partitions each, before anything auto-creates `orders` with one.
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("ledger-restart-test").create()?;

    // ~12,000 units asked of 2,400 in stock: stock runs out, so oversell would show.
    let orders: Vec<OrderPlaced> = (0..ORDERS)
        .map(|i| {
            let item = DEFAULT_ITEMS[i % DEFAULT_ITEMS.len()];
            let qty = 1 + (i * 7 % 3) as u32;
            OrderPlaced::new(item, qty, format!("user-{}", i % 50), Utc::now())
        })
        .collect();
    publish(&producer, &orders).await?;

    let svc = Inventory::start(&broker.bootstrap, &log, transactions).await?;
    kill_after_decisions(&kafka, svc, 1500).await?;
    let svc = Inventory::start(&broker.bootstrap, &log, transactions).await?;
    kill_after_decisions(&kafka, svc, 3500).await?;
    let at_last_kill = log_end(&kafka, &[TOPIC_INVENTORY_EVENTS]).await;
    assert!(
        at_last_kill < ORDERS as i64,
        "the kill came too late to be mid-stream ({at_last_kill} decisions)"
    );

    let svc = Inventory::start(&broker.bootstrap, &log, transactions).await?;
    // The same orders again (an upstream producer retrying): decided once all the same.
    publish(&producer, &orders[..REPEATED]).await?;
    let total = (ORDERS + REPEATED) as i64;
    inventory_drained(&kafka, Some(total)).await?;

    let on_orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    assert_eq!(on_orders.len(), ORDERS + REPEATED);
    let stock: HashMap<String, u64> = DEFAULT_ITEMS
        .iter()
        .map(|i| (i.to_string(), STOCK_PER_ITEM))
        .collect();
    let violations = inventory_violations(&on_orders, &decisions, &stock);
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert_eq!(decisions.len(), ORDERS, "exactly one decision per order");
    let (mut reserved, mut failed) = (HashMap::<&str, u64>::new(), 0);
    for r in &decisions {
        match &r.event {
            Some(Event::InventoryReserved(d)) => {
                *reserved.entry(d.item.as_str()).or_default() += u64::from(d.qty)
            }
            Some(Event::InventoryFailed(d)) => {
                failed += 1;
                let reason = d.reason.as_deref().unwrap_or_default();
                assert!(
                    reason.starts_with("insufficient stock: requested"),
                    "{reason}"
                );
            }
            other => panic!("unexpected record on inventory-events: {other:?}"),
        }
    }
    assert!(failed > 0, "stock should have run out");
    for item in DEFAULT_ITEMS {
        let r = reserved.get(item).copied().unwrap_or(0);
        assert!(
            r <= STOCK_PER_ITEM && r + 3 > STOCK_PER_ITEM,
            "{item}: reserved {r} of {STOCK_PER_ITEM} (should be sold out, never over)"
        );
    }
    // At least the repeated orders were recognised (plus any redelivered after the kills).
    let skipped = svc
        .metric("orderflow_inventory_duplicates_skipped_total")
        .await?;
    assert!(skipped >= REPEATED as f64, "duplicates skipped: {skipped}");
    eprintln!(
        "decisions at the last kill: {at_last_kill}; duplicates skipped by the last run: {skipped} \
         ({REPEATED} repeated upstream, the rest redelivered after the kill)"
    );

    let checked = checkpoints_name_their_decisions_end(&kafka)?;
    if transactions {
        // after each partition's first commit its ledger records go with its decisions, at
        // the end that commit made known; none had to be written again
        let ahead = svc
            .metric("orderflow_inventory_ledger_sent_ahead_total")
            .await?;
        let rewritten = svc
            .metric("orderflow_inventory_ledger_rewritten_total")
            .await?;
        assert!(
            ahead > 0.0,
            "no ledger records were sent with their decisions"
        );
        assert_eq!(rewritten, 0.0, "ledger records written again");
        eprintln!("{checked} checkpoints checked; the last run sent {ahead} flushes ahead");
    }

    let status = svc.stop().await?;
    assert!(status.success(), "SIGTERM should exit 0, got {status}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
