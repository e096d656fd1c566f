//! The lag in seconds against a real broker, checked against the records' own timestamps:
//! records are produced with explicit timestamps (minutes in the past), group offsets are
//! committed by hand, and `orderflowctl lag --json` and the lag exporter's `/metrics` must
//! both say now minus the timestamp of the record at the committed offset, within the time
//! between the reads. Transactions: a committed offset on an aborted record counts from the
//! next committed record; one on a commit marker, with nothing after it, is caught up (0).

use std::time::Duration;

use chrono::Utc;
use orderflow_events::{GROUP_INVENTORY, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::procs::{orderflowctl, test_dir};
use orderflow_testkit::{wait, Broker, Service, ServiceKind};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

/// 10 records on each of orders' 3 partitions, record i at `base_ms + i s`.
fn produce(kafka: &KafkaConfig, base_ms: i64) -> anyhow::Result<()> {
    let producer: BaseProducer = kafka.producer("lag-seconds-test").create()?;
    for p in 0..3 {
        for i in 0..10 {
            let payload = format!("{{\"p\":{p},\"i\":{i}}}");
            producer
                .send(
                    BaseRecord::<(), _>::to(TOPIC_ORDERS)
                        .partition(p)
                        .payload(&payload)
                        .timestamp(base_ms + i * 1000),
                )
                .map_err(|(e, _)| e)?;
        }
    }
    producer.flush(T)?;
    Ok(())
}

/// One record in its own transaction on orders[2], committed or aborted: the record takes
/// one offset, the transaction's marker the next.
fn transaction(kafka: &KafkaConfig, ts_ms: i64, commit: bool) -> anyhow::Result<()> {
    let producer: BaseProducer = kafka
        .transactional_producer("lag-seconds-test", "lag-seconds-test-txn")
        .create()?;
    producer.init_transactions(T)?;
    producer.begin_transaction()?;
    producer
        .send(
            BaseRecord::<(), _>::to(TOPIC_ORDERS)
                .partition(2)
                .payload("{}")
                .timestamp(ts_ms),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(T)?;
    if commit {
        producer.commit_transaction(T)?;
    } else {
        producer.abort_transaction(T)?;
    }
    Ok(())
}

/// Commit `group`'s offsets on orders' partitions (a client outside the group, as a reset).
fn commit(kafka: &KafkaConfig, group: &str, offsets: &[(i32, i64)]) -> anyhow::Result<()> {
    let mut cfg = kafka.reader("lag-seconds-test");
    cfg.set("group.id", group);
    let consumer: BaseConsumer = cfg.create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(TOPIC_ORDERS, *p, Offset::Offset(*o))?;
    }
    consumer.assign(&tpl)?;
    // A fresh broker's group coordinator answers "load in progress" (or "not coordinator")
    // for a while: try again until it takes the commit, within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => break,
            Err(e)
                if std::time::Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::CoordinatorLoadInProgress
                                | RDKafkaErrorCode::NotCoordinator
                                | RDKafkaErrorCode::CoordinatorNotAvailable
                        )
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => return Err(e.into()),
        }
    }
    consumer.unassign()?;
    drop(tpl);
    Ok(())
}

/// `orderflowctl lag --json` of `group` on orders, with the time just before and after it.
fn ctl_lag(bootstrap: &str, group: &str) -> anyhow::Result<(Value, i64, i64)> {
    let before = Utc::now().timestamp_millis();
    let (code, out, err) = orderflowctl(
        bootstrap,
        &["lag", "--group", group, "--topic", TOPIC_ORDERS, "--json"],
    )?;
    let after = Utc::now().timestamp_millis();
    anyhow::ensure!(code == 0, "orderflowctl lag: exit {code}: {err}");
    Ok((serde_json::from_str(&out)?, before, after))
}

fn partition(doc: &Value, p: i64) -> &Value {
    doc["partitions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["partition"] == p))
        .unwrap_or(&Value::Null)
}

/// `secs` is now minus `ts_ms` for a "now" between `before_ms` and `after_ms` (to the ms).
fn assert_age(what: &str, secs: f64, ts_ms: i64, before_ms: i64, after_ms: i64) {
    let lo = (before_ms - ts_ms) as f64 / 1000.0 - 0.001;
    let hi = (after_ms - ts_ms) as f64 / 1000.0 + 0.001;
    assert!(
        (lo..=hi).contains(&secs),
        "{what}: {secs} s, expected now - record timestamp in [{lo}, {hi}]"
    );
}

/// The value of the exact series `series` (name with labels) in a Prometheus text body.
fn series(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_seconds_are_now_minus_the_committed_records_timestamp() -> anyhow::Result<()> {
    let dir = test_dir("analytics-lag-seconds");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    // records written 10 minutes ago, one second apart
    let base = (Utc::now().timestamp_millis() / 1000) * 1000 - 600_000;
    let k = kafka.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        produce(&k, base)?;
        // orders[2]: 10 committed txn (record 10, marker 11), aborted txn (12, 13),
        // committed txn (14, marker 15); log end 16
        transaction(&k, base + 100_000, true)?;
        transaction(&k, base + 200_000, false)?;
        transaction(&k, base + 300_000, true)?;
        // inventory: 2 on orders[0] (record at base + 2 s), 7 on orders[1] (base + 7 s),
        // orders[2] on the aborted record 12: the next one it reads is 14 (base + 300 s)
        commit(&k, GROUP_INVENTORY, &[(0, 2), (1, 7), (2, 12)])?;
        // another group caught up on 0 and 1, and on orders[2]'s last commit marker
        commit(&k, "lag-seconds-probe", &[(0, 10), (1, 10), (2, 15)])
    })
    .await??;
    let expected = [(0, base + 2_000), (1, base + 7_000), (2, base + 300_000)];

    // ---- orderflowctl lag --json
    let (doc, before, after) = ctl_lag(&broker.bootstrap, GROUP_INVENTORY)?;
    for (p, ts) in expected {
        let part = partition(&doc, p);
        assert_eq!(part["next_record_ms"], ts, "orders[{p}]: {doc}");
        let secs = part["lag_seconds"].as_f64().unwrap_or(-1.0);
        assert_age(
            &format!("orderflowctl orders[{p}]"),
            secs,
            ts,
            before,
            after,
        );
    }
    assert_eq!(
        partition(&doc, 2)["lag"],
        4,
        "16 - 12, markers included: {doc}"
    );
    let max = doc["max_lag_seconds"].as_f64().unwrap_or(-1.0);
    assert_age("orderflowctl max", max, base + 2_000, before, after);

    // caught up: 0 s; only a commit marker left (lag 1 in offsets): 0 s as well
    let (doc, _, _) = ctl_lag(&broker.bootstrap, "lag-seconds-probe")?;
    for p in 0..3 {
        assert_eq!(partition(&doc, p)["lag_seconds"], 0.0, "orders[{p}]: {doc}");
    }
    assert_eq!(partition(&doc, 2)["lag"], 1, "{doc}");
    assert_eq!(doc["max_lag_seconds"], 0.0);

    // the table says the same
    let (code, table, _) = orderflowctl(
        &broker.bootstrap,
        &["lag", "--group", GROUP_INVENTORY, "--topic", TOPIC_ORDERS],
    )?;
    assert_eq!(code, 0);
    assert!(
        table.starts_with("GROUP      TOPIC   PARTITION  COMMITTED  LOG-END  LAG  LAG-SECONDS\n"),
        "{table}"
    );

    // ---- the lag exporter's /metrics
    let svc = Service::start(
        ServiceKind::Analytics,
        &broker.bootstrap,
        &[("LAG_INTERVAL_MS", "200".to_string())],
        &dir.join("logs"),
    )
    .await?;
    let label = |p: i32| {
        format!(
            "orderflow_consumergroup_lag_seconds{{group=\"inventory\",topic=\"orders\",partition=\"{p}\"}}"
        )
    };
    let (body, fetched) = wait::until(
        "the exporter's lag in seconds of group inventory",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let (status, body) = svc.get("/metrics").await.ok()?;
            let fetched = Utc::now().timestamp_millis();
            (status == 200 && (0..3).all(|p| series(&body, &label(p)).is_some()))
                .then_some((body, fetched))
        },
    )
    .await?;
    for (p, ts) in expected {
        let secs = series(&body, &label(p as i32)).unwrap_or(-1.0);
        // sampled at most one interval (200 ms) plus a sample's time before the fetch
        assert_age(
            &format!("exporter orders[{p}]"),
            secs,
            ts,
            fetched - 3_000,
            fetched,
        );
    }
    let max = series(
        &body,
        "orderflow_consumergroup_max_lag_seconds{group=\"inventory\"}",
    );
    assert_eq!(max, series(&body, &label(0)), "{body}");
    assert!(
        svc.stop(Duration::from_secs(30)).await?,
        "SIGTERM exits cleanly"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
