//! The lab's scenario, run by `make demo` (the `orderflow-demo` binary) and by the
//! integration tests: publish, create and watch consumer lag, replay, compare, report.
//! [`report`] holds what it reports: report.json, lag.svg, the before/after table and the
//! comparison of the metrics' data fields.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orderflow_events::{GROUP_ANALYTICS, GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use serde_json::{json, Value};

use crate::probes::{analytics_caught_up, blocking, lag_of};
use crate::procs::{orderflowctl, Broker, Service, ServiceKind};
use crate::wait;

macro_rules! say {
    ($opts:expr, $($arg:tt)*) => { if $opts.verbose { println!($($arg)*); } };
}

mod report;

pub use report::{
    compare_metrics, data_view, replay_lines, write_outputs, LagSample, Report, DATA_FIELDS,
};

use report::print_table;

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
    let (reset, lines) = replay_lines(&doc)?;
    for line in &lines {
        say!(opts, "{line}");
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
