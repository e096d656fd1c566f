//! The reset targets of `kafka-consumer-groups` beyond earliest / latest / a timestamp, on
//! Apache Kafka (started by the test): `--to-file` (the tool's CSV), `--shift-by` and
//! `--by-duration` plan exactly what Kafka's own tool plans on the same group
//! (`--reset-offsets ... --dry-run`), clamped into the log start and log end offsets; the
//! resets are read back from Kafka; `--export` writes the tool's CSV, and a file saved before
//! a reset undoes it.

mod common;

use chrono::Utc;
use common::{
    create_topic, ctl, delete_records, kafka_tool, text, tool_plan, tool_rows, Broker, T,
};
use orderflow_runtime::KafkaConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const GROUP: &str = "analytics";
const TOPIC: &str = "orders";

/// 10 records on each of 3 partitions; record i written `105 - 10 i` minutes ago (so a
/// duration of a round number of minutes never falls on a record, whatever the few seconds
/// between our plan and the tool's).
fn produce_minutes_apart(kafka: &KafkaConfig) {
    let producer: BaseProducer = kafka.producer("orderflowctl-test").create().unwrap();
    let now = Utc::now().timestamp_millis();
    for p in 0..3 {
        for i in 0..10i64 {
            let payload = format!("{{\"p\":{p},\"i\":{i}}}");
            producer
                .send(
                    BaseRecord::<(), _>::to(TOPIC)
                        .partition(p)
                        .payload(&payload)
                        .timestamp(now - (105 - 10 * i) * 60_000),
                )
                .unwrap();
        }
    }
    producer.flush(std::time::Duration::from_secs(10)).unwrap();
}

/// `(partition, committed offset)` read back from Kafka.
fn committed(kafka: &KafkaConfig) -> Vec<(i32, Option<i64>)> {
    orderflowctl::committed_offsets(kafka, GROUP, &[TOPIC], T)
        .unwrap()
        .iter()
        .map(|c| (c.partition, c.offset))
        .collect()
}

/// `(partition, new offset)` of our `reset --dry-run --json` with `args`.
fn our_plan(bootstrap: &str, args: &[&str]) -> Vec<(i32, i64)> {
    let mut all = vec!["reset", "-g", GROUP, "--dry-run", "--json"];
    all.extend_from_slice(args);
    let out = ctl(bootstrap, &all);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut plan: Vec<(i32, i64)> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["partition"].as_i64().unwrap() as i32,
                c["to"].as_i64().unwrap(),
            )
        })
        .collect();
    plan.sort_unstable();
    plan
}

/// Sorted lines of a CSV (the tool prints partitions in its own order).
fn lines(csv: &str) -> Vec<String> {
    let mut l: Vec<String> = csv
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    l.sort();
    l
}

#[test]
fn shift_by_duration_and_file_plan_what_kafkas_tool_plans() {
    let broker = Broker::start("targets");
    let kafka = broker.kafka();
    let b = broker.bootstrap.as_str();
    create_topic(&kafka, TOPIC, 3);
    produce_minutes_apart(&kafka);
    // orders[1] lost its first 3 records (retention, DeleteRecords)
    assert_eq!(delete_records(&kafka, TOPIC, &[(1, 3)]), vec![(1, 3)]);
    let dir = broker.dir.join("csv");
    std::fs::create_dir_all(&dir).unwrap();

    // --to-file: the group goes to the file's offsets; Kafka's --from-file plans the same
    let file = dir.join("five.csv");
    std::fs::write(&file, "orders,0,5\norders,1,5\norders,2,5\n").unwrap();
    let f = file.display().to_string();
    let mut theirs: Vec<(i32, i64)> = tool_rows(
        &kafka_tool(
            "kafka-consumer-groups",
            &[
                "--bootstrap-server",
                b,
                "--reset-offsets",
                "--group",
                GROUP,
                "--from-file",
                &f,
                "--dry-run",
            ],
        ),
        GROUP,
    )
    .iter()
    .map(|r| (r[2].parse().unwrap(), r[3].parse().unwrap()))
    .collect();
    theirs.sort_unstable();
    assert_eq!(our_plan(b, &["--to-file", &f]), theirs);
    let out = ctl(b, &["reset", "-g", GROUP, "--to-file", &f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        committed(&kafka),
        vec![(0, Some(5)), (1, Some(5)), (2, Some(5))]
    );

    // --shift-by, back and forward, kept inside [log start, log end] as the tool does
    for n in ["-4", "-2", "3", "7", "0"] {
        assert_eq!(
            our_plan(b, &["-t", TOPIC, "--shift-by", n]),
            tool_plan(b, GROUP, TOPIC, &["--shift-by", n]),
            "--shift-by {n}"
        );
    }
    assert_eq!(
        our_plan(b, &["-t", TOPIC, "--shift-by", "-4"]),
        vec![(0, 1), (1, 3), (2, 1)]
    );

    // --by-duration: the first record at or after now minus the duration
    for d in ["PT30M", "PT1H", "PT3H", "PT1M", "P1D"] {
        assert_eq!(
            our_plan(b, &["-t", TOPIC, "--to", "by-duration", "--duration", d]),
            tool_plan(b, GROUP, TOPIC, &["--by-duration", d]),
            "--by-duration {d}"
        );
    }
    // 30 minutes ago: record 8 (written 25 minutes ago); 1 minute ago: none, the log end
    assert_eq!(
        our_plan(b, &["-t", TOPIC, "--duration", "PT30M"]),
        vec![(0, 8), (1, 8), (2, 8)]
    );
    assert_eq!(
        our_plan(b, &["-t", TOPIC, "--duration", "PT1M"]),
        vec![(0, 10), (1, 10), (2, 10)]
    );

    // --export prints the tool's CSV: the current offsets saved before a reset ...
    let out = ctl(
        b,
        &[
            "reset",
            "-g",
            GROUP,
            "-t",
            TOPIC,
            "--shift-by",
            "0",
            "--dry-run",
            "--export",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let saved = text(&out.stdout);
    let tool_export = kafka_tool(
        "kafka-consumer-groups",
        &[
            "--bootstrap-server",
            b,
            "--reset-offsets",
            "--group",
            GROUP,
            "--topic",
            TOPIC,
            "--to-current",
            "--dry-run",
            "--export",
        ],
    );
    assert_eq!(lines(&saved), lines(&tool_export));
    assert_eq!(lines(&saved), ["orders,0,5", "orders,1,5", "orders,2,5"]);
    let before = dir.join("before.csv");
    std::fs::write(&before, &saved).unwrap();

    // ... a real shift (read back from Kafka) ...
    let out = ctl(b, &["reset", "-g", GROUP, "-t", TOPIC, "--shift-by", "-2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("reset group analytics to shift-by -2"));
    assert_eq!(
        committed(&kafka),
        vec![(0, Some(3)), (1, Some(3)), (2, Some(3))]
    );
    let out = ctl(
        b,
        &[
            "reset",
            "-g",
            GROUP,
            "--to",
            "by-duration",
            "--duration",
            "PT30M",
            "-t",
            TOPIC,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        committed(&kafka),
        vec![(0, Some(8)), (1, Some(8)), (2, Some(8))]
    );

    // ... undone by the saved file: exactly the offsets before, read back from Kafka
    let out = ctl(
        b,
        &[
            "reset",
            "-g",
            GROUP,
            "--to-file",
            &before.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        committed(&kafka),
        vec![(0, Some(5)), (1, Some(5)), (2, Some(5))]
    );

    // a shift where the group never committed is refused, as by the tool
    let out = ctl(b, &["reset", "-g", "fresh", "-t", TOPIC, "--shift-by", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "cannot shift the offset of orders[0]: the group has no committed offset there"
        ),
        "{}",
        text(&out.stderr)
    );
    // a file naming a partition the topic does not have is refused, nothing changes
    std::fs::write(&file, "orders,0,1\norders,7,1\n").unwrap();
    let out = ctl(b, &["reset", "-g", GROUP, "--to-file", &f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("orders[7] is not a partition of topic orders"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        committed(&kafka),
        vec![(0, Some(5)), (1, Some(5)), (2, Some(5))]
    );
}
