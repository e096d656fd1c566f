//! Running a service's background worker next to its HTTP server: when either ends (the
//! worker on a fatal error, the server on a bind failure) the other is told to stop, the
//! error is logged, and `main` returns it, so the process exits non-zero instead of
//! serving a dead worker.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::Health;

use tokio_util::sync::CancellationToken;

pub async fn worker_and_server<E, W, S>(
    token: CancellationToken,
    worker: W,
    server: S,
) -> anyhow::Result<()>
where
    E: Display + Send + 'static,
    W: Future<Output = Result<(), E>> + Send + 'static,
    S: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let t = token.clone();
    let worker = tokio::spawn(async move {
        let r = worker.await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "worker failed; stopping");
        }
        t.cancel();
        r.map_err(|e| anyhow::anyhow!("{e}"))
    });
    let t = token.clone();
    let server = tokio::spawn(async move {
        let r = server.await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "http server failed; stopping");
        }
        t.cancel();
        r
    });
    let worked = worker
        .await
        .map_err(|e| anyhow::anyhow!("worker task: {e}"))?;
    let served = server
        .await
        .map_err(|e| anyhow::anyhow!("server task: {e}"))?;
    worked.and(served)
}

/// Run a worker's Kafka `session` again and again, so the service outlives a broker that
/// goes away mid-run: `session` returns `Ok` when the token was cancelled (the service
/// stops), an error `fatal` accepts ends the worker (a configuration error: the process
/// exits non-zero with it), and after any other error the service stays up, `/readyz`
/// says why, and a new session starts after a backoff (1 s, doubling up to 30 s; back to
/// 1 s after a session that lasted a minute). A session must commit nothing it has not
/// finished, so starting again from the committed offsets loses and doubles nothing.
pub async fn sessions<E, F, Fut>(
    health: &Health,
    token: &CancellationToken,
    fatal: impl Fn(&E) -> bool,
    mut session: F,
) -> Result<(), E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);
    let mut backoff = FIRST;
    loop {
        let started = Instant::now();
        match session().await {
            Ok(()) => return Ok(()),
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = FIRST;
                }
                tracing::error!(
                    error = %e,
                    retry_in_s = backoff.as_secs(),
                    "Kafka session failed; starting again from the committed offsets"
                );
                health.set_not_ready(format!("{e} (retrying in {} s)", backoff.as_secs()));
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_worker_stops_the_server_and_is_returned() {
        let token = CancellationToken::new();
        let t = token.clone();
        let server = async move {
            t.cancelled().await;
            Ok(())
        };
        let r = worker_and_server(token.clone(), async { Err::<(), _>("broken") }, server).await;
        assert_eq!(r.unwrap_err().to_string(), "broken");
        assert!(token.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_start_again_after_errors_until_one_is_fatal() {
        let (health, token) = (Health::new(), CancellationToken::new());
        let mut runs = 0;
        let r = sessions(
            &health,
            &token,
            |e: &String| e == "fatal",
            || {
                runs += 1;
                let n = runs;
                async move {
                    match n {
                        1 | 2 => Err("broker gone".to_string()),
                        _ => Err("fatal".to_string()),
                    }
                }
            },
        )
        .await;
        assert_eq!(r.unwrap_err(), "fatal");
        assert_eq!(runs, 3);
        assert!(!health.is_ready());
        assert!(
            health.detail().contains("broker gone"),
            "{}",
            health.detail()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_end_when_cancelled_during_the_backoff() {
        let (health, token) = (Health::new(), CancellationToken::new());
        let t = token.clone();
        let r = sessions(
            &health,
            &token,
            |_: &String| false,
            || {
                t.cancel();
                async { Err("broker gone".to_string()) }
            },
        )
        .await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn cancellation_ends_both_cleanly() {
        let token = CancellationToken::new();
        let (t1, t2) = (token.clone(), token.clone());
        token.cancel();
        let r = worker_and_server(
            token,
            async move {
                t1.cancelled().await;
                Ok::<(), String>(())
            },
            async move {
                t2.cancelled().await;
                Ok(())
            },
        )
        .await;
        assert!(r.is_ok());
    }
}
