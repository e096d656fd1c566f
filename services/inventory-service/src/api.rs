//! `GET /stock`: the ledger of the partitions this replica owns.
//!
//! ```json
//! {"partitions": [0, 1, 2], "decided": {"0": 1200, ...},
//!  "items": {"pizza": {"initial": 2000, "restocked": 500, "reserved": 812, "available": 1688,
//!                      "partition": 1}, ...}}
//! ```
//! `items` lists every stocked item; `available` = `initial + restocked - reserved`;
//! `partition` is the owned `orders` partition that carries it (its ledger record, written at
//! the partition's rebuild, or its orders), or `null` when none of this replica's partitions
//! does (the item is then decided elsewhere, and its `reserved` and `restocked` here are 0).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::ledger::Stock;
use crate::worker::Ledgers;

#[derive(Clone)]
struct StockState {
    stock: Arc<Stock>,
    ledgers: Ledgers,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ItemView {
    pub initial: u64,
    /// Units added by restocks (`POST /stock/{item}/restock` on order-service).
    pub restocked: u64,
    pub reserved: u64,
    pub available: u64,
    pub partition: Option<i32>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StockView {
    /// `orders` partitions this replica owns (their items' stock is decided here).
    pub partitions: Vec<i32>,
    /// Orders decided per owned partition (rebuilt + new).
    pub decided: BTreeMap<i32, u64>,
    /// Every stocked item; `reserved` counts what the owned partitions reserved.
    pub items: BTreeMap<String, ItemView>,
}

pub fn view(stock: &Stock, ledgers: &Ledgers) -> StockView {
    let l = match ledgers.read() {
        Ok(l) => l,
        Err(_) => {
            return StockView {
                partitions: vec![],
                decided: BTreeMap::new(),
                items: BTreeMap::new(),
            }
        }
    };
    let items = stock
        .items()
        .map(|(item, initial)| {
            let reserved: u64 = l.values().map(|pl| pl.reserved(item)).sum();
            let restocked: u64 = l.values().map(|pl| pl.restocked(item)).sum();
            let partition = l.iter().find(|(_, pl)| pl.carries(item)).map(|(p, _)| *p);
            (
                item.to_string(),
                ItemView {
                    initial,
                    restocked,
                    reserved,
                    available: initial.saturating_add(restocked).saturating_sub(reserved),
                    partition,
                },
            )
        })
        .collect();
    StockView {
        partitions: l.keys().copied().collect(),
        decided: l.iter().map(|(p, pl)| (*p, pl.decided_count())).collect(),
        items,
    }
}

pub fn router(stock: Arc<Stock>, ledgers: Ledgers) -> Router {
    Router::new()
        .route("/stock", get(stock_handler))
        .with_state(StockState { stock, ledgers })
}

async fn stock_handler(State(s): State<StockState>) -> Json<StockView> {
    Json(view(&s.stock, &s.ledgers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PartitionLedger;
    use chrono::Utc;
    use orderflow_events::OrderPlaced;

    #[test]
    fn stock_view_sums_owned_partitions() {
        let stock = Stock::parse("pizza=10").unwrap();
        let ledgers: Ledgers = Default::default();
        let mut pl = PartitionLedger::default();
        pl.decide(
            &stock,
            &OrderPlaced::new("pizza", 4, "u", Utc::now()),
            0,
            Utc::now(),
        );
        ledgers.write().unwrap().insert(2, pl);
        let v = view(&stock, &ledgers);
        assert_eq!(v.partitions, vec![2]);
        assert_eq!(
            v.items["pizza"],
            ItemView {
                initial: 10,
                restocked: 0,
                reserved: 4,
                available: 6,
                partition: Some(2),
            }
        );
        assert_eq!(v.items["burger"].partition, None);
        assert_eq!(v.items["burger"].reserved, 0);
        assert_eq!(v.decided[&2], 1);
    }

    #[tokio::test]
    async fn get_stock_serves_json() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let stock = Stock::parse("pizza=10").unwrap();
        let ledgers: Ledgers = Default::default();
        ledgers
            .write()
            .unwrap()
            .insert(0, PartitionLedger::default());
        let resp = router(Arc::new(stock), ledgers)
            .oneshot(Request::get("/stock").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["partitions"], serde_json::json!([0]));
        assert_eq!(
            v["items"]["pizza"],
            serde_json::json!({"initial": 10, "restocked": 0, "reserved": 0, "available": 10, "partition": null})
        );
    }
}
