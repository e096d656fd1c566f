//! Consumer-group lag, refusal and resets against Apache Kafka, which each test starts
//! itself (scripts/kafka.sh, free port, own state dir) and stops by PID on drop.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{
    committed, create_topic, ctl, kafka_tool, member_that_committed, produce, text, tool_plan,
    tool_rows, ts, wait_for, Broker, PER_PARTITION, T,
};
use orderflowctl::{GroupError, OffsetChange, ResetTo};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

fn all_at(partitions: i32, offset: i64) -> Vec<(i32, Option<i64>)> {
    (0..partitions).map(|p| (p, Some(offset))).collect()
}

fn targets(changes: &[OffsetChange]) -> Vec<(i32, i64)> {
    changes.iter().map(|c| (c.partition, c.to)).collect()
}

#[test]
fn lag_refusal_while_live_then_resets() {
    let broker = Broker::start("resets");
    let kafka = broker.kafka();
    let (topic, group, n) = ("orders", "analytics", 3);
    create_topic(&kafka, topic, n);
    let base_ms = (Utc::now().timestamp_millis() / 1000) * 1000 - 3_600_000;
    produce(&kafka, topic, n, base_ms);

    let member = member_that_committed(&kafka, group, topic, n, 4);

    // Lag: 10 records per partition, 4 committed.
    let lags = orderflowctl::lag(&kafka, group, &[topic], T).unwrap();
    let got: Vec<_> = lags
        .iter()
        .map(|l| {
            (
                l.topic.as_str(),
                l.partition,
                l.committed,
                l.low_watermark,
                l.high_watermark,
                l.lag,
            )
        })
        .collect();
    assert_eq!(
        got,
        (0..n)
            .map(|p| (topic, p, Some(4), 0, PER_PARTITION, 6))
            .collect::<Vec<_>>()
    );
    assert_eq!(orderflowctl::total_lag(&lags), 18);
    // offsets only: the lag in seconds is not known where the group is behind
    assert!(lags.iter().all(|l| l.lag_seconds.is_none()));
    let before = Utc::now().timestamp_millis();
    let sample = orderflowctl::sample_lag(&kafka, group, &[topic], T).unwrap();
    assert_eq!(sample.total, 18);
    assert!((before..=Utc::now().timestamp_millis()).contains(&sample.at_ms));
    // the record at committed offset 4 was written at base + 4 s: it is that old, exactly
    let age = (sample.at_ms - (base_ms + 4_000)) as f64 / 1000.0;
    for l in &sample.partitions {
        assert_eq!(l.next_record_ms, Some(base_ms + 4_000), "{l:?}");
        assert_eq!(l.lag_seconds, Some(age), "{l:?}");
    }
    assert_eq!(sample.max_lag_seconds, Some(age));

    // The CLI's table and JSON.
    let out = ctl(
        &broker.bootstrap,
        &["lag", "--group", group, "--topic", topic],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "LAG-SECONDS"
        ]
    );
    let secs = |cell: &str| cell.parse::<f64>().unwrap_or(-1.0);
    for p in 0..n as usize {
        assert_eq!(
            rows[p + 1][..6],
            [group, topic, &p.to_string(), "4", "10", "6"],
            "{table}"
        );
        // an hour and a bit: the record at offset 4 was written at base + 4 s
        assert!((3596.0..3700.0).contains(&secs(rows[p + 1][6])), "{table}");
    }
    assert_eq!(
        rows[4][..5],
        ["TOTAL", "LAG", "18", "MAX", "LAG-SECONDS"],
        "{table}"
    );
    let out = ctl(
        &broker.bootstrap,
        &["lag", "--group", group, "--topic", topic, "--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["total"], 18);
    assert_eq!(json["group"], group);
    assert_eq!(json["partitions"][2]["committed"], 4);
    assert_eq!(json["partitions"][2]["next_record_ms"], base_ms + 4_000);
    assert!(json["partitions"][2]["lag_seconds"].as_f64().unwrap() >= age);
    assert!(json["max_lag_seconds"].as_f64().unwrap() >= age);

    // --until-zero with lag left: a clear failure with exit code 3.
    let out = ctl(
        &broker.bootstrap,
        &[
            "lag",
            "--group",
            group,
            "--topic",
            topic,
            "--until-zero",
            "--timeout-secs",
            "1",
            "--interval-ms",
            "200",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did not reach 0 within 1s (last total lag: 18)"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("total lag      18"));

    // Kafka's own tool reads the same live group the same way, partition by partition:
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    let described = kafka_tool(
        "kafka-consumer-groups",
        &[
            "--bootstrap-server",
            &broker.bootstrap,
            "--describe",
            "--group",
            group,
        ],
    );
    let mut theirs: Vec<(i32, i64, i64, i64)> = tool_rows(&described, group)
        .iter()
        .map(|r| {
            let n = |i: usize| r[i].parse::<i64>().unwrap();
            (r[2].parse().unwrap(), n(3), n(4), n(5))
        })
        .collect();
    theirs.sort_unstable();
    let ours: Vec<(i32, i64, i64, i64)> = lags
        .iter()
        .map(|l| (l.partition, l.committed.unwrap(), l.high_watermark, l.lag))
        .collect();
    assert_eq!(
        ours, theirs,
        "orderflowctl lag vs kafka-consumer-groups:\n{described}"
    );

    // While the member is live, Kafka itself refuses to change the group's offsets (our
    // check skipped here), and nothing changes.
    let err = orderflowctl::reset_leaving_the_check_to_kafka(
        &kafka,
        group,
        &[topic],
        ResetTo::Earliest,
        T,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(&err, GroupError::RefusedByKafka { group: g, .. } if g == group),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("Kafka refused to reset consumer group analytics: the group has active members (Kafka answered "),
        "{err}"
    );
    assert_eq!(committed(&kafka, group, topic), (all_at(n, 4), false));

    // Our own check refuses first, naming the group's state and members.
    let info = orderflowctl::describe_group(&kafka, group, T).unwrap();
    assert_eq!((info.state.as_str(), info.members), ("Stable", 1));
    assert_eq!(info.member_list[0].client_id, "orderflowctl-test");
    let err = orderflowctl::reset(&kafka, group, &[topic], ResetTo::Earliest, T).unwrap_err();
    assert!(
        matches!(err, GroupError::NotEmpty { members: 1, ref state, .. } if state == "Stable"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "consumer group analytics has 1 active member(s) (state Stable): \
         stop its consumers before resetting offsets"
    );
    let out = ctl(
        &broker.bootstrap,
        &["reset", "-g", group, "-t", topic, "--to", "earliest"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has 1 active member(s) (state Stable)"),
        "{}",
        text(&out.stderr)
    );
    // A dry run shows the plan (with a note) and changes nothing.
    let out = ctl(
        &broker.bootstrap,
        &[
            "reset",
            "-g",
            group,
            "-t",
            topic,
            "--to",
            "latest",
            "--dry-run",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("a real reset would be refused"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["to"], "latest");
    assert_eq!(json["changes"][0]["from"], 4);
    assert_eq!(json["changes"][0]["to"], 10);
    assert_eq!(committed(&kafka, group, topic), (all_at(n, 4), false));

    // Close the member; the group becomes empty.
    drop(member);
    let info = wait_for("the group to become empty", Duration::from_secs(20), || {
        orderflowctl::describe_group(&kafka, group, T)
            .ok()
            .filter(|i| i.is_empty())
    });
    assert_eq!(info.members, 0);

    // Our plans are the ones Kafka's tool computes (`--reset-offsets ... --dry-run`).
    let at = DateTime::<Utc>::from_timestamp_millis(base_ms + 7_500).unwrap();
    for (to, tool_args) in [
        (ResetTo::Earliest, vec!["--to-earliest".to_string()]),
        (ResetTo::Latest, vec!["--to-latest".to_string()]),
        (
            ResetTo::Timestamp(at),
            vec![
                "--to-datetime".to_string(),
                at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string() + "Z",
            ],
        ),
    ] {
        let ours = orderflowctl::plan_reset_now(&kafka, group, &[topic], to.clone(), T).unwrap();
        let args: Vec<&str> = tool_args.iter().map(String::as_str).collect();
        assert_eq!(
            targets(&ours),
            tool_plan(&broker.bootstrap, group, topic, &args),
            "plan for {to}"
        );
    }

    // earliest
    let before = Utc::now() - chrono::Duration::milliseconds(1);
    let changes = orderflowctl::reset(&kafka, group, &[topic], ResetTo::Earliest, T).unwrap();
    let after = Utc::now();
    for c in orderflowctl::committed_offsets(&kafka, group, &[topic], T).unwrap() {
        let at = c.mark().and_then(|m| m.reset_at()).unwrap();
        assert!(before <= at && at <= after, "{}", c.metadata);
    }
    assert!(changes.iter().all(|c| c.from == Some(4) && c.to == 0));
    assert_eq!(changes.len(), 3);
    assert_eq!(committed(&kafka, group, topic), (all_at(n, 0), true));
    assert_eq!(
        orderflowctl::sample_lag(&kafka, group, &[topic], T)
            .unwrap()
            .total,
        30
    );

    // latest
    let changes = orderflowctl::reset(&kafka, group, &[topic], ResetTo::Latest, T).unwrap();
    assert_eq!(targets(&changes), vec![(0, 10), (1, 10), (2, 10)]);
    assert!(changes.iter().all(|c| c.from == Some(0)));
    assert_eq!(committed(&kafka, group, topic), (all_at(n, 10), true));
    // lag is now 0: --until-zero returns at once
    let out = ctl(
        &broker.bootstrap,
        &[
            "lag",
            "-g",
            group,
            "-t",
            topic,
            "--until-zero",
            "--timeout-secs",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("reached 0"));

    // timestamp: the first record at or after it, log end past the last record
    for (at, want) in [
        (base_ms + 7_000, 7),
        (base_ms + 7_500, 8),
        (base_ms - 60_000, 0),
        (base_ms + 3_600_000 * 5, PER_PARTITION),
    ] {
        let changes = orderflowctl::reset(&kafka, group, &[topic], ts(at), T).unwrap();
        assert_eq!(
            targets(&changes),
            vec![(0, want), (1, want), (2, want)],
            "{at}"
        );
        assert_eq!(committed(&kafka, group, topic), (all_at(n, want), true));
    }

    // The CLI reset with --to timestamp --timestamp, read back.
    let at = DateTime::<Utc>::from_timestamp_millis(base_ms + 2_000)
        .unwrap()
        .to_rfc3339();
    let out = ctl(
        &broker.bootstrap,
        &[
            "reset",
            "-g",
            group,
            "-t",
            topic,
            "--to",
            "timestamp",
            "--timestamp",
            &at,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("reset group analytics to"));
    assert_eq!(committed(&kafka, group, topic), (all_at(n, 2), true));

    // A new member of the group starts exactly at the reset offsets.
    let consumer: BaseConsumer = kafka.consumer(group, "after-reset").create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut first: Vec<Option<i64>> = vec![None; n as usize];
    wait_for(
        "a record of every partition after the reset",
        Duration::from_secs(20),
        || {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                first[m.partition() as usize].get_or_insert(m.offset());
            }
            first.iter().all(Option::is_some).then_some(())
        },
    );
    assert_eq!(first, vec![Some(2); n as usize]);
}

#[test]
fn unknown_topics_groups_and_groups_without_commits() {
    let broker = Broker::start("unknown");
    let kafka = broker.kafka();
    create_topic(&kafka, "inventory-events", 3);
    // Recent timestamps: records older than the retention time would be deleted at once.
    produce(
        &kafka,
        "inventory-events",
        3,
        Utc::now().timestamp_millis() - 60_000,
    );

    // A group nobody ever used: Dead, no members, not an error.
    let info = orderflowctl::describe_group(&kafka, "never-used", T).unwrap();
    assert_eq!((info.state.as_str(), info.members), ("Dead", 0));
    assert!(info.is_empty());
    let out = ctl(
        &broker.bootstrap,
        &["describe", "--group", "never-used", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "Dead");
    assert_eq!(json["members"], 0);

    // No commits: lag counts from the low watermark, offsets are None with no metadata.
    let lags = orderflowctl::lag(&kafka, "never-used", &["inventory-events"], T).unwrap();
    assert_eq!(lags.len(), 3);
    assert!(
        lags.iter().all(|l| l.committed.is_none() && l.lag == 10),
        "{lags:?}"
    );
    let c =
        orderflowctl::committed_offsets(&kafka, "never-used", &["inventory-events"], T).unwrap();
    assert!(c
        .iter()
        .all(|c| c.offset.is_none() && c.metadata.is_empty()));

    // Unknown topics are named in the error, for lag and for reset (nothing is committed).
    let err = orderflowctl::lag(&kafka, "g", &["inventory-events", "nope", "nada"], T).unwrap_err();
    assert!(
        matches!(&err, GroupError::UnknownTopic(t) if t == &["nope", "nada"]),
        "{err}"
    );
    let err = orderflowctl::reset(
        &kafka,
        "never-used",
        &["inventory-events", "nope"],
        ResetTo::Earliest,
        T,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "topic(s) not found on the broker: nope");
    assert!(
        orderflowctl::committed_offsets(&kafka, "never-used", &["inventory-events"], T)
            .unwrap()
            .iter()
            .all(|c| c.offset.is_none())
    );
    assert!(matches!(
        orderflowctl::reset(&kafka, "never-used", &[], ResetTo::Earliest, T),
        Err(GroupError::NoTopics)
    ));
    let out = ctl(
        &broker.bootstrap,
        &["lag", "--group", "g", "--topic", "nope"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("topic(s) not found on the broker: nope"));
    // Default topics of `lag` are orders and inventory-events; orders is missing here.
    let out = ctl(&broker.bootstrap, &["lag", "--group", "g"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not found on the broker: orders"));

    // A group that never had members can be reset (first commit creates it).
    let changes =
        orderflowctl::reset(&kafka, "fresh", &["inventory-events"], ResetTo::Latest, T).unwrap();
    assert!(changes.iter().all(|c| c.from.is_none() && c.to == 10));
    assert_eq!(
        committed(&kafka, "fresh", "inventory-events"),
        (all_at(3, 10), true)
    );
}
