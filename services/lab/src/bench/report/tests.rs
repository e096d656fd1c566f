use super::*;
use crate::bench::push;

#[test]
fn median_min_max() {
    let f = Figure::of(vec![3.0, 1.0, 2.0]);
    assert_eq!((f.median, f.min, f.max), (2.0, 1.0, 3.0));
    assert_eq!(Figure::of(vec![4.0, 1.0]).median, 2.5);
    assert!(Figure::of(vec![]).median.is_nan());
}

#[test]
fn ratios_and_targets() {
    let mut s = Samples::new();
    for (id, sub, v) in [
        ("P1", "orderflow", 200_000.0),
        ("P1", "kcat", 100_000.0),
        ("P1", "kafka-producer-perf-test", 400_000.0),
        ("P1", "python", 10_000.0),
        ("P2", "orderflow", 80_000.0),
        ("P2", "kcat", 100_000.0),
        ("P2", "kcat pipe", 100_000.0),
        ("P2", "kafka streams", 30_000.0),
        ("P3", "kafka-consumer-perf-test", 1.5),
        ("P3", "kafka streams", 10.0),
        ("P3", "orderflow", 3.0),
        ("P3", "kcat", 1.0),
        ("P5", "order-service", 30.0),
        ("P5", "inventory-service", 70.0),
        ("P5", "order-service (memory settings)", 30.0),
        ("P5", "inventory-service (memory settings)", 60.0),
        ("P5", "analytics-service (memory settings)", 40.0),
        ("P6-1k-p99", "orderflow", 8.0),
        ("P6-1k-p99", "kafka streams", 16.0),
        ("P6-1k-p99", "orderflow analytics", 9.0),
        ("P6-1k-p99", "orderflow at-least-once", 4.0),
        ("P6-1k-p99", "kafka streams at-least-once", 2.0),
    ] {
        push(&mut s, id, sub, v);
    }
    let b = summarize(&s, 2000);
    let p1 = &b[0];
    assert_eq!(p1.ratios["orderflow/kcat"], 2.0);
    assert_eq!(p1.ratios["orderflow/python"], 20.0);
    assert_eq!(p1.ratios["orderflow/kafka-producer-perf-test"], 0.5);
    assert_eq!(p1.met, Some(false)); // 0.5x the perf test, 20x < 50x python
    assert_eq!(b[1].ratios["orderflow/kcat pipe"], 0.8);
    assert_eq!(b[1].met, Some(true)); // 2.67x the Streams peer, 0.8x the pipe
    assert_eq!(b[2].ratios["orderflow/kafka-consumer-perf-test"], 2.0);
    assert_eq!(b[2].ratios["orderflow/kafka streams"], 0.3);
    assert_eq!(b[2].met, Some(false)); // 0.3x the Streams peer's time, but 3x kcat's
    assert_eq!(b[4].met, None); // P4 not measured
                                // inventory 70 MiB at the defaults; the target judges the memory settings' peaks
    assert_eq!(b[6].met, Some(true));
    assert!(b[6].title.ends_with(
        "with the memory settings KAFKA_FETCH_QUEUE_KB=1024 IDEMPOTENCY_WINDOW_MS=1000 BATCH_MAX=5000 MIMALLOC_PURGE_DELAY=0)"
    ));
    let mut defaults_only = Samples::new();
    push(&mut defaults_only, "P5", "order-service", 30.0);
    assert_eq!(summarize(&defaults_only, 2000)[6].met, None);
    push(
        &mut defaults_only,
        "P5",
        "order-service (memory settings)",
        30.0,
    );
    assert_eq!(summarize(&defaults_only, 2000)[6].met, None); // two of three measured
    let p6 = b
        .iter()
        .find(|b| b.id == "P6-1k-p99")
        .map(|b| (&b.ratios, b.met));
    let expect = BTreeMap::from([
        ("orderflow/kafka streams".to_string(), 0.5),
        ("orderflow/kafka streams at-least-once".to_string(), 2.0), // same guarantee
    ]);
    assert_eq!(p6, Some((&expect, Some(true)))); // 8 ms < 10, below the peer's 16
    let p6_alone = results(
        b.iter()
            .filter(|b| b.id.starts_with("P6"))
            .cloned()
            .collect(),
        None,
    );
    assert!(
        markdown(&p6_alone).contains("\n\nP6 alone, 1 run(s) (median, min-max), 2 cores"),
        "{}",
        markdown(&p6_alone)
    );
    let sweep = crate::bench::Sweep::of(
        vec![crate::bench::SweepRow {
            n: 1000,
            produce: 10.0,
            decide: 5.0,
            replay: 20.0,
            rss_mib: [1.0, 2.0, 3.0],
            restart_secs: [0.5, 0.25, 0.125],
            restart_rss_mib: [4.0, 5.0, 6.0],
        }],
        3,
    );
    let md = markdown(&results(b, Some(sweep)));
    assert!(
        md.contains("## N sweep: orderflow alone, the median of 3 samples per N"),
        "{md}"
    );
    assert!(
        md.contains("| 1000 | 10.00 | 5.00 | 20.00 | 1.00, 2.00, 3.00 | 0.50, 0.25, 0.12 | 4.00, 5.00, 6.00 |"),
        "{md}"
    );
    assert!(
        md.contains(
            "rate from start P1 1.00x, P2 1.00x, P3 1.00x; marginal rate P1 n/a, P2 n/a, P3 n/a. \
             Target: each marginal <= 1.15"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| P1 produce N OrderPlaced | kcat | 100000 | 100000-100000 | events/s | 2.00x |"
        ),
        "{md}"
    );
    assert!(md.contains("| **no** |"));
    assert!(md.contains("N = 10 events, 1 run(s)"), "{md}");
    assert!(
        md.contains("| kcat pipe | 100000 | 100000-100000 | events/s | 0.80x |"),
        "{md}"
    );
}

/// Results of one run of `benches` (and `sweep`) on a 2-core machine, N = 10.
fn results(benches: Vec<Bench>, sweep: Option<crate::bench::Sweep>) -> Results {
    Results {
        events: 10,
        runs: 1,
        cores: 2,
        cpu: "cpu".into(),
        broker: "b".into(),
        started: "t".into(),
        benches,
        streams_equal: None,
        sweep,
    }
}
