//! What the flow on the kind bed reports: the metrics at each stage ([`Report`]), written as
//! target/e2e-kind/report.md with the lag request's chart (lag.svg) and kubectl's view.

use std::fmt::Write as _;

use chrono::DateTime;
use orderflow_lab::chart::{line_chart, Series};
use serde_json::Value;

/// One row set of the report: a named `/api/metrics` data view.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub metrics: Value,
}

/// What the run measured (written as report.md).
#[derive(Debug, Clone)]
pub struct Report {
    pub kubernetes: String,
    pub stages: Vec<Stage>,
    pub lag_orders: u64,
    pub lag_status: Value,
    pub get_rr: String,
    pub describe_rr: String,
    pub steps: Vec<(String, f64)>,
}

/// The lag request's samples (status.lag.samples) as an SVG chart.
pub fn lag_svg(lag_status: &Value) -> String {
    let samples = lag_status["samples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let t0 = samples
        .first()
        .and_then(|s| s["at"].as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    let points = samples
        .iter()
        .filter_map(|s| {
            let at = DateTime::parse_from_rfc3339(s["at"].as_str()?).ok()?;
            let x = (at - t0?).num_milliseconds() as f64 / 1000.0;
            Some((x, s["lag"].as_f64()?))
        })
        .collect();
    line_chart(
        &format!(
            "Consumer lag of group {} while the ReplayRequest held inventory at 0",
            lag_status["consumerGroup"].as_str().unwrap_or("inventory")
        ),
        "seconds since the first sample",
        "lag (records)",
        &[Series {
            name: "status.lag.samples".into(),
            points,
        }],
    )
}

/// report.md: the before/after table, the lag figures and chart, and kubectl's view.
pub fn report_markdown(o: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# orderflow on the kind test bed\n");
    let _ = writeln!(
        s,
        "Kubernetes {} built here from source (a real kubelet, containerd, CoreDNS), the project's \
         images, Apache Kafka 4.3.1 in the release (`kafka.broker.enabled`), `helm install` of \
         helm/orderflow, orders over HTTP through the order Service.\n",
        o.kubernetes
    );
    let _ = writeln!(s, "## /api/metrics at each stage\n");
    let _ = write!(s, "| stage | orders_total | reserved_total | failed_total | failure_rate | minutes |\n|---|---:|---:|---:|---:|---:|\n");
    for st in &o.stages {
        let m = &st.metrics;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.4} | {} |",
            st.name,
            m["orders_total"],
            m["reserved_total"],
            m["failed_total"],
            m["failure_rate"].as_f64().unwrap_or(0.0),
            m["orders_per_minute"].as_array().map_or(0, |a| a.len())
        );
    }
    let _ = writeln!(
        s,
        "\nEvery field that depends only on the data (totals, failure rate, per-minute counts) is \
         equal between \"before replay-1\", \"after replay-1\" and the oracle computed from the \
         records read back from the topics inside the cluster.\n"
    );
    let _ = writeln!(s, "## Consumer lag (ReplayRequest lag-1)\n");
    let _ = writeln!(
        s,
        "{} orders were published while the request held inventory at 0. Peak lag {}, drained \
         {} s after inventory was restored.\n\n![lag](lag.svg)\n",
        o.lag_orders, o.lag_status["peak"], o.lag_status["drainedAfterSeconds"]
    );
    let _ = writeln!(s, "## Steps\n\n| step | seconds |\n|---|---:|");
    for (name, secs) in &o.steps {
        let _ = writeln!(s, "| {name} | {secs:.1} |");
    }
    let _ = writeln!(
        s,
        "\n## kubectl get rr -o wide\n\n```\n{}```\n\n## kubectl describe rr\n\n```\n{}```",
        o.get_rr, o.describe_rr
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_has_the_table_and_the_chart() {
        let m = json!({"orders_total": 3, "reserved_total": 2, "failed_total": 1,
                       "failure_rate": 1.0/3.0, "orders_per_minute": [{}]});
        let o = Report {
            kubernetes: "v1.33.13".into(),
            stages: vec![Stage {
                name: "before".into(),
                metrics: m,
            }],
            lag_orders: 40,
            lag_status: json!({"consumerGroup": "inventory", "peak": 40, "drainedAfterSeconds": 2.0,
                "samples": [{"at": "2026-11-22T10:00:00Z", "lag": 0},
                            {"at": "2026-11-22T10:00:02Z", "lag": 40},
                            {"at": "2026-11-22T10:00:04Z", "lag": 0}]}),
            get_rr: "NAME PHASE\n".into(),
            describe_rr: "Name: lag-1\n".into(),
            steps: vec![("install".into(), 1.5)],
        };
        let md = report_markdown(&o);
        assert!(md.contains("| before | 3 | 2 | 1 | 0.3333 | 1 |"), "{md}");
        assert!(md.contains("![lag](lag.svg)"));
        assert!(md.contains("Kubernetes v1.33.13 built here"));
        assert!(md.contains("Peak lag 40, drained 2.0 s"));
        let svg = lag_svg(&o.lag_status);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("status.lag.samples"));
    }
}
