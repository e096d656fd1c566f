//! The whole pipeline on a local Apache Kafka: the lab scenario (10k orders, lag under
//! throttling, replay) plus independent checks of what is on the topics.

use std::collections::HashMap;
use std::time::Duration;

use orderflow_events::{
    DEFAULT_ITEMS, DEFAULT_STOCK_PER_ITEM, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_lab::demo::{self, Options};
use orderflow_testkit::oracle::{expected_metrics, inventory_violations};
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_orders_lag_and_identical_replay() -> anyhow::Result<()> {
    let dir = test_dir("pipeline");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let opts = Options {
        orders: 10_000,
        throttle_ms: 1,
        spread_minutes: 10,
        sample_every: Duration::from_millis(100),
        out_dir: dir.clone(),
        verbose: false,
    };
    let report = demo::run_on(&opts, &broker).await?;

    // 10k produced, all acknowledged
    assert_eq!(report.produced, 10_000);
    assert!(report.produce_events_per_sec > 0.0);

    // lag grew under throttling and drained to 0
    assert!(
        report.max_lag > 0,
        "no lag was observed: {:?}",
        report.lag_samples
    );
    assert_eq!(report.lag_samples.last().map(|s| s.total), Some(0));
    assert!(report.lag_samples.iter().all(|s| s.partitions.len() == 3));

    // a reset while analytics ran was refused by our own check
    assert!(
        report.reset_refused_while_running.contains("member"),
        "{}",
        report.reset_refused_while_running
    );
    assert_eq!(
        report.reset.len(),
        6,
        "3 partitions x 2 topics reset: {:?}",
        report.reset
    );
    assert!(report.reset.iter().all(|c| c.to == 0));

    // analytics counted all 10k, and the replay reproduced every data field
    assert_eq!(report.before["orders_total"], 10_000);
    let decided = report.before["reserved_total"].as_u64().unwrap()
        + report.before["failed_total"].as_u64().unwrap();
    assert_eq!(decided, 10_000);
    assert!(report.identical, "{:?}", report.differences);
    assert_eq!(report.before, report.after);
    let per_minute: u64 = report.after["orders_per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["orders"].as_u64().unwrap())
        .sum();
    assert_eq!(per_minute, 10_000);
    assert!(
        report.after["orders_per_minute"].as_array().unwrap().len() >= 10,
        "spread over 10 minutes"
    );

    // Independent of the services' own view: read both topics back.
    let kafka = broker.kafka();
    let orders = topics::read_all(&kafka, TOPIC_ORDERS)?;
    let decisions = topics::read_all(&kafka, TOPIC_INVENTORY_EVENTS)?;
    assert_eq!(orders.len(), 10_000);
    assert_eq!(decisions.len(), 10_000);
    let stock: HashMap<String, u64> = DEFAULT_ITEMS
        .iter()
        .map(|i| (i.to_string(), DEFAULT_STOCK_PER_ITEM))
        .collect();
    let violations = inventory_violations(&orders, &decisions, &stock);
    assert!(
        violations.is_empty(),
        "{:?}",
        &violations[..violations.len().min(5)]
    );
    assert_eq!(
        report.after,
        expected_metrics(&orders, &decisions),
        "analytics equals the count from the topics"
    );

    // the report files a person reads
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    for key in [
        "produced",
        "produce_events_per_sec",
        "lag_samples",
        "max_lag",
        "before",
        "after",
        "identical",
    ] {
        assert!(json.get(key).is_some(), "report.json lacks {key}");
    }
    let svg = std::fs::read_to_string(dir.join("lag.svg"))?;
    assert!(svg.contains("<polyline"));

    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
