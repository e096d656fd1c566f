//! The N sweep: how orderflow's cost grows with the size of the history. For each N of
//! `Options::sweep` (`make bench`: 100k, 1M, 3M), on a fresh broker, orderflow alone: P1
//! (order-service publishes N), P2 (inventory-service decides them), P3 (analytics-service
//! replays the 2N records), the peak RSS of each, then P7 and P8 (each restarted over the N
//! decisions). One sample per N, after the runs. The aim: the cost per event of P1-P3 flat
//! within 15% ([`FLAT_WITHIN`]) from the smallest N to the largest.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::ours;
use super::report::{num, ratio_text};
use super::restarts::restarts;
use super::{say, Samples};

/// The largest ratio of the costs per event (highest / lowest events/s) still "flat".
pub const FLAT_WITHIN: f64 = 1.15;

/// What one N measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SweepRow {
    pub n: u64,
    /// P1 events/s.
    pub produce: f64,
    /// P2 events/s.
    pub decide: f64,
    /// P3 records/s (2N records).
    pub replay: f64,
    /// Peak RSS in MiB of order-service (P1), inventory-service (P2), analytics-service (P3).
    pub rss_mib: [f64; 3],
    /// P7 seconds: inventory (24 h window), inventory (1 s window), analytics.
    pub restart_secs: [f64; 3],
    /// P8 MiB, the same three.
    pub restart_rss_mib: [f64; 3],
}

/// The sweep's rows and, per benchmark, highest / lowest events/s over the sizes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sweep {
    pub rows: Vec<SweepRow>,
    /// P1, P2, P3: highest / lowest rate (1.0: the same cost per event at every N).
    pub spread: [f64; 3],
    /// Every spread within [`FLAT_WITHIN`].
    pub flat: bool,
}

impl Sweep {
    pub fn of(rows: Vec<SweepRow>) -> Self {
        let spread_of = |f: fn(&SweepRow) -> f64| {
            let v: Vec<f64> = rows.iter().map(f).collect();
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            let min = v.iter().copied().fold(f64::MAX, f64::min);
            if v.is_empty() || min <= 0.0 {
                f64::NAN
            } else {
                max / min
            }
        };
        let spread = [
            spread_of(|r| r.produce),
            spread_of(|r| r.decide),
            spread_of(|r| r.replay),
        ];
        let flat = spread.iter().all(|s| *s <= FLAT_WITHIN);
        Self { rows, spread, flat }
    }
}

/// Run the sweep over `sizes` in `dir`.
pub(super) async fn run(sizes: &[u64], dir: &Path) -> anyhow::Result<Sweep> {
    let mut rows = Vec::new();
    for &n in sizes {
        say(&format!("==> N sweep: {n} events"));
        rows.push(one(n, &dir.join(format!("sweep-{n}"))).await?);
    }
    Ok(Sweep::of(rows))
}

async fn one(n: u64, dir: &Path) -> anyhow::Result<SweepRow> {
    let (broker, [p1, p2, p3]) = ours::p1_to_p3(n, dir, &[]).await?;
    let (logs, kafka, b) = (dir.join("logs"), broker.kafka(), broker.bootstrap.clone());
    let mut s = Samples::new();
    restarts(&b, &kafka, &logs, n, &mut s).await?;
    let get = |id: &str, subject: &str| {
        s.get(&(id.to_string(), subject.to_string()))
            .and_then(|v| v.first().copied())
            .unwrap_or(f64::NAN)
    };
    let subjects = [
        "inventory-service",
        "inventory-service (1 s window)",
        "analytics-service",
    ];
    let row = SweepRow {
        n,
        produce: n as f64 / p1.secs,
        decide: n as f64 / p2.secs,
        replay: 2.0 * n as f64 / p3.secs,
        rss_mib: [p1.rss_mib, p2.rss_mib, p3.rss_mib],
        restart_secs: subjects.map(|sub| get("P7", sub)),
        restart_rss_mib: subjects.map(|sub| get("P8", sub)),
    };
    say(&format!(
        "    N {n}: P1 {:.0} events/s, P2 {:.0} events/s, P3 {:.0} records/s",
        row.produce, row.decide, row.replay
    ));
    drop(broker);
    Ok(row)
}

/// The N sweep's table and its verdict.
pub(super) fn markdown(s: &mut String, w: &Sweep) {
    let _ = writeln!(
        s,
        "\n## N sweep: orderflow alone, one sample per N\n\n\
         | N | P1 events/s | P2 events/s | P3 records/s | peak RSS MiB (order, inventory, analytics) \
         | P7 restart s (inventory 24 h, 1 s window, analytics) | P8 RSS MiB (same) |\n\
         |---:|---:|---:|---:|---|---|---|"
    );
    let three = |v: &[f64; 3]| v.map(num).join(", ");
    for r in &w.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            num(r.produce),
            num(r.decide),
            num(r.replay),
            three(&r.rss_mib),
            three(&r.restart_secs),
            three(&r.restart_rss_mib)
        );
    }
    let _ = writeln!(
        s,
        "\nHighest / lowest rate over the sizes: P1 {}, P2 {}, P3 {}; target: each <= {} (cost \
         per event flat within 15%): {}.",
        ratio_text(w.spread[0]),
        ratio_text(w.spread[1]),
        ratio_text(w.spread[2]),
        FLAT_WITHIN,
        if w.flat { "met" } else { "**not met**" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u64, produce: f64, decide: f64, replay: f64) -> SweepRow {
        SweepRow {
            n,
            produce,
            decide,
            replay,
            rss_mib: [1.0; 3],
            restart_secs: [1.0; 3],
            restart_rss_mib: [1.0; 3],
        }
    }

    #[test]
    fn flat_when_every_rate_stays_within_15_percent() {
        let s = Sweep::of(vec![
            row(100, 100.0, 50.0, 200.0),
            row(1000, 110.0, 55.0, 190.0),
        ]);
        assert!(s.flat, "{s:?}");
        assert!((s.spread[0] - 1.1).abs() < 1e-9);
        let s = Sweep::of(vec![
            row(100, 100.0, 50.0, 200.0),
            row(1000, 100.0, 40.0, 200.0),
        ]);
        assert!(!s.flat, "P2 slowed by 25%: {s:?}");
        assert!(!Sweep::of(vec![]).flat);
    }
}
