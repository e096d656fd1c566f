//! Faults while orders flow: the broker restarted under load, and inventory replicas
//! joining, killed and leaving mid-stream. Checked against the records on the topics, as a
//! `read_committed` consumer sees them: every accepted order once in `orders`, decided
//! exactly once, never oversold, and counted once by analytics.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderflow_events::{
    Event, DEFAULT_ITEMS, GROUP_ANALYTICS, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_harness::oracle::{expected_metrics, inventory_violations};
use orderflow_harness::procs::test_dir;
use orderflow_harness::scenario::{
    analytics_caught_up, data_view, inventory_drained, lag_of, log_end, wait_decisions,
};
use orderflow_harness::{topics, wait, Broker, Service, ServiceKind};
use orderflow_runtime::KafkaConfig;
use serde_json::json;

/// Stock small enough to run out during a test, so an oversell would show.
fn small_stock(per_item: u64) -> (HashMap<String, u64>, String) {
    let stock = DEFAULT_ITEMS
        .iter()
        .map(|i| (i.to_string(), per_item))
        .collect();
    let env = DEFAULT_ITEMS
        .iter()
        .map(|i| format!("{i}={per_item}"))
        .collect::<Vec<_>>()
        .join(",");
    (stock, env)
}

/// The topics agree with themselves and with analytics: each order of `orders` decided
/// exactly once within `stock`, and analytics' totals equal a count made from the topics.
async fn check_topics_and_analytics(
    kafka: &KafkaConfig,
    analytics: &Service,
    stock: &HashMap<String, u64>,
    orders_expected: usize,
) -> anyhow::Result<()> {
    let metrics = analytics_caught_up(kafka, &analytics.url, Duration::from_secs(120)).await?;
    let orders = topics::read_all(kafka, TOPIC_ORDERS)?;
    let decisions = topics::read_all(kafka, TOPIC_INVENTORY_EVENTS)?;
    assert_eq!(orders.len(), orders_expected, "records on orders");
    let violations = inventory_violations(&orders, &decisions, stock);
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert_eq!(
        decisions.len(),
        orders.len(),
        "exactly one decision per order"
    );
    let expected = expected_metrics(&orders, &decisions);
    assert!(
        expected["failed_total"].as_u64().unwrap_or(0) > 0,
        "stock should have run out: {expected}"
    );
    assert_eq!(
        data_view(&metrics),
        expected,
        "analytics differs from a count made from the topics"
    );
    Ok(())
}

/// SIGTERM every service (each must exit 0), then stop the broker and remove `dir`.
async fn stop_all<const N: usize>(
    services: [Service; N],
    broker: Broker,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    for svc in services {
        let name = svc.kind.binary();
        assert!(
            svc.stop(Duration::from_secs(20)).await?,
            "{name} exits 0 on SIGTERM"
        );
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// What the clients posting orders saw, and a switch to hold them between requests.
#[derive(Default)]
struct Tally {
    accepted: Mutex<Vec<String>>,
    unavailable: AtomicU64,
    other: AtomicU64,
    hold: AtomicBool,
    in_flight: AtomicU64,
}

/// `clients` tasks posting single orders to `url` until `stop`.
fn post_orders(
    url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (url, stop, tally) = (url.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    tally.in_flight.fetch_add(1, Ordering::SeqCst);
                    if tally.hold.load(Ordering::SeqCst) {
                        tally.in_flight.fetch_sub(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    i += 1;
                    let item = DEFAULT_ITEMS[(c + i) % DEFAULT_ITEMS.len()];
                    let body =
                        json!({"item": item, "qty": 1 + (i % 3), "user_id": format!("client-{c}")});
                    let r = http
                        .post(format!("{url}/orders"))
                        .json(&body)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 202 => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if let Some(id) = v["order_id"].as_str() {
                                if let Ok(mut a) = tally.accepted.lock() {
                                    a.push(id.to_string());
                                }
                            }
                        }
                        Ok(r) if r.status().as_u16() == 503 => {
                            tally.unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            tally.other.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tally.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect()
}

fn accepted(tally: &Tally) -> usize {
    tally.accepted.lock().map(|a| a.len()).unwrap_or(0)
}

async fn ready_status(svc: &Service) -> u16 {
    svc.get("/readyz").await.map(|(s, _)| s).unwrap_or(0)
}

/// The broker is stopped while order-service is publishing and inventory and analytics are
/// consuming, and started again on its data. The services stay up, say not ready while it is
/// gone, recover by themselves, and nothing accepted is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_under_load_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let dir = test_dir("broker-restart");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    let (stock, stock_env) = small_stock(300);
    let mut order = Service::start(
        ServiceKind::Order,
        &broker.bootstrap,
        &[("PUBLISH_TIMEOUT_MS", "3000".to_string())],
        &logs,
    )
    .await?;
    // Static members: the local broker restores its groups from disk, sometimes with a
    // member the consumer no longer answers to (it rejoins under a new id after
    // UNKNOWN_MEMBER_ID), and it never expires that ghost, so the group would wait for it
    // forever. Kafka expires it after session.timeout.ms; a static member simply replaces it.
    let mut inventory = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &[
            ("INITIAL_STOCK", stock_env),
            ("GROUP_INSTANCE_ID", "inventory-0".to_string()),
        ],
        &logs,
    )
    .await?;
    let mut analytics = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &[
            ("COMMIT_INTERVAL_MS", "200".to_string()),
            ("GROUP_INSTANCE_ID", "analytics-0".to_string()),
        ],
        &logs,
    )
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = post_orders(order.url.clone(), 4, stop.clone(), tally.clone());
    wait::until(
        "1000 orders accepted",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async { (accepted(&tally) >= 1000).then_some(()) },
    )
    .await?;

    // The writes pause for the instant of the stop only: the local broker writes its data to
    // disk when told to stop but goes on acknowledging records for about 0.1 s, and those are
    // lost (measured: 305 of 16,021 acknowledged records missing after a restart under load).
    // Kafka does not acknowledge what it has not logged, so this is the test bed's flaw.
    // Orders posted while the broker is down and after it is back are not held, and the
    // consumers stay connected throughout.
    tally.hold.store(true, Ordering::SeqCst);
    wait::until(
        "the clients' requests in flight to finish, both groups to commit the log ends",
        Duration::from_secs(60),
        Duration::from_millis(5),
        || async {
            if tally.in_flight.load(Ordering::SeqCst) != 0 {
                return None;
            }
            let inv = lag_of(&kafka, GROUP_INVENTORY, &[TOPIC_ORDERS])
                .await
                .ok()?;
            let ana = lag_of(
                &kafka,
                GROUP_ANALYTICS,
                &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
            )
            .await
            .ok()?;
            inv.iter().chain(&ana).all(|l| l.lag == 0).then_some(())
        },
    )
    .await?;
    broker.stop()?;
    tally.hold.store(false, Ordering::SeqCst);
    let down_at = Instant::now();
    let accepted_before = accepted(&tally);
    // While it is gone: up, not ready (inventory and analytics notice within their probe
    // and consume errors), order-service answers 503 rather than hanging.
    wait::until(
        "inventory and analytics to report not ready",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            (ready_status(&inventory).await == 503 && ready_status(&analytics).await == 503)
                .then_some(())
        },
    )
    .await?;
    wait::until(
        "order-service to answer 503",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (tally.unavailable.load(Ordering::SeqCst) > 0).then_some(()) },
    )
    .await?;
    let outage = down_at.elapsed();
    broker.start_again()?;
    let up_at = Instant::now();
    for svc in [&mut order, &mut inventory, &mut analytics] {
        svc.wait_ready(Duration::from_secs(90)).await?;
    }
    let recovered = up_at.elapsed();
    let target = accepted(&tally) + 1000;
    wait::until(
        "1000 more orders accepted after the restart",
        Duration::from_secs(90),
        Duration::from_millis(20),
        || async { (accepted(&tally) >= target).then_some(()) },
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await?;
    }
    for svc in [&mut order, &mut inventory, &mut analytics] {
        svc.check_running()?;
    }

    let ids: Vec<String> = tally.accepted.lock().map(|a| a.clone()).unwrap_or_default();
    let on_orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &on_orders {
        if let Some(Event::OrderPlaced(o)) = &r.event {
            *seen.entry(o.order_id.to_string()).or_default() += 1;
        }
    }
    let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    let doubled = seen.values().filter(|n| **n > 1).count();
    assert_eq!(missing, 0, "accepted orders missing from {TOPIC_ORDERS}");
    assert_eq!(doubled, 0, "orders on {TOPIC_ORDERS} more than once");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "order ids are unique");
    // A 503 may still have reached the broker (the outcome of a timed-out send is unknown
    // to the client), so `orders` holds at least the accepted ones.
    assert!(on_orders.len() >= ids.len());
    inventory_drained(&kafka, Some(on_orders.len() as i64)).await?;
    check_topics_and_analytics(&kafka, &analytics, &stock, on_orders.len()).await?;
    println!(
        "broker restart: {} accepted ({} before the stop), {} answered 503, {} other; \
         broker down {:.1} s; all ready {:.1} s after it came back; {} on orders, each decided once",
        ids.len(),
        accepted_before,
        tally.unavailable.load(Ordering::SeqCst),
        tally.other.load(Ordering::SeqCst),
        outage.as_secs_f64(),
        recovered.as_secs_f64(),
        on_orders.len()
    );
    stop_all([order, inventory, analytics], broker, &dir).await
}

/// Two inventory replicas share the orders while the stock runs out: B joins mid-stream
/// (partitions move between live replicas), then B is SIGKILLed mid-batch and restarted.
/// No order is decided twice, none is lost, no item is oversold, and analytics counts each
/// once.
///
/// Both replicas are static members (`GROUP_INSTANCE_ID`), and the killed one is restarted
/// with its id, as Kubernetes restarts a killed container: it takes its partitions back. On
/// Kafka they would otherwise move to A after `session.timeout.ms`; the local test broker
/// never expires a dead member, so without the restart they would stay unowned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_replicas_one_killed_without_oversell() -> anyhow::Result<()> {
    let dir = test_dir("replicas");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let (stock, stock_env) = small_stock(500);
    let start = |name: &'static str| {
        let env = vec![
            ("THROTTLE_MS", "1".to_string()),
            ("INITIAL_STOCK", stock_env.clone()),
            ("GROUP_INSTANCE_ID", name.to_string()),
        ];
        let (bootstrap, log) = (broker.bootstrap.clone(), logs.join(format!("{name}.log")));
        async move { Service::start_logged(ServiceKind::Inventory, &bootstrap, &env, log).await }
    };
    let order = Service::start(ServiceKind::Order, &broker.bootstrap, &[], &logs).await?;
    let analytics = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let a = start("inventory-a").await?;
    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": 8000}),
            Duration::from_secs(120),
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    wait_decisions(&kafka, 800).await?;
    // B joins: a rebalance hands some of A's partitions to B mid-stream.
    let b = start("inventory-b").await?;
    let at = log_end(&kafka, &[TOPIC_INVENTORY_EVENTS]).await;
    wait_decisions(&kafka, at + 1500).await?;
    // B dies mid-batch (SIGKILL) and comes back.
    b.kill();
    let at_kill = log_end(&kafka, &[TOPIC_INVENTORY_EVENTS]).await;
    assert!(
        at_kill < 8000,
        "the kill came too late to be mid-stream ({at_kill})"
    );
    let b = start("inventory-b").await?;

    inventory_drained(&kafka, Some(8000)).await?;
    check_topics_and_analytics(&kafka, &analytics, &stock, 8000).await?;
    stop_all([order, a, b, analytics], broker, &dir).await
}
