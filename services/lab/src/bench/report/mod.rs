//! What the bench reports: a [`Figure`] (median, min-max) per subject and benchmark, the
//! ratios orderflow/peer, each benchmark's target and whether it was met ([`summarize`]), as
//! results.json ([`Results`]) and results.md ([`markdown`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Samples;

/// One figure of one subject, over the runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figure {
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Figure {
    pub fn of(runs: Vec<f64>) -> Self {
        let mut s = runs.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        let median = match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Self {
            median,
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
            runs,
        }
    }
}

/// A measured quantity (e.g. "P1 produce, events/s") for orderflow and its peers.
#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    pub id: String,
    pub title: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// subject ("orderflow", "kcat", "python", "flask", or a service name for P5) -> figure
    pub subjects: BTreeMap<String, Figure>,
    /// "orderflow/<peer>" -> ratio of the medians
    pub ratios: BTreeMap<String, f64>,
    pub target: String,
    pub met: Option<bool>,
}

/// Everything measured, as results.json holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub events: u64,
    pub runs: usize,
    pub cores: usize,
    pub cpu: String,
    pub broker: String,
    pub started: String,
    pub benches: Vec<Bench>,
    /// What the proof that the Kafka Streams peers decide and count like orderflow compared
    /// (`None`: not run).
    pub streams_equal: Option<super::StreamsEquality>,
    /// The N sweep (`None`: not run).
    pub sweep: Option<super::Sweep>,
}

pub(super) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

struct Spec {
    id: String,
    title: String,
    unit: &'static str,
    higher_is_better: bool,
    subjects: &'static [&'static str],
}

/// The benchmarks in report order; P6 has a p50, p99 and max row per rate of
/// [`super::latency::RATES`].
fn specs() -> Vec<Spec> {
    let mut v = vec![
        spec("P1", "produce N OrderPlaced", "events/s", true, &["orderflow", "kcat", "kafka-producer-perf-test", "python"]),
        spec("P2", "inventory: decide N orders (kafka streams: decide them too; kcat, perf test: consume raw; kcat pipe: copy to a topic)", "events/s", true, &[
            "orderflow",
            "kafka streams",
            "kcat",
            "kafka-consumer-perf-test",
            "kcat pipe",
            "python",
        ]),
        spec("P3", "replay analytics over 2N records (kafka streams: count them too; kcat, perf test: consume both topics)", "s", false, &[
            "orderflow",
            "kafka streams",
            "kcat",
            "kafka-consumer-perf-test",
            "python",
        ]),
        spec("P4-p50", "POST /orders p50 at the fixed rate", "ms", false, &["orderflow", "flask"]),
        spec("P4-p99", "POST /orders p99 at the fixed rate", "ms", false, &["orderflow", "flask"]),
        spec("P4-rps", "POST /orders at full speed", "req/s", true, &["orderflow", "flask"]),
        spec("P5", &format!("peak RSS during P1-P3 (at the defaults; and with the memory settings {})", memory_settings_text()), "MiB", false, &[
            "order-service",
            "inventory-service",
            "analytics-service",
            super::ours::MEMORY_SUBJECTS[0],
            super::ours::MEMORY_SUBJECTS[1],
            super::ours::MEMORY_SUBJECTS[2],
        ]),
    ];
    for (_, rate) in super::latency::RATES {
        for q in ["p50", "p99", "max"] {
            v.push(spec(
                &format!("P6-{rate}-{q}"),
                &format!("end to end at {rate} orders/s, {q} (see below)"),
                "ms",
                false,
                &[
                    "orderflow",
                    "kafka streams",
                    "orderflow analytics",
                    "orderflow at-least-once",
                    "kafka streams at-least-once",
                ],
            ));
        }
    }
    v.extend([
        spec(
            "P7",
            "restart after N decisions: start to ready (analytics: caught up)",
            "s",
            false,
            &[
                "inventory-service",
                "inventory-service (1 s window)",
                "analytics-service",
            ],
        ),
        spec(
            "P8",
            "peak RSS of the restarted services (inventory: its idempotency window)",
            "MiB",
            false,
            &[
                "inventory-service",
                "inventory-service (1 s window)",
                "analytics-service",
            ],
        ),
    ]);
    v
}

/// The memory settings as `NAME=value` words, from the list the runs start the services with.
fn memory_settings_text() -> String {
    super::ours::memory_settings()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn spec(
    id: &str,
    title: &str,
    unit: &'static str,
    higher_is_better: bool,
    subjects: &'static [&'static str],
) -> Spec {
    Spec {
        id: id.to_string(),
        title: title.to_string(),
        unit,
        higher_is_better,
        subjects,
    }
}

/// Medians, ratios and targets from the raw samples.
pub fn summarize(s: &Samples, http_rate: u64) -> Vec<Bench> {
    specs()
        .into_iter()
        .map(|spec| {
            let subjects: BTreeMap<String, Figure> = spec
                .subjects
                .iter()
                .filter_map(|sub| {
                    s.get(&(spec.id.clone(), sub.to_string()))
                        .map(|v| (sub.to_string(), Figure::of(v.clone())))
                })
                .collect();
            let ours = subjects.get("orderflow").map(|f| f.median);
            let ratios: BTreeMap<String, f64> = subjects
                .iter()
                // "orderflow analytics" is another stage of ours, not a peer
                .filter(|(k, _)| !k.starts_with("orderflow"))
                .filter_map(|(k, f)| {
                    // a peer in another guarantee ("kafka streams at-least-once") against
                    // orderflow in the same one
                    let ours = match k.strip_prefix("kafka streams") {
                        Some(g) if !g.is_empty() => subjects.get(&format!("orderflow{g}"))?.median,
                        _ => ours?,
                    };
                    Some((format!("orderflow/{k}"), ours / f.median))
                })
                .collect();
            let r = |k: &str| ratios.get(k).copied();
            let (target, met) = match spec.id.as_str() {
                "P1" => (
                    ">= 1.0x kcat, >= 1.0x kafka-producer-perf-test and >= 50x python (events/s)"
                        .to_string(),
                    all_at_least(&[
                        (r("orderflow/kcat"), 1.0),
                        (r("orderflow/kafka-producer-perf-test"), 1.0),
                        (r("orderflow/python"), 50.0),
                    ]),
                ),
                "P2" => (
                    ">= 2x the Kafka Streams inventory peer (same guarantee) and >= 0.7x the kcat pipe (events/s)".into(),
                    all_at_least(&[
                        (r("orderflow/kafka streams"), 2.0),
                        (r("orderflow/kcat pipe"), 0.7),
                    ]),
                ),
                "P3" => (
                    "<= 1.3x kcat's consume time and <= 0.5x the Kafka Streams analytics peer's time".into(),
                    match (r("orderflow/kcat"), r("orderflow/kafka streams")) {
                        (Some(k), Some(ks)) => Some(k <= 1.3 && ks <= 0.5),
                        _ => None,
                    },
                ),
                "P4-p99" => (
                    format!("orderflow p99 < 5 ms at {http_rate} req/s"),
                    ours.map(|p| p < 5.0),
                ),
                "P4-rps" => (
                    ">= 10x the Flask peer".into(),
                    r("orderflow/flask").map(|k| k >= 10.0),
                ),
                "P6-1k-p99" => (
                    "orderflow's decision p99 < 10 ms at 1k orders/s, and below the Kafka Streams peer's".into(),
                    match (ours, r("orderflow/kafka streams")) {
                        (Some(p), Some(k)) => Some(p < 10.0 && k < 1.0),
                        _ => None,
                    },
                ),
                "P7" => (
                    "< 1 s whatever the history length (the ledger alone: 1 s window)".into(),
                    subjects
                        .iter()
                        .filter(|(k, _)| k.as_str() != "inventory-service")
                        .map(|(_, f)| f.max < 1.0)
                        .reduce(|a, b| a && b),
                ),
                "P5" => (
                    "< 64 MiB per service with the memory settings".into(),
                    super::ours::MEMORY_SUBJECTS
                        .iter()
                        .map(|k| subjects.get(*k).map(|f| f.max < 64.0))
                        .collect::<Option<Vec<bool>>>()
                        .map(|v| v.iter().all(|m| *m)),
                ),
                _ => (String::new(), None),
            };
            Bench {
                id: spec.id,
                title: spec.title,
                unit: spec.unit.into(),
                higher_is_better: spec.higher_is_better,
                subjects,
                ratios,
                target,
                met,
            }
        })
        .collect()
}

/// Whether every ratio is at least its bound; `None` when one was not measured.
fn all_at_least(bounds: &[(Option<f64>, f64)]) -> Option<bool> {
    bounds
        .iter()
        .map(|(r, min)| r.map(|r| r >= *min))
        .collect::<Option<Vec<bool>>>()
        .map(|met| met.iter().all(|m| *m))
}

pub(super) fn num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn ratio_text(x: f64) -> String {
    if x.abs() < 0.1 {
        format!("{x:.4}x")
    } else {
        format!("{x:.2}x")
    }
}

/// results.md: one row per benchmark and subject.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let measured = r.benches.iter().any(|b| !b.subjects.is_empty());
    // P6 sends for a time at a rate: N counts the orders of the other benchmarks only
    let of_n = r
        .benches
        .iter()
        .any(|b| !b.subjects.is_empty() && !b.id.starts_with("P6"));
    let _ = writeln!(
        s,
        "# orderflow benchmarks\n\n{}, {} cores ({}), broker: {}, started {}.\n",
        match (measured, of_n) {
            (true, true) => format!(
                "N = {} events, {} run(s) (median, min-max)",
                r.events, r.runs
            ),
            (true, false) => format!("P6 alone, {} run(s) (median, min-max)", r.runs),
            (false, _) => "The N sweep alone".to_string(),
        },
        r.cores,
        r.cpu,
        r.broker,
        r.started
    );
    if measured {
        benches_table(&mut s, r);
    }
    if let Some(w) = &r.sweep {
        super::sweep::markdown(&mut s, w);
    }
    if let Some(e) = &r.streams_equal {
        streams_note(&mut s, e);
    }
    s
}

/// The benchmarks' table (one row per benchmark and subject) and the note on P6.
fn benches_table(s: &mut String, r: &Results) {
    let _ = writeln!(
        s,
        "orderflow/subject is the ratio of the medians in the row's unit: for events/s and req/s \
         above 1 means orderflow is faster, for s and ms below 1 does.\n"
    );
    let _ = writeln!(
        s,
        "| bench | subject | median | min-max | unit | orderflow/subject | target | met |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---|---:|---|---|");
    for b in &r.benches {
        // orderflow's row first: it carries the target
        let mut rows: Vec<(&String, &Figure)> = b.subjects.iter().collect();
        rows.sort_by_key(|(sub, _)| sub.as_str() != "orderflow");
        for (i, (sub, f)) in rows.into_iter().enumerate() {
            let ratio = b
                .ratios
                .get(&format!("orderflow/{sub}"))
                .map_or(String::new(), |x| ratio_text(*x));
            let (target, met) = if i == 0 {
                (
                    b.target.clone(),
                    match b.met {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "n/a",
                    },
                )
            } else {
                (String::new(), "")
            };
            let _ = writeln!(
                s,
                "| {} {} | {sub} | {} | {}-{} | {} | {ratio} | {target} | {met} |",
                b.id,
                b.title,
                num(f.median),
                num(f.min),
                num(f.max),
                b.unit
            );
        }
    }
    if r.benches
        .iter()
        .any(|b| b.id.starts_with("P6") && !b.subjects.is_empty())
    {
        let _ = writeln!(
            s,
            "\nP6: `POST /orders` at a fixed rate, each order from the moment its request was due \
             to its decision's arrival at a `read_committed` consumer of the decision topic; \
             \"orderflow analytics\": to analytics-service counting it. \"orderflow\" and \
             \"kafka streams\": inventory-service with transactions and the Streams inventory \
             peer with exactly-once v2; \"... at-least-once\": `TRANSACTIONS=false` and the \
             peer at-least-once. Each ratio compares the same guarantee."
        );
    }
}

/// What the proof that the Kafka Streams peers decide and count like orderflow compared.
fn streams_note(s: &mut String, e: &super::StreamsEquality) {
    let _ = writeln!(
        s,
        "\nThe Kafka Streams peers (bench/peers/streams, {}) were proven equal to \
             orderflow first, on a broker of their own: the same decision for each of {} orders \
             ({} reserved, {} failed) and {} restocks ({} refused); the same counts in {} \
             minute(s), failure rate {:.4}. P2 and P3 then time them on each run's records.",
        if e.exactly_once {
            "exactly-once v2"
        } else {
            "at-least-once"
        },
        e.orders,
        e.reserved,
        e.failed,
        e.restocks,
        e.restocks_refused,
        e.minutes,
        e.failure_rate
    );
}

#[cfg(test)]
mod tests;
