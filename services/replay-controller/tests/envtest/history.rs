//! A replay past deleted history, against the same real API server and broker as the other
//! envtests (see main.rs).

use std::time::Duration;

use replay_controller::crd::Phase;
use serde_json::json;

use crate::common::{
    apply_rr, commit_offsets, create_deployment, delete_records, event_reasons_with, failed_reason,
    log_ends, phase, produce_at, replicas, rr, setup, start_controller, wait_rr, warnings_with,
};

/// Replays whose target lies before the oldest record Kafka still holds: DeleteRecords took
/// the first half of orders[1] (as retention takes old segments). A replay to earliest is made
/// all the same, and says so: status.historyTruncated names the partition and its log start
/// offset, the message too, and a Warning Event `HistoryTruncated`. A replay to a time before
/// the first record is refused (BeforeRetention, naming orders[1] and its oldest record's
/// time), and made with spec.allowTruncated (condition and Warning Event HistoryTruncated). A
/// replay of a topic nothing was deleted from says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_past_deleted_history_says_so_in_the_status_and_a_warning_event(
) -> anyhow::Result<()> {
    let env = setup("history").await?;
    let (c, ns) = (env.client.clone(), "default");
    let kafka = env.broker.kafka();
    create_deployment(&c, ns, "analytics", 1).await?;
    // 10 records on each partition of both topics, record i written at base + i s
    let base_ms = (chrono::Utc::now().timestamp_millis() / 1000) * 1000 - 3_600_000;
    produce_at(&kafka, "orders", 10, base_ms).await?;
    produce_at(&kafka, "inventory-events", 10, base_ms).await?;
    assert_eq!(delete_records(&kafka, "orders", 1, 5).await?, 5);
    let ctl = start_controller(&env, &[("WATCH_NAMESPACE", ns.to_string())]).await?;
    // no analytics process runs here: once a request follows the group (CatchingUp), the test
    // commits the high watermarks it recorded, as analytics would after replaying
    let succeeded = |name: &'static str| {
        let c = c.clone();
        let kafka = kafka.clone();
        async move {
            let o = wait_rr(&c, ns, name, "CatchingUp", Duration::from_secs(60), |o| {
                phase(o) == Phase::CatchingUp
            })
            .await?;
            let cu = o.status.and_then(|s| s.catch_up).unwrap_or_default();
            let ends: Vec<(String, i32, i64)> = cu
                .partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.target))
                .collect();
            // the reset was made: Kafka holds the reset offsets as the group's
            let at_reset: Vec<(String, i32, Option<i64>)> = log_ends(&kafka)
                .await?
                .into_iter()
                .filter(|p| cu.partitions.iter().any(|c| c.topic == p.topic))
                .map(|p| (p.topic, p.partition, p.committed))
                .collect();
            let want: Vec<(String, i32, Option<i64>)> = cu
                .partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, Some(p.from)))
                .collect();
            assert_eq!(at_reset, want, "{name}");
            commit_offsets(&kafka, "analytics", &ends)?;
            let o = wait_rr(&c, ns, name, "final", Duration::from_secs(60), |o| {
                phase(o).is_final()
            })
            .await?;
            let st = o.status.unwrap_or_default();
            assert_eq!(st.phase, Phase::Succeeded, "{name}: {:?}", st.message);
            anyhow::Ok(st)
        }
    };
    let oldest_held = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(base_ms + 5_000)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));

    // earliest
    apply_rr(
        &c,
        ns,
        rr(
            "from-earliest",
            json!({"consumerGroup": "analytics",
        "deployment": "analytics", "topics": ["orders"], "resetTo": "earliest"}),
        ),
    )
    .await?;
    let st = succeeded("from-earliest").await?;
    let to: Vec<(i32, i64)> = st.offsets.iter().map(|o| (o.partition, o.to)).collect();
    assert_eq!(to, vec![(0, 0), (1, 5), (2, 0)]);
    // from the reset offsets to the high watermarks read at reset time: 10 + 5 + 10
    let cu = st.catch_up.clone().unwrap_or_default();
    assert_eq!((cu.records_total, cu.records_left), (25, 0), "{cu:?}");
    assert!(cu.caught_up_at.is_some());
    assert_eq!(st.history_truncated.len(), 1, "{:?}", st.history_truncated);
    let t = &st.history_truncated[0];
    assert_eq!(
        (
            t.topic.as_str(),
            t.partition,
            t.log_start_offset,
            t.records_deleted
        ),
        ("orders", 1, 5, Some(5))
    );
    assert_eq!(t.oldest_record_at, oldest_held);
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.contains("to earliest; history truncated: orders[1] from log start offset 5 (5 record(s) deleted)"),
        "{msg}"
    );
    let notes = warnings_with(&c, ns, "from-earliest", "HistoryTruncated").await?;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        notes[0],
        "the reset of analytics to earliest lies before the oldest record Kafka still holds on \
         1 partition(s): orders[1] from log start offset 5 (5 record(s) deleted); the records \
         deleted there (retention or DeleteRecords) are not replayed"
    );
    let reasons = event_reasons_with(&c, ns, "from-earliest", "Succeeded").await?;
    assert_eq!(
        reasons,
        [
            "ScalingDown",
            "Resetting",
            "Restoring",
            "HistoryTruncated",
            "CatchingUp",
            "Succeeded"
        ]
    );
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);

    // a time a minute before the first record was written lies before the oldest record
    // orders[1] still holds: refused (BeforeRetention), nothing scaled, nothing reset
    let before_all = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(base_ms - 60_000)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    apply_rr(
        &c,
        ns,
        rr(
            "from-a-time",
            json!({"consumerGroup": "analytics",
        "deployment": "analytics", "topics": ["orders"], "resetTo": "timestamp",
        "timestamp": before_all}),
        ),
    )
    .await?;
    let o = wait_rr(
        &c,
        ns,
        "from-a-time",
        "final",
        Duration::from_secs(60),
        |o| phase(o).is_final(),
    )
    .await?;
    assert_eq!(failed_reason(&o), "BeforeRetention");
    let msg = o.status.and_then(|s| s.message).unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "the reset of analytics to timestamp {before_all} lies before the oldest record \
             Kafka still holds on orders[1] (oldest record {}, log start offset 5): refused, \
             nothing changed (set spec.allowTruncated: true to start those partitions at their \
             earliest offset instead)",
            oldest_held.clone().unwrap_or_default()
        )
    );
    assert_eq!(
        event_reasons_with(&c, ns, "from-a-time", "Failed").await?,
        ["Failed"]
    );
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);

    // with spec.allowTruncated it goes on: orders[1] from its log start offset, how many of
    // its deleted records were after that time is not known; a HistoryTruncated condition
    // and Warning Event say so
    apply_rr(
        &c,
        ns,
        rr(
            "from-a-time-allowed",
            json!({"consumerGroup": "analytics",
        "deployment": "analytics", "topics": ["orders"], "resetTo": "timestamp",
        "timestamp": before_all, "allowTruncated": true}),
        ),
    )
    .await?;
    let st = succeeded("from-a-time-allowed").await?;
    let t: Vec<(i32, i64, Option<i64>)> = st
        .history_truncated
        .iter()
        .map(|t| (t.partition, t.log_start_offset, t.records_deleted))
        .collect();
    assert_eq!(t, vec![(1, 5, None)]);
    let cond = st
        .conditions
        .iter()
        .find(|c| c.type_ == "HistoryTruncated")
        .cloned()
        .unwrap_or_else(|| panic!("no HistoryTruncated condition: {:?}", st.conditions));
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("AllowTruncated"))
    );
    let notes = warnings_with(&c, ns, "from-a-time-allowed", "HistoryTruncated").await?;
    assert!(
        notes[0].contains(&format!(
            "the reset of analytics to timestamp {before_all} lies before"
        )) && notes[0].contains("orders[1] from log start offset 5;"),
        "{notes:?}"
    );
    // the reset's offsets (read back from Kafka by `succeeded` when CatchingUp began, before
    // it commits the high watermarks as analytics would)
    let to: Vec<(i32, i64)> = st.offsets.iter().map(|o| (o.partition, o.to)).collect();
    assert_eq!(to, vec![(0, 0), (1, 5), (2, 0)]);

    // a topic nothing was deleted from: no list, no Warning
    apply_rr(
        &c,
        ns,
        rr(
            "untouched",
            json!({"consumerGroup": "analytics",
        "deployment": "analytics", "topics": ["inventory-events"], "resetTo": "earliest"}),
        ),
    )
    .await?;
    let st = succeeded("untouched").await?;
    assert!(st.history_truncated.is_empty());
    assert!(!st.message.unwrap_or_default().contains("history"));
    let reasons = event_reasons_with(&c, ns, "untouched", "Succeeded").await?;
    assert_eq!(
        reasons,
        [
            "ScalingDown",
            "Resetting",
            "Restoring",
            "CatchingUp",
            "Succeeded"
        ]
    );

    ctl.stop(Duration::from_secs(10)).await?;
    env.passed();
    Ok(())
}
