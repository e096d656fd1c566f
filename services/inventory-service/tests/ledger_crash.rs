//! SIGKILL between the decisions and the ledger write, in both commit modes, with no test
//! hook in the product. Each kill lands at a point the test has observed:
//! - idempotent (`TRANSACTIONS=false`): the broker is made to refuse every `inventory-ledger`
//!   write (the topic's `max.message.bytes` set to 1, an AlterConfigs any operator could
//!   make), so a batch's decisions are acknowledged and its ledger write fails; the test sees
//!   the failure in inventory's log and kills it there, then gives the topic its settings back.
//!   (With transactions this would wedge the broker instead: the coordinator cannot write the
//!   abort marker to the refusing partition, and the transaction stays in PrepareAbort.)
//! - transactions: batches are throttled (`THROTTLE_MS`, the lag demo's setting), so a batch's
//!   decisions sit in its open transaction for about a second before the ledger write and
//!   the commit; the test kills inventory when `inventory-events` shows an open transaction
//!   (high watermark above the last stable offset) and checks after the kill that one is
//!   still open, i.e. that the kill hit a batch between its decisions and its ledger write.
//!
//! Restarted, inventory decides every order once, and the ledger read back agrees with the
//! decisions read back, as does `GET /stock`.

mod common;

use std::time::Duration;

use orderflow_events::{TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER};
use orderflow_runtime::topics::topic_config;
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::oracle::inventory_violations;
use orderflow_testkit::probes::inventory_drained;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, wait, Broker, Service, ServiceKind};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;

use common::*;

const ORDERS: usize = 3000;
/// Orders decided and flushed to the ledger before the broker starts refusing it.
const BEFORE: usize = 1000;
const STOCK_PER_ITEM: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_killed_between_decisions_and_ledger() -> anyhow::Result<()> {
    killed_before_the_ledger_write(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_transactions_killed_between_decisions_and_ledger() -> anyhow::Result<()> {
    killed_before_the_ledger_write(true).await
}

/// Set `inventory-ledger`'s configuration: its settings at creation, and `extra`.
/// (AlterConfigs replaces a topic's whole dynamic configuration, so the compaction settings
/// are repeated.)
async fn alter_ledger(kafka: &KafkaConfig, extra: &[(&str, &str)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let settings = topic_config(TOPIC_INVENTORY_LEDGER);
    let mut config = AlterConfig::new(ResourceSpecifier::Topic(TOPIC_INVENTORY_LEDGER));
    for (k, v) in &settings {
        config = config.set(k, v);
    }
    for (k, v) in extra {
        config = config.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.alter_configs(&[config], &opts).await? {
        if let Err((resource, code)) = r {
            anyhow::bail!("AlterConfigs {resource:?}: {code}");
        }
    }
    Ok(())
}

/// Partitions of `inventory-events` with an open transaction: (partition, high watermark,
/// last stable offset).
fn open_transaction_now(kafka: &KafkaConfig) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    Ok(topics::open_transactions(kafka, TOPIC_INVENTORY_EVENTS)?
        .into_iter()
        .filter(|(_, hw, lso)| hw > lso)
        .collect())
}

/// Wait until a batch's decisions sit in an open transaction.
async fn open_transaction(kafka: &KafkaConfig) -> anyhow::Result<()> {
    wait::until(
        "a batch's decisions in an open transaction",
        Duration::from_secs(120),
        Duration::from_millis(20),
        || async {
            open_transaction_now(kafka)
                .ok()
                .filter(|o| !o.is_empty())
                .map(|_| ())
        },
    )
    .await
}

/// The first log line that says a session failed on the ledger write.
async fn ledger_refused(log: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    wait::until(
        "inventory to report the refused ledger write",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async {
            std::fs::read_to_string(log)
                .ok()?
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| {
                    v["message"]
                        == "Kafka session failed; starting again from the committed offsets"
                        && v["error"].as_str().is_some_and(|e| e.contains("ledger:"))
                })
        },
    )
    .await
}

async fn killed_before_the_ledger_write(transactions: bool) -> anyhow::Result<()> {
    let mode = if transactions { "txn" } else { "idem" };
    let dir = test_dir(&format!("ledger-crash-{mode}"));
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("ledger-crash-test").create()?;
    let orders = new_orders(ORDERS);
    publish(&producer, &orders[..BEFORE]).await?;

    let env = |throttle_ms: u64| {
        vec![
            ("INITIAL_STOCK", stock_env(STOCK_PER_ITEM)),
            ("TRANSACTIONS", transactions.to_string()),
            ("BATCH_MAX", "200".to_string()),
            ("THROTTLE_MS", throttle_ms.to_string()),
            // a dynamic member: the killed one is expired after 6 s
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_string()),
        ]
    };
    let logs = dir.join("logs");
    let throttle = if transactions { 5 } else { 0 };
    let svc = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &env(throttle),
        &logs,
    )
    .await?;
    inventory_drained(&kafka, Some(BEFORE as i64)).await?;
    let killed_at = if transactions {
        publish(&producer, &orders[BEFORE..]).await?;
        // A kill between a commit and the next batch's first decision misses (a few
        // milliseconds in a second): then inventory is started again and killed again.
        let mut svc = svc;
        let mut attempt = 1;
        loop {
            open_transaction(&kafka).await?;
            svc.kill(); // SIGKILL
            let open = open_transaction_now(&kafka)?;
            if !open.is_empty() {
                break format!("attempt {attempt}, an open transaction on inventory-events (partition, high watermark, last stable offset): {open:?}");
            }
            anyhow::ensure!(attempt < 3, "three kills missed the open transaction");
            attempt += 1;
            svc = Service::start(
                ServiceKind::Inventory,
                &broker.bootstrap,
                &env(throttle),
                &logs,
            )
            .await?;
        }
    } else {
        alter_ledger(&kafka, &[("max.message.bytes", "1")]).await?;
        publish(&producer, &orders[BEFORE..]).await?;
        let refused = ledger_refused(&svc.log).await?;
        svc.kill(); // SIGKILL
        alter_ledger(&kafka, &[]).await?;
        refused["error"].to_string()
    };

    // The kill lands where it should: decisions written, the ledger behind them.
    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    let ledger = read_ledger(&kafka)?;
    let flushed: u64 = ledger.checkpoints.values().map(|c| c.decided).sum();
    if transactions {
        assert_eq!(
            flushed,
            decisions.len() as u64,
            "with transactions the committed ledger and decisions agree at any time"
        );
    } else {
        assert!(
            flushed < decisions.len() as u64,
            "the refused write should leave decisions the ledger does not count yet \
             (ledger {flushed}, decisions {})",
            decisions.len()
        );
    }
    eprintln!(
        "{mode}: killed at {killed_at}; {} decisions committed, the ledger counts {flushed}",
        decisions.len()
    );
    let uncounted = decisions.len() as u64 - flushed;

    let svc = Service::start(ServiceKind::Inventory, &broker.bootstrap, &env(0), &logs).await?;
    inventory_drained(&kafka, Some(ORDERS as i64)).await?;

    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    let stock = common_stock();
    let violations = inventory_violations(&as_records(&orders), &decisions, &stock);
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert_eq!(decisions.len(), ORDERS, "each order decided once");
    let want = expected(&decisions);
    assert!(
        want.reserved.values().all(|r| *r <= STOCK_PER_ITEM)
            && decisions
                .iter()
                .any(|r| matches!(r.event, Some(orderflow_events::Event::InventoryFailed(_)))),
        "stock should have run out, never over: {want:?}"
    );
    let ledger = read_ledger(&kafka)?;
    check_ledger(&ledger, &want)?;
    check_stock(&svc, &want).await?;
    // Idempotent: the orders decided after the last checkpoint come again and are recognised
    // by their offset (the tail's headers). Transactions: their batch was aborted and is
    // decided anew.
    let skipped = svc
        .metric("orderflow_inventory_duplicates_skipped_total", &[])
        .await?;
    assert_eq!(skipped, uncounted as f64, "redelivered orders skipped");
    let ledger_records = topics::read_all(&kafka, TOPIC_INVENTORY_LEDGER)?.len();
    eprintln!(
        "{mode}: after the restart {} decisions ({skipped} redelivered orders skipped), reserved {:?}; {ledger_records} ledger records",
        decisions.len(),
        want.reserved
    );

    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn common_stock() -> std::collections::HashMap<String, u64> {
    orderflow_events::DEFAULT_ITEMS
        .iter()
        .map(|i| (i.to_string(), STOCK_PER_ITEM))
        .collect()
}
