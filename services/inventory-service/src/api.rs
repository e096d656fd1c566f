//! `GET /stock`: the ledger of the partitions this replica owns.

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
    pub reserved: u64,
    pub available: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StockView {
    /// `orders` partitions this replica owns (their items' stock is decided here).
    pub partitions: Vec<i32>,
    /// Orders decided per owned partition (rebuilt + new).
    pub decided: BTreeMap<i32, usize>,
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
            (
                item.to_string(),
                ItemView {
                    initial,
                    reserved,
                    available: initial.saturating_sub(reserved),
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
            Utc::now(),
        );
        ledgers.write().unwrap().insert(2, pl);
        let v = view(&stock, &ledgers);
        assert_eq!(v.partitions, vec![2]);
        assert_eq!(
            v.items["pizza"],
            ItemView {
                initial: 10,
                reserved: 4,
                available: 6
            }
        );
        assert_eq!(v.decided[&2], 1);
    }
}
