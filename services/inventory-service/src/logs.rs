//! The log lines of inventory's per-order path, in one place.
//!
//! Every decision is a DEBUG line with `order_id`, `item`, `qty`, `status`, `reason`,
//! `partition` and `offset` (of the order on `orders`), under the target
//! `inventory_service::logs`; every batch is one INFO line (`batch decided`: counts per status
//! and the offset range it covered per partition). Per-order lines at INFO were measured to
//! cost 40-45% of the throughput (200k orders: 1.2-1.5 s of deciding without them, 2.1-2.6 s
//! with ~200k lines; `scripts/measure-log-cost.sh`), and "only failed decisions at INFO" is no
//! cheaper once an item's stock runs out (192k of those 200k orders failed with the default
//! stock). Per-order lines: `RUST_LOG=info,inventory_service::logs=debug`. Records sent to the
//! DLQ are always one WARN line each (orderflow-runtime).

use std::collections::BTreeMap;

use orderflow_events::{DecisionStatus, InventoryDecision, RestockDecision, RestockStatus};

/// One INFO line per restock decision (rare, and an admin's action): `restock_id`, `item`,
/// `qty`, `status`, `reason` (refusals), `stock` (after it), `partition`, `offset`.
pub fn restocked(d: &RestockDecision, partition: i32, offset: i64) {
    match d.status {
        RestockStatus::Restocked => tracing::info!(
            restock_id = %d.restock_id,
            item = %d.item,
            qty = d.qty,
            status = "restocked",
            stock = d.stock,
            partition,
            offset,
            "restock decided"
        ),
        RestockStatus::Refused => tracing::warn!(
            restock_id = %d.restock_id,
            item = %d.item,
            qty = d.qty,
            status = "refused",
            reason = d.reason.as_deref().unwrap_or_default(),
            stock = d.stock,
            partition,
            offset,
            "restock decided"
        ),
    }
}

/// One DEBUG line for a decision, with `order_id`, `item`, `status`, `reason`, `partition`
/// and `offset` (of the order on `orders`).
pub fn decided(d: &InventoryDecision, partition: i32, offset: i64) {
    match d.status {
        DecisionStatus::Failed => tracing::debug!(
            order_id = %d.order_id,
            item = %d.item,
            qty = d.qty,
            status = "failed",
            reason = d.reason.as_deref().unwrap_or_default(),
            partition,
            offset,
            "order decided"
        ),
        DecisionStatus::Reserved => tracing::debug!(
            order_id = %d.order_id,
            item = %d.item,
            qty = d.qty,
            status = "reserved",
            partition,
            offset,
            "order decided"
        ),
    }
}

/// The offsets a batch covered, per partition: `"0:100-599,2:7-7"` (first-last, inclusive).
pub fn offset_ranges(records: impl IntoIterator<Item = (i32, i64)>) -> String {
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (p, o) in records {
        let r = ranges.entry(p).or_insert((o, o));
        r.0 = r.0.min(o);
        r.1 = r.1.max(o);
    }
    ranges
        .iter()
        .map(|(p, (first, last))| format!("{p}:{first}-{last}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_per_partition() {
        assert_eq!(offset_ranges([]), "");
        assert_eq!(
            offset_ranges([(2, 7), (0, 100), (0, 101), (0, 599), (2, 7), (0, 102)]),
            "0:100-599,2:7-7"
        );
    }
}
