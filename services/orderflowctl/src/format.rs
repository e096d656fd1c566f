//! Text output of the CLI, in the style of `kafka-consumer-groups`.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::{GroupInfo, LagSample, PartitionLag};
use crate::plan::OffsetChange;

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Seconds to the millisecond, `-` when unknown.
fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// Left-aligned columns separated by two spaces, one line per row, trailing newline.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `GROUP TOPIC PARTITION COMMITTED LOG-END LAG LAG-SECONDS`, then the total and the
/// largest lag in seconds.
pub fn lag_table(group: &str, lags: &[PartitionLag]) -> String {
    let rows: Vec<Vec<String>> = lags
        .iter()
        .map(|l| {
            vec![
                group.to_string(),
                l.topic.clone(),
                l.partition.to_string(),
                opt(l.committed),
                l.high_watermark.to_string(),
                l.lag.to_string(),
                secs(l.lag_seconds),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "LAG-SECONDS",
        ],
        &rows,
    );
    out.push_str(&format!(
        "TOTAL LAG  {}  MAX LAG-SECONDS  {}\n",
        crate::total_lag(lags),
        secs(crate::timelag::max_lag_seconds(lags))
    ));
    out
}

/// One watch line: time, total, largest lag in seconds, and the lag per partition.
pub fn sample_line(sample: &LagSample) -> String {
    let at = DateTime::<Utc>::from_timestamp_millis(sample.at_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| sample.at_ms.to_string());
    let parts: Vec<String> = sample
        .partitions
        .iter()
        .map(|p| format!("{}[{}]={}", p.topic, p.partition, p.lag))
        .collect();
    format!(
        "{at}  total lag {:>7}  max {:>9} s  {}",
        sample.total,
        secs(sample.max_lag_seconds),
        parts.join(" ")
    )
}

/// `GROUP TOPIC PARTITION FROM TO`.
pub fn reset_table(group: &str, changes: &[OffsetChange]) -> String {
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                group.to_string(),
                c.topic.clone(),
                c.partition.to_string(),
                opt(c.from),
                c.to.to_string(),
            ]
        })
        .collect();
    table(&["GROUP", "TOPIC", "PARTITION", "FROM", "TO"], &rows)
}

/// The group's state and members.
pub fn group_text(info: &GroupInfo) -> String {
    let mut out = format!(
        "GROUP {}  STATE {}  MEMBERS {}\n",
        info.group, info.state, info.members
    );
    if !info.member_list.is_empty() {
        let rows: Vec<Vec<String>> = info
            .member_list
            .iter()
            .map(|m| vec![m.member_id.clone(), m.client_id.clone(), m.host.clone()])
            .collect();
        out.push_str(&table(&["MEMBER-ID", "CLIENT-ID", "HOST"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GroupMember;

    #[test]
    fn lag_table_aligns_columns_and_shows_missing_commits() {
        let lags = vec![
            PartitionLag::new("orders", 0, Some(4), 0, 10)
                .with_time(Some(crate::timelag::NextRecord::At(1_000)), 13_500),
            PartitionLag::new("inventory-events", 12, None, 3, 1200),
            PartitionLag::new("inventory-events", 13, Some(8), 0, 8),
        ];
        let got = lag_table("inventory", &lags);
        let want = "\
GROUP      TOPIC             PARTITION  COMMITTED  LOG-END  LAG   LAG-SECONDS
inventory  orders            0          4          10       6     12.500
inventory  inventory-events  12         -          1200     1197  -
inventory  inventory-events  13         8          8        0     0.000
TOTAL LAG  1203  MAX LAG-SECONDS  12.500
";
        assert_eq!(got, want);
    }

    #[test]
    fn empty_lag_table_has_header_and_zero_total() {
        assert_eq!(
            lag_table("g", &[]),
            "GROUP  TOPIC  PARTITION  COMMITTED  LOG-END  LAG  LAG-SECONDS\n\
             TOTAL LAG  0  MAX LAG-SECONDS  -\n"
        );
    }

    #[test]
    fn reset_table_shows_from_and_to() {
        let changes = vec![
            OffsetChange {
                topic: "orders".into(),
                partition: 0,
                from: Some(1500),
                to: 0,
                history_truncated: None,
            },
            OffsetChange {
                topic: "orders".into(),
                partition: 1,
                from: None,
                to: 0,
                history_truncated: None,
            },
        ];
        let want = "\
GROUP      TOPIC   PARTITION  FROM  TO
analytics  orders  0          1500  0
analytics  orders  1          -     0
";
        assert_eq!(reset_table("analytics", &changes), want);
    }

    #[test]
    fn sample_line_has_time_total_and_partitions() {
        let s = LagSample::new(
            1_795_000_000_123,
            vec![
                PartitionLag::new("orders", 0, Some(1), 0, 4),
                PartitionLag::new("orders", 1, Some(2), 0, 2),
            ],
        );
        assert_eq!(
            sample_line(&s),
            "2026-11-18T11:06:40.123Z  total lag       3  max     0.000 s  orders[0]=3 orders[1]=0"
        );
    }

    #[test]
    fn group_text_lists_members() {
        let info = GroupInfo {
            group: "analytics".into(),
            state: "Stable".into(),
            members: 1,
            member_list: vec![GroupMember {
                member_id: "m-1".into(),
                client_id: "analytics-service".into(),
                host: "/127.0.0.1".into(),
            }],
        };
        assert_eq!(
            group_text(&info),
            "GROUP analytics  STATE Stable  MEMBERS 1\n\
             MEMBER-ID  CLIENT-ID          HOST\n\
             m-1        analytics-service  /127.0.0.1\n"
        );
    }
}
