//! Kafka's own perf tools and a kcat pipe as peers:
//! - `kafka-producer-perf-test` (`org.apache.kafka.tools.ProducerPerformance`) for P1: the same
//!   number of records, their payloads drawn from orderflow's own OrderPlaced JSON (so the same
//!   size and the same lz4 ratio), acks=all, idempotence and lz4 as orderflow's producers; the
//!   tool's own records/sec.
//! - `kafka-consumer-perf-test` (`org.apache.kafka.tools.ConsumerPerformance`) for P2 and P3:
//!   the same topics read from the beginning to the record count; the tool's own nMsg.sec and
//!   its elapsed time (end.time - start.time, its group join included, the JVM start not).
//! - `kcat -C | kcat -P` for P2: `orders` consumed to its end and each record produced to
//!   [`PIPE_ORDERS`] (key and value, lz4, acks=all, idempotence); wall seconds of the pipe.
//!
//! The perf tools run from the kafka-tools jar of the Kafka the local broker runs
//! (`Tools::kafka_libs`, installed by scripts/kafka.sh) on the JDK of scripts/bench-tools.sh.
//! Every figure is checked to count the records it claims: the tools' own counts, and the
//! records the produced topics hold afterwards.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use orderflow_runtime::KafkaConfig;

use super::peers::run_killable;
use super::{say, Tools};
use crate::probes::lag_of;
use crate::procs::repo_root;

/// Where kafka-producer-perf-test produces in P1.
pub(super) const PERF_ORDERS: &str = "bench-perf-orders";
/// Where the kcat pipe produces the records of `orders` in P2.
pub(super) const PIPE_ORDERS: &str = "bench-kcat-pipe-orders";
/// The jar that holds the perf tools, in `Tools::kafka_libs`.
pub const KAFKA_TOOLS_JAR: &str = "kafka-tools-4.3.1.jar";
/// Distinct payloads kafka-producer-perf-test draws from (it holds them all in memory).
const PAYLOADS: u64 = 10_000;

/// Fail at once, naming the scripts that install them, when java or the kafka-tools jar is
/// missing.
pub fn check_kafka_tools(tools: &Tools) -> anyhow::Result<()> {
    let jar = tools.kafka_libs.join(KAFKA_TOOLS_JAR);
    for (what, path) in [("JAVA", &tools.java), ("KAFKA_LIBS", &jar)] {
        ensure!(
            path.is_file(),
            "{what}: {} is missing: run scripts/bench-tools.sh, which installs Kafka's perf tools \
             with scripts/kafka.sh install (Apache Kafka 4.3.1's jars) and needs a JDK 17+",
            path.display()
        );
    }
    Ok(())
}

/// `java -cp <kafka libs>/* <class>`, as scripts/kafka.sh runs the perf tools.
fn kafka_class(tools: &Tools, class: &str) -> Command {
    let mut c = Command::new(&tools.java);
    c.args(["-Xmx1g", "-server", "-XX:+UseG1GC"])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            repo_root()
                .join("scripts/kafka/log4j2-tools.properties")
                .display()
        ))
        .arg("-cp")
        .arg(tools.kafka_libs.join("*"))
        .arg(class);
    c
}

/// The payloads of kafka-producer-perf-test: the JSON values of the first [`PAYLOADS`] lines
/// of kcat's input (`key<TAB>json`), one per line. Returns (payloads, their mean size).
pub(super) fn write_payload_file(orders_file: &Path, path: &Path) -> anyhow::Result<(u64, f64)> {
    let input = std::io::BufReader::new(
        std::fs::File::open(orders_file)
            .with_context(|| format!("opening {}", orders_file.display()))?,
    );
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut n, mut bytes) = (0u64, 0u64);
    for line in input.lines().take(PAYLOADS as usize) {
        let line = line?;
        let Some((_, json)) = line.split_once('\t') else {
            bail!("{}: a line without a key: {line}", orders_file.display());
        };
        writeln!(w, "{json}")?;
        n += 1;
        bytes += json.len() as u64;
    }
    w.flush()?;
    ensure!(n > 0, "{} holds no order", orders_file.display());
    Ok((n, bytes as f64 / n as f64))
}

/// What kafka-producer-perf-test's summary says: records sent and records/sec.
pub fn parse_producer_perf(out: &str) -> anyhow::Result<(u64, f64)> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains(" records sent, "))
        .with_context(|| format!("kafka-producer-perf-test printed no summary: {out}"))?;
    let mut words = line.split_whitespace();
    let sent = words.next().and_then(|w| w.parse().ok());
    let rate = words.nth(2).and_then(|w| w.parse().ok());
    match (sent, rate) {
        (Some(sent), Some(rate)) => Ok((sent, rate)),
        _ => bail!(
            "kafka-producer-perf-test's summary is not `N records sent, R records/sec ...`: {line}"
        ),
    }
}

/// kafka-producer-perf-test producing `n` records to [`PERF_ORDERS`], unthrottled; returns its
/// records/sec once the topic holds the `n` records.
pub(super) async fn producer_perf(
    tools: &Tools,
    kafka: &KafkaConfig,
    n: u64,
    payloads: &Path,
) -> anyhow::Result<f64> {
    let topic = PERF_ORDERS;
    let t = Instant::now();
    let mut cmd = kafka_class(tools, "org.apache.kafka.tools.ProducerPerformance");
    cmd.args(["--bootstrap-server", &kafka.bootstrap, "--topic", topic])
        .args(["--num-records", &n.to_string(), "--throughput", "-1"])
        .arg("--payload-file")
        .arg(payloads)
        .args(["--command-property", "acks=all", "enable.idempotence=true"])
        .arg("compression.type=lz4");
    let out = run_killable(&cmd, "kafka-producer-perf-test").await?;
    let (sent, rate) = parse_producer_perf(&out)?;
    ensure!(
        sent == n && rate > 0.0,
        "kafka-producer-perf-test sent {sent} records of {n} at {rate} records/s"
    );
    let held = records_in(kafka, &[PERF_ORDERS]).await?;
    ensure!(
        held == n,
        "{topic} holds {held} records, not {n}, after kafka-producer-perf-test"
    );
    say(&format!(
        "    kafka-producer-perf-test: {sent} records, {rate:.0} records/s ({:.2} s with the JVM's start)",
        t.elapsed().as_secs_f64()
    ));
    Ok(rate)
}

/// What kafka-consumer-perf-test measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerPerf {
    pub records: u64,
    /// Its nMsg.sec: records over its elapsed time.
    pub rate: f64,
    /// Its elapsed time (end.time - start.time), in seconds.
    pub secs: f64,
}

/// kafka-consumer-perf-test's header and value lines (its default output).
pub fn parse_consumer_perf(out: &str) -> anyhow::Result<ConsumerPerf> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("start.time,"));
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        bail!("kafka-consumer-perf-test printed no header and figures: {out}");
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let vals: Vec<&str> = values.split(',').map(str::trim).collect();
    let get = |k: &str| -> anyhow::Result<f64> {
        cols.iter()
            .position(|c| *c == k)
            .and_then(|i| vals.get(i))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("kafka-consumer-perf-test printed no {k}: {out}"))
    };
    let (records, rate) = (get("data.consumed.in.nMsg")?, get("nMsg.sec")?);
    ensure!(
        records >= 1.0 && rate > 0.0,
        "kafka-consumer-perf-test consumed {records} records at {rate}/s: {out}"
    );
    Ok(ConsumerPerf {
        records: records as u64,
        rate,
        secs: records / rate,
    })
}

/// kafka-consumer-perf-test reading `topics` from the beginning (a fresh `group`) until it has
/// `expect` records.
pub(super) async fn consumer_perf(
    tools: &Tools,
    bootstrap: &str,
    topics: &[&str],
    group: &str,
    expect: u64,
) -> anyhow::Result<ConsumerPerf> {
    let mut cmd = kafka_class(tools, "org.apache.kafka.tools.ConsumerPerformance");
    cmd.args(["--bootstrap-server", bootstrap, "--group", group])
        .args(["--include", &format!("^({})$", topics.join("|"))])
        .args(["--num-records", &expect.to_string(), "--timeout", "60000"]);
    let out = run_killable(&cmd, "kafka-consumer-perf-test").await?;
    let perf = parse_consumer_perf(&out)?;
    ensure!(
        perf.records >= expect,
        "kafka-consumer-perf-test read {} records of {expect} on {topics:?}",
        perf.records
    );
    say(&format!(
        "    kafka-consumer-perf-test {topics:?}: {} records in {:.2} s, {:.0} records/s",
        perf.records, perf.secs, perf.rate
    ));
    Ok(perf)
}

/// `kcat -C -t from | kcat -P -t PIPE_ORDERS`: `from` consumed from the beginning to its end,
/// each record (key and value) produced to [`PIPE_ORDERS`]; returns the pipe's wall seconds
/// once that topic holds the `n` records.
pub(super) async fn kcat_pipe(
    tools: &Tools,
    kafka: &KafkaConfig,
    from: &str,
    n: u64,
) -> anyhow::Result<f64> {
    let to = PIPE_ORDERS;
    let b = kafka.bootstrap.as_str();
    let t = Instant::now();
    let mut consumer = tokio::process::Command::new(&tools.kcat)
        .args(["-C", "-b", b, "-t", from, "-o", "beginning", "-e", "-q"])
        .args(["-K", "\\t"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting kcat -C (the pipe)")?;
    let pipe: Stdio = consumer
        .stdout
        .take()
        .context("kcat -C's stdout")?
        .try_into()
        .context("kcat -C's stdout as kcat -P's stdin")?;
    let producer = tokio::process::Command::new(&tools.kcat)
        .args(["-P", "-b", b, "-t", to, "-K", "\\t", "-z", "lz4"])
        .args(["-X", "acks=all", "-X", "enable.idempotence=true"])
        .stdin(pipe)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting kcat -P (the pipe)")?;
    let (c, p) = tokio::join!(consumer.wait(), producer.wait_with_output());
    let secs = t.elapsed().as_secs_f64();
    let (c, p) = (c?, p?);
    ensure!(c.success(), "kcat -C (the pipe) exited with {c}");
    ensure!(
        p.status.success(),
        "kcat -P (the pipe) exited with {}: {}",
        p.status,
        String::from_utf8_lossy(&p.stderr).trim()
    );
    let held = records_in(kafka, &[PIPE_ORDERS]).await?;
    ensure!(
        held == n,
        "the kcat pipe produced {held} records to {to}, not {n}"
    );
    say(&format!(
        "    kcat -C {from} | kcat -P {to}: {held} records in {secs:.2} s"
    ));
    Ok(secs)
}

/// Records `topics` hold (high minus low watermark, over their partitions).
async fn records_in(kafka: &KafkaConfig, topics: &'static [&'static str]) -> anyhow::Result<u64> {
    let parts = lag_of(kafka, "bench-count-records", topics).await?;
    ensure!(!parts.is_empty(), "{topics:?} have no partition");
    Ok(parts
        .iter()
        .map(|p| (p.high_watermark - p.low_watermark).max(0) as u64)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_perf_summary() {
        let out = "Reading payloads from: /tmp/p\nNumber of records read: 2000\n\
            20000 records sent, 25062.656642 records/sec (1.30 MB/sec), 124.87 ms avg latency, \
            439.00 ms max latency, 125 ms 50th, 192 ms 95th, 204 ms 99th, 213 ms 99.9th.\n";
        let (sent, rate) = parse_producer_perf(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sent, 20000);
        assert!((rate - 25062.656642).abs() < 1e-6);
        assert!(parse_producer_perf("Number of records read: 2000\n").is_err());
    }

    #[test]
    fn consumer_perf_figures() {
        let out = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, \
            nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
            2026-12-06 07:55:34:114, 2026-12-06 07:55:34:879, 1.5155, 1.9810, 25000, \
            32679.7386, 560, 205, 7.3927, 121951.2195\n";
        let p = parse_consumer_perf(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.records, 25000);
        assert!((p.rate - 32679.7386).abs() < 1e-9);
        assert!((p.secs - 0.765).abs() < 1e-3, "{p:?}");
        let none = out.replace(", 25000,", ", 0,");
        assert!(parse_consumer_perf(&none).is_err());
        assert!(parse_consumer_perf("WARN something\n").is_err());
    }

    #[test]
    fn payloads_are_the_orders_json() {
        let dir = std::env::temp_dir().join(format!("orderflow-payloads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let (orders, payloads) = (dir.join("orders.tsv"), dir.join("payloads.txt"));
        super::super::peers::write_orders_file(&orders, 20).unwrap_or_else(|e| panic!("{e}"));
        let (n, mean) = write_payload_file(&orders, &payloads).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&payloads).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((n, text.lines().count()), (20, 20));
        assert!(text.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
        assert!(mean > 50.0, "{mean}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_java_or_the_jar_it_names_the_scripts() {
        let dir = std::env::temp_dir().join("orderflow-no-kafka-tools");
        let tools = Tools {
            kcat: "kcat".into(),
            python: "python3".into(),
            oha: "oha".into(),
            java: dir.join("no-java"),
            streams_jar: dir.join("no.jar"),
            kafka_libs: dir.join("libs"),
        };
        let e = check_kafka_tools(&tools).unwrap_err().to_string();
        assert!(
            e.contains("scripts/bench-tools.sh")
                && e.contains("scripts/kafka.sh")
                && e.contains("JAVA"),
            "{e}"
        );
    }
}
