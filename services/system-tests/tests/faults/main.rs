//! Faults while orders flow: the broker killed under load (briefly, and for longer than
//! the fetch watch's `STALL_AFTER`), the leader of an `orders` partition killed in a
//! three-node cluster, and inventory replicas joining, killed and leaving mid-stream; each
//! with inventory in both commit modes (idempotent, and Kafka transactions). And a
//! transaction Kafka leaves open for good (`hanging`), with transactions. Checked against
//! the records on the topics, as a `read_committed` consumer sees them: every accepted
//! order once in `orders`, decided exactly once, never oversold, and counted once by
//! analytics, which reads live across any aborted transaction. Every consumer is a dynamic
//! group member.

mod hanging;
mod load;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use orderflow_events::{Event, DEFAULT_ITEMS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::fetch_watch::{STALLED, STALL_AFTER};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::oracle::{expected_metrics, inventory_violations};
use orderflow_testkit::probes::{
    analytics_caught_up, data_view, inventory_drained, log_end, wait_decisions,
};
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, wait, Broker, Service, ServiceKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

use load::{accepted, accepted_once_on_orders, ready_status, Load, Tally};

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
    // One decision per order id: a record written twice by the producer (see
    // accepted_once_on_orders) is one order, decided once.
    let distinct: HashSet<_> = orders
        .iter()
        .filter_map(|r| match &r.event {
            Some(Event::OrderPlaced(o)) => Some(o.order_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        decisions.len(),
        distinct.len(),
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

/// After a fault and its load: every service still running, every accepted order on
/// `orders` once, inventory caught up, the topics and analytics (the last service) agreeing.
/// Returns how many records `orders` holds.
async fn verify_after_fault(
    kafka: &KafkaConfig,
    tally: &Tally,
    mut services: [&mut Service; 3],
    stock: &HashMap<String, u64>,
) -> anyhow::Result<usize> {
    for svc in services.iter_mut() {
        svc.check_running()?;
    }
    let on_orders = accepted_once_on_orders(kafka, tally)?;
    inventory_drained(kafka, Some(on_orders as i64)).await?;
    check_topics_and_analytics(kafka, services[2], stock, on_orders).await?;
    Ok(on_orders)
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

/// order-service (`order_env`), inventory (`INITIAL_STOCK` `stock_env`, the commit mode, and
/// `inventory_env`) and analytics (`analytics_env`) against `bootstrap`, logging under `logs`.
async fn start_services(
    bootstrap: &str,
    logs: &std::path::Path,
    stock_env: String,
    transactions: bool,
    [order_env, inventory_env, analytics_env]: [&[(&str, String)]; 3],
) -> anyhow::Result<[Service; 3]> {
    let order = Service::start(ServiceKind::Order, bootstrap, order_env, logs).await?;
    let mut env = vec![("INITIAL_STOCK", stock_env), mode(transactions)];
    env.extend(inventory_env.iter().cloned());
    let inventory = Service::start(ServiceKind::Inventory, bootstrap, &env, logs).await?;
    let analytics = Service::start(ServiceKind::Analytics, bootstrap, analytics_env, logs).await?;
    Ok([order, inventory, analytics])
}

/// inventory's environment for a commit mode.
fn mode(transactions: bool) -> (&'static str, String) {
    ("TRANSACTIONS", transactions.to_string())
}

/// A crashed dynamic member is expired after this long (the broker's minimum).
fn session() -> (&'static str, String) {
    ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_under_load_loses_and_doubles_nothing() -> anyhow::Result<()> {
    broker_killed_under_load(false, Duration::ZERO).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_under_load_with_transactions() -> anyhow::Result<()> {
    broker_killed_under_load(true, Duration::ZERO).await
}

/// The broker stays down for longer than the fetch watch gives a partition to start
/// fetching: an outage is not a stall, so neither consumer ends its session while the broker
/// is gone (a partition fetching from a broker that is gone is still fetching), and all
/// recover as after a short outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_down_longer_than_the_fetch_watch_with_transactions() -> anyhow::Result<()> {
    broker_killed_under_load(true, STALL_AFTER + Duration::from_secs(10)).await
}

/// The broker is SIGKILLed while order-service is publishing and inventory and analytics are
/// consuming, kept down for at least `hold`, and started again on its data. The services stay
/// up, say not ready while it is gone, recover by themselves, and nothing accepted is lost or
/// doubled.
async fn broker_killed_under_load(transactions: bool, hold: Duration) -> anyhow::Result<()> {
    let dir = test_dir(&format!("broker-kill-{transactions}-{}s", hold.as_secs()));
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    let (stock, stock_env) = small_stock(300);
    // order-service's default PUBLISH_TIMEOUT_MS (15 s, its producer's message.timeout.ms),
    // longer than a leader election here (6-11 s). With 3 s, records timed out while
    // orders/0 had no leader; librdkafka's idempotent producer then bumped its epoch and
    // re-sent a record an earlier attempt had already written: an *accepted* order was on
    // `orders` twice (once in about 20 runs). README "Guarantees" states the condition.
    let mut order = Service::start(ServiceKind::Order, &broker.bootstrap, &[], &logs).await?;
    // librdkafka's group debug lines: in 1 of about 5 runs with transactions, inventory
    // rejoined after the restart, rebuilt its ledgers, said ready and then read nothing
    // (2026-12-07, not explained yet); a failed run keeps this log.
    let mut inventory = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &[
            ("INITIAL_STOCK", stock_env),
            mode(transactions),
            ("KAFKA_DEBUG", "cgrp".to_string()),
            ("RUST_LOG", "info,librdkafka=debug".to_string()),
        ],
        &logs,
    )
    .await?;
    let mut analytics = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &[("COMMIT_INTERVAL_MS", "200".to_string())],
        &logs,
    )
    .await?;

    let load = Load::start(order.url.clone(), 4);
    load.accept(1000, "1000 orders accepted").await?;
    let tally = load.tally.clone();

    // A crash, not a shutdown: nothing is flushed, no client is told. Kafka acknowledges
    // (acks=all) only what it has written to its log, which survives the process.
    broker.kill()?;
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
    // the outage's length is the fault itself, not a wait for something to happen
    tokio::time::sleep(hold.saturating_sub(down_at.elapsed())).await;
    for svc in [&inventory, &analytics] {
        let log = std::fs::read_to_string(&svc.log)?;
        assert!(
            !log.contains(STALLED),
            "{} took the outage for a stall: {}",
            svc.kind.binary(),
            log.lines()
                .find(|l| l.contains(STALLED))
                .unwrap_or_default()
        );
    }
    let outage = down_at.elapsed();
    broker.start_again()?;
    let up_at = Instant::now();
    for svc in [&mut order, &mut inventory, &mut analytics] {
        svc.wait_ready(Duration::from_secs(90)).await?;
    }
    let recovered = up_at.elapsed();
    load.accept(1000, "1000 more orders accepted after the restart")
        .await?;
    load.stop().await?;
    let on_orders = verify_after_fault(
        &kafka,
        &tally,
        [&mut order, &mut inventory, &mut analytics],
        &stock,
    )
    .await?;
    // A restart may leave a transaction of inventory's open for good (faults/hanging.rs):
    // how often inventory found one and aborted it at a take-over.
    let aborted = std::fs::read_to_string(&inventory.log)?
        .matches(inventory_service::worker::HANGING_ABORTED)
        .count();
    println!(
        "broker kill (transactions {transactions}): {} accepted ({} before the kill), {} \
         answered 503, {} other; broker down {:.1} s; all ready {:.1} s after it came back; \
         {} on orders, each decided once; {aborted} transactions left open by Kafka aborted",
        accepted(&tally),
        accepted_before,
        tally.unavailable.load(Ordering::SeqCst),
        tally.other.load(Ordering::SeqCst),
        outage.as_secs_f64(),
        recovered.as_secs_f64(),
        on_orders
    );
    stop_all([order, inventory, analytics], broker, &dir).await
}

/// Two inventory replicas share the orders while the stock runs out: B joins mid-stream
/// (partitions move between live replicas), then B is SIGKILLed mid-batch and restarted.
/// No order is decided twice, none is lost, no item is oversold, and analytics counts each
/// once.
///
/// Both replicas are dynamic members. Kafka expires the killed B after its session timeout
/// (the broker's minimum, 6 s); B is restarted as Kubernetes restarts a killed container,
/// and joins as a new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_replicas_one_killed_without_oversell() -> anyhow::Result<()> {
    inventory_replicas_one_killed(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_replicas_one_killed_with_transactions() -> anyhow::Result<()> {
    inventory_replicas_one_killed(true).await
}

async fn inventory_replicas_one_killed(transactions: bool) -> anyhow::Result<()> {
    let dir = test_dir(&format!("replicas-{transactions}"));
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let (stock, stock_env) = small_stock(500);
    let start = |name: &'static str| {
        let env = vec![
            ("THROTTLE_MS", "1".to_string()),
            ("INITIAL_STOCK", stock_env.clone()),
            session(),
            mode(transactions),
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

/// `(leader, replicas, in-sync replicas)` of `topic`/`partition` as the cluster reports now.
fn partition_state(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
) -> anyhow::Result<(i32, usize, usize)> {
    let consumer: BaseConsumer = kafka.reader("orderflow-faults-metadata").create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    md.topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
        .find(|p| p.id() == partition)
        .map(|p| (p.leader(), p.replicas().len(), p.isr().len()))
        .ok_or_else(|| anyhow::anyhow!("{topic}/{partition} is not in the metadata"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_in_a_three_node_cluster_loses_nothing() -> anyhow::Result<()> {
    leader_killed_in_a_three_node_cluster(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_in_a_three_node_cluster_with_transactions() -> anyhow::Result<()> {
    leader_killed_in_a_three_node_cluster(true).await
}

/// Three KRaft nodes on loopback, every topic replicated three times with
/// `min.insync.replicas` 2, producers with `acks=all`. The node leading `orders` partition
/// 0 is SIGKILLed while orders are posted and consumed, and is not brought back. No
/// acknowledged order is lost, none is decided twice, and no service process restarts.
async fn leader_killed_in_a_three_node_cluster(transactions: bool) -> anyhow::Result<()> {
    let dir = test_dir(&format!("cluster-{transactions}"));
    let broker = Broker::start_cluster(&dir.join("kafka"), 3)?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    let (stock, stock_env) = small_stock(300);
    // order-service's default PUBLISH_TIMEOUT_MS, as in broker_killed_under_load (why there).
    // Its producer's idempotence (eos) debug lines, kept by a failed run: they named why an
    // accepted order was on orders twice in two CI runs (2026-12-07), an epoch bump after a
    // skipped sequence (librdkafka issue 4953), which order-service now avoids with one
    // request in flight (publisher::MAX_IN_FLIGHT).
    let debug = [
        ("KAFKA_DEBUG", "eos".to_string()),
        ("RUST_LOG", "info,librdkafka=debug".to_string()),
    ];
    let [mut order, mut inventory, mut analytics] = start_services(
        &broker.bootstrap,
        &logs,
        stock_env,
        transactions,
        [&debug, &[], &[]],
    )
    .await?;
    for topic in [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS] {
        let (_, replicas, isr) = partition_state(&kafka, topic, 0)?;
        assert_eq!((replicas, isr), (3, 3), "{topic}/0 replicated on all nodes");
    }

    let load = Load::start(order.url.clone(), 4);
    load.accept(1000, "1000 orders accepted").await?;
    let tally = load.tally.clone();

    let (leader, _, _) = partition_state(&kafka, TOPIC_ORDERS, 0)?;
    let node = usize::try_from(leader)?;
    broker.kill_node(node)?;
    let killed_at = Instant::now();
    let refused_before = tally.unavailable.load(Ordering::SeqCst);
    let new_leader = wait::until(
        "another node to lead orders/0",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            partition_state(&kafka, TOPIC_ORDERS, 0)
                .ok()
                .filter(|(l, _, _)| *l >= 0 && *l != leader)
        },
    )
    .await?;
    let leaderless = killed_at.elapsed();
    load.accept(1000, "1000 more orders accepted after the kill")
        .await?;
    load.stop().await?;
    let on_orders = verify_after_fault(
        &kafka,
        &tally,
        [&mut order, &mut inventory, &mut analytics],
        &stock,
    )
    .await?;
    println!(
        "three nodes (transactions {transactions}): node {node}, leader of orders/0, killed; \
         orders/0 had no leader for {:.1} s (then node {}); {} requests answered 503 after \
         the kill, {} other; {} accepted, {} on orders, each decided once; no service restarted",
        leaderless.as_secs_f64(),
        new_leader.0,
        tally.unavailable.load(Ordering::SeqCst) - refused_before,
        tally.other.load(Ordering::SeqCst),
        accepted(&tally),
        on_orders
    );
    stop_all([order, inventory, analytics], broker, &dir).await
}
