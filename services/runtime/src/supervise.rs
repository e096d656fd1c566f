//! Running a service's background worker next to its HTTP server: when either ends (the
//! worker on a fatal error, the server on a bind failure) the other is told to stop, the
//! error is logged, and `main` returns it, so the process exits non-zero instead of
//! serving a dead worker.

use std::fmt::Display;
use std::future::Future;

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
