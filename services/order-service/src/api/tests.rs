use super::*;
use crate::publisher::Position;
use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use std::time::Duration;
use tower::ServiceExt;

/// Records what it was asked to publish; fails when told to.
#[derive(Default)]
pub(super) struct FakePublisher {
    pub(super) published: Mutex<Vec<OrderPlaced>>,
    pub(super) restocks: Mutex<Vec<orderflow_events::StockRestockRequested>>,
    pub(super) fail: bool,
}

impl Publisher for FakePublisher {
    async fn publish_restock(
        &self,
        r: orderflow_events::StockRestockRequested,
    ) -> Result<Position, PublishError> {
        if self.fail {
            return Err(PublishError::NotAcknowledged("broker down".into()));
        }
        self.restocks.lock().unwrap().push(r);
        Ok(Position {
            partition: 0,
            offset: 0,
        })
    }
    async fn publish(&self, order: OrderPlaced) -> Result<Position, PublishError> {
        if self.fail {
            return Err(PublishError::NotAcknowledged("broker down".into()));
        }
        let mut v = self.published.lock().unwrap();
        v.push(order);
        Ok(Position {
            partition: 0,
            offset: v.len() as i64 - 1,
        })
    }
    async fn publish_bulk(&self, mut plan: BulkPlan) -> Result<BulkOutcome, PublishError> {
        let n = plan.count();
        let mut v = self.published.lock().unwrap();
        for i in 0..n {
            v.push(plan.order(i));
        }
        Ok(BulkOutcome::new(n, Duration::from_millis(10)))
    }
}

/// A read catalogue of the default menu, every partition checkpointed.
pub(super) fn menu() -> SharedCatalogue {
    use chrono::Utc;
    use orderflow_events::{ItemStock, LedgerCheckpoint, LedgerRecord, SCHEMA_VERSION};
    let mut c = Catalogue::default();
    for (i, item) in orderflow_events::DEFAULT_ITEMS.iter().enumerate() {
        c.apply(
            0,
            &LedgerRecord::ItemStock(ItemStock {
                schema_version: SCHEMA_VERSION,
                item: item.to_string(),
                initial: Some(2000),
                reserved: 0,
                restocked: if i == 0 { 500 } else { 0 },
                orders_offset: 0,
                events_offset: 0,
                updated_at: Utc::now(),
            }),
        );
    }
    for p in 0..orderflow_events::PARTITIONS {
        c.apply(
            p,
            &LedgerRecord::LedgerCheckpoint(LedgerCheckpoint {
                schema_version: SCHEMA_VERSION,
                partition: p,
                orders_offset: 0,
                events_offset: 0,
                decided: 0,
                items: Default::default(),
                updated_at: Utc::now(),
            }),
        );
    }
    c.set_loaded();
    SharedCatalogue::new(c)
}

pub(super) async fn call(
    app: Router,
    method: &str,
    path: &str,
    ct: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

pub(super) fn app(p: Arc<FakePublisher>) -> Router {
    router(AppState::new(p, AppMetrics::default(), 1000, menu()))
}

#[tokio::test]
async fn accepted_order_is_published() {
    let p = Arc::new(FakePublisher::default());
    let (code, body) = call(
        app(p.clone()),
        "POST",
        "/orders",
        "application/json",
        r#"{"item":"pizza","qty":2,"user_id":"u1"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let published = p.published.lock().unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(body["order_id"], published[0].order_id.to_string());
    assert_eq!((published[0].item.as_str(), published[0].qty), ("pizza", 2));
}

#[tokio::test]
async fn bad_requests_are_json_4xx_and_publish_nothing() {
    let p = Arc::new(FakePublisher::default());
    for (ct, body, status, needle) in [
        ("application/json", "{nope", 400, "invalid request body"),
        (
            "application/json",
            r#"{"item":"pizza","qty":"2","user_id":"u"}"#,
            400,
            "invalid type",
        ),
        (
            "application/json",
            r#"{"item":"pizza","qty":0,"user_id":"u"}"#,
            400,
            "qty",
        ),
        (
            "application/json",
            r#"{"item":"pizza","qty":100000,"user_id":"u"}"#,
            400,
            "qty",
        ),
        (
            "application/json",
            r#"{"item":"","qty":1,"user_id":"u"}"#,
            400,
            "item",
        ),
        (
            "application/json",
            r#"{"qty":1,"user_id":"u"}"#,
            400,
            "missing field `item`",
        ),
        (
            "text/plain",
            r#"{"item":"pizza","qty":1,"user_id":"u"}"#,
            415,
            "Content-Type",
        ),
    ] {
        let (code, json) = call(app(p.clone()), "POST", "/orders", ct, body).await;
        assert_eq!(code.as_u16(), status, "{body}");
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    assert!(p.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_items_are_422_naming_the_known_ones_and_publish_nothing() {
    let p = Arc::new(FakePublisher::default());
    let metrics = AppMetrics::default();
    let router = || router(AppState::new(p.clone(), metrics.clone(), 1000, menu()));
    for (path, body) in [
        ("/orders", r#"{"item":"caviar","qty":1,"user_id":"u"}"#),
        ("/orders/bulk", r#"{"count":10,"items":["pizza","caviar"]}"#),
    ] {
        let (code, json) = call(router(), "POST", path, "application/json", body).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(msg.contains("unknown item \"caviar\""), "{msg}");
        assert!(msg.contains("burger") && msg.contains("wrap"), "{msg}");
    }
    assert!(p.published.lock().unwrap().is_empty());
    let unknown = metrics
        .rejected
        .get_or_create(&crate::ReasonLabels {
            reason: "unknown_item",
        })
        .get();
    assert_eq!(unknown, 2);
}

#[tokio::test]
async fn a_catalogue_not_read_yet_is_503() {
    let p = Arc::new(FakePublisher::default());
    let state = AppState::new(
        p.clone(),
        AppMetrics::default(),
        1000,
        SharedCatalogue::default(),
    )
    .with_catalogue_wait(Duration::from_millis(20));
    let (code, json) = call(
        router(state),
        "POST",
        "/orders",
        "application/json",
        r#"{"item":"pizza","qty":1,"user_id":"u"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json["error"]
        .as_str()
        .unwrap()
        .contains("catalogue not loaded yet"));
    assert!(p.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn broker_failure_is_503() {
    let p = Arc::new(FakePublisher {
        fail: true,
        ..Default::default()
    });
    let (code, json) = call(
        app(p),
        "POST",
        "/orders",
        "application/json",
        r#"{"item":"pizza","qty":1,"user_id":"u"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json["error"].as_str().unwrap().contains("broker down"));
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let p = Arc::new(FakePublisher::default());
    let metrics = AppMetrics::default();
    let router = || router(AppState::new(p.clone(), metrics.clone(), 1000, menu()));
    let ok = r#"{"item":"pizza","qty":1,"user_id":"u"}"#;
    for (ct, body) in [
        ("text/plain", ok),
        ("application/json", "{nope"),
        (
            "application/json",
            r#"{"item":"pizza","qty":0,"user_id":"u"}"#,
        ),
        ("application/json", r#"{"item":"","qty":1,"user_id":"u"}"#),
        ("application/json", ok),
    ] {
        call(router(), "POST", "/orders", ct, body).await;
    }
    let count = |reason: &'static str| {
        metrics
            .rejected
            .get_or_create(&crate::ReasonLabels { reason })
            .get()
    };
    assert_eq!(count("unsupported_media_type"), 1);
    assert_eq!(count("invalid_body"), 1);
    assert_eq!(count("invalid_field"), 2);
    assert_eq!(count("kafka_unavailable"), 0);
    assert_eq!(metrics.rejected_requests.get(), 4);
    assert_eq!(metrics.published.get(), 1);
}

#[tokio::test]
async fn bulk_publishes_count_and_reports_in_stats() {
    let p = Arc::new(FakePublisher::default());
    let state = AppState::new(p.clone(), AppMetrics::default(), 1000, menu());
    let (code, body) = call(
        router(state.clone()),
        "POST",
        "/orders/bulk",
        "application/json",
        r#"{"count":250,"items":["pizza","taco"]}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["published"], 250);
    assert!(body["events_per_sec"].as_f64().unwrap() > 0.0);
    assert!(p
        .published
        .lock()
        .unwrap()
        .iter()
        .all(|o| o.item == "pizza" || o.item == "taco"));
    let (code, stats) = call(router(state), "GET", "/stats", "application/json", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (
            stats["published_total"].as_u64(),
            stats["bulk_runs"].as_u64()
        ),
        (Some(250), Some(1))
    );
    let (code, _) = call(
        app(p.clone()),
        "POST",
        "/orders/bulk",
        "application/json",
        r#"{"count":1001}"#,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}
