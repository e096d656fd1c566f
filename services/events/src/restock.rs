//! Restocking (issue 18): an admin adds stock to an item through order-service
//! (`POST /stock/{item}/restock`), which publishes a [`StockRestockRequested`] on `orders`,
//! keyed by the item like its orders, so inventory decides it **in order with that item's
//! orders** (one partition, one owner). Inventory records the outcome on `inventory-events`
//! as a [`RestockDecision`]: `InventoryRestocked` (applied) or `InventoryRestockRefused`
//! (an unknown item, or stock beyond [`MAX_STOCK`]), so a replay of `inventory-events`
//! recomputes the same stock, and analytics counts restocks without deciding anything.
//!
//! The contract:
//! - `StockRestockRequested` (on `orders`): `type`, `schema_version`, `event_id`,
//!   `restock_id` (UUID, what inventory recognises a re-sent restock by, as `order_id` for
//!   orders), `item`, `qty` (units to add, at least 1), `ts` (when it was requested,
//!   RFC 3339 ms: the record's timestamp, like an order's event time).
//! - `InventoryRestocked` / `InventoryRestockRefused` (on `inventory-events`): the request's
//!   fields plus `status` (`restocked` | `refused`), `reason` (refusals only), `stock` (the
//!   item's stock after the decision: initial + restocked units, `0` for an unknown item)
//!   and `decided_at`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{rfc3339_ms, truncate_ms};

/// The most units of one item inventory stocks (its initial stock plus every restock): a
/// restock that would go beyond is refused (order-service answers 422 before publishing;
/// inventory refuses it again at decision time, with checked arithmetic, should two
/// requests race). `INITIAL_STOCK` refuses a larger initial stock.
pub const MAX_STOCK: u64 = 1_000_000_000;

/// An admin asked to add `qty` units of `item`: published by order-service to `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockRestockRequested {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub restock_id: Uuid,
    pub item: String,
    pub qty: u32,
    /// When the restock was requested (the record's timestamp).
    #[serde(with = "rfc3339_ms")]
    pub ts: DateTime<Utc>,
}

/// The outcome of a restock decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestockStatus {
    Restocked,
    Refused,
}

/// A recorded restock decision: published by inventory-service to `inventory-events` as
/// `InventoryRestocked` or `InventoryRestockRefused`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestockDecision {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub restock_id: Uuid,
    pub item: String,
    pub qty: u32,
    #[serde(with = "rfc3339_ms")]
    pub ts: DateTime<Utc>,
    pub status: RestockStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The item's stock after this decision: initial stock plus all restocked units.
    pub stock: u64,
    #[serde(with = "rfc3339_ms")]
    pub decided_at: DateTime<Utc>,
}

impl StockRestockRequested {
    /// A new restock request with fresh ids, made at `ts`.
    pub fn new(item: impl Into<String>, qty: u32, ts: DateTime<Utc>) -> Self {
        Self {
            schema_version: crate::SCHEMA_VERSION,
            event_id: Uuid::new_v4(),
            restock_id: Uuid::new_v4(),
            item: item.into(),
            qty,
            ts: truncate_ms(ts),
        }
    }

    /// The decision about this request, taken at `decided_at`: refused with `reason` when
    /// it is `Some`; `stock` is the item's stock after it.
    pub fn decide(
        &self,
        reason: Option<String>,
        stock: u64,
        decided_at: DateTime<Utc>,
    ) -> RestockDecision {
        RestockDecision {
            schema_version: crate::SCHEMA_VERSION,
            event_id: Uuid::new_v4(),
            restock_id: self.restock_id,
            item: self.item.clone(),
            qty: self.qty,
            ts: self.ts,
            status: if reason.is_some() {
                RestockStatus::Refused
            } else {
                RestockStatus::Restocked
            },
            reason,
            stock,
            decided_at: truncate_ms(decided_at),
        }
    }
}

impl RestockDecision {
    /// The event wrapping this decision, with the `type` its status calls for.
    pub fn into_event(self) -> crate::Event {
        match self.status {
            RestockStatus::Restocked => crate::Event::InventoryRestocked(self),
            RestockStatus::Refused => crate::Event::InventoryRestockRefused(self),
        }
    }
}

/// A record of `orders`: an order or a restock request (both keyed by item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrdersRecord {
    Order(crate::OrderPlaced),
    Restock(StockRestockRequested),
}

/// A record of `inventory-events`: a decision about an order or about a restock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryRecord {
    Order(crate::InventoryDecision),
    Restock(RestockDecision),
}

impl InventoryRecord {
    pub fn item(&self) -> &str {
        match self {
            Self::Order(d) => &d.item,
            Self::Restock(r) => &r.item,
        }
    }
}

/// The partition of a topic with `partitions` partitions that records keyed by `item` go
/// to: CRC-32 of the key modulo the partition count, which is librdkafka's default
/// partitioner (`consistent_random`) for a non-empty key. order-service sets this partition
/// explicitly, and inventory uses it to write each configured item's ledger record to the
/// partition its orders will arrive on before the first order.
pub fn item_partition(item: &str, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    let crc = crc32(crate::record_key(item));
    (u64::from(crc) % partitions as u64) as i32
}

/// CRC-32 (IEEE 802.3, reflected, the zlib one), bitwise: keys are short.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn item_partition_is_stable_and_in_range() {
        for item in crate::DEFAULT_ITEMS {
            let p = item_partition(item, crate::PARTITIONS);
            assert!((0..crate::PARTITIONS).contains(&p));
            assert_eq!(p, item_partition(item, crate::PARTITIONS));
        }
        assert_eq!(item_partition("pizza", 1), 0);
        assert_eq!(item_partition("pizza", 0), 0);
        // "123456789" = 0xCBF43926 = 3421780262; mod 3 = 2
        assert_eq!(item_partition("123456789", 3), 2);
    }
}
