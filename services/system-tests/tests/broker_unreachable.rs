//! The services started before Kafka: they stay up, `/healthz` answers, `/readyz` says why
//! they are not ready, an order is refused with a JSON 503 in bounded time; then the broker
//! comes up on the address they were given and they become ready by themselves, create the
//! topics (3 partitions, not a broker's auto-created default), and an order goes through.
//! A bulk run whose broker went away is refused with the count of records Kafka did not take.

use std::time::{Duration, Instant};

use orderflow_events::{Event, PARTITIONS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_testkit::probes::caught_up_now;
use orderflow_testkit::procs::{free_port, test_dir};
use orderflow_testkit::{topics, wait, Broker, Service, ServiceKind};
use serde_json::{json, Value};

const PUBLISH_TIMEOUT_MS: u64 = 2000;

/// `/healthz` answers 200 and `/readyz` 503 with a reason that names Kafka as unreachable.
async fn alive_not_ready(s: &Service) -> Option<String> {
    let (health, _) = s.get("/healthz").await.ok()?;
    let (ready, body) = s.get("/readyz").await.ok()?;
    let body: Value = serde_json::from_str(&body).ok()?;
    let reason = body["reason"].as_str()?;
    (health == 200
        && ready == 503
        && body["ready"].as_bool() == Some(false)
        && reason.contains("unreachable"))
    .then(|| reason.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_started_before_kafka_wait_for_it_and_recover() -> anyhow::Result<()> {
    let dir = test_dir("no-broker");
    let logs = dir.join("logs");
    let port = free_port()?;
    let bootstrap = format!("127.0.0.1:{port}");
    let timeout = [("PUBLISH_TIMEOUT_MS", PUBLISH_TIMEOUT_MS.to_string())];
    let mut services = vec![
        Service::spawn(ServiceKind::Order, &bootstrap, &timeout, &logs)?,
        Service::spawn(ServiceKind::Inventory, &bootstrap, &[], &logs)?,
        Service::spawn(ServiceKind::Analytics, &bootstrap, &[], &logs)?,
    ];

    // Nothing listens on the port: alive, not ready, and saying why.
    for s in &services {
        let reason = wait::until(
            &format!("{} to report Kafka unreachable", s.kind.binary()),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || alive_not_ready(s),
        )
        .await?;
        assert!(reason.contains(&bootstrap), "{reason}");
    }
    let order = &services[0];
    let started = Instant::now();
    let (status, body) = order
        .post_json(
            "/orders",
            &json!({"item": "pizza", "qty": 1, "user_id": "u-early"}),
            Duration::from_secs(30),
        )
        .await?;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a JSON error: {body}"
    );
    assert!(
        took < Duration::from_millis(PUBLISH_TIMEOUT_MS + 5000),
        "POST /orders took {took:?} with PUBLISH_TIMEOUT_MS={PUBLISH_TIMEOUT_MS}"
    );
    // Still up and still explaining, well past the refused order.
    for s in &mut services {
        s.check_running()?;
        alive_not_ready(s)
            .await
            .ok_or_else(|| anyhow::anyhow!("{} lost /healthz or /readyz", s.kind.binary()))?;
    }

    // Kafka arrives where they were told to look: each becomes ready by itself.
    let broker = Broker::start_local_on(&dir.join("broker"), port)?;
    let kafka = broker.kafka();
    for s in &mut services {
        s.wait_ready(Duration::from_secs(60)).await?;
    }
    for topic in [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS] {
        let n = orderflow_runtime::topics::partition_count(&kafka, topic, Duration::from_secs(5))?;
        assert_eq!(n, Some(PARTITIONS), "{topic} created by the services");
    }

    let (status, body) = services[0]
        .post_json(
            "/orders",
            &json!({"item": "pizza", "qty": 1, "user_id": "u-late"}),
            Duration::from_secs(30),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let order_id = body["order_id"].as_str().unwrap_or_default().to_string();
    let metrics = wait::until(
        "the order to be decided and counted",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let m = caught_up_now(&kafka, &services[2].url).await?;
            (m["reserved_total"] == 1).then_some(m)
        },
    )
    .await?;
    assert_eq!(metrics["orders_total"], 1, "{metrics}");
    assert_eq!(metrics["failed_total"], 0, "{metrics}");

    // Exactly that order on `orders` (the refused one never got there), decided once.
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    let ids = |recs: &[topics::Record]| -> Vec<String> {
        recs.iter()
            .filter_map(|r| match &r.event {
                Some(Event::OrderPlaced(o)) => Some(o.order_id.to_string()),
                Some(Event::InventoryReserved(d)) | Some(Event::InventoryFailed(d)) => {
                    Some(d.order_id.to_string())
                }
                _ => None, // no restocks in this test
            })
            .collect()
    };
    assert_eq!(ids(&orders), vec![order_id.clone()]);
    assert_eq!(ids(&decisions), vec![order_id]);

    for s in services {
        let name = s.kind.binary();
        assert!(
            s.stop(Duration::from_secs(20)).await?,
            "{name} exits 0 on SIGTERM"
        );
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `POST /orders/bulk` of `count` orders.
async fn bulk(order: &Service, count: u64) -> anyhow::Result<(u16, Value)> {
    let body = json!({ "count": count });
    order
        .post_json("/orders/bulk", &body, Duration::from_secs(60))
        .await
}

/// A bulk run whose broker went away after order-service was ready: a JSON 503, in bounded
/// time, that says how many of its records Kafka did not acknowledge and why, with the
/// service still up; once the broker is back, a bulk run goes through whole, and `orders`
/// holds its records and none of the refused run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_run_without_its_broker_says_how_many_records_failed() -> anyhow::Result<()> {
    const TIMEOUT_MS: u64 = 5000;
    let dir = test_dir("bulk-no-broker");
    let logs = dir.join("logs");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    // order-service takes items an inventory knows: one inventory start writes the catalogue
    let inventory = Service::start(ServiceKind::Inventory, &broker.bootstrap, &[], &logs).await?;
    inventory.stop(Duration::from_secs(20)).await?;
    let timeout = [("PUBLISH_TIMEOUT_MS", TIMEOUT_MS.to_string())];
    let mut order = Service::start(ServiceKind::Order, &broker.bootstrap, &timeout, &logs).await?;

    broker.stop()?;
    let started = Instant::now();
    let (status, body) = bulk(&order, 50).await?;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("50 of 50 records were not acknowledged by Kafka")
            && error.contains("Message timed out"),
        "{body}"
    );
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 5000),
        "POST /orders/bulk took {took:?} with PUBLISH_TIMEOUT_MS={TIMEOUT_MS}"
    );
    order.check_running()?;

    broker.start_again()?;
    order.wait_ready(Duration::from_secs(60)).await?;
    let (status, body) = bulk(&order, 50).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["published"], 50, "{body}");
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    assert_eq!(
        orders.len(),
        50,
        "only the accepted run's records on {TOPIC_ORDERS}"
    );

    assert!(
        order.stop(Duration::from_secs(20)).await?,
        "order-service exits 0 on SIGTERM"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
