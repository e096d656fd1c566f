//! `make bench` in its tiny smoke mode (10k events, one run, 2 s of HTTP load, 1 s of each
//! end-to-end rate in both guarantees, an N sweep over 1k and 2k): every
//! benchmark runs against orderflow and its peers (kcat, Kafka's perf tools, a kcat pipe, the
//! Python peers, Flask) on a fresh local Kafka, and results.json / results.md hold a figure
//! for each. The perf tools and the pipe fail the run unless they counted every record. Figures are not judged here (that is the benchmark's
//! job, not a test's); only that each was measured. Before the runs, the Kafka Streams peers
//! (bench/peers/streams, built by scripts/bench-tools.sh) are proven to decide and count like
//! orderflow on 2k orders: the run fails on any difference, and results.json says what was
//! compared.

use orderflow_lab::bench::{self, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_smoke_measures_every_benchmark() -> anyhow::Result<()> {
    let out = std::env::temp_dir().join(format!("orderflow-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let tools = bench::install_tools()?;
    let results = bench::run(&Options::smoke(out.clone()), &tools).await?;
    let restarted = vec![
        "analytics-service",
        "inventory-service",
        "inventory-service (1 s window)",
    ];
    let e2e = vec![
        "kafka streams",
        "kafka streams at-least-once",
        "orderflow",
        "orderflow analytics",
        "orderflow at-least-once",
    ];
    let expect = [
        (
            "P1",
            vec!["kafka-producer-perf-test", "kcat", "orderflow", "python"],
        ),
        (
            "P2",
            vec![
                "kafka streams",
                "kafka-consumer-perf-test",
                "kcat",
                "kcat pipe",
                "orderflow",
                "python",
            ],
        ),
        (
            "P3",
            vec![
                "kafka streams",
                "kafka-consumer-perf-test",
                "kcat",
                "orderflow",
                "python",
            ],
        ),
        ("P4-p50", vec!["flask", "orderflow"]),
        ("P4-p99", vec!["flask", "orderflow"]),
        ("P4-rps", vec!["flask", "orderflow"]),
        (
            "P5",
            vec![
                "analytics-service",
                "analytics-service (memory settings)",
                "inventory-service",
                "inventory-service (memory settings)",
                "order-service",
                "order-service (memory settings)",
            ],
        ),
        ("P6-1k-p50", e2e.clone()),
        ("P6-1k-p99", e2e.clone()),
        ("P6-1k-max", e2e.clone()),
        ("P6-5k-p50", e2e.clone()),
        ("P6-5k-p99", e2e.clone()),
        ("P6-5k-max", e2e),
        ("P7", restarted.clone()),
        ("P8", restarted),
    ];
    assert_eq!(results.benches.len(), expect.len());
    for (b, (id, subjects)) in results.benches.iter().zip(expect) {
        assert_eq!(b.id, id);
        assert_eq!(b.subjects.keys().collect::<Vec<_>>(), subjects, "{id}");
        for (sub, f) in &b.subjects {
            assert!(f.median.is_finite() && f.median > 0.0, "{id} {sub}: {f:?}");
            // "orderflow analytics" (P6) is a stage of ours, not a peer: no ratio
            if !sub.starts_with("orderflow") && b.subjects.contains_key("orderflow") {
                let ratio = b.ratios.get(&format!("orderflow/{sub}"));
                assert!(
                    ratio.is_some_and(|r| r.is_finite() && *r > 0.0),
                    "{id} orderflow/{sub}: {ratio:?}"
                );
            }
        }
        // every benchmark with a target has it evaluated (P4-p50 has none)
        assert_eq!(
            b.met.is_some(),
            !b.target.is_empty(),
            "{id}: {:?}",
            b.target
        );
    }
    // the N sweep: one row per size, each figure measured
    let sweep = results.sweep.as_ref().map(|w| &w.rows);
    assert_eq!(
        sweep.map(|rows| rows.iter().map(|r| r.n).collect::<Vec<_>>()),
        Some(vec![1_000, 2_000])
    );
    for r in sweep.into_iter().flatten() {
        let all = [r.produce, r.decide, r.replay]
            .into_iter()
            .chain(r.rss_mib)
            .chain(r.restart_secs)
            .chain(r.restart_rss_mib);
        for v in all {
            assert!(v.is_finite() && v > 0.0, "N {}: {r:?}", r.n);
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json"))?)?;
    assert_eq!(json["events"], 10_000);
    let eq = &json["streams_equal"];
    assert_eq!(eq["orders"], 2_000, "{eq}");
    assert_eq!(eq["restocks"], 6, "{eq}");
    let (reserved, failed) = (eq["reserved"].as_u64(), eq["failed"].as_u64());
    assert!(
        matches!((reserved, failed), (Some(r), Some(f)) if r + f == 2_000 && r > 0 && f > 0),
        "both decisions occur: {eq}"
    );
    assert!(eq["minutes"].as_u64().unwrap_or(0) >= 3, "{eq}");
    assert!(json["cores"].as_u64().unwrap_or(0) >= 1);
    let md = std::fs::read_to_string(out.join("results.md"))?;
    assert!(md.contains("| P1 produce N OrderPlaced | kcat |"), "{md}");
    assert!(md.contains("## N sweep"), "{md}");
    for row in [
        "| P1 produce N OrderPlaced | kafka-producer-perf-test |",
        "copy to a topic) | kcat pipe |",
        "consume both topics) | kafka-consumer-perf-test |",
    ] {
        assert!(md.contains(row), "{row}: {md}");
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}
