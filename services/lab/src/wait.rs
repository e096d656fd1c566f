//! Polling with a deadline: the only way tests and the demo synchronise.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// Call `probe` every `every` until it returns `Some`, or fail after `timeout` saying `what`.
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {:.0?} waiting for {what}", timeout);
        }
        tokio::time::sleep(every).await;
    }
}
