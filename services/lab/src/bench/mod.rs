//! `make bench`: orderflow side by side with kcat and a Python pipeline in the lab's style
//! (bench/peers/), on the same local Apache Kafka in the same run. Writes
//! `<out>/results.json` and `<out>/results.md`.
//!
//! Each run starts a fresh broker and measures, in order (P4 on a broker of its own):
//! - P1 produce: N OrderPlaced through order-service's `POST /orders/bulk`, kcat producing the
//!   same N records from a file, kafka-producer-perf-test producing N records of the same JSON
//!   (its own records/s), the Python producer; events/s (acks=all for all).
//! - P2 inventory: inventory-service deciding the N orders of P1 (from process start until its
//!   group's lag is 0: consumed, decided, produced, committed), the Kafka Streams inventory
//!   peer doing the same (from JVM start until it has decided N and committed), kcat and
//!   kafka-consumer-perf-test consuming `orders` raw, a `kcat -C | kcat -P` pipe copying it to
//!   another topic (the floor of a consume-produce loop), the Python consumer doing the same
//!   work as inventory-service; events/s.
//! - P3 replay: analytics-service rebuilding from both topics (2N records) after a reset to
//!   earliest, the Kafka Streams analytics peer counting them, kcat and
//!   kafka-consumer-perf-test consuming both topics, the Python analytics;
//!   seconds.
//! - P4 HTTP: `POST /orders` with oha at a fixed rate (p50/p99) and at full speed (req/s),
//!   order-service against the Flask peer.
//! - P5 memory: peak RSS (VmHWM) of order-service (P1), inventory-service (P2) and
//!   analytics-service (P3); then P1-P3 once more on a broker of their own with the documented
//!   memory settings ([`ours::memory_settings`]), whose peaks the target judges.
//! - P6 end-to-end latency, on a broker of its own: `POST /orders` at 1k/s and 5k/s, each
//!   order timed from its request to its decision at a consumer of the decision topic and to
//!   analytics counting it; p50, p99, max; the Kafka Streams inventory peer the same way
//!   ([`latency`]).
//! - P7 restart: after P3, inventory-service and analytics-service started again over the N
//!   decisions; seconds from process start until `/readyz` answers 200 (inventory: every
//!   partition's ledger rebuilt and its idempotency window read back; analytics: its state
//!   restored and caught up with the same totals). Inventory twice: with the default 24 h
//!   idempotency window (which holds all N orders of the bench, so it reads their decisions
//!   back) and with a 1 s window (the ledger alone). P8: the peak RSS of each restarted process.
//!
//! Before any run, [`streams`] proves the Kafka Streams peers (bench/peers/streams) equal to
//! orderflow on `Options::proof_events` orders (same decisions, same counts); results.json
//! records what it compared (`streams_equal`). Then each run times them in P2 (the inventory
//! peer deciding the N orders, exactly-once v2 as inventory-service's transactions) and P3
//! (the analytics peer counting the 2N records) ([`streams_time`]).
//!
//! This module runs the benchmarks; [`peers`] starts and reads the programs orderflow is
//! measured against (kcat, the Python peers, Flask, oha), [`kafka_tools`] Kafka's perf tools
//! and the kcat pipe, [`restarts`] P7 and P8, [`latency`] P6, and [`report`] turns the samples into medians,
//! ratios, targets and results.md.

mod kafka_tools;
mod latency;
mod ours;
mod peers;
mod report;
mod restarts;
mod streams;
mod streams_time;
mod sweep;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use orderflow_events::{TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};

use crate::procs::{repo_root, run_checked, Broker, Service, ServiceKind};

pub use kafka_tools::{
    check_kafka_tools, parse_consumer_perf, parse_producer_perf, ConsumerPerf, KAFKA_TOOLS_JAR,
};
pub use peers::{parse_oha, OhaRun};
pub use report::{markdown, summarize, Bench, Figure, Results};
pub use restarts::peak_rss_mib;
pub use streams::{prove_equal, StreamsEquality, STREAMS_DECISIONS};
pub use sweep::{Sweep, SweepRow, FLAT_WITHIN};

use kafka_tools::{
    consumer_perf, kcat_pipe, producer_perf, write_payload_file, PERF_ORDERS, PIPE_ORDERS,
};
use peers::{http_bench, kcat_consume, kcat_produce, python, timed, write_orders_file, Flask};
use report::cpu_model;
use restarts::restarts;

const KCAT_ORDERS: &str = "bench-kcat-orders";
/// Where each run's unmeasured warm-up writes (see `kcat_produce`).
const WARMUP_ORDERS: &str = "bench-warmup-orders";
const PY_ORDERS: &str = "bench-py-orders";
const PY_DECISIONS: &str = "bench-py-inventory-events";
const FLASK_ORDERS: &str = "bench-flask-orders";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Orders per benchmark (P1 produces them, P2 decides them, P3 replays them and their
    /// decisions).
    pub events: u64,
    /// Runs; the report shows the median and the min-max.
    pub runs: usize,
    /// Seconds of each oha run in P4.
    pub http_seconds: u64,
    /// The fixed request rate of P4's latency measurement.
    pub http_rate: u64,
    /// Seconds of each fixed rate in P6.
    pub e2e_seconds: u64,
    /// P6 alone (no proof, no P1-P5, P7, P8, no sweep).
    pub e2e_only: bool,
    /// The sizes of the N sweep (orderflow's P1-P3, P7, P8 per N, after the runs; empty:
    /// none).
    pub sweep: Vec<u64>,
    /// Samples per N of the sweep (their median is reported).
    pub sweep_runs: usize,
    /// The N sweep alone.
    pub sweep_only: bool,
    /// Orders of the proof that the Kafka Streams peers decide and count like orderflow.
    pub proof_events: u64,
    pub out_dir: PathBuf,
}

impl Options {
    /// The full benchmark: 1M events, 3 runs.
    pub fn full(out_dir: PathBuf) -> Self {
        Self {
            events: 1_000_000,
            runs: 3,
            http_seconds: 10,
            http_rate: 2000,
            e2e_seconds: 10,
            e2e_only: false,
            sweep: vec![100_000, 1_000_000, 3_000_000],
            sweep_runs: 3,
            sweep_only: false,
            proof_events: 10_000,
            out_dir,
        }
    }

    /// The smoke mode `make test` runs: 10k events, 1 run, 2 s of HTTP load, 1 s of each P6
    /// rate, the Streams
    /// peers' proof on 2k orders.
    pub fn smoke(out_dir: PathBuf) -> Self {
        Self {
            events: 10_000,
            runs: 1,
            http_seconds: 2,
            http_rate: 2000,
            e2e_seconds: 1,
            e2e_only: false,
            sweep: vec![1_000, 2_000],
            sweep_runs: 1,
            sweep_only: false,
            proof_events: 2_000,
            out_dir,
        }
    }
}

/// The peers' programs, installed by scripts/bench-tools.sh.
#[derive(Debug, Clone)]
pub struct Tools {
    pub kcat: PathBuf,
    pub python: PathBuf,
    pub oha: PathBuf,
    /// The JDK's java that runs the Kafka Streams peers.
    pub java: PathBuf,
    /// The Kafka Streams peers' jar (bench/peers/streams).
    pub streams_jar: PathBuf,
    /// Apache Kafka's jars (scripts/kafka.sh install), whose kafka-tools jar holds
    /// kafka-producer-perf-test and kafka-consumer-perf-test.
    pub kafka_libs: PathBuf,
}

/// Run scripts/bench-tools.sh (installs what is missing; cached) and read the paths it prints.
pub fn install_tools() -> anyhow::Result<Tools> {
    let out = run_checked(
        Command::new("bash").arg(repo_root().join("scripts/bench-tools.sh")),
        "scripts/bench-tools.sh",
    )?;
    let vars: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| {
        vars.get(k)
            .map(PathBuf::from)
            .with_context(|| format!("scripts/bench-tools.sh printed no {k}=: {out}"))
    };
    Ok(Tools {
        kcat: get("KCAT")?,
        python: get("PYTHON")?,
        oha: get("OHA")?,
        java: get("JAVA")?,
        streams_jar: get("STREAMS_JAR")?,
        kafka_libs: get("KAFKA_LIBS")?,
    })
}

/// Raw samples of one run, keyed by (bench id, subject).
type Samples = BTreeMap<(String, String), Vec<f64>>;

fn push(s: &mut Samples, id: &str, subject: &str, v: f64) {
    s.entry((id.to_string(), subject.to_string()))
        .or_default()
        .push(v);
}

/// Progress on stdout (the bench is a program, not a test).
fn say(msg: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{msg}");
}

/// Run the benchmarks and write results.json and results.md into `opts.out_dir`.
pub async fn run(opts: &Options, tools: &Tools) -> anyhow::Result<Results> {
    std::fs::create_dir_all(&opts.out_dir)?;
    check_kafka_tools(tools)?;
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let orders_file = opts.out_dir.join("orders.tsv");
    say(&format!(
        "==> writing {} orders to {} (kcat's input)",
        opts.events,
        orders_file.display()
    ));
    write_orders_file(&orders_file, opts.events)?;
    let payloads = opts.out_dir.join("payloads.txt");
    let (k, size) = write_payload_file(&orders_file, &payloads)?;
    say(&format!(
        "==> {k} of them, {size:.0} bytes each on average, as kafka-producer-perf-test's payloads"
    ));
    let proof = opts.out_dir.join("proof");
    let streams_equal = if opts.e2e_only || opts.sweep_only {
        None
    } else {
        say(&format!(
            "==> proving the Kafka Streams peers equal to orderflow on {} orders",
            opts.proof_events
        ));
        Some(
            prove_equal(tools, opts.proof_events, &proof, true)
                .await
                .context("the Kafka Streams peers against orderflow")?,
        )
    };
    let mut samples = Samples::new();
    let runs = if opts.sweep_only { 0 } else { opts.runs };
    for run in 1..=runs {
        say(&format!("==> run {run}/{}", opts.runs));
        let done = if opts.e2e_only {
            let dir = opts.out_dir.join(format!("run-{run}"));
            latency::end_to_end(opts, tools, &dir, &mut samples).await
        } else {
            one_run(opts, tools, &orders_file, &payloads, run, &mut samples).await
        };
        done.with_context(|| format!("run {run}"))?;
    }
    let sweep = if opts.e2e_only || opts.sweep.is_empty() {
        None
    } else {
        let dir = opts.out_dir.join("sweep");
        let warm_up = (tools, orders_file.as_path());
        Some(
            sweep::run(&opts.sweep, opts.sweep_runs, &dir, warm_up)
                .await
                .context("the N sweep")?,
        )
    };
    let results = Results {
        events: opts.events,
        runs,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(),
        broker: "Apache Kafka 4.3.1 (scripts/kafka.sh: one KRaft node on 127.0.0.1, data on disk)"
            .into(),
        started,
        benches: summarize(&samples, opts.http_rate),
        streams_equal,
        sweep,
    };
    std::fs::write(
        opts.out_dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let md = markdown(&results);
    std::fs::write(opts.out_dir.join("results.md"), &md)?;
    say(&md);
    say(&format!(
        "wrote {} and {}",
        opts.out_dir.join("results.json").display(),
        opts.out_dir.join("results.md").display()
    ));
    Ok(results)
}

async fn one_run(
    opts: &Options,
    tools: &Tools,
    orders_file: &Path,
    payloads: &Path,
    run: usize,
    s: &mut Samples,
) -> anyhow::Result<()> {
    let n = opts.events;
    let dir = opts.out_dir.join(format!("run-{run}"));
    let logs = dir.join("logs");
    let broker = Broker::start_local(&dir.join("broker"))?;
    let kafka = broker.kafka();
    let b = broker.bootstrap.clone();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    let peer_topics = [
        STREAMS_DECISIONS,
        KCAT_ORDERS,
        WARMUP_ORDERS,
        PERF_ORDERS,
        PIPE_ORDERS,
        PY_ORDERS,
        PY_DECISIONS,
    ];
    orderflow_runtime::topics::ensure_named_topics(&kafka, &peer_topics).await?;

    // The broker first takes the run's N orders once, unmeasured: a fresh broker's JVM
    // serves its first million records much slower (JIT, new segments), and whichever
    // producer went first paid for it (order-service's bulk of 1M orders: 4.1-4.9 s on a
    // fresh broker, 2.5-3.0 s after kcat -P had produced the same records; kcat 1.5-3.1 s
    // first, 1.1-1.7 s second).
    ours::warm(&kafka, &b, (tools, orders_file)).await?;

    // P1 produce
    seed_catalogue(&b, &logs).await?;
    let step = ours::produce(&b, &logs, n, &[]).await?;
    push(s, "P5", "order-service", step.rss_mib);
    report_rate(s, "P1", "orderflow", n, step.secs);
    let secs = kcat_produce(tools, &b, KCAT_ORDERS, orders_file, "kcat -P").await?;
    report_rate(s, "P1", "kcat", n, secs);
    let rate = producer_perf(tools, &kafka, n, payloads).await?;
    push(s, "P1", "kafka-producer-perf-test", rate);
    let (secs, out) = timed(
        python(tools, "producer.py")
            .args(["--bootstrap", &b, "--topic", PY_ORDERS, "--count"])
            .arg(n.to_string()),
        "python producer.py",
    )
    .await?;
    ensure!(
        out.contains(&format!("\"produced\": {n}")),
        "producer.py: {out}"
    );
    report_rate(s, "P1", "python", n, secs);

    // P2 inventory: the N orders orderflow produced in P1
    let step = ours::decide(&b, &kafka, &logs, &[]).await?;
    push(s, "P5", "inventory-service", step.rss_mib);
    report_rate(s, "P2", "orderflow", n, step.secs);
    let secs = streams_time::inventory(tools, &b, n, &dir).await?;
    report_rate(s, "P2", "kafka streams", n, secs);
    let secs = kcat_consume(tools, &b, &[TOPIC_ORDERS], n).await?;
    report_rate(s, "P2", "kcat", n, secs);
    let perf = consumer_perf(tools, &b, &[TOPIC_ORDERS], "bench-perf-p2", n).await?;
    push(s, "P2", "kafka-consumer-perf-test", perf.rate);
    let secs = kcat_pipe(tools, &kafka, TOPIC_ORDERS, n).await?;
    report_rate(s, "P2", "kcat pipe", n, secs);
    let (secs, out) = timed(
        python(tools, "inventory.py")
            .args([
                "--bootstrap",
                &b,
                "--group",
                "bench-py-inventory",
                "--input",
                TOPIC_ORDERS,
            ])
            .args(["--output", PY_DECISIONS, "--count"])
            .arg(n.to_string()),
        "python inventory.py",
    )
    .await?;
    ensure!(
        out.contains(&format!("\"decided\": {n}")),
        "inventory.py: {out}"
    );
    report_rate(s, "P2", "python", n, secs);

    // P3 replay: analytics from earliest over orders + inventory-events (2N records)
    let step = ours::replay(&b, &kafka, &logs, n, &[]).await?;
    push(s, "P5", "analytics-service", step.rss_mib);
    report_secs(s, "P3", "orderflow", 2 * n, step.secs);
    let secs = streams_time::analytics(tools, &b, n, &dir).await?;
    report_secs(s, "P3", "kafka streams", 2 * n, secs);
    let secs = kcat_consume(tools, &b, &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS], 2 * n).await?;
    report_secs(s, "P3", "kcat", 2 * n, secs);
    let both = [TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS];
    let perf = consumer_perf(tools, &b, &both, "bench-perf-p3", 2 * n).await?;
    push(s, "P3", "kafka-consumer-perf-test", perf.secs);
    let (secs, out) = timed(
        python(tools, "analytics.py")
            .args([
                "--bootstrap",
                &b,
                "--group",
                "bench-py-analytics",
                "--count",
            ])
            .arg((2 * n).to_string())
            .args([TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS]),
        "python analytics.py",
    )
    .await?;
    ensure!(
        out.contains(&format!("\"orders_total\": {n}")),
        "analytics.py: {out}"
    );
    report_secs(s, "P3", "python", 2 * n, secs);

    restarts(&b, &kafka, &logs, n, s).await?;
    drop(broker);

    // P5 once more with the documented memory settings, P1-P3 on a broker of their own (only
    // the peaks are reported: the speed of P1-P3 is measured at the defaults)
    let memory = ours::memory_settings();
    let (broker, steps) = ours::p1_to_p3(n, &dir.join("memory"), &memory, None).await?;
    for (subject, step) in ours::MEMORY_SUBJECTS.iter().zip(&steps) {
        push(s, "P5", subject, step.rss_mib);
    }
    say(&format!(
        "    P5 with the memory settings: peak RSS order-service {:.1}, inventory-service {:.1}, analytics-service {:.1} MiB",
        steps[0].rss_mib, steps[1].rss_mib, steps[2].rss_mib
    ));

    // P4 HTTP, on a fresh broker: it measures the HTTP path alone, not a broker busy with
    // the log segments of the 5M records of P1-P3.
    drop(broker);
    let broker = Broker::start_local(&dir.join("broker-http"))?;
    let b = broker.bootstrap.clone();
    orderflow_runtime::topics::ensure_topics(&broker.kafka()).await?;
    orderflow_runtime::topics::ensure_named_topics(&broker.kafka(), &[FLASK_ORDERS]).await?;
    seed_catalogue(&b, &logs).await?;
    let order = Service::start(ServiceKind::Order, &b, &[], &logs).await?;
    http_bench(opts, tools, &order.url, "orderflow", s).await?;
    order.stop(Duration::from_secs(20)).await?;
    let flask = Flask::start(tools, &b, &dir).await?;
    http_bench(opts, tools, &flask.url, "flask", s).await?;
    drop(flask);
    drop(broker);

    latency::end_to_end(opts, tools, &dir, s).await
}

/// order-service refuses items no inventory knows (its catalogue is `inventory-ledger`), so
/// before order-service is measured alone, inventory-service runs once on the empty topics:
/// its first rebuild writes the catalogue, and it stops before any order exists.
async fn seed_catalogue(bootstrap: &str, logs: &std::path::Path) -> anyhow::Result<()> {
    let inventory = Service::start(ServiceKind::Inventory, bootstrap, &[], logs).await?;
    inventory.stop(Duration::from_secs(20)).await?;
    Ok(())
}

fn report_secs(s: &mut Samples, id: &str, subject: &str, records: u64, secs: f64) {
    say(&format!(
        "    {id} {subject:<10} {records} records in {secs:.2} s"
    ));
    push(s, id, subject, secs);
}

fn report_rate(s: &mut Samples, id: &str, subject: &str, n: u64, secs: f64) {
    let rate = n as f64 / secs.max(1e-9);
    say(&format!(
        "    {id} {subject:<10} {n} in {secs:.2} s: {rate:.0} events/s"
    ));
    push(s, id, subject, rate);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn oha_json() {
        let v = json!({"summary": {"requestsPerSec": 1000.0},
                       "latencyPercentiles": {"p50": 0.001, "p99": 0.004},
                       "statusCodeDistribution": {"202": 900, "503": 100}});
        let r = parse_oha(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.ok, r.total), (900, 1000));
        assert!((r.rps - 900.0).abs() < 1e-9 && (r.p99_ms - 4.0).abs() < 1e-9);
        assert!(parse_oha(&json!({})).is_err());
    }
}
