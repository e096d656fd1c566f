//! What the demo reports: target/demo/report.json ([`Report`]), the lag chart lag.svg, the
//! before/after table it prints, and the comparison of `/api/metrics`' data fields that
//! decides whether the replay reproduced the metrics.

use orderflowctl::{history_warnings, OffsetChange, ResetTo};
use serde::Serialize;
use serde_json::Value;

use super::Options;
use crate::chart::{line_chart, Series};

/// The fields of `/api/metrics` that depend only on the data, so a replay must reproduce them.
pub const DATA_FIELDS: [&str; 8] = [
    "orders_total",
    "reserved_total",
    "failed_total",
    "failure_rate",
    "restocks_total",
    "restocked_units_total",
    "restocks_refused_total",
    "orders_per_minute",
];

/// One lag sample of the `inventory` group on `orders`.
#[derive(Debug, Clone, Serialize)]
pub struct LagSample {
    /// Milliseconds since the bulk publish started.
    pub t_ms: u64,
    pub total: i64,
    /// Lag per partition, in partition order.
    pub partitions: Vec<i64>,
}

/// What `target/demo/report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bootstrap: String,
    pub produced: u64,
    pub produce_elapsed_ms: u64,
    pub produce_events_per_sec: f64,
    pub throttle_ms: u64,
    pub lag_samples: Vec<LagSample>,
    pub max_lag: i64,
    pub lag_drained_after_ms: u64,
    pub reset_refused_while_running: String,
    pub reset: Vec<OffsetChange>,
    pub before: Value,
    pub after: Value,
    pub identical: bool,
    pub differences: Vec<String>,
}

/// The replay step's report of `orderflowctl reset --json`'s output `doc`: its changes, and
/// the lines to print, one per partition (`topic pN from -> to`), then a WARNING line for
/// each partition whose target lay before the oldest record Kafka still holds (records
/// deleted by retention or DeleteRecords are not replayed, so the metrics cannot match).
pub fn replay_lines(doc: &Value) -> anyhow::Result<(Vec<OffsetChange>, Vec<String>)> {
    let changes: Vec<OffsetChange> = serde_json::from_value(doc["changes"].clone())?;
    let to: ResetTo = doc["to"].as_str().unwrap_or("earliest").parse()?;
    let mut lines: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "    {:<17} p{}  {:>7} -> {}",
                c.topic,
                c.partition,
                c.from.map(|f| f.to_string()).unwrap_or("-".into()),
                c.to
            )
        })
        .collect();
    lines.extend(
        history_warnings(&to, &changes)
            .into_iter()
            .map(|w| format!("    WARNING {w}")),
    );
    Ok((changes, lines))
}

/// Compare the data-derived fields of two `/api/metrics` documents; returns the
/// differences (empty when identical).
pub fn compare_metrics(before: &Value, after: &Value) -> Vec<String> {
    DATA_FIELDS
        .iter()
        .filter(|f| before.get(**f) != after.get(**f))
        .map(|f| {
            format!(
                "{f}: before {} after {}",
                before.get(*f).unwrap_or(&Value::Null),
                after.get(*f).unwrap_or(&Value::Null)
            )
        })
        .collect()
}

/// Keep only the data-derived fields (what before/after in the report show).
pub fn data_view(metrics: &Value) -> Value {
    let mut v = serde_json::Map::new();
    for f in DATA_FIELDS {
        v.insert(
            f.to_string(),
            metrics.get(f).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(v)
}

pub(super) fn print_table(before: &Value, after: &Value) {
    println!("    {:<18} {:>14} {:>14}", "metric", "before", "after");
    for f in [
        "orders_total",
        "reserved_total",
        "failed_total",
        "failure_rate",
    ] {
        println!(
            "    {:<18} {:>14} {:>14}",
            f,
            before[f].to_string(),
            after[f].to_string()
        );
    }
    let empty = vec![];
    let b = before["orders_per_minute"].as_array().unwrap_or(&empty);
    let a = after["orders_per_minute"].as_array().unwrap_or(&empty);
    println!("    orders per minute (event time): orders/failed before | after");
    for i in 0..b.len().max(a.len()) {
        let cell = |v: Option<&Value>| {
            v.map(|m| {
                format!(
                    "{} {:>5}/{:<4}",
                    m["minute"].as_str().unwrap_or("?"),
                    m["orders"],
                    m["failed"]
                )
            })
            .unwrap_or_default()
        };
        println!("      {:<36} | {}", cell(b.get(i)), cell(a.get(i)));
    }
}

/// Write report.json and lag.svg into the output directory.
pub fn write_outputs(opts: &Options, report: &Report) -> anyhow::Result<()> {
    let json_path = opts.out_dir.join("report.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(report)?)?;
    let mut series = vec![Series {
        name: "total".into(),
        points: report
            .lag_samples
            .iter()
            .map(|s| (s.t_ms as f64 / 1000.0, s.total as f64))
            .collect(),
    }];
    let parts = report
        .lag_samples
        .iter()
        .map(|s| s.partitions.len())
        .max()
        .unwrap_or(0);
    for p in 0..parts {
        series.push(Series {
            name: format!("orders/{p}"),
            points: report
                .lag_samples
                .iter()
                .filter_map(|s| {
                    s.partitions
                        .get(p)
                        .map(|l| (s.t_ms as f64 / 1000.0, *l as f64))
                })
                .collect(),
        });
    }
    let title = format!(
        "inventory consumer lag: {} orders, THROTTLE_MS={}",
        report.produced, report.throttle_ms
    );
    let svg_path = opts.out_dir.join("lag.svg");
    std::fs::write(
        &svg_path,
        line_chart(
            &title,
            "seconds since the bulk publish started",
            "lag (records)",
            &series,
        ),
    )?;
    say!(
        opts,
        "    wrote {} and {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_replay_step_warns_when_history_was_deleted() {
        // as `orderflowctl reset --json` prints it
        let doc = json!({"group": "analytics", "to": "earliest", "dry_run": false,
            "changes": [
                {"topic": "orders", "partition": 0, "from": 120, "to": 0},
                {"topic": "orders", "partition": 1, "from": 98, "to": 40,
                 "history_truncated": {"log_start_offset": 40, "records_deleted": 40,
                                       "oldest_record_at": "2026-11-22T10:00:00Z"}}],
            "history_truncated": [{"topic": "orders", "partition": 1, "log_start_offset": 40,
                                   "records_deleted": 40}]});
        let (changes, lines) = replay_lines(&doc).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(
            changes[1]
                .history_truncated
                .as_ref()
                .map(|h| h.log_start_offset),
            Some(40)
        );
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "    orders            p0      120 -> 0");
        assert!(
            lines[2].starts_with(
                "    WARNING history truncated on orders[1]: the reset to earliest starts at log \
                 start offset 40"
            ),
            "{lines:?}"
        );
        assert!(lines[2].contains("the 40 record(s) before it were deleted"));
    }

    #[test]
    fn the_replay_step_says_nothing_more_with_the_whole_history() {
        let doc = json!({"group": "analytics", "to": "earliest", "dry_run": false,
            "changes": [{"topic": "orders", "partition": 0, "to": 0}], "history_truncated": []});
        let (changes, lines) = replay_lines(&doc).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(lines, vec!["    orders            p0        - -> 0"]);
    }

    #[test]
    fn compare_finds_differences_only_in_data_fields() {
        let a = json!({"orders_total": 10, "reserved_total": 8, "failed_total": 2, "failure_rate": 0.2,
                       "orders_per_minute": [{"minute": "m", "orders": 10, "failed": 2}], "consumed": {"orders": {"0": 4}}});
        let mut b = a.clone();
        b["consumed"] = json!({"orders": {"0": 9}});
        assert!(
            compare_metrics(&a, &b).is_empty(),
            "consumed offsets are not data fields"
        );
        b["orders_per_minute"][0]["failed"] = json!(3);
        let d = compare_metrics(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("orders_per_minute"));
        assert_eq!(data_view(&a).as_object().unwrap().len(), DATA_FIELDS.len());
    }
}
