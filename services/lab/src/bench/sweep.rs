//! The N sweep: how orderflow's cost grows with the size of the history. For each N of
//! `Options::sweep` (`make bench`: 100k, 1M, 3M), on a fresh broker, orderflow alone: P1
//! (order-service publishes N), P2 (inventory-service decides them), P3 (analytics-service
//! replays the 2N records), the peak RSS of each, then P7 and P8 (each restarted over the N
//! decisions). After the runs, `Options::sweep_runs` samples per N (`make bench`: 3), in
//! rounds over every size in turn so that a slow spell of the machine falls on all sizes
//! alike; each figure of a row is the median of its samples ([`SweepRow::median`]), and the
//! marginal rates are taken between those medians. Each broker first takes the runs' orders
//! from kcat, unmeasured, as in the runs: a fresh JVM serves its first million records much
//! slower, and that is the broker's warm-up, not orderflow's cost.
//!
//! The aim: the cost per event of P1-P3 flat within 15% ([`FLAT_WITHIN`]) from the smallest
//! N to the largest. P2 and P3 are timed from process start, and the start (the group's
//! assignment, a transactional producer per partition, restoring state) costs about the
//! same at any N, so their rate from start must rise with N. What grows with the history is
//! the cost of each further event: the **marginal rate** between one N and the next,
//! `(N2 - N1) / (t2 - t1)`, in which the start cancels. The sweep reports both and judges
//! flatness on the marginal rates, which needs three sizes or more.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::ours::{self, WarmUp};
use super::report::{num, ratio_text, Figure};
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

impl SweepRow {
    /// Each figure the median of the samples' (of one N), as the runs' ([`Figure::of`]);
    /// `None` without samples.
    pub fn median(samples: &[SweepRow]) -> Option<SweepRow> {
        let first = samples.first()?;
        let med = |f: &dyn Fn(&SweepRow) -> f64| Figure::of(samples.iter().map(f).collect()).median;
        Some(SweepRow {
            n: first.n,
            produce: med(&|r| r.produce),
            decide: med(&|r| r.decide),
            replay: med(&|r| r.replay),
            rss_mib: std::array::from_fn(|i| med(&|r| r.rss_mib[i])),
            restart_secs: std::array::from_fn(|i| med(&|r| r.restart_secs[i])),
            restart_rss_mib: std::array::from_fn(|i| med(&|r| r.restart_rss_mib[i])),
        })
    }

    /// P1, P2, P3: the events (records for P3) and the seconds they took.
    fn work(&self) -> [(f64, f64); 3] {
        let n = self.n as f64;
        [(n, self.produce), (n, self.decide), (2.0 * n, self.replay)]
            .map(|(events, rate)| (events, events / rate))
    }
}

/// The sweep's rows and, per benchmark, highest / lowest events/s over the sizes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sweep {
    pub rows: Vec<SweepRow>,
    /// P1, P2, P3: highest / lowest rate from start (1.0: the same at every N).
    pub spread: [f64; 3],
    /// P1, P2, P3: the marginal rate from each N to the next (one fewer than the rows).
    pub marginal: Vec<[f64; 3]>,
    /// P1, P2, P3: highest / lowest marginal rate (1.0: the same cost per further event).
    pub marginal_spread: [f64; 3],
    /// Every marginal spread within [`FLAT_WITHIN`] (and at least two marginal rates).
    pub flat: bool,
    /// Samples per N behind each row (their median).
    pub samples: usize,
}

impl Sweep {
    /// `rows` in increasing N, each from `samples` samples.
    pub fn of(rows: Vec<SweepRow>, samples: usize) -> Self {
        let marginal: Vec<[f64; 3]> = rows
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0].work(), w[1].work());
                std::array::from_fn(|i| (b[i].0 - a[i].0) / (b[i].1 - a[i].1))
            })
            .collect();
        let spread = std::array::from_fn(|i| {
            spread_of(rows.iter().map(|r| [r.produce, r.decide, r.replay][i]))
        });
        let marginal_spread = std::array::from_fn(|i| spread_of(marginal.iter().map(|m| m[i])));
        let flat = marginal.len() >= 2 && marginal_spread.iter().all(|s| *s <= FLAT_WITHIN);
        Self {
            rows,
            spread,
            marginal,
            marginal_spread,
            flat,
            samples,
        }
    }
}

/// Highest / lowest of `rates`; NaN when there are none or one is not a positive rate (a
/// larger N that took no longer than a smaller one).
fn spread_of(rates: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = rates.collect();
    if v.is_empty() || v.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        return f64::NAN;
    }
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    max / min
}

/// Run the sweep over `sizes` (sorted here), `runs` rounds, in `dir`, each broker warmed up
/// by `warm_up`.
pub(super) async fn run(
    sizes: &[u64],
    runs: usize,
    dir: &Path,
    warm_up: WarmUp<'_>,
) -> anyhow::Result<Sweep> {
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let runs = runs.max(1);
    let mut samples: Vec<Vec<SweepRow>> = vec![Vec::new(); sizes.len()];
    for round in 1..=runs {
        for (&n, got) in sizes.iter().zip(&mut samples) {
            say(&format!("==> N sweep: {n} events (sample {round}/{runs})"));
            let sample_dir = dir.join(format!("sweep-{n}-{round}"));
            got.push(one(n, &sample_dir, warm_up).await?);
        }
    }
    let rows = samples.iter().filter_map(|s| SweepRow::median(s)).collect();
    Ok(Sweep::of(rows, runs))
}

async fn one(n: u64, dir: &Path, warm_up: WarmUp<'_>) -> anyhow::Result<SweepRow> {
    let (broker, [p1, p2, p3]) = ours::p1_to_p3(n, dir, &[], Some(warm_up)).await?;
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
        "\n## N sweep: orderflow alone, {}\n\n\
         | N | P1 events/s | P2 events/s | P3 records/s | peak RSS MiB (order, inventory, analytics) \
         | P7 restart s (inventory 24 h, 1 s window, analytics) | P8 RSS MiB (same) |\n\
         |---:|---:|---:|---:|---|---|---|",
        if w.samples > 1 {
            format!("the median of {} samples per N", w.samples)
        } else {
            "one sample per N".to_string()
        }
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
        "\nMarginal rates, `(N2 - N1) / (t2 - t1)`: the cost of each further event, in which \
         the start (the same at any N) cancels.\n\n\
         | from N to N | P1 events/s | P2 events/s | P3 records/s |\n|---|---:|---:|---:|"
    );
    for (m, w2) in w.marginal.iter().zip(w.rows.windows(2)) {
        let _ = writeln!(
            s,
            "| {} to {} | {} | {} | {} |",
            w2[0].n,
            w2[1].n,
            num(m[0]),
            num(m[1]),
            num(m[2])
        );
    }
    let ratio = |x: f64| {
        if x.is_nan() {
            "n/a".to_string()
        } else {
            ratio_text(x)
        }
    };
    let three =
        |v: &[f64; 3]| format!("P1 {}, P2 {}, P3 {}", ratio(v[0]), ratio(v[1]), ratio(v[2]));
    let _ = writeln!(
        s,
        "\nHighest / lowest over the sizes: rate from start {}; marginal rate {}. Target: each \
         marginal <= {} (cost per event flat within 15%; three sizes or more): {}.",
        three(&w.spread),
        three(&w.marginal_spread),
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

    /// A row whose P1-P3 took `start` seconds plus `per_event` seconds per event (record).
    fn timed(n: u64, start: f64, per_event: [f64; 3]) -> SweepRow {
        let secs = |events: f64, i: usize| start + events * per_event[i];
        let n_f = n as f64;
        row(
            n,
            n_f / secs(n_f, 0),
            n_f / secs(n_f, 1),
            2.0 * n_f / secs(2.0 * n_f, 2),
        )
    }

    #[test]
    fn a_start_of_the_same_length_at_every_n_cancels_in_the_marginal_rates() {
        let per_event = [1e-5, 2e-5, 5e-6];
        let s = Sweep::of(
            vec![
                timed(100_000, 1.0, per_event),
                timed(1_000_000, 1.0, per_event),
                timed(3_000_000, 1.0, per_event),
            ],
            1,
        );
        // from start, 100k pays its 1 s start over 1 s of events: half the rate of 3M's
        assert!(s.spread[0] > 1.8, "{s:?}");
        assert_eq!(s.marginal.len(), 2);
        for (m, want) in s.marginal[0].iter().zip([1e5, 5e4, 2e5]) {
            assert!((m - want).abs() < 1e-6 * want, "{s:?}");
        }
        assert!(s.marginal_spread.iter().all(|x| (x - 1.0).abs() < 1e-9));
        assert!(s.flat, "{s:?}");
    }

    #[test]
    fn a_cost_per_event_that_grows_is_not_flat() {
        let s = Sweep::of(
            vec![
                timed(100_000, 1.0, [1e-5; 3]),
                timed(1_000_000, 1.0, [1e-5; 3]),
                // from 1M to 3M each further order took 25% longer to decide
                row(3_000_000, 3e6 / 36.0, 3e6 / 36.0, 6e6 / 71.0),
            ],
            1,
        );
        assert!(!s.flat, "{s:?}");
        assert!(s.marginal_spread[0] > 1.2, "{s:?}");
    }

    #[test]
    fn fewer_than_three_sizes_judge_nothing() {
        let two = Sweep::of(
            vec![row(100, 100.0, 50.0, 200.0), row(1000, 100.0, 50.0, 200.0)],
            1,
        );
        assert_eq!(two.marginal.len(), 1);
        assert!(!two.flat);
        assert!(!Sweep::of(vec![], 1).flat);
        assert!(Sweep::of(vec![], 1).spread[0].is_nan());
    }

    #[test]
    fn a_row_is_the_median_of_its_samples_figure_by_figure() {
        let mut slow = row(1000, 100.0, 10.0, 400.0);
        slow.rss_mib = [30.0, 90.0, 50.0];
        let mut fast = row(1000, 300.0, 30.0, 200.0);
        fast.rss_mib = [10.0, 70.0, 70.0];
        let mut mid = row(1000, 200.0, 50.0, 300.0);
        mid.rss_mib = [20.0, 80.0, 60.0];
        let m = SweepRow::median(&[slow, fast, mid]).unwrap();
        assert_eq!(
            (m.n, m.produce, m.decide, m.replay),
            (1000, 200.0, 30.0, 300.0)
        );
        assert_eq!(m.rss_mib, [20.0, 80.0, 60.0]);
        assert_eq!(SweepRow::median(&[]), None);
    }
}
