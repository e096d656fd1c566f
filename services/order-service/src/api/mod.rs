//! The HTTP API: `POST /orders`, `POST /orders/bulk`, `POST /stock/{item}/restock`,
//! `GET /stats`. Every error is a JSON body `{"error": "..."}` naming the problem
//! ([`ApiError`]). Items are checked against the [`crate::catalogue`] before anything is
//! published: an unknown item is a 422 naming the known items, a catalogue not read yet a
//! 503.

mod request;
mod restock;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use orderflow_events::OrderPlaced;
use serde::Serialize;
use serde_json::json;

use crate::bulk::BulkPlan;
use crate::catalogue::{Catalogue, SharedCatalogue, CATALOGUE_WAIT};
use crate::publisher::{BulkOutcome, PublishError, Publisher};
use crate::AppMetrics;
use request::parse_json;
pub use request::{validate_bulk, validate_order, ApiError, BulkRequest, NewOrder, MAX_QTY};
pub use restock::{RestockRequest, RESTOCK_PATH};

#[derive(Debug, Clone, Serialize, Default)]
pub struct Stats {
    pub published_total: u64,
    pub publish_failures_total: u64,
    pub rejected_requests_total: u64,
    pub bulk_runs: u64,
    pub last_bulk: Option<BulkOutcome>,
}

pub struct AppState<P> {
    publisher: Arc<P>,
    metrics: AppMetrics,
    bulk_max: u64,
    bulk: Arc<Mutex<(u64, Option<BulkOutcome>)>>,
    catalogue: SharedCatalogue,
    /// How long a request waits for a catalogue not read yet ([`CATALOGUE_WAIT`]).
    catalogue_wait: std::time::Duration,
}

impl<P> Clone for AppState<P> {
    fn clone(&self) -> Self {
        Self {
            publisher: self.publisher.clone(),
            metrics: self.metrics.clone(),
            bulk_max: self.bulk_max,
            bulk: self.bulk.clone(),
            catalogue: self.catalogue.clone(),
            catalogue_wait: self.catalogue_wait,
        }
    }
}

impl<P: Publisher> AppState<P> {
    pub fn new(
        publisher: Arc<P>,
        metrics: AppMetrics,
        bulk_max: u64,
        catalogue: SharedCatalogue,
    ) -> Self {
        Self {
            publisher,
            metrics,
            bulk_max,
            bulk: Arc::new(Mutex::new((0, None))),
            catalogue,
            catalogue_wait: CATALOGUE_WAIT,
        }
    }

    /// Wait at most `wait` for a catalogue not read yet (tests).
    pub fn with_catalogue_wait(mut self, wait: std::time::Duration) -> Self {
        self.catalogue_wait = wait;
        self
    }

    /// Every item of `items` is in the catalogue (waiting for it while it is not read yet).
    async fn known(&self, items: &[String]) -> Result<(), ApiError> {
        for item in items {
            self.catalogue
                .wait_for(self.catalogue_wait, |c: &Catalogue| c.check(item))
                .await?;
        }
        Ok(())
    }
}

pub fn router<P: Publisher>(state: AppState<P>) -> Router {
    Router::new()
        .route("/orders", post(place_order::<P>))
        .route("/orders/bulk", post(place_bulk::<P>))
        .route(RESTOCK_PATH, post(restock::restock::<P>))
        .route("/stats", get(stats::<P>))
        .with_state(state)
}

async fn place_order<P: Publisher>(
    State(s): State<AppState<P>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let req: NewOrder = parse_json(&headers, &body)?;
        validate_order(&req)?;
        s.known(std::slice::from_ref(&req.item)).await?;
        let order = OrderPlaced::new(req.item, req.qty, req.user_id, Utc::now());
        let order_id = order.order_id;
        let started = std::time::Instant::now();
        let item = order.item.clone();
        match s.publisher.publish(order).await {
            Ok(at) => {
                s.metrics.published.inc();
                s.metrics
                    .publish_seconds
                    .observe(started.elapsed().as_secs_f64());
                tracing::info!(
                    %order_id,
                    item = %item,
                    topic = orderflow_events::TOPIC_ORDERS,
                    partition = at.partition,
                    offset = at.offset,
                    "order accepted"
                );
                Ok(order_id)
            }
            Err(e) => {
                s.metrics.publish_failures.inc();
                Err(ApiError::from(e))
            }
        }
    }
    .await;
    match result {
        Ok(order_id) => (StatusCode::ACCEPTED, Json(json!({"order_id": order_id}))).into_response(),
        Err(e) => reject(&s.metrics, e),
    }
}

pub(super) fn reject(metrics: &AppMetrics, e: ApiError) -> Response {
    metrics.rejected(e.reason, e.status.is_client_error());
    tracing::info!(status = e.status.as_u16(), reason = e.reason, error = %e.message, "request refused");
    e.into_response()
}

async fn place_bulk<P: Publisher>(
    State(s): State<AppState<P>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let req: BulkRequest = parse_json(&headers, &body)?;
        let items = validate_bulk(&req, s.bulk_max)?;
        s.known(&items).await?;
        let seed = req.seed.unwrap_or_else(rand::random);
        let plan = BulkPlan::new(
            req.count,
            items,
            req.spread_minutes.unwrap_or(0),
            Utc::now(),
            seed,
        );
        tracing::info!(count = req.count, "bulk publish started");
        match s.publisher.publish_bulk(plan).await {
            Ok(outcome) => {
                s.metrics.published.inc_by(outcome.published);
                tracing::info!(
                    published = outcome.published,
                    elapsed_ms = outcome.elapsed_ms,
                    events_per_sec = outcome.events_per_sec,
                    "bulk publish done"
                );
                if let Ok(mut b) = s.bulk.lock() {
                    b.0 += 1;
                    b.1 = Some(outcome.clone());
                }
                Ok(outcome)
            }
            Err(e) => {
                if let PublishError::Partial {
                    attempted, failed, ..
                } = &e
                {
                    s.metrics.published.inc_by(attempted - failed);
                    s.metrics.publish_failures.inc_by(*failed);
                }
                Err(ApiError::from(e))
            }
        }
    }
    .await;
    match result {
        Ok(outcome) => (StatusCode::OK, Json(outcome)).into_response(),
        Err(e) => reject(&s.metrics, e),
    }
}

async fn stats<P: Publisher>(State(s): State<AppState<P>>) -> Json<Stats> {
    let (bulk_runs, last_bulk) = s
        .bulk
        .lock()
        .map(|b| (b.0, b.1.clone()))
        .unwrap_or_default();
    Json(Stats {
        published_total: s.metrics.published.get(),
        publish_failures_total: s.metrics.publish_failures.get(),
        rejected_requests_total: s.metrics.rejected_requests.get(),
        bulk_runs,
        last_bulk,
    })
}

#[cfg(test)]
mod tests;
