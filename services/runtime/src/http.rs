//! The ops HTTP surface every service serves: `/healthz` (the process is alive),
//! `/readyz` (connected to Kafka and working; 503 with the reason otherwise) and
//! `/metrics` (Prometheus/OpenMetrics text), merged with the service's own routes; every
//! request to any of them is counted and timed by [`HttpMetrics`] (a middleware layer), by
//! method, route (the matched path pattern, e.g. `/orders/bulk`) and status.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

    pub fn set_ready(&self, detail: impl AsRef<str>) {
        self.set(true, detail.as_ref());
    }

    pub fn set_not_ready(&self, reason: impl AsRef<str>) {
        self.set(false, reason.as_ref());
    }

    /// Called once per record by analytics: an unchanged state costs a shared lock and a
    /// comparison, no allocation and no exclusive lock.
    fn set(&self, ready: bool, detail: &str) {
        if self
            .state
            .read()
            .is_ok_and(|s| s.0 == ready && s.1 == detail)
        {
            return;
        }
        if let Ok(mut s) = self.state.write() {
            if s.0 != ready || s.1 != detail {
                if ready {
                    tracing::info!(detail = %detail, "ready");
                } else {
                    tracing::warn!(reason = %detail, "not ready");
                }
                *s = (ready, detail.to_string());
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

/// `{method="GET",route="/orders",status="202"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The matched path pattern, or [`UNMATCHED_ROUTE`].
    pub route: String,
    pub status: u16,
}

/// The route label of requests no route matched (404s): never the raw path, whose values
/// would be unbounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

fn duration_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// HTTP request metrics of a service:
/// `orderflow_http_requests_total{method,route,status}` and
/// `orderflow_http_request_duration_seconds{method,route,status}` (a histogram).
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
        };
        registry.register(
            "orderflow_http_requests",
            "HTTP requests served, by method, route (matched path pattern) and status",
            m.requests.clone(),
        );
        registry.register(
            "orderflow_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route and status",
            m.duration.clone(),
        );
        m
    }

    /// Count and time every request of `router` (routes added before this call).
    pub fn layer(&self, router: Router) -> Router {
        router.layer(middleware::from_fn_with_state(self.clone(), track))
    }

    fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }
}

async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let labels = RequestLabels {
        method,
        route,
        status: resp.status().as_u16(),
    };
    m.observe(labels, started.elapsed().as_secs_f64());
    resp
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
    pub http: HttpMetrics,
    /// How long the server drains after the shutdown signal (see [`OpsServer::drain`]).
    pub drain: Duration,
}

impl OpsServer {
    /// The server of a service whose metrics are in `registry`; the HTTP request metrics
    /// ([`HttpMetrics`]) are registered there too.
    pub fn new(health: Health, mut registry: Registry) -> Self {
        let http = HttpMetrics::register(&mut registry);
        Self {
            health,
            registry: Arc::new(registry),
            http,
            drain: Duration::ZERO,
        }
    }

    /// After the shutdown signal, keep serving for `drain` (`HTTP_DRAIN_SECONDS`), still
    /// accepting, with `Connection: close` on every response; then stop accepting and finish.
    /// A client holding a kept-alive connection to this pod (behind a Service, it stays
    /// pinned to it) gets its next answer and reconnects, to a pod that stays, instead of
    /// finding the connection closed as it sends: hyper's graceful shutdown closes idle
    /// connections at once, which such a client sees as "connection closed before message
    /// completed". Zero: stop at once.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// `app` merged with the ops routes, every request counted and timed.
    pub fn app(&self, app: Router) -> Router {
        self.http.layer(app.merge(self.router()))
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
        let draining = Arc::new(AtomicBool::new(false));
        let flag = draining.clone();
        let router = self
            .app(app)
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                let draining = flag.load(Ordering::SeqCst);
                async move {
                    let mut resp = next.run(req).await;
                    if draining {
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    resp
                }
            }));
        let stop = CancellationToken::new();
        let drain = self.drain;
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.cancelled().await;
                if !drain.is_zero() {
                    draining.store(true, Ordering::SeqCst);
                    tracing::info!(
                        seconds = drain.as_secs_f64(),
                        "draining: answering with Connection: close before closing"
                    );
                    tokio::time::sleep(drain).await;
                }
                stop.cancel();
            }
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (set HTTP_ADDR): {e}"))?;
        tracing::info!(%addr, "http listening");
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
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

    /// A free address on 127.0.0.1 (bound, then released).
    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
    }

    #[tokio::test]
    async fn a_draining_server_answers_with_connection_close_then_stops() {
        let addr = free_addr();
        let token = CancellationToken::new();
        let server = OpsServer::new(Health::new(), Registry::default())
            .drain(Duration::from_secs(30))
            .serve(addr, Router::new(), token.clone());
        let server = tokio::spawn(server);
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/healthz");
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = loop {
            match http.get(&url).send().await {
                Ok(r) => break r,
                Err(_) if Instant::now() < deadline => tokio::task::yield_now().await,
                Err(e) => panic!("the server did not answer: {e}"),
            }
        };
        assert_eq!(first.status(), StatusCode::OK);
        assert!(first.headers().get(header::CONNECTION).is_none());
        token.cancel();
        // draining: a kept-alive connection and a new one are both answered, with close
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            if r.headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v == "close")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no Connection: close while draining"
            );
            tokio::task::yield_now().await;
        }
        let fresh = reqwest::Client::new().get(&url).send().await.unwrap();
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(fresh.headers()[header::CONNECTION], "close");
        assert!(!server.is_finished(), "stopped before the drain ended");
        server.abort();
    }

    #[tokio::test]
    async fn an_undrained_server_stops_at_once() {
        let addr = free_addr();
        let token = CancellationToken::new();
        let server = OpsServer::new(Health::new(), Registry::default());
        let server = tokio::spawn(server.serve(addr, Router::new(), token.clone()));
        token.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server did not stop")
            .unwrap()
            .unwrap();
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

    #[tokio::test]
    async fn requests_are_counted_by_method_matched_route_and_status() {
        let server = OpsServer::new(Health::new(), Registry::default());
        let app =
            server.app(Router::new().route("/items/{id}", axum::routing::get(|| async { "item" })));
        for path in ["/items/7", "/items/8", "/nope", "/healthz"] {
            let _ = get(app.clone(), path).await;
        }
        let (_, body) = get(server.router(), "/metrics").await;
        for want in [
            "orderflow_http_requests_total{method=\"GET\",route=\"/items/{id}\",status=\"200\"} 2",
            "orderflow_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            "orderflow_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
            "orderflow_http_request_duration_seconds_count{method=\"GET\",route=\"/items/{id}\",status=\"200\"} 2",
        ] {
            assert!(body.contains(want), "{want} missing in:\n{body}");
        }
    }
}
