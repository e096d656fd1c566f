//! The Kafka Streams peers timed in P2 and P3, on the run's broker and over the run's records,
//! once [`super::streams`] has proven them to decide and count like orderflow. Each is timed
//! as orderflow's service is, from process start (the JVM's, here) until the work is done:
//! - P2: the inventory peer decides the N orders of P1 into its own topic, with
//!   `exactly_once_v2`, as inventory-service decides them with transactions (its default); done
//!   when it has handled N records and closed (which commits them).
//! - P3: the analytics peer counts `orders` and `inventory-events` (2N records) from the
//!   earliest offsets, with `at_least_once` (analytics-service writes no transactions); done
//!   when it has handled 2N records and read its counts back, which must hold N orders.

use anyhow::{ensure, Context};
use serde_json::Value;

use super::peers::timed;
use super::streams::java;
use super::{Tools, STREAMS_DECISIONS};

/// Seconds the Streams inventory peer takes to decide the `n` orders on `orders`.
pub(super) async fn inventory(
    tools: &Tools,
    bootstrap: &str,
    n: u64,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    let mut cmd = java(tools, "inventory", bootstrap, "bench-p2-streams", dir, true);
    cmd.args(["--output", STREAMS_DECISIONS, "--expect", &n.to_string()]);
    let (secs, out) = timed(&cmd, "the Kafka Streams inventory peer").await?;
    ensure!(
        out.contains(&format!("\"handled\": {n}")),
        "the Kafka Streams inventory peer: {out}"
    );
    Ok(secs)
}

/// Seconds the Streams analytics peer takes to count `orders` and `inventory-events` (`2n`
/// records), and checks it counted `n` orders.
pub(super) async fn analytics(
    tools: &Tools,
    bootstrap: &str,
    n: u64,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    let mut cmd = java(
        tools,
        "analytics",
        bootstrap,
        "bench-p3-streams",
        dir,
        false,
    );
    cmd.args(["--expect", &(2 * n).to_string()]);
    let (secs, out) = timed(&cmd, "the Kafka Streams analytics peer").await?;
    let doc: Value = serde_json::from_str(out.trim())
        .with_context(|| format!("the Kafka Streams analytics peer's output: {out}"))?;
    ensure!(
        doc["orders_total"].as_u64() == Some(n),
        "the Kafka Streams analytics peer counted {} orders, not {n}: {out}",
        doc["orders_total"]
    );
    Ok(secs)
}
