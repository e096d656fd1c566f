//! Resets whose target lies before the oldest record Kafka still holds, on Apache Kafka
//! (started by the test): records are deleted with DeleteRecords (what retention does to old
//! segments), then resets to earliest and to timestamps say, per partition, that the history
//! is truncated (library result, CLI warning on stderr, CLI JSON), and are still made (exit
//! code 0). A reset on a topic nothing was deleted from says nothing.

mod common;

use chrono::{DateTime, Utc};
use common::{create_topic, ctl, delete_records, produce, text, ts, Broker, PER_PARTITION, T};
use orderflow_runtime::KafkaConfig;
use orderflowctl::{OffsetChange, ResetTo};
use serde_json::{json, Value};

const GROUP: &str = "analytics";

/// `(partition, to, log start offset if truncated)` of a reset's changes.
fn summary(changes: &[OffsetChange]) -> Vec<(i32, i64, Option<i64>)> {
    changes
        .iter()
        .map(|c| {
            (
                c.partition,
                c.to,
                c.history_truncated.as_ref().map(|h| h.log_start_offset),
            )
        })
        .collect()
}

/// `(partition, committed offset)` read back from the broker.
fn committed(kafka: &KafkaConfig, topic: &str) -> Vec<(i32, Option<i64>)> {
    orderflowctl::committed_offsets(kafka, GROUP, &[topic], T)
        .unwrap()
        .iter()
        .map(|c| (c.partition, c.offset))
        .collect()
}

fn at(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

/// stderr's lines that are warnings.
fn warnings(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| l.starts_with("warning"))
        .map(str::to_string)
        .collect()
}

#[test]
fn resets_before_the_log_start_offset_say_the_history_is_truncated() {
    let broker = Broker::start("history");
    let kafka = broker.kafka();
    let (topic, n) = ("orders", 3);
    create_topic(&kafka, topic, n);
    create_topic(&kafka, "untouched", n);
    // record i of every partition is written at base + i s (an hour ago: well inside retention)
    let base_ms = (Utc::now().timestamp_millis() / 1000) * 1000 - 3_600_000;
    produce(&kafka, topic, n, base_ms);
    produce(&kafka, "untouched", n, base_ms);
    // orders[0] keeps everything, orders[1] loses its first half, orders[2] every record
    let lows = delete_records(&kafka, topic, &[(1, PER_PARTITION / 2), (2, PER_PARTITION)]);
    assert_eq!(lows, vec![(1, 5), (2, 10)]);
    let lags = orderflowctl::lag(&kafka, GROUP, &[topic], T).unwrap();
    let marks: Vec<(i64, i64)> = lags
        .iter()
        .map(|l| (l.low_watermark, l.high_watermark))
        .collect();
    assert_eq!(marks, vec![(0, 10), (5, 10), (10, 10)]);

    // earliest, through the library: clamped to the log start offsets, and said so
    let changes = orderflowctl::reset(&kafka, GROUP, &[topic], ResetTo::Earliest, T).unwrap();
    assert_eq!(
        summary(&changes),
        vec![(0, 0, None), (1, 5, Some(5)), (2, 10, Some(10))]
    );
    let h1 = changes[1].history_truncated.clone().unwrap();
    assert_eq!(h1.records_deleted, Some(5));
    // the oldest record still held on orders[1] is record 5, written at base + 5 s
    assert_eq!(
        h1.oldest_record_at.map(|t| t.timestamp_millis()),
        Some(base_ms + 5_000)
    );
    let h2 = changes[2].history_truncated.clone().unwrap();
    assert_eq!((h2.records_deleted, h2.oldest_record_at), (Some(10), None));
    assert_eq!(
        committed(&kafka, topic),
        vec![(0, Some(0)), (1, Some(5)), (2, Some(10))]
    );

    // earliest, through the CLI with --json: exit code 0, a warning line per truncated
    // partition on stderr, the JSON lists them
    let out = ctl(
        &broker.bootstrap,
        &[
            "reset", "-g", GROUP, "-t", topic, "--to", "earliest", "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let w = warnings(&out.stderr);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with(
            "warning: history truncated on orders[1]: the reset to earliest starts at log start \
             offset 5, the oldest offset Kafka still holds (its record written "
        ),
        "{w:?}"
    );
    assert!(
        w[0].ends_with("the 5 record(s) before it were deleted (retention or DeleteRecords) and are not replayed"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("warning: history truncated on orders[2]: the reset to earliest starts at log start offset 10"),
        "{w:?}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let oldest = DateTime::<Utc>::from_timestamp_millis(base_ms + 5_000).unwrap();
    assert_eq!(
        doc["history_truncated"],
        json!([
            {"topic": "orders", "partition": 1, "log_start_offset": 5, "records_deleted": 5,
             "oldest_record_at": serde_json::to_value(oldest).unwrap()},
            {"topic": "orders", "partition": 2, "log_start_offset": 10, "records_deleted": 10},
        ])
    );
    assert!(doc["changes"][0].get("history_truncated").is_none());
    assert_eq!(
        doc["changes"][1]["history_truncated"]["log_start_offset"],
        5
    );
    assert_eq!(doc["changes"][1]["to"], 5);

    // an old timestamp (a minute before the first record), through the CLI's text output:
    // the same partitions, the count of lost records unknown
    let out = ctl(
        &broker.bootstrap,
        &[
            "reset",
            "-g",
            GROUP,
            "-t",
            topic,
            "--to",
            "timestamp",
            "--timestamp",
            &at(base_ms - 60_000),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let w = warnings(&out.stderr);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("warning: history truncated on orders[1]: the reset to "),
        "{w:?}"
    );
    assert!(w[0].contains("starts at log start offset 5"), "{w:?}");
    assert!(w[0].contains("so the replay cannot start at"), "{w:?}");
    assert!(
        w[1].starts_with("warning: history truncated on orders[2]"),
        "{w:?}"
    );
    assert!(
        w[1].contains(
            "starts at log start offset 10, the oldest offset Kafka still holds; records before it"
        ),
        "{w:?}"
    );
    assert!(text(&out.stdout).contains("reset group analytics to"));
    assert_eq!(
        committed(&kafka, topic),
        vec![(0, Some(0)), (1, Some(5)), (2, Some(10))]
    );

    // timestamps against the oldest record held on orders[1] (record 5, at base + 5 s)
    for (at_ms, want) in [
        // after the deleted records 2, 3, 4 were written: they are gone, truncated
        (
            base_ms + 2_000,
            vec![(0, 2, None), (1, 5, Some(5)), (2, 10, Some(10))],
        ),
        // exactly the oldest record held: everything from it on is there
        (
            base_ms + 5_000,
            vec![(0, 5, None), (1, 5, None), (2, 10, Some(10))],
        ),
        // inside what is held
        (
            base_ms + 7_000,
            vec![(0, 7, None), (1, 7, None), (2, 10, Some(10))],
        ),
    ] {
        let changes = orderflowctl::reset(&kafka, GROUP, &[topic], ts(at_ms), T).unwrap();
        assert_eq!(summary(&changes), want, "at base + {} ms", at_ms - base_ms);
    }
    // a dry run plans and warns the same, and changes nothing
    let out = ctl(
        &broker.bootstrap,
        &[
            "reset",
            "-g",
            GROUP,
            "-t",
            topic,
            "--to",
            "earliest",
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let w = warnings(&out.stderr);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("warning (dry run): history truncated on orders[1]"),
        "{w:?}"
    );
    assert_eq!(
        committed(&kafka, topic),
        vec![(0, Some(7)), (1, Some(7)), (2, Some(10))]
    );
    // latest never wants history
    let out = ctl(
        &broker.bootstrap,
        &[
            "reset", "-g", GROUP, "-t", topic, "--to", "latest", "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["history_truncated"], json!([]));

    // a topic nothing was deleted from: earliest and an old timestamp say nothing
    for args in [
        vec!["--to", "earliest", "--json"],
        vec!["--to", "timestamp", "--timestamp", &at(base_ms - 60_000)],
    ] {
        let mut all = vec!["reset", "-g", GROUP, "-t", "untouched"];
        all.extend(args);
        let out = ctl(&broker.bootstrap, &all);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{all:?}");
        if all.contains(&"--json") {
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(doc["history_truncated"], json!([]));
            assert!(doc["changes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c.get("history_truncated").is_none() && c["to"] == 0));
        }
    }
    let changes = orderflowctl::reset(&kafka, GROUP, &["untouched"], ResetTo::Earliest, T).unwrap();
    assert!(changes.iter().all(|c| c.history_truncated.is_none()));
}
