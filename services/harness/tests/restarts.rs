//! Crashes mid-stream: inventory-service and analytics-service killed with SIGKILL while
//! records flow, then restarted. Checked against the records on the topics.

use std::collections::HashMap;
use std::time::Duration;

use orderflow_events::{DEFAULT_ITEMS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_harness::oracle::{expected_metrics, inventory_violations};
use orderflow_harness::procs::test_dir;
use orderflow_harness::scenario::{
    analytics_caught_up, data_view, inventory_drained, log_end, wait_decisions,
};
use orderflow_harness::{topics, Broker, Service, ServiceKind};
use serde_json::json;

// The crashed process is restarted with the same GROUP_INSTANCE_ID (static membership), so it
// takes its partitions back at once. Without it, real Kafka would expire the killed member
// after session.timeout.ms (10 s) and rebalance; the local test broker never expires it and
// the group would wait forever, so these tests use the static membership a production
// restart should use anyway.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_killed_mid_stream_decides_each_order_once_without_oversell() -> anyhow::Result<()>
{
    let dir = test_dir("inventory-restart");
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
    let instance = ("GROUP_INSTANCE_ID", "inventory-0".to_string());
    let inv_env = [
        ("THROTTLE_MS", "1".to_string()),
        ("INITIAL_STOCK", stock_env.clone()),
        instance.clone(),
    ];
    let inventory =
        Service::start(ServiceKind::Inventory, &broker.bootstrap, &inv_env, &logs).await?;

    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 5000}),
            Duration::from_secs(120),
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    // Kill it while it is deciding: some decisions written, many orders left.
    wait_decisions(&kafka, 1500).await?;
    inventory.kill();
    let decided_before_restart = log_end(&kafka, &[TOPIC_INVENTORY_EVENTS]).await;
    assert!(
        decided_before_restart < 5000,
        "the kill came too late to be mid-stream"
    );

    let inventory = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &[("INITIAL_STOCK", stock_env), instance],
        &logs,
    )
    .await?;
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
    let failed = expected_metrics(&orders, &decisions)["failed_total"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        failed > 0,
        "stock should have run out (400 per item for ~10k units asked)"
    );

    inventory.stop(Duration::from_secs(20)).await?;
    order.stop(Duration::from_secs(20)).await?;
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
