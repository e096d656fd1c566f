//! Crashes mid-stream: inventory-service and analytics-service killed with SIGKILL while
//! records flow, then restarted. Checked against the records on the topics.

use std::collections::HashMap;
use std::time::Duration;

use orderflow_events::{DEFAULT_ITEMS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::oracle::{expected_metrics, inventory_violations};
use orderflow_testkit::probes::{
    analytics_caught_up, data_view, inventory_drained, log_end, wait_decisions,
};
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, wait, Broker, Service, ServiceKind};
use serde_json::json;

// The killed inventory is a dynamic member: Kafka expires it after its session timeout
// (lowered to 6 s, the broker's group.min.session.timeout.ms) and the restarted process,
// a new member, gets its partitions. The killed analytics uses the other documented option,
// static membership (GROUP_INSTANCE_ID): restarted with the same id within its session, it
// takes its partitions back at once, without a rebalance.

/// A crashed dynamic member is expired after this long (the broker's minimum).
const SESSION: (&str, &str) = ("KAFKA_SESSION_TIMEOUT_MS", "6000");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_killed_mid_stream_decides_each_order_once_without_oversell() -> anyhow::Result<()>
{
    inventory_killed_mid_stream(false).await
}

/// With transactions the kill lands inside an open transaction (one is seen open just
/// before, and is still open after it): analytics, reading live, counts nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_killed_inside_a_transaction_while_analytics_reads_live() -> anyhow::Result<()> {
    inventory_killed_mid_stream(true).await
}

/// The partitions of `inventory-events` with a transaction open now.
fn open_on_decisions(kafka: &KafkaConfig) -> anyhow::Result<Vec<i32>> {
    Ok(topics::open_transactions(kafka, TOPIC_INVENTORY_EVENTS)?
        .into_iter()
        .filter(|(_, hw, lso)| hw > lso)
        .map(|(p, _, _)| p)
        .collect())
}

async fn inventory_killed_mid_stream(transactions: bool) -> anyhow::Result<()> {
    let mode = if transactions { "txn" } else { "idem" };
    let dir = test_dir(&format!("inventory-restart-{mode}"));
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    // Small stock so that stock runs out during the run: oversell would show.
    let stock: HashMap<String, u64> = DEFAULT_ITEMS.iter().map(|i| (i.to_string(), 400)).collect();
    let stock_env = DEFAULT_ITEMS
        .iter()
        .map(|i| format!("{i}=400"))
        .collect::<Vec<_>>()
        .join(",");
    let order = Service::start(ServiceKind::Order, &broker.bootstrap, &[], &logs).await?;
    let analytics = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let inv_env = [
        ("THROTTLE_MS", "1".to_string()),
        ("INITIAL_STOCK", stock_env.clone()),
        (SESSION.0, SESSION.1.to_string()),
        ("TRANSACTIONS", transactions.to_string()),
    ];
    let mut inventory =
        Service::start(ServiceKind::Inventory, &broker.bootstrap, &inv_env, &logs).await?;

    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 5000}),
            Duration::from_secs(120),
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    // Kill it while it is deciding: some decisions written, many orders left. With
    // transactions, at a moment a transaction is open; a kill that lands between two
    // transactions (a few ms of each batch) is tried again.
    wait_decisions(&kafka, 1500).await?;
    let mut open_at_kill = Vec::new();
    for attempt in 1..=3 {
        if transactions {
            wait::until(
                "a transaction open on inventory-events",
                Duration::from_secs(60),
                Duration::from_millis(1),
                || async { open_on_decisions(&kafka).ok().filter(|o| !o.is_empty()) },
            )
            .await?;
        }
        inventory.kill();
        open_at_kill = open_on_decisions(&kafka)?;
        inventory =
            Service::start(ServiceKind::Inventory, &broker.bootstrap, &inv_env, &logs).await?;
        if !transactions || !open_at_kill.is_empty() {
            break;
        }
        println!("attempt {attempt}: the kill fell between two transactions; again");
        wait_decisions(
            &kafka,
            log_end(&kafka, &[TOPIC_INVENTORY_EVENTS]).await + 200,
        )
        .await?;
    }
    if transactions {
        assert!(
            !open_at_kill.is_empty(),
            "no kill of three landed inside a transaction"
        );
    }
    inventory_drained(&kafka, None).await?;

    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    assert_eq!(orders.len(), 5000);
    let violations = inventory_violations(&orders, &decisions, &stock);
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert_eq!(decisions.len(), 5000, "exactly one decision per order");
    let expected = expected_metrics(&orders, &decisions);
    assert!(
        expected["failed_total"].as_u64().unwrap_or(0) > 0,
        "stock should have run out (400 per item for ~10k units asked)"
    );
    // Analytics read along the whole time, across the abort: it counted exactly the
    // committed decisions.
    let metrics = analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(120)).await?;
    assert_eq!(
        data_view(&metrics),
        expected,
        "analytics differs from a count of the committed decisions"
    );
    if transactions {
        let all = topics::read_all_uncommitted(&kafka, TOPIC_INVENTORY_EVENTS)?;
        let aborted = all.iter().filter(|r| r.event.is_some()).count() - decisions.len();
        assert!(
            aborted > 0,
            "the killed transaction left its records in the log, aborted"
        );
        println!(
            "inventory killed inside a transaction (open on inventory-events partitions \
             {open_at_kill:?}): {aborted} decisions aborted and decided again, analytics exact"
        );
    }

    for s in [inventory, analytics, order] {
        s.stop(Duration::from_secs(20)).await?;
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analytics_killed_mid_stream_ends_with_the_uninterrupted_totals() -> anyhow::Result<()> {
    let dir = test_dir("analytics-restart");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    let order = Service::start(ServiceKind::Order, &broker.bootstrap, &[], &logs).await?;
    let static_id = [("GROUP_INSTANCE_ID", "analytics-0".to_string())];
    let inventory = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &[("THROTTLE_MS", "1".into())],
        &logs,
    )
    .await?;
    let analytics =
        Service::start(ServiceKind::Analytics, &broker.bootstrap, &static_id, &logs).await?;

    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 4000, "spread_minutes": 5}),
            Duration::from_secs(120),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    // Crash analytics while decisions are still arriving.
    wait_decisions(&kafka, 1000).await?;
    let seen = analytics.get_json("/api/metrics").await?;
    assert!(
        seen["orders_total"].as_u64().unwrap_or(0) > 0,
        "analytics had counted something: {seen}"
    );
    analytics.kill();
    // More orders while it is down.
    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 1000, "spread_minutes": 2}),
            Duration::from_secs(120),
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    let analytics =
        Service::start(ServiceKind::Analytics, &broker.bootstrap, &static_id, &logs).await?;
    inventory_drained(&kafka, None).await?;
    let metrics = analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(120)).await?;

    // The uninterrupted answer, from the topics themselves.
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    let expected = expected_metrics(&orders, &decisions);
    assert_eq!(expected["orders_total"], 5000);
    assert_eq!(
        data_view(&metrics),
        expected,
        "analytics after a crash differs from an uninterrupted count"
    );

    // And a clean restart (SIGTERM) changes nothing either.
    assert!(
        analytics.stop(Duration::from_secs(20)).await?,
        "analytics exits 0 on SIGTERM"
    );
    let analytics =
        Service::start(ServiceKind::Analytics, &broker.bootstrap, &static_id, &logs).await?;
    let again = analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(60)).await?;
    assert_eq!(data_view(&again), expected);

    for s in [analytics, inventory, order] {
        s.stop(Duration::from_secs(20)).await?;
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
