//! `GET /api/metrics`: the aggregates as JSON.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use crate::consumer::Shared;

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/api/metrics", get(metrics))
        .with_state(shared)
}

/// The metrics document: `orders_total`, `reserved_total`, `failed_total`, `failure_rate`,
/// `orders_per_minute` (`minute`, `orders`, `failed`, `reserved`; by event time, ascending),
/// `consumed` (topic -> partition -> next offset), plus `started_from`, `rebuilt_records`,
/// `dlq_total`, `run`, `restored_from_snapshot`, `snapshot_records`.
pub async fn metrics(State(shared): State<Shared>) -> Json<Value> {
    let mut doc = shared
        .state
        .read()
        .map(|s| serde_json::to_value(s.view()).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    if let (Some(obj), Ok(info)) = (doc.as_object_mut(), shared.info.read()) {
        if let Ok(Value::Object(extra)) = serde_json::to_value(&*info) {
            obj.extend(extra);
        }
    }
    Json(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use orderflow_events::{Event, OrderPlaced};

    #[tokio::test]
    async fn metrics_document() {
        let shared = Shared::default();
        let o = OrderPlaced::new(
            "pizza",
            1,
            "u",
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 1).unwrap(),
        );
        shared
            .state
            .write()
            .unwrap()
            .apply("orders", 2, 41, &Event::OrderPlaced(o));
        let Json(v) = metrics(State(shared)).await;
        assert_eq!(v["orders_total"], 1);
        assert_eq!(v["consumed"]["orders"]["2"], 42);
        assert_eq!(v["orders_per_minute"][0]["minute"], "2026-11-22T10:00:00Z");
        assert_eq!(v["rebuilt_records"], 0);
    }
}
