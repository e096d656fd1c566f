//! What the ledger tests share: orders to publish, the stock setting, and the ledger, the
//! decisions and `GET /stock` read back and compared.

#![allow(dead_code)] // each test binary uses its part

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use orderflow_events::{
    decode_ledger, encode, record_key, Event, ItemStock, LedgerCheckpoint, LedgerRecord,
    OrderPlaced, DEFAULT_ITEMS, TOPIC_INVENTORY_LEDGER, TOPIC_ORDERS,
};
use orderflow_runtime::{kafka, KafkaConfig};
use orderflow_testkit::topics::{self, Record};
use orderflow_testkit::{wait, Service};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// `INITIAL_STOCK` with every menu item at `per_item`.
pub fn stock_env(per_item: u64) -> String {
    DEFAULT_ITEMS
        .iter()
        .map(|i| format!("{i}={per_item}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `n` new orders over the menu, 1-3 units each.
pub fn new_orders(n: usize) -> Vec<OrderPlaced> {
    (0..n)
        .map(|i| {
            let item = DEFAULT_ITEMS[i % DEFAULT_ITEMS.len()];
            let qty = 1 + (i * 7 % 3) as u32;
            OrderPlaced::new(item, qty, format!("user-{}", i % 50), Utc::now())
        })
        .collect()
}

pub async fn publish(producer: &FutureProducer, orders: &[OrderPlaced]) -> anyhow::Result<()> {
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

/// The orders as `topics::Record`s, for the oracle (which needs only the events).
pub fn as_records(orders: &[OrderPlaced]) -> Vec<Record> {
    orders
        .iter()
        .map(|o| Record {
            event: Some(Event::OrderPlaced(o.clone())),
            ..Default::default()
        })
        .collect()
}

/// Reserved units per item and decisions per partition, computed from decisions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub reserved: BTreeMap<String, u64>,
    pub decided: BTreeMap<i32, u64>,
}

pub fn expected(decisions: &[Record]) -> Expected {
    let mut e = Expected::default();
    for r in decisions {
        *e.decided.entry(r.partition).or_default() += 1;
        if let Some(Event::InventoryReserved(d)) = &r.event {
            *e.reserved.entry(d.item.clone()).or_default() += u64::from(d.qty);
        }
    }
    e
}

/// `inventory-ledger` read back: the latest record per key and partition.
#[derive(Debug, Default)]
pub struct LedgerView {
    pub items: BTreeMap<String, ItemStock>,
    pub checkpoints: BTreeMap<i32, LedgerCheckpoint>,
}

pub fn read_ledger(kafka: &KafkaConfig) -> anyhow::Result<LedgerView> {
    let mut v = LedgerView::default();
    for r in topics::read_all(kafka, TOPIC_INVENTORY_LEDGER)? {
        match decode_ledger(r.key.as_deref(), &r.raw) {
            Ok(LedgerRecord::ItemStock(s)) => {
                v.items.insert(s.item.clone(), s);
            }
            Ok(LedgerRecord::LedgerCheckpoint(c)) => {
                v.checkpoints.insert(r.partition, c);
            }
            Err(e) => anyhow::bail!("inventory-ledger/{}@{}: {e}", r.partition, r.offset),
        }
    }
    Ok(v)
}

/// The ledger agrees with the decisions: each item's reserved units, each partition's
/// count of decisions.
pub fn check_ledger(ledger: &LedgerView, want: &Expected) -> anyhow::Result<()> {
    for (item, units) in &want.reserved {
        let got = ledger.items.get(item).map(|s| s.reserved);
        anyhow::ensure!(
            got == Some(*units),
            "inventory-ledger {item}: reserved {got:?}, the decisions reserve {units}"
        );
    }
    for (p, n) in &want.decided {
        let got = ledger.checkpoints.get(p).map(|c| c.decided);
        anyhow::ensure!(
            got == Some(*n),
            "inventory-ledger checkpoint of partition {p}: {got:?} decided, inventory-events has {n}"
        );
    }
    Ok(())
}

/// `GET /stock` of the one inventory (owning every partition) equals `want`.
pub async fn check_stock(svc: &Service, want: &Expected) -> anyhow::Result<()> {
    let v = svc.get_json("/stock").await?;
    for item in DEFAULT_ITEMS {
        let got = v["items"][item]["reserved"].as_u64();
        let units = want.reserved.get(item).copied().unwrap_or(0);
        anyhow::ensure!(
            got == Some(units),
            "GET /stock {item}: reserved {got:?}, recomputed {units}: {v}"
        );
    }
    for (p, n) in &want.decided {
        let got = v["decided"][p.to_string()].as_u64();
        anyhow::ensure!(
            got == Some(*n),
            "GET /stock decided on partition {p}: {got:?}, recomputed {n}: {v}"
        );
    }
    Ok(())
}

/// Wait until the JSON log `log` has a line whose message is `message`; returns it.
pub async fn log_line(log: &Path, message: &str) -> anyhow::Result<serde_json::Value> {
    wait::until(
        &format!("the log line {message:?}"),
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async {
            let text = std::fs::read_to_string(log).ok()?;
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["message"] == message)
        },
    )
    .await
}

/// Every log line of `log` whose message is `message`.
pub fn log_lines(log: &Path, message: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}
