//! `POST /stock/{item}/restock` `{"qty": N}`: an admin adds `N` units of `item`. The request
//! becomes a `StockRestockRequested` on `orders`, keyed by the item like its orders, so
//! inventory decides it in order with them (inventory stays a pure consumer of `orders`),
//! and the answer waits for Kafka's acknowledgement: 202 `{"restock_id", "item", "qty"}`.
//!
//! Refused before anything is published, with a JSON error like `POST /orders`: a body that
//! is not `{"qty": <integer>}` (400), `qty` below 1 (400), an unknown item (422, naming the
//! known items), stock beyond `MAX_STOCK` (422: the item's stock as the catalogue last read
//! it, plus `qty`; inventory checks again when it decides), a catalogue not read yet (503).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use orderflow_events::StockRestockRequested;
use serde::Deserialize;
use serde_json::json;

use super::request::{check_name, parse_json, ApiError};
use super::{reject, AppState};
use crate::catalogue::Catalogue;
use crate::publisher::Publisher;

/// The route.
pub const RESTOCK_PATH: &str = "/stock/{item}/restock";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    /// Units to add (an integer, at least 1; a larger type than the event's, so that a
    /// negative or huge number is refused with its own message).
    pub qty: i64,
}

pub(super) async fn restock<P: Publisher>(
    State(s): State<AppState<P>>,
    Path(item): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        check_name("item", &item)?;
        let req: RestockRequest = parse_json(&headers, &body)?;
        if req.qty < 1 {
            return Err(ApiError::bad(format!(
                "`qty` must be at least 1 (got {})",
                req.qty
            )));
        }
        let qty = req.qty.unsigned_abs();
        s.catalogue
            .wait_for(s.catalogue_wait, |c: &Catalogue| {
                c.check_restock(&item, qty)
            })
            .await?;
        // check_restock bounds qty by MAX_STOCK, which fits in the event's u32
        let qty = u32::try_from(qty).map_err(|_| ApiError::bad("`qty` is too large"))?;
        let r = StockRestockRequested::new(item.clone(), qty, Utc::now());
        let restock_id = r.restock_id;
        match s.publisher.publish_restock(r).await {
            Ok(at) => {
                s.metrics
                    .restocked_units
                    .get_or_create(&crate::ItemLabels { item: item.clone() })
                    .inc_by(u64::from(qty));
                tracing::info!(
                    %restock_id,
                    item = %item,
                    qty,
                    topic = orderflow_events::TOPIC_ORDERS,
                    partition = at.partition,
                    offset = at.offset,
                    "restock accepted"
                );
                Ok((restock_id, qty))
            }
            Err(e) => {
                s.metrics.publish_failures.inc();
                Err(ApiError::from(e))
            }
        }
    }
    .await;
    match result {
        Ok((restock_id, qty)) => (
            StatusCode::ACCEPTED,
            Json(json!({"restock_id": restock_id, "item": item, "qty": qty})),
        )
            .into_response(),
        Err(e) => reject(&s.metrics, e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use orderflow_events::MAX_STOCK;

    use super::super::tests::{app, call, FakePublisher};

    #[tokio::test]
    async fn a_restock_is_published_keyed_by_its_item() {
        let p = Arc::new(FakePublisher::default());
        let (code, body) = call(
            app(p.clone()),
            "POST",
            "/stock/pizza/restock",
            "application/json",
            r#"{"qty":500}"#,
        )
        .await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
        let r = p.restocks.lock().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].item.as_str(), r[0].qty), ("pizza", 500));
        assert_eq!(body["restock_id"], r[0].restock_id.to_string());
        assert_eq!(
            (body["item"].as_str(), body["qty"].as_u64()),
            (Some("pizza"), Some(500))
        );
    }

    #[tokio::test]
    async fn bad_restocks_are_json_4xx_and_publish_nothing() {
        let p = Arc::new(FakePublisher::default());
        // the menu: burger has 2000 + 500 restocked, the others 2000
        let beyond = format!(r#"{{"qty":{}}}"#, MAX_STOCK - 2499);
        for (item, body, status, needle) in [
            (
                "caviar",
                r#"{"qty":5}"#,
                422,
                "unknown item \"caviar\"; known items: burger",
            ),
            (
                "pizza",
                r#"{"qty":0}"#,
                400,
                "`qty` must be at least 1 (got 0)",
            ),
            (
                "pizza",
                r#"{"qty":-3}"#,
                400,
                "`qty` must be at least 1 (got -3)",
            ),
            ("pizza", r#"{"qty":1.5}"#, 400, "invalid request body"),
            ("pizza", r#"{"qty":"5"}"#, 400, "invalid type"),
            ("pizza", r#"{}"#, 400, "missing field `qty`"),
            (
                "pizza",
                r#"{"qty":99999999999999999999}"#,
                400,
                "invalid request body",
            ),
            ("burger", &beyond, 422, "stock beyond the maximum"),
            (
                "pizza",
                r#"{"qty":4294967296}"#,
                422,
                "stock beyond the maximum",
            ),
        ] {
            let path = format!("/stock/{item}/restock");
            let (code, json) = call(app(p.clone()), "POST", &path, "application/json", body).await;
            assert_eq!(code.as_u16(), status, "{item} {body}: {json}");
            let msg = json["error"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{item} {body}: {msg}");
        }
        let (code, _) = call(
            app(p.clone()),
            "POST",
            "/stock/burger/restock",
            "application/json",
            &format!(r#"{{"qty":{}}}"#, MAX_STOCK - 2500),
        )
        .await;
        assert_eq!(code, StatusCode::ACCEPTED, "exactly up to the maximum");
        assert_eq!(p.restocks.lock().unwrap().len(), 1);
    }
}
