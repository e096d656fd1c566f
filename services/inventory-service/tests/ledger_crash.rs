//! SIGKILL between the decisions and the ledger write, in both commit modes: the process is
//! stopped by its test hook (`TEST_PAUSE_BEFORE_LEDGER`) right after a batch's decisions
//! are acknowledged and before its `inventory-ledger` records are sent, seen there, and
//! killed. Restarted, it decides every order once, and the ledger read back agrees with the
//! decisions read back, as does `GET /stock`.

mod common;

use orderflow_events::{TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER};
use orderflow_testkit::oracle::inventory_violations;
use orderflow_testkit::probes::inventory_drained;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, Broker, Service, ServiceKind};
use rdkafka::producer::FutureProducer;

use common::*;

const ORDERS: usize = 3000;
const STOCK_PER_ITEM: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_killed_between_decisions_and_ledger() -> anyhow::Result<()> {
    killed_before_the_ledger_write(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_transactions_killed_between_decisions_and_ledger() -> anyhow::Result<()> {
    killed_before_the_ledger_write(true).await
}

async fn killed_before_the_ledger_write(transactions: bool) -> anyhow::Result<()> {
    let mode = if transactions { "txn" } else { "idem" };
    let dir = test_dir(&format!("ledger-crash-{mode}"));
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("ledger-crash-test").create()?;
    let orders = new_orders(ORDERS);
    publish(&producer, &orders).await?;

    let env = |pause: bool| {
        let mut env = vec![
            ("INITIAL_STOCK", stock_env(STOCK_PER_ITEM)),
            ("TRANSACTIONS", transactions.to_string()),
            ("BATCH_MAX", "200".to_string()),
            // a dynamic member: the killed one is expired after 6 s
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_string()),
        ];
        if pause {
            env.push(("TEST_PAUSE_BEFORE_LEDGER", "4".to_string()));
        }
        env
    };
    let logs = dir.join("logs");
    let svc = Service::start(ServiceKind::Inventory, &broker.bootstrap, &env(true), &logs).await?;
    let paused = log_line(
        &svc.log,
        "test hook: paused before the ledger write (TEST_PAUSE_BEFORE_LEDGER)",
    )
    .await?;

    // The kill lands where it should: decisions written, the ledger behind them.
    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    let ledger = read_ledger(&kafka)?;
    let flushed: u64 = ledger.checkpoints.values().map(|c| c.decided).sum();
    if transactions {
        let open: Vec<_> = topics::open_transactions(&kafka, TOPIC_INVENTORY_EVENTS)?
            .into_iter()
            .filter(|(_, hw, lso)| hw > lso)
            .collect();
        assert!(
            !open.is_empty(),
            "no transaction open at the pause: {paused}"
        );
        assert_eq!(
            flushed,
            decisions.len() as u64,
            "with transactions the committed ledger and decisions agree at any time"
        );
    } else {
        assert!(
            flushed < decisions.len() as u64,
            "the pause should leave decisions the ledger does not count yet \
             (ledger {flushed}, decisions {})",
            decisions.len()
        );
    }
    eprintln!(
        "{mode}: paused at {paused}; {} decisions committed, the ledger counts {flushed}",
        decisions.len()
    );
    let uncounted = decisions.len() as u64 - flushed;
    svc.kill(); // SIGKILL

    let svc = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &env(false),
        &logs,
    )
    .await?;
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
    // Idempotent: the killed batch's orders come again and are recognised by their offset
    // (the tail's headers). Transactions: the killed batch was aborted and decided anew.
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
        svc.stop(std::time::Duration::from_secs(30)).await?,
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
