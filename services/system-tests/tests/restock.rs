//! Restocking and the catalogue, end to end on a local Apache Kafka (issue 18).
//!
//! - `restock_under_load_survives_a_restart_and_a_replay`: orders for one item keep coming
//!   through `POST /orders`; the item sells out; `POST /stock/{item}/restock` adds 500 units
//!   while the orders go on. Read back from `inventory-events` (not from any counter): the
//!   restock is recorded once, and exactly 500 more units are reserved after it, in the
//!   item's partition order. Then inventory is restarted (`GET /stock` and the ledger read
//!   back agree: 500 restocked) and analytics replays from the earliest offsets (its
//!   numbers, restocks included, equal those before).
//! - `bad_restocks_and_unknown_items_are_refused_and_publish_nothing`: the 4xx JSON errors
//!   of the restock endpoint, the 422 of an order for an unknown item naming the known
//!   ones, and `orders` read back: nothing of them was published.

use std::collections::BTreeMap;
use std::time::Duration;

use orderflow_events::{
    decode_ledger, item_partition, Event, LedgerRecord, RestockStatus, MAX_STOCK, PARTITIONS,
    TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER, TOPIC_ORDERS,
};
use orderflow_testkit::probes::{analytics_caught_up, data_view, inventory_drained};
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, wait, Broker, Service, ServiceKind};
use orderflowctl::ResetTo;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const ITEM: &str = "pizza";
const INITIAL: u64 = 300;
const RESTOCK: u64 = 500;
const CLIENTS: usize = 3;

/// `POST /orders` for `ITEM` (1 or 2 units) from `CLIENTS` clients until `stop`; returns
/// how many were accepted (202).
async fn keep_ordering(url: String, stop: CancellationToken) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let body = json!({"item": ITEM, "qty": 1 + (i % 2), "user_id": format!("c{c}")});
                let r = http
                    .post(format!("{url}/orders"))
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 202, "POST /orders: {}", r.status());
                accepted += 1;
            }
            Ok::<u64, anyhow::Error>(accepted)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// Reserved units of `ITEM` on `inventory-events`, read back.
fn reserved_on_topic(kafka: &orderflow_runtime::KafkaConfig) -> anyhow::Result<u64> {
    Ok(topics::read_all(kafka, TOPIC_INVENTORY_EVENTS)?
        .iter()
        .filter_map(|r| match &r.event {
            Some(Event::InventoryReserved(d)) if d.item == ITEM => Some(u64::from(d.qty)),
            _ => None,
        })
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restock_under_load_survives_a_restart_and_a_replay() -> anyhow::Result<()> {
    let dir = test_dir("restock-load");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    let stock = [("INITIAL_STOCK", format!("{ITEM}={INITIAL}"))];
    let inventory =
        Service::start(ServiceKind::Inventory, &broker.bootstrap, &stock, &logs).await?;
    let order = Service::start(ServiceKind::Order, &broker.bootstrap, &[], &logs).await?;
    let analytics = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;

    // Orders keep coming; the item sells out.
    let stop = CancellationToken::new();
    let load = tokio::spawn(keep_ordering(order.url.clone(), stop.clone()));
    wait::until(
        "the item to sell out (decisions read back)",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (reserved_on_topic(&kafka).ok()? == INITIAL).then_some(()) },
    )
    .await?;
    // Restock while the orders go on.
    let (status, body) = order
        .post_json(
            &format!("/stock/{ITEM}/restock"),
            &json!({"qty": RESTOCK}),
            Duration::from_secs(30),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let restock_id = body["restock_id"].as_str().unwrap_or_default().to_string();
    wait::until(
        "the restock to be sold out too (decisions read back)",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (reserved_on_topic(&kafka).ok()? == INITIAL + RESTOCK).then_some(()) },
    )
    .await?;
    // Orders go on after that: they must all fail (read back, in the item's partition).
    let p = item_partition(ITEM, PARTITIONS);
    wait::until(
        "50 failed decisions after the restock",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let d = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS).ok()?;
            let at = d.iter().find_map(|r| {
                matches!(r.event, Some(Event::InventoryRestocked(_))).then_some(r.offset)
            })?;
            let failed = d
                .iter()
                .filter(|r| r.partition == p && r.offset > at)
                .filter(|r| matches!(r.event, Some(Event::InventoryFailed(_))))
                .count();
            (failed >= 50).then_some(())
        },
    )
    .await?;
    stop.cancel();
    let accepted = load.await??;
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    inventory_drained(&kafka, Some(orders.len() as i64)).await?;

    // The decisions, read back in the item's partition order.
    let decisions: Vec<_> = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?
        .into_iter()
        .filter(|r| r.partition == p)
        .collect();
    let restocks: Vec<_> = decisions
        .iter()
        .filter_map(|r| match &r.event {
            Some(Event::InventoryRestocked(d)) => Some((r.offset, d.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(restocks.len(), 1, "one restock recorded: {restocks:?}");
    let (at, restocked) = &restocks[0];
    assert_eq!(restocked.restock_id.to_string(), restock_id);
    assert_eq!(
        (restocked.status, u64::from(restocked.qty), restocked.stock),
        (RestockStatus::Restocked, RESTOCK, INITIAL + RESTOCK)
    );
    let (mut before, mut after, mut failed_before, mut failed_after) = (0u64, 0u64, 0, 0);
    for r in &decisions {
        match &r.event {
            Some(Event::InventoryReserved(d)) if r.offset < *at => before += u64::from(d.qty),
            Some(Event::InventoryReserved(d)) => after += u64::from(d.qty),
            Some(Event::InventoryFailed(_)) if r.offset < *at => failed_before += 1,
            Some(Event::InventoryFailed(_)) => failed_after += 1,
            _ => {}
        }
    }
    assert_eq!(before, INITIAL, "sold out before the restock");
    assert_eq!(after, RESTOCK, "exactly the restocked units after it");
    assert!(
        failed_before > 0 && failed_after > 0,
        "orders failed before ({failed_before}) and after ({failed_after}) the restock"
    );
    let placed = orders
        .iter()
        .filter(|r| matches!(r.event, Some(Event::OrderPlaced(_))))
        .count();
    assert_eq!(placed as u64, accepted, "every accepted order is on orders");
    assert!(
        orders.iter().all(|r| r.partition == p),
        "all on the item's partition {p}"
    );
    eprintln!(
        "restock under load: {accepted} orders, {failed_before} failed before the restock at inventory-events/{p}@{at}, {after} units reserved after it, {failed_after} failed after"
    );

    // Restart: GET /stock and the ledger read back agree.
    assert!(inventory.stop(Duration::from_secs(30)).await?);
    let inventory =
        Service::start(ServiceKind::Inventory, &broker.bootstrap, &stock, &logs).await?;
    let v = inventory.get_json("/stock").await?;
    let want = json!({"initial": INITIAL, "restocked": RESTOCK, "reserved": INITIAL + RESTOCK,
                      "available": 0, "partition": p});
    assert_eq!(v["items"][ITEM], want, "{v}");
    let mut ledger = BTreeMap::new();
    for r in topics::read_all(&kafka, TOPIC_INVENTORY_LEDGER)? {
        if let Ok(LedgerRecord::ItemStock(s)) = decode_ledger(r.key.as_deref(), &r.raw) {
            ledger.insert(s.item.clone(), (r.partition, s));
        }
    }
    let (lp, s) = &ledger[ITEM];
    assert_eq!(
        (*lp, s.initial, s.restocked, s.reserved),
        (p, Some(INITIAL), RESTOCK, INITIAL + RESTOCK),
        "the ledger read back"
    );

    // Replay: analytics' numbers after an offset reset equal those before.
    let before_replay =
        data_view(&analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(60)).await?);
    assert_eq!(before_replay["restocks_total"], 1, "{before_replay}");
    assert_eq!(
        before_replay["restocked_units_total"], RESTOCK,
        "{before_replay}"
    );
    assert_eq!(before_replay["orders_total"], accepted, "{before_replay}");
    assert!(analytics.stop(Duration::from_secs(30)).await?);
    let k = kafka.clone();
    tokio::task::spawn_blocking(move || {
        orderflowctl::reset(
            &k,
            orderflow_events::GROUP_ANALYTICS,
            &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
            ResetTo::Earliest,
            Duration::from_secs(30),
        )
    })
    .await??;
    let analytics = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let after_replay =
        data_view(&analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(60)).await?);
    assert_eq!(
        after_replay, before_replay,
        "a replay recomputes the same numbers"
    );

    for s in [order, inventory, analytics] {
        s.stop(Duration::from_secs(20)).await?;
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_restocks_and_unknown_items_are_refused_and_publish_nothing() -> anyhow::Result<()> {
    let dir = test_dir("restock-bad");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    let inventory = Service::start(ServiceKind::Inventory, &broker.bootstrap, &[], &logs).await?;
    let order = Service::start(ServiceKind::Order, &broker.bootstrap, &[], &logs).await?;
    let http = reqwest::Client::new();
    let post = |path: String, body: String| {
        let http = http.clone();
        let url = format!("{}{path}", order.url);
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let json: Value = r.json().await.unwrap_or(Value::Null);
            Ok::<_, anyhow::Error>((status, json))
        }
    };
    let over = (MAX_STOCK - 2000 + 1).to_string();
    for (path, body, status, needle) in [
        ("/stock/caviar/restock", r#"{"qty":5}"#.to_string(), 422, "unknown item \"caviar\"; known items: burger, curry, pizza, ramen, salad, sushi, taco, wrap"),
        ("/stock/pizza/restock", r#"{"qty":0}"#.to_string(), 400, "`qty` must be at least 1"),
        ("/stock/pizza/restock", r#"{"qty":-7}"#.to_string(), 400, "`qty` must be at least 1"),
        ("/stock/pizza/restock", r#"{"qty":2.5}"#.to_string(), 400, "invalid request body"),
        ("/stock/pizza/restock", format!(r#"{{"qty":{over}}}"#), 422, "stock beyond the maximum"),
        ("/orders", r#"{"item":"caviar","qty":1,"user_id":"u"}"#.to_string(), 422, "unknown item \"caviar\"; known items: burger"),
        ("/orders/bulk", r#"{"count":5,"items":["pizza","caviar"]}"#.to_string(), 422, "unknown item \"caviar\""),
    ] {
        let (got, json) = post(path.to_string(), body.clone()).await?;
        assert_eq!(got, status, "{path} {body}: {json}");
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{path} {body}: {msg}");
    }
    // One good order to mark the end: `orders` holds it and nothing else.
    let (got, json) = post(
        "/orders".into(),
        r#"{"item":"pizza","qty":1,"user_id":"u"}"#.into(),
    )
    .await?;
    assert_eq!(got, 202, "{json}");
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    assert_eq!(
        orders.len(),
        1,
        "only the good order was published: {:?}",
        orders.iter().map(|r| &r.event).collect::<Vec<_>>()
    );
    assert!(matches!(&orders[0].event, Some(Event::OrderPlaced(o)) if o.item == "pizza"));
    let rejected = order.get_json("/stats").await?;
    assert_eq!(rejected["rejected_requests_total"], 7, "{rejected}");

    for s in [order, inventory] {
        s.stop(Duration::from_secs(20)).await?;
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
