//! What the API accepts: the request bodies, their parsing and validation, and the JSON
//! error that names what is wrong.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderflow_events::DEFAULT_ITEMS;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::catalogue::CatalogueError;
use crate::publisher::PublishError;

/// Largest quantity one order may ask for.
pub const MAX_QTY: u32 = 1000;
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub item: String,
    pub qty: u32,
    pub user_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub count: u64,
    /// Items to draw from (default: the whole menu).
    #[serde(default)]
    pub items: Option<Vec<String>>,
    /// Spread the orders' event times evenly over the past N minutes (default 0: now).
    #[serde(default)]
    pub spread_minutes: Option<u32>,
    /// Seed for the item/quantity/user draws (default: random).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A request the API refuses or could not serve.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    /// The `reason` label of `orderflow_orders_rejected_requests_total`.
    pub(super) reason: &'static str,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            reason,
        }
    }
    pub(super) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "kafka_unavailable",
            e.to_string(),
        )
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        let (status, reason) = match &e {
            CatalogueError::Loading | CatalogueError::Incomplete(..) => {
                (StatusCode::SERVICE_UNAVAILABLE, "catalogue_unavailable")
            }
            CatalogueError::Unknown { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_item"),
            CatalogueError::BeyondMax { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "stock_limit"),
        };
        ApiError::new(status, reason, e.to_string())
    }
}

/// Parse a JSON body ourselves so that every refusal is a JSON error naming the problem.
pub(super) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/json (got {:?})", ct),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("invalid request body: {e}"),
        )
    })
}

pub(super) fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad(format!("`{field}` must not be empty")));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ApiError::bad(format!(
            "`{field}` is longer than {MAX_NAME_LEN} characters"
        )));
    }
    Ok(())
}

/// Validate a single order request.
pub fn validate_order(o: &NewOrder) -> Result<(), ApiError> {
    check_name("item", &o.item)?;
    check_name("user_id", &o.user_id)?;
    if o.qty == 0 || o.qty > MAX_QTY {
        return Err(ApiError::bad(format!(
            "`qty` must be between 1 and {MAX_QTY} (got {})",
            o.qty
        )));
    }
    Ok(())
}

/// Validate a bulk request; returns the items to draw from.
pub fn validate_bulk(r: &BulkRequest, bulk_max: u64) -> Result<Vec<String>, ApiError> {
    if r.count == 0 || r.count > bulk_max {
        return Err(ApiError::bad(format!(
            "`count` must be between 1 and {bulk_max} (got {})",
            r.count
        )));
    }
    let items = match &r.items {
        None => DEFAULT_ITEMS.iter().map(|s| s.to_string()).collect(),
        Some(items) if items.is_empty() => {
            return Err(ApiError::bad("`items` must not be empty when given"))
        }
        Some(items) => items.clone(),
    };
    for item in &items {
        check_name("items[]", item)?;
    }
    if r.spread_minutes.unwrap_or(0) > 7 * 24 * 60 {
        return Err(ApiError::bad(
            "`spread_minutes` must be at most 10080 (the 7-day retention)",
        ));
    }
    Ok(items)
}
