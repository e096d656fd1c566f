//! The live dashboard: `GET /` (a page with four charts: orders per minute, failure rate
//! per minute, lag per consumer group over time in records and in seconds; the partitions'
//! latest lag; the latest
//! ReplayRequests, with a running shadow replay's numbers beside the live ones) and `GET /api/dashboard`, the JSON document the page polls.
//!
//! Everything the page loads is compiled into the binary (`assets/`, with uPlot vendored by
//! `scripts/vendor-ui.sh`) and served from here: no CDN, it works offline and in the image.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::consumer::Shared;
use crate::lag::{LagView, SharedLag};
use crate::replays::{ReplayView, SharedReplays};
use crate::state::MetricsView;

/// What the dashboard reads.
#[derive(Clone)]
pub struct DashboardState {
    pub shared: Shared,
    pub lag: SharedLag,
    pub replays: SharedReplays,
}

/// `GET /api/dashboard`: the `/api/metrics` data fields plus `lag` and `replays`.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardView {
    pub generated_at_ms: i64,
    #[serde(flatten)]
    pub metrics: MetricsView,
    pub lag: Option<LagView>,
    pub replays: ReplayView,
}

/// A file the page loads: route, content type, bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file of the page.
pub const ASSETS: [Asset; 6] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        path: "/assets/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/dashboard.js"),
    },
    Asset {
        path: "/assets/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/dashboard.css"),
    },
    Asset {
        path: "/assets/vendor/uplot/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/assets/vendor/uplot/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        path: "/assets/vendor/uplot/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../assets/vendor/uplot/LICENSE"),
    },
];

pub fn router(state: DashboardState) -> Router {
    let mut r = Router::new().route("/api/dashboard", get(dashboard));
    for a in &ASSETS {
        let (ct, body) = (a.content_type, a.body);
        r = r.route(
            a.path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, ct),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response()
            }),
        );
    }
    r.with_state(state)
}

pub fn view(state: &DashboardState) -> DashboardView {
    let metrics = state
        .shared
        .state
        .read()
        .map(|s| s.view())
        .unwrap_or_else(|p| p.into_inner().view());
    DashboardView {
        generated_at_ms: chrono::Utc::now().timestamp_millis(),
        metrics,
        lag: state.lag.read().ok().map(|b| b.view()),
        replays: state.replays.read().map(|v| v.clone()).unwrap_or_default(),
    }
}

async fn dashboard(State(state): State<DashboardState>) -> Json<DashboardView> {
    Json(view(&state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::LagBoard;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use chrono::{TimeZone, Utc};
    use http_body_util::BodyExt;
    use orderflow_events::{Event, OrderPlaced};
    use orderflowctl::{LagSample, PartitionLag};
    use std::sync::{Arc, RwLock};
    use std::time::Duration;
    use tower::ServiceExt;

    fn state() -> DashboardState {
        DashboardState {
            shared: Shared::default(),
            lag: Arc::new(RwLock::new(LagBoard::new(
                10,
                Duration::from_secs(2),
                vec!["inventory".into(), "analytics".into()],
            ))),
            replays: SharedReplays::default(),
        }
    }

    async fn get(state: DashboardState, path: &str) -> (StatusCode, String, Vec<u8>) {
        let resp = router(state)
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ct, body)
    }

    #[tokio::test]
    async fn page_and_assets_with_their_content_types() {
        for (path, ct) in [
            ("/", "text/html"),
            ("/assets/dashboard.js", "text/javascript"),
            ("/assets/dashboard.css", "text/css"),
            ("/assets/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
            ("/assets/vendor/uplot/uPlot.min.css", "text/css"),
            ("/assets/vendor/uplot/LICENSE", "text/plain"),
        ] {
            let (status, got, body) = get(state(), path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(got.starts_with(ct), "{path}: {got}");
            assert!(body.len() > 100, "{path}: {} bytes", body.len());
        }
    }

    #[tokio::test]
    async fn the_page_loads_nothing_from_elsewhere() {
        let (_, _, body) = get(state(), "/").await;
        let html = String::from_utf8(body).unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
        assert!(
            !html.contains("src=\"//") && !html.contains("href=\"//"),
            "{html}"
        );
        // every script and stylesheet it names is served here
        for a in [
            "/assets/dashboard.js",
            "/assets/dashboard.css",
            "/assets/vendor/uplot/uPlot.iife.min.js",
            "/assets/vendor/uplot/uPlot.min.css",
        ] {
            assert!(html.contains(a), "{a} not referenced");
        }
        let (_, _, js) = get(state(), "/assets/dashboard.js").await;
        let js = String::from_utf8(js).unwrap();
        assert!(!js.contains("http://") && !js.contains("https://"));
        assert!(js.contains("/api/dashboard"));
        // the shadow box: where it goes, and the fields it reads
        assert!(html.contains("id=\"replays-shadows\""));
        for field in ["shadow_metrics", "live_metrics", "catch_up", "running"] {
            assert!(js.contains(field), "dashboard.js does not read {field}");
        }
    }

    #[tokio::test]
    async fn dashboard_document() {
        let s = state();
        let o = OrderPlaced::new(
            "pizza",
            1,
            "u",
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 1).unwrap(),
        );
        s.shared
            .state
            .write()
            .unwrap()
            .apply("orders", 0, 0, &Event::OrderPlaced(o));
        let sample = LagSample::new(5, vec![PartitionLag::new("orders", 0, Some(1), 0, 4)]);
        s.lag
            .write()
            .unwrap()
            .record(5, &[("inventory".to_string(), Ok(sample))]);
        let shadow = serde_json::json!({
            "metadata": {"name": "s1", "namespace": "orderflow",
                         "creationTimestamp": "2026-12-06T07:00:00Z"},
            "spec": {"consumerGroup": "analytics", "deployment": "analytics",
                     "resetTo": "earliest", "strategy": "Shadow", "promote": true},
            "status": {"phase": "ShadowCatchingUp",
                       "catchUp": {"recordsTotal": 10, "recordsDone": 4, "recordsLeft": 6},
                       "shadow": {"consumerGroup": "analytics-shadow-s1",
                                  "deployment": "analytics-shadow-s1",
                                  "metrics": {"at": "2026-12-06T07:01:00Z",
                                              "shadow": {"ordersTotal": 3, "reservedTotal": 2,
                                                         "failedTotal": 1, "minutes": 1},
                                              "live": {"ordersTotal": 5, "reservedTotal": 4,
                                                       "failedTotal": 1, "failureRate": 0.2,
                                                       "minutes": 2}}}}
        });
        *s.replays.write().unwrap() = ReplayView {
            available: true,
            items: crate::replays::summarize(&[shadow], 10),
            ..ReplayView::default()
        };
        let (status, ct, body) = get(s, "/api/dashboard").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["orders_total"], 1);
        assert_eq!(v["orders_per_minute"][0]["orders"], 1);
        assert_eq!(v["lag"]["history"][0]["groups"]["inventory"], 3);
        assert_eq!(v["lag"]["latest"][0]["committed"], 1);
        assert_eq!(v["lag"]["interval_ms"], 2000);
        assert_eq!(
            v["lag"]["groups"],
            serde_json::json!(["inventory", "analytics"])
        );
        let item = &v["replays"]["items"][0];
        assert_eq!(item["strategy"], "Shadow");
        assert_eq!(item["phase"], "ShadowCatchingUp");
        let sh = &item["shadow"];
        assert_eq!(sh["consumer_group"], "analytics-shadow-s1");
        assert_eq!(sh["deployment"], "analytics-shadow-s1");
        assert_eq!(sh["running"], true);
        assert_eq!(sh["promote"], true);
        assert_eq!(sh["promoted"], false);
        assert_eq!(sh["removed_at"], serde_json::Value::Null);
        assert_eq!(sh["catch_up"]["records_done"], 4);
        assert_eq!(sh["catch_up"]["records_left"], 6);
        assert_eq!(sh["metrics_at"], "2026-12-06T07:01:00Z");
        assert_eq!(sh["shadow_metrics"]["orders_total"], 3);
        assert!((sh["shadow_metrics"]["failure_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(sh["live_metrics"]["orders_total"], 5);
        assert_eq!(sh["live_metrics"]["failure_rate"], 0.2);
        assert_eq!(sh["live_metrics"]["minutes"], 2);
        assert!(v["generated_at_ms"].as_i64().unwrap() > 0);
    }
}
