//! Graceful shutdown: SIGTERM (Kubernetes) or Ctrl-C cancels a token that every task watches.

use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How a service's HTTP server stops (flattened into each service's settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Shutdown")]
pub struct ShutdownArgs {
    /// After SIGTERM, seconds the HTTP server keeps answering, and accepting, with
    /// `Connection: close` on every response before it stops: clients holding a kept-alive
    /// connection to this pod get an answer and reconnect elsewhere. The Helm chart sets
    /// it (`httpDrainSeconds`, 3); 0: stop at once.
    #[arg(long, env = "HTTP_DRAIN_SECONDS", default_value_t = 0, value_parser = crate::config::trimmed::<u64>)]
    pub http_drain_seconds: u64,
}

impl ShutdownArgs {
    /// The drain as a duration.
    pub fn drain(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.http_drain_seconds)
    }
}
