//! What analytics should report, computed independently from the records on the topics:
//! the oracle the integration tests compare `/api/metrics` against.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use orderflow_events::{DecisionStatus, Event};
use serde_json::{json, Value};

use crate::topics::Record;

/// The minute an event time falls in, as analytics reports it.
pub fn minute_of(ts: DateTime<Utc>) -> String {
    let m = ts.duration_trunc(TimeDelta::minutes(1)).unwrap_or(ts);
    m.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The data fields of `/api/metrics` for these orders and decisions.
pub fn expected_metrics(orders: &[Record], decisions: &[Record]) -> Value {
    let mut per_minute: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut orders_total = 0u64;
    for r in orders {
        if let Some(Event::OrderPlaced(o)) = &r.event {
            orders_total += 1;
            per_minute.entry(minute_of(o.ts)).or_default().0 += 1;
        }
    }
    let (mut reserved, mut failed) = (0u64, 0u64);
    let (mut restocks, mut restocked_units, mut refused) = (0u64, 0u64, 0u64);
    for r in decisions {
        match &r.event {
            Some(Event::InventoryRestocked(d)) => {
                restocks += 1;
                restocked_units += u64::from(d.qty);
            }
            Some(Event::InventoryRestockRefused(_)) => refused += 1,
            Some(Event::InventoryReserved(d)) => {
                reserved += 1;
                per_minute.entry(minute_of(d.ts)).or_default().2 += 1;
            }
            Some(Event::InventoryFailed(d)) => {
                failed += 1;
                per_minute.entry(minute_of(d.ts)).or_default().1 += 1;
            }
            _ => {}
        }
    }
    let decided = reserved + failed;
    let failure_rate = if decided == 0 {
        0.0
    } else {
        failed as f64 / decided as f64
    };
    json!({
        "orders_total": orders_total,
        "reserved_total": reserved,
        "failed_total": failed,
        "failure_rate": failure_rate,
        "restocks_total": restocks,
        "restocked_units_total": restocked_units,
        "restocks_refused_total": refused,
        "orders_per_minute": per_minute.into_iter()
            .map(|(minute, (orders, failed, reserved))| json!({"minute": minute, "orders": orders, "failed": failed, "reserved": reserved}))
            .collect::<Vec<_>>(),
    })
}

/// Check the inventory invariants on the topics: every order decided exactly once, no
/// decision for an unknown order, and reserved quantity per item within `stock` plus the
/// units of its recorded restocks (`InventoryRestocked`).
/// Returns a list of violations (empty when all hold).
pub fn inventory_violations(
    orders: &[Record],
    decisions: &[Record],
    stock: &HashMap<String, u64>,
) -> Vec<String> {
    let mut v = Vec::new();
    let ids: HashSet<_> = orders
        .iter()
        .filter_map(|r| match &r.event {
            Some(Event::OrderPlaced(o)) => Some(o.order_id),
            _ => None,
        })
        .collect();
    let mut seen = HashSet::new();
    let mut reserved: HashMap<&str, u64> = HashMap::new();
    let mut restocked: HashMap<&str, u64> = HashMap::new();
    for r in decisions {
        let d = match &r.event {
            Some(Event::InventoryReserved(d)) | Some(Event::InventoryFailed(d)) => d,
            Some(Event::InventoryRestocked(d)) => {
                *restocked.entry(d.item.as_str()).or_default() += u64::from(d.qty);
                continue;
            }
            Some(Event::InventoryRestockRefused(_)) => continue,
            _ => {
                v.push(format!(
                    "undecodable record at inventory-events/{}@{}",
                    r.partition, r.offset
                ));
                continue;
            }
        };
        if !seen.insert(d.order_id) {
            v.push(format!("order {} decided twice", d.order_id));
        }
        if !ids.contains(&d.order_id) {
            v.push(format!("decision for unknown order {}", d.order_id));
        }
        if d.status == DecisionStatus::Reserved {
            *reserved.entry(d.item.as_str()).or_default() += u64::from(d.qty);
        }
    }
    for id in &ids {
        if !seen.contains(id) {
            v.push(format!("order {id} never decided"));
        }
    }
    for (item, qty) in reserved {
        let limit =
            stock.get(item).copied().unwrap_or(0) + restocked.get(item).copied().unwrap_or(0);
        if qty > limit {
            v.push(format!("oversold {item}: reserved {qty} > stock {limit}"));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use orderflow_events::OrderPlaced;

    fn rec(e: Event) -> Record {
        Record {
            partition: 0,
            offset: 0,
            event: Some(e),
            ..Default::default()
        }
    }

    #[test]
    fn minute_truncation() {
        let t =
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 5, 59).unwrap() + TimeDelta::milliseconds(999);
        assert_eq!(minute_of(t), "2026-11-22T10:05:00Z");
    }

    #[test]
    fn oracle_counts_and_violations() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 10, 5, 1).unwrap();
        let a = OrderPlaced::new("pizza", 2, "u", t);
        let b = OrderPlaced::new("pizza", 2, "u", t);
        let orders = vec![
            rec(Event::OrderPlaced(a.clone())),
            rec(Event::OrderPlaced(b.clone())),
        ];
        let decisions = vec![
            rec(a.decide(None, t).into_event()),
            rec(b.decide(Some("insufficient stock".into()), t).into_event()),
        ];
        let m = expected_metrics(&orders, &decisions);
        assert_eq!(m["orders_total"], 2);
        assert_eq!(m["failure_rate"], 0.5);
        assert_eq!(
            m["orders_per_minute"][0],
            json!({"minute": "2026-11-22T10:05:00Z", "orders": 2, "failed": 1, "reserved": 1})
        );
        let stock = HashMap::from([("pizza".to_string(), 2u64)]);
        assert!(inventory_violations(&orders, &decisions, &stock).is_empty());
        let twice = vec![decisions[0].clone(), decisions[0].clone()];
        let v = inventory_violations(
            &orders,
            &twice,
            &HashMap::from([("pizza".to_string(), 1u64)]),
        );
        assert!(v.iter().any(|s| s.contains("decided twice")));
        assert!(v.iter().any(|s| s.contains("oversold")));
        assert!(v.iter().any(|s| s.contains("never decided")));
    }
}
