use serde_json::Value;
use thiserror::Error;

use crate::model::{DecisionStatus, Event, InventoryDecision, OrderPlaced};
use crate::restock::{
    InventoryRecord, OrdersRecord, RestockDecision, RestockStatus, StockRestockRequested,
};
use crate::{SCHEMA_VERSION, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};

/// Why a record could not be turned into an [`Event`]. The `Display` text is what goes
/// into the DLQ reason header; [`DecodeError::kind`] is a stable label for metrics.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("wrong type: {0}")]
    WrongType(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("unknown schema_version {0} (this build reads {SCHEMA_VERSION})")]
    UnknownSchemaVersion(String),
    #[error("invalid event: {0}")]
    Invalid(String),
}

impl DecodeError {
    /// A short, stable label (used as a metric label and in logs).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotJson(_) => "not_json",
            DecodeError::NotAnObject => "not_an_object",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType(_) => "wrong_type",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::UnknownSchemaVersion(_) => "unknown_schema_version",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

/// Serialize an event to its JSON record value.
pub fn encode(event: &Event) -> Vec<u8> {
    // One allocation for an event of usual size (orders 216 bytes on average in the bench,
    // decisions about 300) instead of a buffer grown from empty four or five times.
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    encode_into(event, &mut out);
    out
}

/// [`encode`] into `out`, cleared first: a producer that hands each record to librdkafka
/// (which copies it) can keep one buffer for all. Orders and inventory decisions are
/// written by hand ([`write`]), byte for byte what serde writes; other events by serde.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) {
    if write::event(event, out) {
        return;
    }
    out.clear();
    // Serializing these plain structs cannot fail: no maps with non-string keys, no
    // fallible Serialize impls. Fall back to an empty object rather than panic.
    if serde_json::to_writer(&mut *out, event).is_err() {
        out.clear();
        out.extend_from_slice(b"{}");
    }
}

/// The first buffer [`encode`] writes into.
const ENCODE_CAPACITY: usize = 384;

/// Parse and validate a record value. An order or decision as [`encode`] writes it is read
/// by hand ([`read`]); another well-formed event takes the fast path ([`crate::fast`]);
/// anything else the general one, whose error names what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if let Some(event) = read::event(bytes).or_else(|| crate::fast::decode(bytes)) {
        if validate(&event).is_ok() {
            return Ok(event);
        }
    }
    decode_general(bytes)
}

/// [`decode`] through a `serde_json::Value`: slower, and it can say which field is wrong.
fn decode_general(bytes: &[u8]) -> Result<Event, DecodeError> {
    let (type_name, fields) = tagged_fields(bytes)?;
    let event =
        event_of(&type_name, fields)?.ok_or_else(|| DecodeError::UnknownType(type_name.clone()))?;
    validate(&event)?;
    Ok(event)
}

/// The fields of one record, readable as any of the event structs (once).
pub(crate) trait Fields {
    type Error;
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, Self::Error>;
}

impl Fields for Value {
    type Error = DecodeError;
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, DecodeError> {
        from_value(self)
    }
}

/// The event of type `type_name` read from `fields`; `None` for a type this crate does not
/// know. The one place that ties each `type` to its struct and variant.
pub(crate) fn event_of<F: Fields>(type_name: &str, fields: F) -> Result<Option<Event>, F::Error> {
    Ok(Some(match type_name {
        "OrderPlaced" => Event::OrderPlaced(fields.read::<OrderPlaced>()?),
        "InventoryReserved" => Event::InventoryReserved(fields.read::<InventoryDecision>()?),
        "InventoryFailed" => Event::InventoryFailed(fields.read::<InventoryDecision>()?),
        "StockRestockRequested" => {
            Event::StockRestockRequested(fields.read::<StockRestockRequested>()?)
        }
        "InventoryRestocked" => Event::InventoryRestocked(fields.read::<RestockDecision>()?),
        "InventoryRestockRefused" => {
            Event::InventoryRestockRefused(fields.read::<RestockDecision>()?)
        }
        _ => return Ok(None),
    }))
}

/// Deserialize the fields, keeping the path of the field an error is about, so that the
/// reason names it (`` `qty`: invalid type: string "2", expected u32 ``), not only the type.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        if let Some(rest) = msg.strip_prefix("missing field `") {
            DecodeError::MissingField(rest.trim_end_matches('`').to_string())
        } else if msg.starts_with("unknown field") {
            DecodeError::Invalid(msg)
        } else if path.is_empty() || path == "." {
            DecodeError::WrongType(msg)
        } else {
            DecodeError::WrongType(format!("`{path}`: {msg}"))
        }
    })
}

/// [`decode`] a record read from `topic`, also refusing an event whose type does not belong
/// there (an `InventoryReserved` on `orders`, an `OrderPlaced` on `inventory-events`): a
/// consumer must not count or decide a record the contract puts on another topic.
pub fn decode_on(topic: &str, bytes: &[u8]) -> Result<Event, DecodeError> {
    match topic {
        TOPIC_ORDERS => decode_orders_record(bytes).map(|r| match r {
            OrdersRecord::Order(o) => Event::OrderPlaced(o),
            OrdersRecord::Restock(r) => Event::StockRestockRequested(r),
        }),
        // validation ties the type to `status`, so into_event restores the same variant
        TOPIC_INVENTORY_EVENTS => decode_inventory_record(bytes).map(|r| match r {
            InventoryRecord::Order(d) => d.into_event(),
            InventoryRecord::Restock(r) => r.into_event(),
        }),
        _ => decode(bytes),
    }
}

/// [`decode_on`] `orders`: an order or a restock request.
pub fn decode_orders_record(bytes: &[u8]) -> Result<OrdersRecord, DecodeError> {
    match decode(bytes)? {
        Event::OrderPlaced(o) => Ok(OrdersRecord::Order(o)),
        Event::StockRestockRequested(r) => Ok(OrdersRecord::Restock(r)),
        other => Err(misplaced(&other, TOPIC_ORDERS)),
    }
}

/// [`decode_on`] `inventory-events`: a recorded decision about an order or a restock.
pub fn decode_inventory_record(bytes: &[u8]) -> Result<InventoryRecord, DecodeError> {
    match decode(bytes)? {
        Event::InventoryReserved(d) | Event::InventoryFailed(d) => Ok(InventoryRecord::Order(d)),
        Event::InventoryRestocked(r) | Event::InventoryRestockRefused(r) => {
            Ok(InventoryRecord::Restock(r))
        }
        other => Err(misplaced(&other, TOPIC_INVENTORY_EVENTS)),
    }
}

/// An `OrderPlaced` of `orders` (a restock request is refused as misplaced).
pub fn decode_order(bytes: &[u8]) -> Result<OrderPlaced, DecodeError> {
    match decode(bytes)? {
        Event::OrderPlaced(o) => Ok(o),
        other => Err(misplaced(&other, "orders (as an order)")),
    }
}

/// A decision about an order of `inventory-events` (a restock decision is refused).
pub fn decode_decision(bytes: &[u8]) -> Result<InventoryDecision, DecodeError> {
    match decode(bytes)? {
        Event::InventoryReserved(d) | Event::InventoryFailed(d) => Ok(d),
        other => Err(misplaced(
            &other,
            "inventory-events (as an order's decision)",
        )),
    }
}

fn misplaced(event: &Event, topic: &str) -> DecodeError {
    DecodeError::Invalid(format!(
        "{} does not belong on topic {topic}",
        event.type_name()
    ))
}

fn validate(event: &Event) -> Result<(), DecodeError> {
    let (item, qty, user) = match event {
        Event::OrderPlaced(o) => (&o.item, o.qty, Some(&o.user_id)),
        Event::InventoryReserved(d) | Event::InventoryFailed(d) => {
            (&d.item, d.qty, Some(&d.user_id))
        }
        Event::StockRestockRequested(r) => (&r.item, r.qty, None),
        Event::InventoryRestocked(r) | Event::InventoryRestockRefused(r) => (&r.item, r.qty, None),
    };
    if item.trim().is_empty() {
        return Err(DecodeError::Invalid("`item` is empty".into()));
    }
    if qty == 0 {
        return Err(DecodeError::Invalid("`qty` must be at least 1".into()));
    }
    if user.is_some_and(|u| u.trim().is_empty()) {
        return Err(DecodeError::Invalid("`user_id` is empty".into()));
    }
    match event {
        Event::OrderPlaced(_) | Event::StockRestockRequested(_) => {}
        Event::InventoryReserved(d) => {
            if d.status != DecisionStatus::Reserved {
                return Err(DecodeError::Invalid(
                    "InventoryReserved must have status `reserved`".into(),
                ));
            }
        }
        Event::InventoryFailed(d) => {
            if d.status != DecisionStatus::Failed {
                return Err(DecodeError::Invalid(
                    "InventoryFailed must have status `failed`".into(),
                ));
            }
            if d.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(DecodeError::Invalid(
                    "InventoryFailed needs a `reason`".into(),
                ));
            }
        }
        Event::InventoryRestocked(r) => {
            if r.status != RestockStatus::Restocked || r.reason.is_some() {
                return Err(DecodeError::Invalid(
                    "InventoryRestocked must have status `restocked` and no `reason`".into(),
                ));
            }
            if r.stock > crate::MAX_STOCK || r.stock < u64::from(r.qty) {
                return Err(DecodeError::Invalid(format!(
                    "`stock` must be between `qty` and {} after a restock",
                    crate::MAX_STOCK
                )));
            }
        }
        Event::InventoryRestockRefused(r) => {
            if r.status != RestockStatus::Refused {
                return Err(DecodeError::Invalid(
                    "InventoryRestockRefused must have status `refused`".into(),
                ));
            }
            if r.reason.as_deref().is_none_or(|x| x.trim().is_empty()) {
                return Err(DecodeError::Invalid(
                    "InventoryRestockRefused needs a `reason`".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The envelope every record of ours has (events, `inventory-ledger`,
/// `analytics-snapshots`): a JSON object with a string `type` (returned, and removed from
/// the fields) and this crate's `schema_version`.
pub(crate) fn tagged_fields(bytes: &[u8]) -> Result<(String, Value), DecodeError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(DecodeError::NotAnObject);
    };
    let type_name = match fields.remove("type") {
        None => return Err(DecodeError::MissingField("type".into())),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(DecodeError::WrongType(format!(
                "`type` must be a string, got {other}"
            )))
        }
    };
    match fields.get("schema_version") {
        None => return Err(DecodeError::MissingField("schema_version".into())),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        Some(Value::Number(n)) => return Err(DecodeError::UnknownSchemaVersion(n.to_string())),
        Some(other) => {
            return Err(DecodeError::WrongType(format!(
                "`schema_version` must be a number, got {other}"
            )))
        }
    }
    Ok((type_name, Value::Object(fields)))
}

mod read;
pub(crate) mod write;

#[cfg(test)]
mod tests;
