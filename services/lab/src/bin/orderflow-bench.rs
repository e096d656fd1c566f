//! `make bench`: orderflow against kcat, Kafka's perf tools, a kcat pipe and the Python peer
//! (bench/peers/) on a local Apache Kafka; writes <out>/results.json and <out>/results.md. See the lab's `bench` module.

use std::path::PathBuf;

use clap::Parser;
use orderflow_lab::bench::{self, Options};

#[derive(Parser)]
#[command(
    about = "Benchmark orderflow side by side with kcat, Kafka's perf tools and a Python pipeline"
)]
struct Args {
    /// Events per benchmark (default 1,000,000; 10,000 with --smoke).
    #[arg(long)]
    events: Option<u64>,
    /// Runs per benchmark (median and min-max are reported; default 3, 1 with --smoke).
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds of each HTTP load run.
    #[arg(long)]
    http_seconds: Option<u64>,
    /// Request rate of the HTTP latency run.
    #[arg(long, default_value_t = 2000)]
    http_rate: u64,
    /// Seconds of each fixed rate of P6, the end-to-end latency (default 10; 2 with --smoke).
    #[arg(long)]
    e2e_seconds: Option<u64>,
    /// Only P6, the end-to-end latency (no proof, no other benchmark).
    #[arg(long, conflicts_with = "proof_only")]
    e2e_only: bool,
    /// Sizes of the N sweep, comma-separated (default 100000,1000000,3000000; 1000,2000 with
    /// --smoke).
    #[arg(long, value_delimiter = ',', conflicts_with = "no_sweep")]
    sweep: Option<Vec<u64>>,
    /// Samples per N of the sweep, rounds over every size in turn; each figure is their
    /// median (default 3; 1 with --smoke).
    #[arg(long)]
    sweep_runs: Option<usize>,
    /// No N sweep.
    #[arg(long)]
    no_sweep: bool,
    /// Only the N sweep.
    #[arg(long, conflicts_with_all = ["no_sweep", "e2e_only", "proof_only"])]
    sweep_only: bool,
    /// Orders of the proof that the Kafka Streams peers decide and count like orderflow
    /// (default 10,000; 2,000 with --smoke).
    #[arg(long)]
    proof_events: Option<u64>,
    /// Only that proof (no timing): prints what it compared.
    #[arg(long)]
    proof_only: bool,
    /// With --proof-only: inventory-service with TRANSACTIONS=false and the Streams peers
    /// at-least-once (default: transactions and exactly-once v2).
    #[arg(long, requires = "proof_only")]
    at_least_once: bool,
    /// The tiny mode `make test` runs.
    #[arg(long)]
    smoke: bool,
    /// Output directory.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut opts = if a.smoke {
        Options::smoke(a.out)
    } else {
        Options::full(a.out)
    };
    opts.events = a.events.unwrap_or(opts.events);
    opts.runs = a.runs.unwrap_or(opts.runs).max(1);
    opts.http_seconds = a.http_seconds.unwrap_or(opts.http_seconds);
    opts.http_rate = a.http_rate;
    opts.proof_events = a.proof_events.unwrap_or(opts.proof_events);
    opts.e2e_seconds = a.e2e_seconds.unwrap_or(opts.e2e_seconds).max(1);
    opts.e2e_only = a.e2e_only;
    if let Some(sizes) = a.sweep {
        opts.sweep = sizes;
    }
    opts.sweep_runs = a.sweep_runs.unwrap_or(opts.sweep_runs).max(1);
    if a.no_sweep {
        opts.sweep.clear();
    }
    opts.sweep_only = a.sweep_only;
    let tools = bench::install_tools()?;
    if a.proof_only {
        let dir = opts.out_dir.join("proof");
        let eq = bench::prove_equal(&tools, opts.proof_events, &dir, !a.at_least_once).await?;
        println!("{}", serde_json::to_string_pretty(&eq)?);
        return Ok(());
    }
    // Ctrl-C / SIGTERM drop the run, whose guards stop the broker and services by PID.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = bench::run(&opts, &tools) => r.map(|_| ()),
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; stopped everything the bench started"),
        _ = term.recv() => anyhow::bail!("terminated; stopped everything the bench started"),
    }
}
