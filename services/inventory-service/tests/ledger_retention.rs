//! Retention, for real: after 10,000 decisions with stock running out, Kafka's
//! DeleteRecords removes the first half of every partition of `orders` and
//! `inventory-events` (what 7-day retention does to old records). Inventory is restarted:
//! its ledger comes from the compacted `inventory-ledger`, so `GET /stock` equals a ledger
//! recomputed from the test's own record of every decision, and 2,000 more orders oversell
//! nothing. Both commit modes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use orderflow_events::{Event, DEFAULT_ITEMS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::oracle::inventory_violations;
use orderflow_testkit::probes::inventory_drained;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, Broker, Service, ServiceKind};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

use common::*;

const FIRST: usize = 10_000;
const MORE: usize = 2_000;
const STOCK_PER_ITEM: u64 = 1_000;
const REBUILT: &str = "ledger rebuilt from inventory-ledger and the tail of inventory-events";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_restart_after_retention_deleted_half_of_the_history() -> anyhow::Result<()> {
    restart_after_retention(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_transactions_restart_after_retention_deleted_half_of_the_history(
) -> anyhow::Result<()> {
    restart_after_retention(true).await
}

/// (low, high) watermark per partition of `topic`.
fn watermarks(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    let reader: BaseConsumer = kafka.reader("ledger-retention-test").create()?;
    let mut out = BTreeMap::new();
    for p in 0..orderflow_events::PARTITIONS {
        out.insert(
            p,
            reader.fetch_watermarks(topic, p, Duration::from_secs(10))?,
        );
    }
    Ok(out)
}

/// DeleteRecords: the first half of every partition of `topic`. Returns the new low
/// watermarks, as Kafka reports them.
async fn delete_first_half(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<i64>> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, (_, high)) in watermarks(kafka, topic)? {
        tpl.add_partition_offset(topic, p, Offset::Offset(high / 2))?;
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let done = admin.delete_records(&tpl, &opts).await?;
    let mut lows = Vec::new();
    for e in done.elements() {
        if let Err(err) = e.error() {
            anyhow::bail!("DeleteRecords {topic}/{}: {err}", e.partition());
        }
        lows.push(e.offset().to_raw().unwrap_or(-1));
    }
    Ok(lows)
}

async fn restart_after_retention(transactions: bool) -> anyhow::Result<()> {
    let mode = if transactions { "txn" } else { "idem" };
    let dir = test_dir(&format!("ledger-retention-{mode}"));
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let producer: FutureProducer = kafka.producer("ledger-retention-test").create()?;
    let logs = dir.join("logs");
    let env = |window_ms: &str| {
        vec![
            ("INITIAL_STOCK", stock_env(STOCK_PER_ITEM)),
            ("TRANSACTIONS", transactions.to_string()),
            ("IDEMPOTENCY_WINDOW_MS", window_ms.to_string()),
        ]
    };

    // 10,000 orders asking about 2,500 units of each item, 1,000 in stock: it runs out.
    let first = new_orders(FIRST);
    publish(&producer, &first).await?;
    let svc = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &env("86400000"),
        &logs,
    )
    .await?;
    inventory_drained(&kafka, Some(FIRST as i64)).await?;
    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );

    // The test's own record of every decision, before Kafka deletes half of them.
    let mut recorded = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    assert_eq!(recorded.len(), FIRST, "one decision per order");
    let stock: HashMap<String, u64> = DEFAULT_ITEMS
        .iter()
        .map(|i| (i.to_string(), STOCK_PER_ITEM))
        .collect();
    let v = inventory_violations(&as_records(&first), &recorded, &stock);
    assert!(
        v.is_empty(),
        "before the deletion: {:?}",
        &v[..v.len().min(5)]
    );
    let sold_out = expected(&recorded);
    assert!(
        sold_out
            .reserved
            .values()
            .all(|r| *r + 3 > STOCK_PER_ITEM && *r <= STOCK_PER_ITEM),
        "every item should be sold out: {sold_out:?}"
    );

    let events_end = watermarks(&kafka, TOPIC_INVENTORY_EVENTS)?;
    let orders_lows = delete_first_half(&kafka, TOPIC_ORDERS).await?;
    let events_lows = delete_first_half(&kafka, TOPIC_INVENTORY_EVENTS).await?;
    let left = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?.len();
    assert!(
        left <= FIRST / 2 + 3 && left > 0,
        "DeleteRecords left {left} decisions of {FIRST}"
    );
    eprintln!(
        "{mode}: DeleteRecords: orders low watermarks {orders_lows:?}, inventory-events {events_lows:?}; {left} decisions left"
    );

    // A 1 ms idempotency window: the rebuild reads the compacted ledger and the tail after
    // its checkpoint only, nothing for order ids, so the stock can only come from the ledger.
    let svc = Service::start(ServiceKind::Inventory, &broker.bootstrap, &env("1"), &logs).await?;
    check_stock(&svc, &expected(&recorded)).await?;
    let rebuilt = log_lines(&svc.log, REBUILT);
    let since_restart = &rebuilt[rebuilt.len().saturating_sub(3)..];
    for line in since_restart {
        assert_eq!(
            line["tail_records"], 0,
            "nothing after the checkpoint: {line}"
        );
        assert!(line["ledger_records"].as_u64() > Some(0), "{line}");
    }

    let more = new_orders(MORE);
    publish(&producer, &more).await?;
    inventory_drained(&kafka, Some((FIRST + MORE) as i64)).await?;
    let new: Vec<_> = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?
        .into_iter()
        .filter(|r| r.offset >= events_end[&r.partition].1)
        .collect();
    assert_eq!(new.len(), MORE, "one decision per new order");
    assert!(
        new.iter()
            .all(|r| matches!(r.event, Some(Event::InventoryFailed(_)))),
        "everything is sold out: a reserved order after the restart is an oversell"
    );
    recorded.extend(new);
    let all_orders: Vec<_> = first.iter().chain(&more).cloned().collect();
    let v = inventory_violations(&as_records(&all_orders), &recorded, &stock);
    assert!(
        v.is_empty(),
        "{} violations: {:?}",
        v.len(),
        &v[..v.len().min(5)]
    );
    let want = expected(&recorded);
    check_stock(&svc, &want).await?;
    check_ledger(&read_ledger(&kafka)?, &want)?;
    eprintln!(
        "{mode}: restarted after DeleteRecords: reserved {:?}, decided per partition {:?}; {} rebuild lines {since_restart:?}",
        want.reserved,
        want.decided,
        since_restart.len()
    );

    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
