use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::restock::{RestockDecision, StockRestockRequested};

/// An order was placed: published by order-service to `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub item: String,
    pub qty: u32,
    pub user_id: String,
    /// Event time: when the order was placed.
    #[serde(with = "rfc3339_ms")]
    pub ts: DateTime<Utc>,
}

/// The outcome of an inventory decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionStatus {
    Reserved,
    Failed,
}

/// A recorded stock decision about one order: published by inventory-service to
/// `inventory-events` as `InventoryReserved` or `InventoryFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryDecision {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub item: String,
    pub qty: u32,
    pub user_id: String,
    /// The order's event time (copied from the OrderPlaced), so analytics can bucket
    /// decisions by the minute the order was placed.
    #[serde(with = "rfc3339_ms")]
    pub ts: DateTime<Utc>,
    pub status: DecisionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "rfc3339_ms")]
    pub decided_at: DateTime<Utc>,
}

/// Any orderflow event, tagged by its `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    OrderPlaced(OrderPlaced),
    InventoryReserved(InventoryDecision),
    InventoryFailed(InventoryDecision),
    /// On `orders`: an admin's restock (see [`crate::restock`]).
    StockRestockRequested(StockRestockRequested),
    /// On `inventory-events`: a restock applied.
    InventoryRestocked(RestockDecision),
    /// On `inventory-events`: a restock refused (unknown item, beyond `MAX_STOCK`).
    InventoryRestockRefused(RestockDecision),
}

impl OrderPlaced {
    /// A new order with fresh ids, placed at `ts`.
    pub fn new(
        item: impl Into<String>,
        qty: u32,
        user_id: impl Into<String>,
        ts: DateTime<Utc>,
    ) -> Self {
        Self {
            schema_version: crate::SCHEMA_VERSION,
            event_id: Uuid::new_v4(),
            order_id: Uuid::new_v4(),
            item: item.into(),
            qty,
            user_id: user_id.into(),
            ts: truncate_ms(ts),
        }
    }

    /// The decision about this order, taken at `decided_at`. `reason` is `Some` exactly
    /// when the order failed.
    pub fn decide(&self, reason: Option<String>, decided_at: DateTime<Utc>) -> InventoryDecision {
        InventoryDecision {
            schema_version: crate::SCHEMA_VERSION,
            event_id: Uuid::new_v4(),
            order_id: self.order_id,
            item: self.item.clone(),
            qty: self.qty,
            user_id: self.user_id.clone(),
            ts: self.ts,
            status: if reason.is_some() {
                DecisionStatus::Failed
            } else {
                DecisionStatus::Reserved
            },
            reason,
            decided_at: truncate_ms(decided_at),
        }
    }
}

impl InventoryDecision {
    /// The event wrapping this decision, with the `type` its status calls for.
    pub fn into_event(self) -> Event {
        match self.status {
            DecisionStatus::Reserved => Event::InventoryReserved(self),
            DecisionStatus::Failed => Event::InventoryFailed(self),
        }
    }
}

impl Event {
    /// The event's `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::OrderPlaced(_) => "OrderPlaced",
            Event::InventoryReserved(_) => "InventoryReserved",
            Event::InventoryFailed(_) => "InventoryFailed",
            Event::StockRestockRequested(_) => "StockRestockRequested",
            Event::InventoryRestocked(_) => "InventoryRestocked",
            Event::InventoryRestockRefused(_) => "InventoryRestockRefused",
        }
    }

    /// The item the event is about (its record key).
    pub fn item(&self) -> &str {
        match self {
            Event::OrderPlaced(o) => &o.item,
            Event::InventoryReserved(d) | Event::InventoryFailed(d) => &d.item,
            Event::StockRestockRequested(r) => &r.item,
            Event::InventoryRestocked(r) | Event::InventoryRestockRefused(r) => &r.item,
        }
    }

    /// The order's event time (a restock's: when it was requested).
    pub fn ts(&self) -> DateTime<Utc> {
        match self {
            Event::OrderPlaced(o) => o.ts,
            Event::InventoryReserved(d) | Event::InventoryFailed(d) => d.ts,
            Event::StockRestockRequested(r) => r.ts,
            Event::InventoryRestocked(r) | Event::InventoryRestockRefused(r) => r.ts,
        }
    }
}

/// Event times are carried with millisecond precision; truncating on creation keeps an
/// event equal to itself after a JSON round trip.
pub fn truncate_ms(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts.timestamp_millis()).unwrap_or(ts)
}

pub(crate) mod rfc3339_ms {
    use super::*;

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::codec::write::Rfc3339Ms::new(ts).as_str())
    }

    /// Parsed from the string as it lies in the record (no copy of it first).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        struct Rfc3339;
        impl serde::de::Visitor<'_> for Rfc3339 {
            type Value = DateTime<Utc>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| E::custom(format!("invalid RFC 3339 timestamp {s:?}: {e}")))
            }
        }
        d.deserialize_str(Rfc3339)
    }
}
