//! The programs orderflow is measured against, and how the bench runs them: kcat (produce from
//! a file, consume to the end), the Python peers and the Flask app in bench/peers/, and the
//! `oha` load generator for P4. Every child is killed when its future or guard is dropped.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use orderflow_events::{encode, Event, OrderPlaced, DEFAULT_ITEMS};
use serde_json::Value;

use super::{push, say, Options, Samples, Tools, FLASK_ORDERS};
use crate::procs::{free_port, repo_root};
use crate::wait;

/// kcat producing `file` (`item<TAB>json` lines, [`write_orders_file`]) to `topic` as
/// orderflow's producers do (lz4, acks=all, idempotence: runtime::kafka); returns the wall
/// seconds.
pub(super) async fn kcat_produce(
    tools: &Tools,
    bootstrap: &str,
    topic: &str,
    file: &Path,
    what: &str,
) -> anyhow::Result<f64> {
    let mut cmd = Command::new(&tools.kcat);
    cmd.args(["-P", "-b", bootstrap, "-t", topic, "-K", "\\t", "-z", "lz4"])
        .args(["-X", "acks=all", "-X", "enable.idempotence=true", "-l"])
        .arg(file);
    Ok(timed(&cmd, what).await?.0)
}

/// kcat consuming `topics` from the beginning to their end, one process per topic, all at
/// once; returns the wall seconds. The records are counted as they arrive (one line each:
/// JSON has no raw newline), and fewer than `expect` is an error.
pub(super) async fn kcat_consume(
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

pub(super) fn python(tools: &Tools, script: &str) -> Command {
    let mut c = Command::new(&tools.python);
    c.arg(repo_root().join("bench/peers").join(script));
    c
}

/// Run `cmd` to completion; returns (wall seconds, stdout). Fails with its stderr.
pub(super) async fn timed(cmd: &Command, what: &str) -> anyhow::Result<(f64, String)> {
    let t = Instant::now();
    let out = run_killable(cmd, what).await?;
    let secs = t.elapsed().as_secs_f64();
    say(&format!("    {what}: {secs:.2} s"));
    Ok((secs, out))
}

/// `cmd` as a child that is killed when the future is dropped: Ctrl-C or SIGTERM ends the
/// bench at once and stops every peer it started (a blocking wait would hold the runtime
/// until the peer finished on its own).
pub(super) fn killable(cmd: &Command) -> tokio::process::Command {
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
pub(super) async fn run_killable(cmd: &Command, what: &str) -> anyhow::Result<String> {
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

/// P4 against one endpoint: oha at the fixed rate (latency) and at full speed (throughput).
pub(super) async fn http_bench(
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
pub(super) struct Flask {
    child: std::process::Child,
    pub(super) url: String,
}

impl Flask {
    pub(super) async fn start(tools: &Tools, bootstrap: &str, dir: &Path) -> anyhow::Result<Self> {
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
pub(super) fn write_orders_file(path: &Path, n: u64) -> anyhow::Result<()> {
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
