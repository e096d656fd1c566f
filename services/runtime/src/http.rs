//! The ops HTTP surface every service serves: `/healthz` (the process is alive),
//! `/readyz` (connected to Kafka and working; 503 with the reason otherwise) and
//! `/metrics` (Prometheus/OpenMetrics text), merged with the service's own routes.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Readiness shared between the service's work loop and `/readyz`.
#[derive(Clone)]
pub struct Health {
    state: Arc<RwLock<(bool, String)>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Not ready, "starting".
    pub fn new() -> Self {
        Self {
            state: Arc::new(RwLock::new((false, "starting".into()))),
        }
    }

    pub fn set_ready(&self, detail: impl Into<String>) {
        self.set(true, detail.into());
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(false, reason.into());
    }

    fn set(&self, ready: bool, detail: String) {
        if let Ok(mut s) = self.state.write() {
            if s.0 != ready || s.1 != detail {
                if ready {
                    tracing::info!(detail = %detail, "ready");
                } else {
                    tracing::warn!(reason = %detail, "not ready");
                }
                *s = (ready, detail);
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state.read().map(|s| s.0).unwrap_or(false)
    }

    pub fn detail(&self) -> String {
        self.state.read().map(|s| s.1.clone()).unwrap_or_default()
    }
}

#[derive(Clone)]
struct OpsState {
    health: Health,
    registry: Arc<Registry>,
}

/// Builds and runs a service's HTTP server.
pub struct OpsServer {
    pub health: Health,
    pub registry: Arc<Registry>,
}

impl OpsServer {
    pub fn new(health: Health, registry: Registry) -> Self {
        Self {
            health,
            registry: Arc::new(registry),
        }
    }

    /// The ops routes alone.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(OpsState {
                health: self.health.clone(),
                registry: self.registry.clone(),
            })
    }

    /// Serve `app` merged with the ops routes on `addr` until `shutdown` is cancelled.
    pub async fn serve(
        self,
        addr: SocketAddr,
        app: Router,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let router = app.merge(self.router());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (set HTTP_ADDR): {e}"))?;
        tracing::info!(%addr, "http listening");
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let detail = s.health.detail();
    if s.health.is_ready() {
        (
            StatusCode::OK,
            Json(json!({"ready": true, "detail": detail})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": detail})),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<OpsState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let resp = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_health() {
        let health = Health::new();
        let server = OpsServer::new(health.clone(), Registry::default());
        let (code, body) = get(server.router(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("starting"), "{body}");
        health.set_ready("consuming");
        let (code, body) = get(server.router(), "/readyz").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("consuming"), "{body}");
        assert_eq!(get(server.router(), "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_exposed() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry.register("orderflow_test_things", "Things", c.clone());
        c.inc_by(3);
        let server = OpsServer::new(Health::new(), registry);
        let (code, body) = get(server.router(), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("orderflow_test_things_total 3"), "{body}");
    }
}
