//! `make demo`: the lab's scenario on a local Apache Kafka (or KAFKA_BOOTSTRAP), with progress
//! lines, target/demo/report.json and target/demo/lag.svg.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use orderflow_lab::demo::{self, Options};

#[derive(Parser)]
#[command(about = "Run the orderflow lab scenario: publish, lag, replay, compare")]
struct Args {
    /// Orders to publish.
    #[arg(long, default_value_t = 10_000)]
    orders: u64,
    /// inventory-service THROTTLE_MS while the orders arrive.
    #[arg(long, default_value_t = 1)]
    throttle_ms: u64,
    /// Spread the orders' event times over this many past minutes.
    #[arg(long, default_value_t = 10)]
    spread_minutes: u32,
    /// Lag sampling interval in milliseconds.
    #[arg(long, default_value_t = 250)]
    sample_ms: u64,
    /// Output directory.
    #[arg(long, default_value = "target/demo")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let opts = Options {
        orders: a.orders,
        throttle_ms: a.throttle_ms,
        spread_minutes: a.spread_minutes,
        sample_every: Duration::from_millis(a.sample_ms),
        out_dir: a.out,
        verbose: true,
    };
    let report = demo::run(&opts).await?;
    if !report.identical {
        anyhow::bail!(
            "the replay did NOT reproduce the metrics: {:?}",
            report.differences
        );
    }
    println!(
        "demo finished: {} produced, peak lag {}, replay identical",
        report.produced, report.max_lag
    );
    Ok(())
}
