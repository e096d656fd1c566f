//! The lab's scenario, run by `make demo` (the `orderflow-demo` binary) and by the
//! integration tests: publish, create and watch consumer lag, replay, compare, report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orderflow_events::{GROUP_ANALYTICS, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflowctl::OffsetChange;
use serde::Serialize;
use serde_json::{json, Value};

use crate::chart::{line_chart, Series};
use crate::probes::{analytics_caught_up, blocking, lag_of};
use crate::procs::{orderflowctl, Broker, Service, ServiceKind};
use crate::wait;

/// `orderflowctl` arguments of the lab's replay: the analytics group on both topics, to earliest.
pub const REPLAY_RESET_ARGS: [&str; 9] = [
    "reset",
    "--group",
    GROUP_ANALYTICS,
    "--topic",
    TOPIC_ORDERS,
    "--topic",
    TOPIC_INVENTORY_EVENTS,
    "--to",
    "earliest",
];
/// The fields of `/api/metrics` that depend only on the data, so a replay must reproduce them.
pub const DATA_FIELDS: [&str; 5] = [
    "orders_total",
    "reserved_total",
    "failed_total",
    "failure_rate",
    "orders_per_minute",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Orders published through `POST /orders/bulk`.
    pub orders: u64,
    /// inventory-service's `THROTTLE_MS` while the orders arrive (creates the lag).
    pub throttle_ms: u64,
    /// Event times of the orders spread over this many past minutes.
    pub spread_minutes: u32,
    /// How often the inventory group's lag is sampled.
    pub sample_every: Duration,
    /// Where report.json, lag.svg, logs and the broker's data go.
    pub out_dir: PathBuf,
    /// Print progress lines (the demo) or stay quiet (tests print through the report).
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            orders: 10_000,
            throttle_ms: 1,
            spread_minutes: 10,
            sample_every: Duration::from_millis(250),
            out_dir: PathBuf::from("target/demo"),
            verbose: true,
        }
    }
}

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

macro_rules! say {
    ($opts:expr, $($arg:tt)*) => { if $opts.verbose { println!($($arg)*); } };
}

/// Run the scenario on a local Apache Kafka (or `KAFKA_BOOTSTRAP`); everything started is
/// stopped when this returns, also on error.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&opts.out_dir)?;
    say!(opts, "==> starting Apache Kafka");
    let broker = Broker::start_or_external(&opts.out_dir.join("broker"))?;
    say!(
        opts,
        "    Kafka at {} ({})",
        broker.bootstrap,
        if broker.is_local() {
            "local Apache Kafka 4.3.1, scripts/kafka.sh"
        } else {
            "KAFKA_BOOTSTRAP"
        }
    );
    run_on(opts, &broker).await
}

/// Run the scenario's services on `broker` (left running, for the caller's assertions).
pub async fn run_on(opts: &Options, broker: &Broker) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&opts.out_dir)?;
    let logs = opts.out_dir.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    let kafka = broker.kafka();

    say!(
        opts,
        "==> starting order-service, inventory-service (THROTTLE_MS={}), analytics-service",
        opts.throttle_ms
    );
    let order = Service::start(ServiceKind::Order, &broker.bootstrap, &[], &logs).await?;
    let inventory = Service::start(
        ServiceKind::Inventory,
        &broker.bootstrap,
        &[("THROTTLE_MS", opts.throttle_ms.to_string())],
        &logs,
    )
    .await?;
    let mut analytics =
        Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;

    // Step 1 and 2: publish while sampling the inventory group's lag.
    say!(
        opts,
        "==> [1/4] publishing {} OrderPlaced events through POST /orders/bulk",
        opts.orders
    );
    let started = Instant::now();
    let sampler = {
        let kafka = kafka.clone();
        let every = opts.sample_every;
        let verbose = opts.verbose;
        tokio::spawn(async move { sample_until_drained(&kafka, started, every, verbose).await })
    };
    let (status, body) = order
        .post_json(
            "/orders/bulk",
            &json!({"count": opts.orders, "spread_minutes": opts.spread_minutes}),
            Duration::from_secs(600),
        )
        .await?;
    if status != 200 {
        sampler.abort();
        bail!("POST /orders/bulk answered {status}: {body}");
    }
    let produced = body["published"].as_u64().unwrap_or(0);
    let produce_elapsed_ms = body["elapsed_ms"].as_u64().unwrap_or(0);
    let produce_events_per_sec = body["events_per_sec"].as_f64().unwrap_or(0.0);
    say!(opts, "    published {produced} events in {produce_elapsed_ms} ms ({produce_events_per_sec:.0} events/s)");

    say!(opts, "==> [2/4] inventory is throttled ({} ms per order): sampling the `inventory` group's lag until it drains", opts.throttle_ms);
    let lag_samples = sampler.await.context("lag sampler")??;
    let max_lag = lag_samples.iter().map(|s| s.total).max().unwrap_or(0);
    let lag_drained_after_ms = lag_samples.last().map(|s| s.t_ms).unwrap_or(0);
    say!(
        opts,
        "    peak lag {max_lag}, drained to 0 after {:.1} s ({} samples)",
        lag_drained_after_ms as f64 / 1000.0,
        lag_samples.len()
    );

    let before = analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(120)).await?;
    say!(
        opts,
        "    analytics: {} orders, failure rate {:.4}",
        before["orders_total"],
        before["failure_rate"].as_f64().unwrap_or(0.0)
    );

    // Step 3: replay, with the same `orderflowctl reset` users run.
    say!(
        opts,
        "==> [3/4] replay: orderflowctl reset --group analytics --to earliest"
    );
    let [a0, a1, a2, a3, a4, a5, a6, a7, a8] = REPLAY_RESET_ARGS;
    let reset_args = [a0, a1, a2, a3, a4, a5, a6, a7, a8, "--json"];
    let bootstrap = broker.bootstrap.clone();
    let (code, _, stderr) = blocking(move || orderflowctl(&bootstrap, &reset_args)).await?;
    if code != 2 {
        bail!("the reset was NOT refused while analytics was running (exit code {code}, {stderr})");
    }
    let reset_refused_while_running = stderr;
    say!(
        opts,
        "    while analytics runs, the reset is refused: {reset_refused_while_running}"
    );
    let clean = analytics.stop(Duration::from_secs(20)).await?;
    say!(
        opts,
        "    stopped analytics-service ({})",
        if clean {
            "clean exit after committing"
        } else {
            "had to be killed"
        }
    );
    let k = kafka.clone();
    wait::until(
        "the analytics group to become empty",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let k = k.clone();
            async move {
                let info = blocking(move || {
                    Ok(orderflowctl::describe_group(
                        &k,
                        GROUP_ANALYTICS,
                        Duration::from_secs(5),
                    )?)
                })
                .await
                .ok()?;
                (info.members == 0).then_some(())
            }
        },
    )
    .await?;
    let bootstrap = broker.bootstrap.clone();
    let (code, stdout, stderr) = blocking(move || orderflowctl(&bootstrap, &reset_args)).await?;
    if code != 0 {
        bail!("orderflowctl reset failed (exit code {code}): {stderr}");
    }
    let doc: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("orderflowctl reset printed {stdout}"))?;
    let reset: Vec<OffsetChange> = serde_json::from_value(doc["changes"].clone())?;
    for c in &reset {
        say!(
            opts,
            "    {:<17} p{}  {:>7} -> {}",
            c.topic,
            c.partition,
            c.from.map(|f| f.to_string()).unwrap_or("-".into()),
            c.to
        );
    }
    analytics = Service::start(ServiceKind::Analytics, &broker.bootstrap, &[], &logs).await?;
    let after = analytics_caught_up(&kafka, &analytics.url, Duration::from_secs(120)).await?;

    // Step 4: compare and report.
    let differences = compare_metrics(&before, &after);
    let identical = differences.is_empty();
    say!(opts, "==> [4/4] before / after the replay");
    if opts.verbose {
        print_table(&before, &after);
        println!("    identical: {identical}");
        for d in &differences {
            println!("    DIFFERENT {d}");
        }
    }
    let report = Report {
        bootstrap: broker.bootstrap.clone(),
        produced,
        produce_elapsed_ms,
        produce_events_per_sec,
        throttle_ms: opts.throttle_ms,
        lag_samples,
        max_lag,
        lag_drained_after_ms,
        reset_refused_while_running,
        reset,
        before: data_view(&before),
        after: data_view(&after),
        identical,
        differences,
    };
    write_outputs(opts, &report)?;

    say!(opts, "==> stopping everything");
    for svc in [order, inventory, analytics] {
        svc.stop(Duration::from_secs(20)).await?;
    }
    Ok(report)
}

/// Sample the inventory lag until it has been above 0 and is back to 0 (and the orders
/// topic is not empty).
async fn sample_until_drained(
    kafka: &KafkaConfig,
    started: Instant,
    every: Duration,
    verbose: bool,
) -> anyhow::Result<Vec<LagSample>> {
    let mut samples: Vec<LagSample> = Vec::new();
    let deadline = started + Duration::from_secs(900);
    let mut last_print = 0u64;
    loop {
        if let Ok(lags) = lag_of(kafka, GROUP_INVENTORY, &[TOPIC_ORDERS]).await {
            let mut lags = lags;
            lags.sort_by_key(|l| l.partition);
            let s = LagSample {
                t_ms: started.elapsed().as_millis() as u64,
                total: lags.iter().map(|l| l.lag).sum(),
                partitions: lags.iter().map(|l| l.lag).collect(),
            };
            let produced: i64 = lags.iter().map(|l| l.high_watermark).sum();
            let peaked = samples.iter().any(|x| x.total > 0) || s.total > 0;
            if verbose && (s.t_ms >= last_print + 1000 || (peaked && s.total == 0)) {
                println!(
                    "    t={:>5.1}s  lag={:>6}  per partition {:?}",
                    s.t_ms as f64 / 1000.0,
                    s.total,
                    s.partitions
                );
                last_print = s.t_ms;
            }
            let done = peaked && s.total == 0 && produced > 0;
            samples.push(s);
            if done {
                return Ok(samples);
            }
        }
        if Instant::now() > deadline {
            bail!("inventory lag did not drain within 15 minutes");
        }
        tokio::time::sleep(every).await;
    }
}

fn print_table(before: &Value, after: &Value) {
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
