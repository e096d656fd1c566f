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
    // Serializing these plain structs cannot fail: no maps with non-string keys, no
    // fallible Serialize impls. Fall back to an empty object rather than panic.
    serde_json::to_vec(event).unwrap_or_else(|_| b"{}".to_vec())
}

/// Parse and validate a record value. A well-formed event takes the fast path
/// ([`crate::fast`]); anything else the general one, whose error names what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if let Some(event) = crate::fast::decode(bytes) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn order() -> OrderPlaced {
        OrderPlaced::new(
            "burger",
            2,
            "u-1",
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
        )
    }

    fn restock() -> StockRestockRequested {
        StockRestockRequested::new(
            "burger",
            500,
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
        )
    }

    #[test]
    fn restocks_round_trip_with_contract_fields_and_fit_their_topics() {
        let r = restock();
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 1).unwrap();
        let req = encode(&Event::StockRestockRequested(r.clone()));
        let v: Value = serde_json::from_slice(&req).unwrap();
        assert_eq!(v["type"], "StockRestockRequested");
        for f in [
            "schema_version",
            "event_id",
            "restock_id",
            "item",
            "qty",
            "ts",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        let ok = r.decide(None, 2500, at).into_event();
        let refused = r
            .decide(Some("beyond MAX_STOCK".into()), 2000, at)
            .into_event();
        let okv: Value = serde_json::from_slice(&encode(&ok)).unwrap();
        assert_eq!(
            (
                okv["type"].as_str(),
                okv["status"].as_str(),
                okv["stock"].as_u64()
            ),
            (Some("InventoryRestocked"), Some("restocked"), Some(2500))
        );
        assert!(okv.get("reason").is_none());
        let refv: Value = serde_json::from_slice(&encode(&refused)).unwrap();
        assert_eq!(refv["type"], "InventoryRestockRefused");
        for (topic, e) in [
            (TOPIC_ORDERS, Event::StockRestockRequested(r.clone())),
            (TOPIC_INVENTORY_EVENTS, ok.clone()),
            (TOPIC_INVENTORY_EVENTS, refused.clone()),
        ] {
            assert_eq!(decode_on(topic, &encode(&e)).unwrap(), e);
        }
        assert_eq!(
            decode_orders_record(&req).unwrap(),
            OrdersRecord::Restock(r.clone())
        );
        assert!(matches!(
            decode_inventory_record(&encode(&ok)).unwrap(),
            InventoryRecord::Restock(_)
        ));
        // on the other topic, or where only orders / order decisions are read: refused
        assert_eq!(
            decode_on(TOPIC_INVENTORY_EVENTS, &req).unwrap_err().kind(),
            "invalid"
        );
        assert_eq!(
            decode_on(TOPIC_ORDERS, &encode(&ok)).unwrap_err().kind(),
            "invalid"
        );
        assert_eq!(decode_order(&req).unwrap_err().kind(), "invalid");
        assert_eq!(decode_decision(&encode(&ok)).unwrap_err().kind(), "invalid");
    }

    #[test]
    fn restock_validation() {
        let at = Utc::now();
        let mut v: Value =
            serde_json::from_slice(&encode(&Event::StockRestockRequested(restock()))).unwrap();
        v["qty"] = json!(0);
        assert_eq!(decode_value(v.clone()).unwrap_err().kind(), "invalid");
        v["qty"] = json!(-5);
        assert_eq!(decode_value(v.clone()).unwrap_err().kind(), "wrong_type");
        v["qty"] = json!(u64::from(u32::MAX) + 1);
        assert_eq!(decode_value(v).unwrap_err().kind(), "wrong_type");
        let ok: Value =
            serde_json::from_slice(&encode(&restock().decide(None, 2500, at).into_event()))
                .unwrap();
        let mut beyond = ok.clone();
        beyond["stock"] = json!(crate::MAX_STOCK + 1);
        assert_eq!(decode_value(beyond).unwrap_err().kind(), "invalid");
        let mut mismatched = ok.clone();
        mismatched["status"] = json!("refused");
        assert_eq!(decode_value(mismatched).unwrap_err().kind(), "invalid");
        let mut no_reason: Value = serde_json::from_slice(&encode(
            &restock().decide(Some("x".into()), 0, at).into_event(),
        ))
        .unwrap();
        no_reason.as_object_mut().unwrap().remove("reason");
        assert_eq!(decode_value(no_reason).unwrap_err().kind(), "invalid");
    }

    fn order_json() -> Value {
        serde_json::from_slice(&encode(&Event::OrderPlaced(order()))).unwrap()
    }

    fn decode_value(v: Value) -> Result<Event, DecodeError> {
        decode(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn order_round_trips_with_contract_fields() {
        let o = order();
        let bytes = encode(&Event::OrderPlaced(o.clone()));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "OrderPlaced");
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["ts"], "2026-11-22T10:00:00.000Z");
        for f in ["event_id", "order_id", "item", "qty", "user_id"] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        assert_eq!(decode(&bytes).unwrap(), Event::OrderPlaced(o));
    }

    #[test]
    fn decisions_round_trip_and_carry_status() {
        let o = order();
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 1).unwrap();
        let ok = o.decide(None, at).into_event();
        let bad = o.decide(Some("out of stock".into()), at).into_event();
        let okv: Value = serde_json::from_slice(&encode(&ok)).unwrap();
        let badv: Value = serde_json::from_slice(&encode(&bad)).unwrap();
        assert_eq!(
            (okv["type"].as_str(), okv["status"].as_str()),
            (Some("InventoryReserved"), Some("reserved"))
        );
        assert!(okv.get("reason").is_none());
        assert_eq!(
            (badv["type"].as_str(), badv["reason"].as_str()),
            (Some("InventoryFailed"), Some("out of stock"))
        );
        assert_eq!(okv["decided_at"], "2026-11-22T10:00:01.000Z");
        assert_eq!(decode(&encode(&ok)).unwrap(), ok);
        assert_eq!(decode(&encode(&bad)).unwrap(), bad);
    }

    #[test]
    fn bad_json_is_not_json() {
        assert_eq!(decode(b"{not json").unwrap_err().kind(), "not_json");
        assert_eq!(decode(b"").unwrap_err().kind(), "not_json");
        assert_eq!(decode(b"[1,2]").unwrap_err(), DecodeError::NotAnObject);
    }

    #[test]
    fn missing_fields_are_named() {
        for field in [
            "type",
            "schema_version",
            "order_id",
            "item",
            "qty",
            "user_id",
            "ts",
            "event_id",
        ] {
            let mut v = order_json();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(
                decode_value(v).unwrap_err(),
                DecodeError::MissingField(field.into()),
                "{field}"
            );
        }
    }

    #[test]
    fn wrong_types_are_rejected() {
        for (field, bad) in [
            ("qty", json!("two")),
            ("qty", json!(-1)),
            ("qty", json!(1.5)),
            ("item", json!(42)),
            ("order_id", json!("not-a-uuid")),
            ("ts", json!("yesterday")),
            ("type", json!(7)),
            ("schema_version", json!("1")),
        ] {
            let mut v = order_json();
            v[field] = bad.clone();
            assert_eq!(
                decode_value(v).unwrap_err().kind(),
                "wrong_type",
                "{field}={bad}"
            );
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        let mut v = order_json();
        v["qty"] = json!("2");
        let err = decode_value(v).unwrap_err();
        assert_eq!(err.kind(), "wrong_type");
        assert!(err.to_string().contains("`qty`"), "{err}");
        let mut v = order_json();
        v["ts"] = json!("yesterday");
        assert!(decode_value(v).unwrap_err().to_string().contains("`ts`"));
    }

    #[test]
    fn events_must_fit_their_topic() {
        let o = encode(&Event::OrderPlaced(order()));
        let d = encode(&order().decide(None, Utc::now()).into_event());
        assert!(decode_on(TOPIC_ORDERS, &o).is_ok());
        assert!(decode_on(TOPIC_INVENTORY_EVENTS, &d).is_ok());
        let err = decode_on(TOPIC_INVENTORY_EVENTS, &o).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("inventory-events"), "{err}");
        assert_eq!(decode_on(TOPIC_ORDERS, &d).unwrap_err().kind(), "invalid");
        assert_eq!(
            decode_on(TOPIC_ORDERS, b"[]").unwrap_err(),
            DecodeError::NotAnObject
        );
    }

    #[test]
    fn unknown_version_and_type_are_rejected() {
        let mut v = order_json();
        v["schema_version"] = json!(2);
        assert_eq!(
            decode_value(v).unwrap_err(),
            DecodeError::UnknownSchemaVersion("2".into())
        );
        let mut v = order_json();
        v["type"] = json!("OrderShipped");
        assert_eq!(
            decode_value(v).unwrap_err(),
            DecodeError::UnknownType("OrderShipped".into())
        );
    }

    #[test]
    fn semantic_validation() {
        let mut v = order_json();
        v["qty"] = json!(0);
        assert_eq!(decode_value(v).unwrap_err().kind(), "invalid");
        let mut v = order_json();
        v["item"] = json!("  ");
        assert_eq!(decode_value(v).unwrap_err().kind(), "invalid");
        let mut v = order_json();
        v["surprise"] = json!(1);
        assert_eq!(decode_value(v).unwrap_err().kind(), "invalid");

        let at = Utc::now();
        let mut failed: Value =
            serde_json::from_slice(&encode(&order().decide(Some("x".into()), at).into_event()))
                .unwrap();
        failed.as_object_mut().unwrap().remove("reason");
        assert_eq!(decode_value(failed).unwrap_err().kind(), "invalid");
        let mut mismatched: Value =
            serde_json::from_slice(&encode(&order().decide(None, at).into_event())).unwrap();
        mismatched["status"] = json!("failed");
        assert_eq!(decode_value(mismatched).unwrap_err().kind(), "invalid");
    }

    fn fuzz_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
            Just(json!([])),
            Just(json!({"a": 1})),
            Just(json!(-1)),
            Just(json!(0)),
            Just(json!(u64::MAX)),
        ]
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        /// Structured fuzzing: a valid order or decision with one of its fields removed or
        /// replaced by a value of another JSON type, or its bytes cut short or one byte
        /// changed. The decoder never panics; what it accepts is a valid event that
        /// round-trips, and what it refuses has a reason naming a kind.
        #[test]
        fn mutated_events_are_decoded_or_refused_with_a_reason(
            kind in 0u8..5,
            field in 0usize..16,
            replacement in fuzz_value(),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            flip in proptest::prelude::any::<(proptest::sample::Index, u8)>(),
            how in 0u8..4,
        ) {
            let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let e = match kind {
                0 => Event::OrderPlaced(order()),
                1 => order().decide(None, at).into_event(),
                2 => Event::StockRestockRequested(restock()),
                3 => restock().decide(None, 2500, at).into_event(),
                _ => restock().decide(Some("unknown item".into()), 0, at).into_event(),
            };
            let mut v: Value = serde_json::from_slice(&encode(&e)).unwrap();
            let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            let key = keys[field % keys.len()].clone();
            let mut bytes = match how {
                0 => { v.as_object_mut().unwrap().remove(&key); serde_json::to_vec(&v).unwrap() }
                1 => { v[&key] = replacement; serde_json::to_vec(&v).unwrap() }
                _ => encode(&e),
            };
            if how == 2 { bytes.truncate(cut.index(bytes.len() + 1)); }
            if how == 3 { let i = flip.0.index(bytes.len()); bytes[i] ^= flip.1.max(1); }
            // the fast path accepts nothing the general one would refuse or read otherwise
            proptest::prop_assert_eq!(decode(&bytes), decode_general(&bytes));
            match decode(&bytes) {
                Ok(ok) => proptest::prop_assert_eq!(decode(&encode(&ok)).unwrap(), ok),
                Err(err) => proptest::prop_assert!(!err.kind().is_empty() && !err.to_string().is_empty()),
            }
        }

        #[test]
        fn any_valid_restock_round_trips(item in "[a-z]{1,12}", qty in 1u32..=1_000_000_000u32, stock in 0u64..=crate::MAX_STOCK, refused in proptest::prelude::any::<bool>(), ms in 0i64..4_000_000_000_000) {
            let ts = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let r = StockRestockRequested::new(item, qty, ts);
            let stock = stock.max(u64::from(qty));
            let d = r.decide(refused.then(|| "refused".to_string()), stock, ts).into_event();
            for e in [Event::StockRestockRequested(r), d] {
                proptest::prop_assert_eq!(decode(&encode(&e)).unwrap(), e);
            }
        }

        #[test]
        fn any_valid_order_round_trips(item in "[a-z]{1,12}", qty in 1u32..10_000, user in "[a-z0-9-]{1,16}", ms in 0i64..4_000_000_000_000) {
            let ts = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let e = Event::OrderPlaced(OrderPlaced::new(item, qty, user, ts));
            proptest::prop_assert_eq!(decode(&encode(&e)).unwrap(), e);
        }
    }
}
