//! `make bench`: orderflow side by side with kcat and a Python pipeline in the lab's style
//! (bench/peers/), on the same local Apache Kafka in the same run. Writes
//! `<out>/results.json` and `<out>/results.md`.
//!
//! Each run starts a fresh broker and measures, in order (P4 on a broker of its own):
//! - P1 produce: N OrderPlaced through order-service's `POST /orders/bulk`, kcat producing the
//!   same N records from a file, the Python producer; events/s (wall clock, acks=all for all).
//! - P2 inventory: inventory-service deciding the N orders of P1 (from process start until its
//!   group's lag is 0: consumed, decided, produced, committed), kcat consuming `orders` raw,
//!   the Python consumer doing the same work as inventory-service; events/s.
//! - P3 replay: analytics-service rebuilding from both topics (2N records) after a reset to
//!   earliest, kcat consuming both topics, the Python analytics; seconds.
//! - P4 HTTP: `POST /orders` with oha at a fixed rate (p50/p99) and at full speed (req/s),
//!   order-service against the Flask peer.
//! - P5 memory: peak RSS (VmHWM) of order-service (P1), inventory-service (P2) and
//!   analytics-service (P3).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use orderflow_events::{
    encode, Event, OrderPlaced, DEFAULT_ITEMS, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS,
    TOPIC_ORDERS,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::probes::{caught_up_now, lag_of};
use crate::procs::{free_port, orderflowctl, repo_root, run_checked, Broker, Service, ServiceKind};
use crate::wait;

const KCAT_ORDERS: &str = "bench-kcat-orders";
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
            out_dir,
        }
    }

    /// The smoke mode `make test` runs: 10k events, 1 run, 2 s of HTTP load.
    pub fn smoke(out_dir: PathBuf) -> Self {
        Self {
            events: 10_000,
            runs: 1,
            http_seconds: 2,
            http_rate: 2000,
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
    })
}

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
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let orders_file = opts.out_dir.join("orders.tsv");
    say(&format!(
        "==> writing {} orders to {} (kcat's input)",
        opts.events,
        orders_file.display()
    ));
    write_orders_file(&orders_file, opts.events)?;
    let mut samples = Samples::new();
    for run in 1..=opts.runs {
        say(&format!("==> run {run}/{}", opts.runs));
        one_run(opts, tools, &orders_file, run, &mut samples)
            .await
            .with_context(|| format!("run {run}"))?;
    }
    let results = Results {
        events: opts.events,
        runs: opts.runs,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(),
        broker: "Apache Kafka 4.3.1 (scripts/kafka.sh: one KRaft node on 127.0.0.1, data on disk)"
            .into(),
        started,
        benches: summarize(&samples, opts.http_rate),
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
    orderflow_runtime::topics::ensure_named_topics(&kafka, &[KCAT_ORDERS, PY_ORDERS, PY_DECISIONS])
        .await?;

    // P1 produce
    let order = Service::start(ServiceKind::Order, &b, &[], &logs).await?;
    let t = Instant::now();
    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": n}),
            Duration::from_secs(3600),
        )
        .await?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        status == 200 && body["published"].as_u64() == Some(n),
        "POST /orders/bulk answered {status}: {body}"
    );
    push(s, "P5", "order-service", peak_rss_mib(order.pid()));
    order.stop(Duration::from_secs(20)).await?;
    report_rate(s, "P1", "orderflow", n, secs);
    let secs = timed(
        Command::new(&tools.kcat)
            // lz4, acks=all and idempotence, as orderflow's producers (runtime::kafka)
            .args(["-P", "-b", &b, "-t", KCAT_ORDERS, "-K", "\\t", "-z", "lz4"])
            .args(["-X", "acks=all", "-X", "enable.idempotence=true", "-l"])
            .arg(orders_file),
        "kcat -P",
    )
    .await?
    .0;
    report_rate(s, "P1", "kcat", n, secs);
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
    let t = Instant::now();
    let inventory = Service::start(
        ServiceKind::Inventory,
        &b,
        &[("THROTTLE_MS", "0".into())],
        &logs,
    )
    .await?;
    wait::until(
        "inventory-service to decide every order",
        Duration::from_secs(1800),
        Duration::from_millis(50),
        || async {
            let lags = lag_of(&kafka, GROUP_INVENTORY, &[TOPIC_ORDERS])
                .await
                .ok()?;
            lags.iter()
                .all(|l| l.committed == Some(l.high_watermark))
                .then_some(())
        },
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    push(s, "P5", "inventory-service", peak_rss_mib(inventory.pid()));
    inventory.stop(Duration::from_secs(20)).await?;
    report_rate(s, "P2", "orderflow", n, secs);
    let secs = kcat_consume(tools, &b, &[TOPIC_ORDERS], n).await?;
    report_rate(s, "P2", "kcat", n, secs);
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
    let bb = b.clone();
    let reset =
        tokio::task::spawn_blocking(move || orderflowctl(&bb, &crate::demo::REPLAY_RESET_ARGS))
            .await??;
    ensure!(reset.0 == 0, "orderflowctl reset: {}", reset.2);
    let t = Instant::now();
    let analytics = Service::start(ServiceKind::Analytics, &b, &[], &logs).await?;
    let metrics = wait::until(
        "analytics-service to rebuild",
        Duration::from_secs(1800),
        Duration::from_millis(50),
        || caught_up_now(&kafka, &analytics.url),
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        metrics["orders_total"].as_u64() == Some(n),
        "analytics counted {} orders, not {n}",
        metrics["orders_total"]
    );
    push(s, "P5", "analytics-service", peak_rss_mib(analytics.pid()));
    analytics.stop(Duration::from_secs(20)).await?;
    report_secs(s, "P3", "orderflow", 2 * n, secs);
    let secs = kcat_consume(tools, &b, &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS], 2 * n).await?;
    report_secs(s, "P3", "kcat", 2 * n, secs);
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

    // P4 HTTP, on a fresh broker: it measures the HTTP path alone, not a broker busy with
    // the log segments of the 5M records of P1-P3.
    drop(broker);
    let broker = Broker::start_local(&dir.join("broker-http"))?;
    let b = broker.bootstrap.clone();
    orderflow_runtime::topics::ensure_topics(&broker.kafka()).await?;
    orderflow_runtime::topics::ensure_named_topics(&broker.kafka(), &[FLASK_ORDERS]).await?;
    let order = Service::start(ServiceKind::Order, &b, &[], &logs).await?;
    http_bench(opts, tools, &order.url, "orderflow", s).await?;
    order.stop(Duration::from_secs(20)).await?;
    let flask = Flask::start(tools, &b, &dir).await?;
    http_bench(opts, tools, &flask.url, "flask", s).await?;
    drop(flask);
    drop(broker);
    Ok(())
}

/// kcat consuming `topics` from the beginning to their end, one process per topic, all at
/// once; returns the wall seconds. The records are counted as they arrive (one line each:
/// JSON has no raw newline), and fewer than `expect` is an error.
async fn kcat_consume(
    tools: &Tools,
    bootstrap: &str,
    topics: &[&str],
    expect: u64,
) -> anyhow::Result<f64> {
    use tokio::io::AsyncReadExt as _;
    let t = Instant::now();
    let mut readers = Vec::new();
    for topic in topics {
        let mut cmd = Command::new(&tools.kcat);
        cmd.args([
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ]);
        let mut child = killable(&cmd)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting kcat -C")?;
        let mut out = child.stdout.take().context("kcat's stdout")?;
        readers.push(async move {
            let mut buf = vec![0u8; 1 << 16];
            let mut lines = 0u64;
            loop {
                let k = out.read(&mut buf).await?;
                if k == 0 {
                    break;
                }
                lines += buf[..k].iter().filter(|&&c| c == b'\n').count() as u64;
            }
            let st = child.wait().await?;
            ensure!(st.success(), "kcat -C exited with {st}");
            anyhow::Ok(lines)
        });
    }
    let mut total = 0;
    for r in futures::future::join_all(readers).await {
        total += r?;
    }
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        total >= expect,
        "kcat -C read {total} records of {expect} on {topics:?}"
    );
    say(&format!(
        "    kcat -C {topics:?}: {total} records in {secs:.2} s"
    ));
    Ok(secs)
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

fn python(tools: &Tools, script: &str) -> Command {
    let mut c = Command::new(&tools.python);
    c.arg(repo_root().join("bench/peers").join(script));
    c
}

/// Run `cmd` to completion; returns (wall seconds, stdout). Fails with its stderr.
async fn timed(cmd: &Command, what: &str) -> anyhow::Result<(f64, String)> {
    let t = Instant::now();
    let out = run_killable(cmd, what).await?;
    let secs = t.elapsed().as_secs_f64();
    say(&format!("    {what}: {secs:.2} s"));
    Ok((secs, out))
}

/// `cmd` as a child that is killed when the future is dropped: Ctrl-C or SIGTERM ends the
/// bench at once and stops every peer it started (a blocking wait would hold the runtime
/// until the peer finished on its own).
fn killable(cmd: &Command) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(cmd.get_program());
    c.args(cmd.get_args())
        .kill_on_drop(true)
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

/// Run `cmd` to completion (killed if dropped); returns its stdout, fails with its stderr.
async fn run_killable(cmd: &Command, what: &str) -> anyhow::Result<String> {
    let out = killable(cmd)
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Peak resident set size (VmHWM) of a live process, in MiB (NaN when unreadable).
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| vm_hwm_kib(&s))
        .map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// P4 against one endpoint: oha at the fixed rate (latency) and at full speed (throughput).
async fn http_bench(
    opts: &Options,
    tools: &Tools,
    url: &str,
    subject: &str,
    s: &mut Samples,
) -> anyhow::Result<()> {
    // one unmeasured second first: connections, the producer's metadata, the broker's caches
    oha(tools, url, 1, Some(opts.http_rate), 32).await?;
    let fixed = oha(tools, url, opts.http_seconds, Some(opts.http_rate), 32).await?;
    let full = oha(tools, url, opts.http_seconds, None, 64).await?;
    say(&format!(
        "    P4 {subject:<10} at {} req/s: p50 {:.2} ms, p99 {:.2} ms ({} ok of {}); full speed {:.0} req/s",
        opts.http_rate, fixed.p50_ms, fixed.p99_ms, fixed.ok, fixed.total, full.rps
    ));
    push(s, "P4-p50", subject, fixed.p50_ms);
    push(s, "P4-p99", subject, fixed.p99_ms);
    push(s, "P4-rps", subject, full.rps);
    Ok(())
}

/// What one oha run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct OhaRun {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub total: u64,
}

async fn oha(
    tools: &Tools,
    url: &str,
    secs: u64,
    rate: Option<u64>,
    conns: u32,
) -> anyhow::Result<OhaRun> {
    let mut cmd = Command::new(&tools.oha);
    cmd.args(["--no-tui", "--output-format", "json", "-z"])
        .arg(format!("{secs}s"))
        .args([
            "-c",
            &conns.to_string(),
            "-m",
            "POST",
            "-T",
            "application/json",
        ])
        .args(["-d", r#"{"item":"pizza","qty":1,"user_id":"bench"}"#]);
    if let Some(q) = rate {
        cmd.args(["-q", &q.to_string(), "--latency-correction"]);
    }
    cmd.arg(format!("{url}/orders"));
    let out = run_killable(&cmd, "oha").await?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("oha's output: {out}"))?;
    parse_oha(&v)
}

/// Read oha's JSON summary (`--output-format json`).
pub fn parse_oha(v: &Value) -> anyhow::Result<OhaRun> {
    let codes = v["statusCodeDistribution"].as_object();
    let ok = codes
        .and_then(|c| c.get("202"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let total: u64 = codes
        .map(|c| c.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let ms = |k: &str| v["latencyPercentiles"][k].as_f64().map(|s| s * 1000.0);
    let (Some(p50_ms), Some(p99_ms), Some(rps)) = (
        ms("p50"),
        ms("p99"),
        v["summary"]["requestsPerSec"].as_f64(),
    ) else {
        bail!("oha's JSON lacks latencyPercentiles.p50/p99 or summary.requestsPerSec: {v}");
    };
    ensure!(
        ok > 0,
        "no request was accepted (202): {}",
        v["statusCodeDistribution"]
    );
    Ok(OhaRun {
        rps: rps * ok as f64 / total.max(1) as f64,
        p50_ms,
        p99_ms,
        ok,
        total,
    })
}

/// The Flask peer, killed by PID when dropped.
struct Flask {
    child: std::process::Child,
    url: String,
}

impl Flask {
    async fn start(tools: &Tools, bootstrap: &str, dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("flask.log"))?;
        let child = python(tools, "flask_app.py")
            .args(["--bootstrap", bootstrap, "--topic", FLASK_ORDERS, "--port"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting bench/peers/flask_app.py")?;
        let mut f = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let health = format!("{}/healthz", f.url);
        let child = &mut f.child;
        wait::until(
            "flask_app.py to answer /healthz",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let exited = child.try_wait().ok().flatten();
                let health = health.clone();
                async move {
                    if let Some(st) = exited {
                        return Some(Err(anyhow::anyhow!(
                            "flask_app.py exited at start-up ({st})"
                        )));
                    }
                    let r = reqwest::get(&health).await.ok()?;
                    r.status().is_success().then_some(Ok(()))
                }
            },
        )
        .await?
        .with_context(|| format!("see {}", dir.join("flask.log").display()))?;
        Ok(f)
    }
}

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// N orders as kcat's input: `item<TAB>json` per line (kcat -K '\t' -l).
fn write_orders_file(path: &Path, n: u64) -> anyhow::Result<()> {
    let f = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(f);
    let now = chrono::Utc::now();
    let items = DEFAULT_ITEMS.len() as u64;
    for i in 0..n {
        let item = DEFAULT_ITEMS[(i % items) as usize];
        let o = OrderPlaced::new(
            item,
            1 + ((i / items) % 3) as u32,
            format!("user-{}", i % 100),
            now,
        );
        w.write_all(item.as_bytes())?;
        w.write_all(b"\t")?;
        w.write_all(&encode(&Event::OrderPlaced(o)))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

fn cpu_model() -> String {
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
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    subjects: &'static [&'static str],
}

const SPECS: [Spec; 7] = [
    Spec {
        id: "P1",
        title: "produce N OrderPlaced",
        unit: "events/s",
        higher_is_better: true,
        subjects: &["orderflow", "kcat", "python"],
    },
    Spec {
        id: "P2",
        title: "inventory: decide N orders (kcat: consume raw)",
        unit: "events/s",
        higher_is_better: true,
        subjects: &["orderflow", "kcat", "python"],
    },
    Spec {
        id: "P3",
        title: "replay analytics over 2N records (kcat: consume both topics)",
        unit: "s",
        higher_is_better: false,
        subjects: &["orderflow", "kcat", "python"],
    },
    Spec {
        id: "P4-p50",
        title: "POST /orders p50 at the fixed rate",
        unit: "ms",
        higher_is_better: false,
        subjects: &["orderflow", "flask"],
    },
    Spec {
        id: "P4-p99",
        title: "POST /orders p99 at the fixed rate",
        unit: "ms",
        higher_is_better: false,
        subjects: &["orderflow", "flask"],
    },
    Spec {
        id: "P4-rps",
        title: "POST /orders at full speed",
        unit: "req/s",
        higher_is_better: true,
        subjects: &["orderflow", "flask"],
    },
    Spec {
        id: "P5",
        title: "peak RSS during P1-P3",
        unit: "MiB",
        higher_is_better: false,
        subjects: &["order-service", "inventory-service", "analytics-service"],
    },
];

/// Medians, ratios and targets from the raw samples.
pub fn summarize(s: &Samples, http_rate: u64) -> Vec<Bench> {
    SPECS
        .iter()
        .map(|spec| {
            let subjects: BTreeMap<String, Figure> = spec
                .subjects
                .iter()
                .filter_map(|sub| {
                    s.get(&(spec.id.to_string(), sub.to_string()))
                        .map(|v| (sub.to_string(), Figure::of(v.clone())))
                })
                .collect();
            let ours = subjects.get("orderflow").map(|f| f.median);
            let ratios: BTreeMap<String, f64> = subjects
                .iter()
                .filter(|(k, _)| k.as_str() != "orderflow")
                .filter_map(|(k, f)| Some((format!("orderflow/{k}"), ours? / f.median)))
                .collect();
            let r = |k: &str| ratios.get(k).copied();
            let (target, met) = match spec.id {
                "P1" => (
                    ">= 1.0x kcat and >= 50x python (events/s)".to_string(),
                    r("orderflow/kcat")
                        .zip(r("orderflow/python"))
                        .map(|(k, p)| k >= 1.0 && p >= 50.0),
                ),
                "P2" => (
                    ">= 0.5x kcat raw consume (events/s)".into(),
                    r("orderflow/kcat").map(|k| k >= 0.5),
                ),
                "P3" => (
                    "<= 1.5x kcat consume time".into(),
                    r("orderflow/kcat").map(|k| k <= 1.5),
                ),
                "P4-p99" => (
                    format!("orderflow p99 < 5 ms at {http_rate} req/s"),
                    ours.map(|p| p < 5.0),
                ),
                "P4-rps" => (
                    ">= 10x the Flask peer".into(),
                    r("orderflow/flask").map(|k| k >= 10.0),
                ),
                "P5" => (
                    "< 64 MiB per service".into(),
                    (!subjects.is_empty()).then(|| subjects.values().all(|f| f.max < 64.0)),
                ),
                _ => (String::new(), None),
            };
            Bench {
                id: spec.id.into(),
                title: spec.title.into(),
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

fn num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio_text(x: f64) -> String {
    if x.abs() < 0.1 {
        format!("{x:.4}x")
    } else {
        format!("{x:.2}x")
    }
}

/// results.md: one row per benchmark and subject.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# orderflow benchmarks\n\nN = {} events, {} run(s) (median, min-max), {} cores ({}), broker: {}, started {}.\n",
        r.events, r.runs, r.cores, r.cpu, r.broker, r.started
    );
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
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let f = Figure::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((f.median, f.min, f.max), (2.0, 1.0, 3.0));
        assert_eq!(Figure::of(vec![4.0, 1.0]).median, 2.5);
        assert!(Figure::of(vec![]).median.is_nan());
    }

    #[test]
    fn ratios_and_targets() {
        let mut s = Samples::new();
        for (id, sub, v) in [
            ("P1", "orderflow", 200_000.0),
            ("P1", "kcat", 100_000.0),
            ("P1", "python", 10_000.0),
            ("P3", "orderflow", 3.0),
            ("P3", "kcat", 1.0),
            ("P5", "order-service", 30.0),
            ("P5", "inventory-service", 70.0),
        ] {
            push(&mut s, id, sub, v);
        }
        let b = summarize(&s, 2000);
        let p1 = &b[0];
        assert_eq!(p1.ratios["orderflow/kcat"], 2.0);
        assert_eq!(p1.ratios["orderflow/python"], 20.0);
        assert_eq!(p1.met, Some(false)); // 20x < 50x python
        assert_eq!(b[2].met, Some(false)); // 3x kcat's time
        assert_eq!(b[1].met, None); // P2 not measured
        assert_eq!(b[6].met, Some(false)); // inventory 70 MiB
        let md = markdown(&Results {
            events: 10,
            runs: 1,
            cores: 2,
            cpu: "cpu".into(),
            broker: "b".into(),
            started: "t".into(),
            benches: b,
        });
        assert!(
            md.contains(
                "| P1 produce N OrderPlaced | kcat | 100000 | 100000-100000 | events/s | 2.00x |"
            ),
            "{md}"
        );
        assert!(md.contains("| **no** |"));
    }

    #[test]
    fn oha_json_and_vm_hwm() {
        let v = json!({"summary": {"requestsPerSec": 1000.0},
                       "latencyPercentiles": {"p50": 0.001, "p99": 0.004},
                       "statusCodeDistribution": {"202": 900, "503": 100}});
        let r = parse_oha(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.ok, r.total), (900, 1000));
        assert!((r.rps - 900.0).abs() < 1e-9 && (r.p99_ms - 4.0).abs() < 1e-9);
        assert!(parse_oha(&json!({})).is_err());
        assert_eq!(vm_hwm_kib("Name:\tx\nVmHWM:\t   12345 kB\n"), Some(12345));
    }
}
