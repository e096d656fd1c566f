//! Helpers of analytics' snapshot tests: orders and their decisions written straight to
//! the topics (no inventory needed: analytics only counts recorded events), the data part
//! of `/api/metrics`, DeleteRecords, and `analytics-snapshots` read back.

#![allow(dead_code)] // each test binary uses its part

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::future::join_all;
use orderflow_events::{
    decode_snapshot, encode, record_key, Event, OrderPlaced, SnapshotRecord, DEFAULT_ITEMS,
    TOPIC_ANALYTICS_SNAPSHOTS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_runtime::{kafka, KafkaConfig};
use orderflow_testkit::{topics, wait};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// `n` orders spread over `minutes` event-time minutes ending `ago` minutes before now,
/// each with its decision (every fourth one failed), written to `orders` and
/// `inventory-events`.
pub async fn produce(
    producer: &FutureProducer,
    n: usize,
    minutes: i64,
    ago: i64,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut acks = Vec::new();
    let mut payloads = Vec::new();
    for i in 0..n {
        let item = DEFAULT_ITEMS[i % DEFAULT_ITEMS.len()];
        let ts = now - TimeDelta::minutes(ago + i as i64 % minutes.max(1));
        let o = OrderPlaced::new(item, 1, format!("user-{}", i % 50), ts);
        let reason = (i % 4 == 3).then(|| "insufficient stock".to_string());
        let d = o.decide(reason, now).into_event();
        payloads.push((item, encode(&Event::OrderPlaced(o)), encode(&d)));
    }
    for (item, order, decision) in &payloads {
        for (topic, payload) in [(TOPIC_ORDERS, order), (TOPIC_INVENTORY_EVENTS, decision)] {
            let record = FutureRecord::to(topic)
                .key(record_key(item))
                .payload(payload);
            acks.push(kafka::enqueue(producer, record)?);
        }
    }
    for r in join_all(acks).await {
        if let Some(e) = kafka::delivery_error(r) {
            anyhow::bail!("producing failed: {e}");
        }
    }
    Ok(())
}

/// The data fields of `/api/metrics` (what the oracle computes).
pub fn data(v: &Value) -> Value {
    orderflow_testkit::probes::data_view(v)
}

/// What analytics should count for everything `orders` and `inventory-events` hold now.
pub fn oracle(kafka: &KafkaConfig) -> anyhow::Result<Value> {
    Ok(orderflow_testkit::oracle::expected_metrics(
        &topics::read_all(kafka, TOPIC_ORDERS)?,
        &topics::read_all(kafka, TOPIC_INVENTORY_EVENTS)?,
    ))
}

/// DeleteRecords: the first half of every partition of `topic`. Returns the new low
/// watermarks.
pub async fn delete_first_half(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<i64>> {
    let reader: BaseConsumer = kafka.reader("snapshot-test").create()?;
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..orderflow_events::PARTITIONS {
        let (_, high) = reader.fetch_watermarks(topic, p, Duration::from_secs(10))?;
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

/// `analytics-snapshots` read back: the latest value per key (a tombstone removes it), and
/// the largest record seen.
#[derive(Debug, Default)]
pub struct Snapshots {
    pub latest: BTreeMap<String, SnapshotRecord>,
    pub records: usize,
    pub largest: usize,
}

pub fn read_snapshots(kafka: &KafkaConfig) -> anyhow::Result<Snapshots> {
    read_snapshots_of(kafka, TOPIC_ANALYTICS_SNAPSHOTS)
}

/// [`read_snapshots`] of another group's snapshot topic (`<group>-snapshots`).
pub fn read_snapshots_of(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Snapshots> {
    let mut s = Snapshots::default();
    for r in topics::read_all(kafka, topic)? {
        anyhow::ensure!(
            r.partition == 0,
            "a snapshot record on partition {}",
            r.partition
        );
        let key = String::from_utf8(r.key.clone().unwrap_or_default())?;
        s.records += 1;
        s.largest = s.largest.max(r.raw.len());
        if r.raw.is_empty() {
            s.latest.remove(&key);
            continue;
        }
        let rec = decode_snapshot(r.key.as_deref(), &r.raw)
            .map_err(|e| anyhow::anyhow!("{topic}@{}: {e}", r.offset))?;
        s.latest.insert(key, rec);
    }
    Ok(s)
}

/// Every JSON log line of `log` with this message.
pub fn log_lines(log: &Path, message: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

/// Wait for the first log line with this message.
pub async fn log_line(log: &Path, message: &str) -> anyhow::Result<Value> {
    wait::until(
        &format!("the log line {message:?}"),
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async { log_lines(log, message).into_iter().next() },
    )
    .await
}

/// The last "state rebuilt" line: how the state started.
pub fn last_start(log: &Path) -> Value {
    log_lines(log, "state rebuilt").pop().unwrap_or(Value::Null)
}
