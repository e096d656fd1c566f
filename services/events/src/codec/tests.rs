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
        serde_json::from_slice(&encode(&restock().decide(None, 2500, at).into_event())).unwrap();
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

/// `v` as JSON, its `type` first when `first` (as [`encode`] writes a record), else with its
/// keys in sorted order.
fn type_first(v: &Value, first: bool) -> Vec<u8> {
    let Some(t) = v.get("type").filter(|_| first) else {
        return serde_json::to_vec(v).unwrap();
    };
    let mut rest = v.clone();
    rest.as_object_mut().unwrap().remove("type");
    let rest = serde_json::to_string(&rest).unwrap();
    let sep = if rest == "{}" { "" } else { "," };
    format!("{{\"type\":{t}{sep}{}", &rest[1..]).into_bytes()
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
        how in 0u8..6,
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
        // 0 and 1 with the keys in sorted order (read twice by the fast path), 4 and 5 the
        // same with `type` first, as the encoder writes it (read once)
        let mut bytes = match how {
            0 | 4 => { v.as_object_mut().unwrap().remove(&key); type_first(&v, how == 4) }
            1 | 5 => { v[&key] = replacement; type_first(&v, how == 5) }
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
