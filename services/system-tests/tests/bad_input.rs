//! Bad records on `orders` and `inventory-events`, written by a plain producer between valid
//! ones: each goes to `orderflow.dlq` exactly once (bytes unchanged, reason and origin in
//! headers, counted by the service that reported it), the other readers step over it, every
//! valid order is decided once and counted, and both groups commit past the bad records.
//! Then inventory-service is restarted: its ledger rebuild reads the bad `inventory-events`
//! records, skips and counts them (analytics reported them already), and it keeps deciding.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use orderflow_events::{
    encode, record_key, Event, OrderPlaced, DEFAULT_ITEMS, DEFAULT_STOCK_PER_ITEM, GROUP_ANALYTICS,
    GROUP_INVENTORY, HEADER_DLQ_OFFSET, HEADER_DLQ_PARTITION, HEADER_DLQ_REASON, HEADER_DLQ_TOPIC,
    TOPIC_DLQ, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::oracle::{expected_metrics, inventory_violations};
use orderflow_testkit::probes::{data_view, lag_of};
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::topics::{self, Record};
use orderflow_testkit::{wait, Broker, Service, ServiceKind};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

const DLQ_METRIC: &str = "orderflow_dlq_records_total";
const SKIPPED_METRIC: &str = "orderflow_bad_records_skipped_total";

/// A bad record to write, what its DLQ entry must say, and where it landed.
#[derive(Debug, Clone)]
struct Bad {
    topic: &'static str,
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    /// `DecodeError::kind`: the `reason` label of the DLQ counter.
    kind: &'static str,
    /// Text the reason header must contain.
    mentions: &'static str,
    partition: i32,
    offset: i64,
}

fn order(i: usize) -> OrderPlaced {
    let item = DEFAULT_ITEMS[i % DEFAULT_ITEMS.len()];
    OrderPlaced::new(item, 1, format!("user-{i}"), Utc::now())
}

fn json_of(e: &Event) -> Value {
    serde_json::from_slice(&encode(e)).unwrap_or(Value::Null)
}

fn edited(mut v: Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    if let Some(m) = v.as_object_mut() {
        edit(m);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

fn bad(topic: &'static str, payload: Vec<u8>, kind: &'static str, mentions: &'static str) -> Bad {
    Bad {
        topic,
        payload,
        key: None,
        kind,
        mentions,
        partition: -1,
        offset: -1,
    }
}

/// The bad records of `topic`: not JSON, not an object, a missing field, a wrong type, an
/// unknown schema_version, and a valid event of the other topic's type.
fn bad_records(topic: &'static str) -> Vec<Bad> {
    let o = order(1000);
    let (base, missing, foreign, foreign_mentions) = if topic == TOPIC_ORDERS {
        let d = o.decide(None, Utc::now()).into_event();
        let base = json_of(&Event::OrderPlaced(o));
        (
            base,
            "user_id",
            encode(&d),
            "InventoryReserved does not belong on topic orders",
        )
    } else {
        let base = json_of(
            &o.decide(Some("out of stock".into()), Utc::now())
                .into_event(),
        );
        (
            base,
            "decided_at",
            encode(&Event::OrderPlaced(order(1001))),
            "OrderPlaced does not belong on topic inventory-events",
        )
    };
    vec![
        bad(
            topic,
            b"{\"type\": \"OrderPlaced\", oops".to_vec(),
            "not_json",
            "not JSON",
        ),
        bad(
            topic,
            b"[1, 2, 3]".to_vec(),
            "not_an_object",
            "not a JSON object",
        ),
        bad(
            topic,
            edited(base.clone(), |m| {
                m.remove(missing);
            }),
            "missing_field",
            missing,
        ),
        bad(
            topic,
            edited(base.clone(), |m| {
                m.insert("qty".into(), json!("2"));
            }),
            "wrong_type",
            "`qty`",
        ),
        bad(
            topic,
            edited(base, |m| {
                m.insert("schema_version".into(), json!(99));
            }),
            "unknown_schema_version",
            "schema_version",
        ),
        bad(topic, foreign, "invalid", foreign_mentions),
    ]
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    payload: &[u8],
) -> anyhow::Result<(i32, i64)> {
    let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(payload);
    if let Some(p) = partition {
        r = r.partition(p);
    }
    if let Some(k) = key {
        r = r.key(k);
    }
    let d = producer
        .send(r, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("writing to {topic}"))?;
    Ok((d.partition, d.offset))
}

async fn send_order(producer: &FutureProducer, o: &OrderPlaced) -> anyhow::Result<()> {
    let payload = encode(&Event::OrderPlaced(o.clone()));
    send(
        producer,
        TOPIC_ORDERS,
        None,
        Some(record_key(&o.item)),
        &payload,
    )
    .await?;
    Ok(())
}

/// Every partition of `topics` has `group`'s committed offset at its high watermark.
async fn committed_to_end(
    kafka: &KafkaConfig,
    group: &'static str,
    topics: &'static [&'static str],
) -> Option<()> {
    let lags = lag_of(kafka, group, topics).await.ok()?;
    let all = !lags.is_empty()
        && lags
            .iter()
            .all(|l| l.committed.unwrap_or(l.low_watermark) == l.high_watermark);
    all.then_some(())
}

/// Committed records on `topic`, as a `read_committed` reader sees them (inventory writes
/// its DLQ entries in transactions, so the log end also counts transaction markers).
fn records_on(kafka: &KafkaConfig, topic: &str) -> i64 {
    topics::read_all(kafka, topic).map_or(-1, |r| r.len() as i64)
}

/// Wait until `valid` orders are decided and counted, `dlq` entries written, and both
/// groups committed everything.
async fn settled(
    kafka: &KafkaConfig,
    analytics: &Service,
    valid: u64,
    dlq: i64,
) -> anyhow::Result<Value> {
    wait::until(
        &format!("{valid} orders decided and counted, {dlq} DLQ entries, offsets committed"),
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            let m = analytics.get_json("/api/metrics").await.ok()?;
            let decided = m["reserved_total"].as_u64()? + m["failed_total"].as_u64()?;
            if m["orders_total"].as_u64()? != valid || decided != valid {
                return None;
            }
            if records_on(kafka, TOPIC_DLQ) != dlq {
                return None;
            }
            committed_to_end(kafka, GROUP_INVENTORY, &[TOPIC_ORDERS]).await?;
            committed_to_end(
                kafka,
                GROUP_ANALYTICS,
                &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
            )
            .await?;
            Some(m)
        },
    )
    .await
}

/// The DLQ entry of each bad record: exactly one, unchanged, with reason and origin.
fn check_dlq(entries: &[Record], bads: &[Bad]) -> anyhow::Result<()> {
    let mut by_origin: HashMap<(String, i32, i64), Vec<&Record>> = HashMap::new();
    for e in entries {
        let origin = (
            e.header(HEADER_DLQ_TOPIC).unwrap_or_default().to_string(),
            e.header(HEADER_DLQ_PARTITION)
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1),
            e.header(HEADER_DLQ_OFFSET)
                .and_then(|o| o.parse().ok())
                .unwrap_or(-1),
        );
        by_origin.entry(origin).or_default().push(e);
    }
    for b in bads {
        let origin = (b.topic.to_string(), b.partition, b.offset);
        let found = by_origin.get(&origin).map(Vec::as_slice).unwrap_or(&[]);
        let [entry] = found else {
            bail!(
                "{} DLQ entries for {}/{}@{} ({}), expected exactly 1; DLQ: {:?}",
                found.len(),
                b.topic,
                b.partition,
                b.offset,
                b.kind,
                entries.iter().map(|e| &e.headers).collect::<Vec<_>>()
            );
        };
        assert_eq!(
            entry.raw, b.payload,
            "payload of {origin:?} changed in the DLQ"
        );
        assert_eq!(entry.key, b.key, "key of {origin:?} changed in the DLQ");
        let reason = entry.header(HEADER_DLQ_REASON).unwrap_or_default();
        assert!(
            reason.contains(b.mentions),
            "reason of the {} record {origin:?} is {reason:?}; expected it to mention {:?}",
            b.kind,
            b.mentions
        );
    }
    assert_eq!(
        entries.len(),
        bads.len(),
        "one DLQ entry per bad record, no more"
    );
    Ok(())
}

/// `service` counted the bad records of `bads` by reason in `metric` (and no others).
async fn check_counted(service: &Service, metric: &str, bads: &[&Bad]) -> anyhow::Result<()> {
    let mut by_kind: BTreeMap<&str, f64> = BTreeMap::new();
    for b in bads {
        *by_kind.entry(b.kind).or_default() += 1.0;
    }
    for (kind, n) in &by_kind {
        let got = service.metric(metric, &[("reason", kind)]).await?;
        assert_eq!(
            got,
            *n,
            "{}: {metric}{{reason={kind:?}}}",
            service.kind.binary()
        );
    }
    let total = service.metric(metric, &[]).await?;
    assert_eq!(
        total,
        bads.len() as f64,
        "{}: {metric} total",
        service.kind.binary()
    );
    Ok(())
}

fn decisions_only(records: Vec<Record>) -> Vec<Record> {
    records.into_iter().filter(|r| r.event.is_some()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_records_go_to_the_dlq_once_and_the_consumers_keep_going() -> anyhow::Result<()> {
    let dir = test_dir("bad-input");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let logs = dir.join("logs");
    let mut inventory =
        Service::start(ServiceKind::Inventory, &broker.bootstrap, &[], &logs).await?;
    let mut analytics =
        Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let producer: FutureProducer = kafka.producer("bad-input-test").create()?;

    // Valid orders and bad records, interleaved; each round ends with bad records, so that
    // the last records of some `orders` partitions are bad ones.
    let mut bad_orders = bad_records(TOPIC_ORDERS);
    let mut bad_events = bad_records(TOPIC_INVENTORY_EVENTS);
    let mut valid = 0u64;
    for i in 0..bad_orders.len() {
        for _ in 0..2 {
            send_order(&producer, &order(valid as usize)).await?;
            valid += 1;
        }
        let p = (i % 3) as i32;
        for b in [&mut bad_orders[i], &mut bad_events[i]] {
            if i % 2 == 0 {
                b.key = Some(format!("bad-{i}").into_bytes());
            }
            let (partition, offset) =
                send(&producer, b.topic, Some(p), b.key.as_deref(), &b.payload).await?;
            (b.partition, b.offset) = (partition, offset);
        }
    }
    let bads: Vec<Bad> = bad_orders.iter().chain(&bad_events).cloned().collect();

    let metrics = settled(&kafka, &analytics, valid, bads.len() as i64).await?;
    inventory.check_running()?;
    analytics.check_running()?;

    // Each bad record in the DLQ once, reported by the group that owns its topic.
    check_dlq(&topics::read_all(&kafka, TOPIC_DLQ)?, &bads)?;
    check_counted(
        &inventory,
        DLQ_METRIC,
        &bad_orders.iter().collect::<Vec<_>>(),
    )
    .await?;
    check_counted(
        &analytics,
        DLQ_METRIC,
        &bad_events.iter().collect::<Vec<_>>(),
    )
    .await?;
    assert_eq!(
        analytics
            .metric(SKIPPED_METRIC, &[("topic", TOPIC_ORDERS)])
            .await?,
        bad_orders.len() as f64,
        "analytics steps over the bad orders (inventory reports them) and counts them"
    );

    // Every valid order decided once, analytics equal to a count from the topics.
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let decisions = decisions_only(topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?);
    let stock: HashMap<String, u64> = DEFAULT_ITEMS
        .iter()
        .map(|i| (i.to_string(), DEFAULT_STOCK_PER_ITEM))
        .collect();
    let violations = inventory_violations(&orders, &decisions, &stock);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(
        decisions.len() as u64,
        valid,
        "one decision per valid order"
    );
    assert_eq!(data_view(&metrics), expected_metrics(&orders, &decisions));

    // A restart rebuilds the ledger from inventory-events, bad records included: skipped and
    // counted, not sent to the DLQ a second time, and the service keeps deciding.
    assert!(
        inventory.stop(Duration::from_secs(20)).await?,
        "inventory-service exits 0 on SIGTERM"
    );
    let mut inventory =
        Service::start(ServiceKind::Inventory, &broker.bootstrap, &[], &logs).await?;
    let skipped = inventory
        .metric(SKIPPED_METRIC, &[("topic", TOPIC_INVENTORY_EVENTS)])
        .await?;
    assert!(
        skipped >= bad_events.len() as f64,
        "the ledger rebuild skipped and counted the {} bad inventory-events records (counted {skipped})",
        bad_events.len()
    );
    assert_eq!(inventory.metric(DLQ_METRIC, &[]).await?, 0.0);
    for i in 0..4 {
        send_order(&producer, &order(100 + i)).await?;
        valid += 1;
    }
    let metrics = settled(&kafka, &analytics, valid, bads.len() as i64).await?;
    inventory.check_running()?;
    analytics.check_running()?;
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let decisions = decisions_only(topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?);
    let violations = inventory_violations(&orders, &decisions, &stock);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(decisions.len() as u64, valid);
    assert_eq!(data_view(&metrics), expected_metrics(&orders, &decisions));
    check_dlq(&topics::read_all(&kafka, TOPIC_DLQ)?, &bads)?;

    for s in [inventory, analytics] {
        let name = s.kind.binary();
        assert!(
            s.stop(Duration::from_secs(20)).await?,
            "{name} exits 0 on SIGTERM"
        );
    }
    drop(producer);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
