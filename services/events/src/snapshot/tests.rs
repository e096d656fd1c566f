use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap()
}

fn positions() -> Positions {
    BTreeMap::from([
        ("orders".to_string(), BTreeMap::from([(0, 120), (2, 7)])),
        ("inventory-events".to_string(), BTreeMap::from([(1, 99)])),
    ])
}

fn minute() -> SnapshotRecord {
    SnapshotRecord::MinuteSnapshot(MinuteSnapshot {
        schema_version: SCHEMA_VERSION,
        run: "5f0c".into(),
        minute: at(),
        orders: 40,
        reserved: 30,
        failed: 9,
        restocks: 2,
        restocked_units: 500,
        restocks_refused: 1,
        positions: positions(),
        updated_at: at(),
    })
}

fn checkpoint() -> SnapshotRecord {
    SnapshotRecord::SnapshotCheckpoint(SnapshotCheckpoint {
        schema_version: SCHEMA_VERSION,
        run: "5f0c".into(),
        positions: positions(),
        orders_total: 400,
        reserved_total: 300,
        failed_total: 90,
        minutes: 12,
        updated_at: at(),
    })
}

fn value(r: &SnapshotRecord) -> Value {
    serde_json::from_slice(&r.encode()).unwrap()
}

fn decode_value(key: &str, v: &Value) -> Result<SnapshotRecord, DecodeError> {
    decode_snapshot(Some(key.as_bytes()), &serde_json::to_vec(v).unwrap())
}

#[test]
fn records_round_trip_with_their_contract_fields_and_keys() {
    assert_eq!(
        value(&minute()),
        json!({"type": "MinuteSnapshot", "schema_version": 1, "run": "5f0c",
               "minute": "2026-12-05T10:00:00.000Z", "orders": 40, "reserved": 30, "failed": 9,
               "restocks": 2, "restocked_units": 500, "restocks_refused": 1,
               "positions": {"inventory-events": {"1": 99}, "orders": {"0": 120, "2": 7}},
               "updated_at": "2026-12-05T10:00:00.000Z"})
    );
    assert_eq!(minute().key(), "2026-12-05T10:00:00Z");
    assert_eq!(checkpoint().key(), SNAPSHOT_CHECKPOINT_KEY);
    assert_eq!(value(&checkpoint())["type"], "SnapshotCheckpoint");
    assert_eq!(value(&checkpoint())["minutes"], 12);
    for r in [minute(), checkpoint()] {
        assert_eq!(
            decode_snapshot(Some(r.key().as_bytes()), &r.encode()).unwrap(),
            r
        );
        assert_eq!(r.run(), "5f0c");
    }
}

#[test]
fn a_record_under_another_key_is_refused() {
    let e = decode_snapshot(Some(b"2026-12-05T10:01:00Z"), &minute().encode()).unwrap_err();
    assert_eq!(e.kind(), "invalid");
    assert!(e.to_string().contains("10:01"), "{e}");
    assert!(decode_snapshot(None, &checkpoint().encode()).is_err());
    assert!(decode_snapshot(Some(b"2026-12-05T10:00:00Z"), &checkpoint().encode()).is_err());
    assert!(decode_snapshot(Some(SNAPSHOT_CHECKPOINT_KEY.as_bytes()), &minute().encode()).is_err());
}

#[test]
fn invalid_records_name_what_is_wrong() {
    let k = "2026-12-05T10:00:00Z";
    let mut v = value(&minute());
    v["minute"] = json!("2026-12-05T10:00:30.000Z");
    let e = decode_value("2026-12-05T10:00:30Z", &v).unwrap_err();
    assert!(e.to_string().contains("start of a minute"), "{e}");
    let mut v = value(&minute());
    v["run"] = json!("a b");
    assert!(decode_value(k, &v)
        .unwrap_err()
        .to_string()
        .contains("`run`"));
    let mut v = value(&minute());
    v["run"] = json!("");
    assert_eq!(decode_value(k, &v).unwrap_err().kind(), "invalid");
    let mut v = value(&minute());
    v["positions"] = json!({"orders": {"0": -1}});
    assert_eq!(decode_value(k, &v).unwrap_err().kind(), "invalid");
    let mut v = value(&minute());
    v["positions"] = json!({"": {"0": 1}});
    assert_eq!(decode_value(k, &v).unwrap_err().kind(), "invalid");
    let mut v = value(&minute());
    v["orders"] = json!("8");
    assert!(decode_value(k, &v)
        .unwrap_err()
        .to_string()
        .contains("`orders`"));
    let mut v = value(&checkpoint());
    v.as_object_mut().unwrap().remove("minutes");
    assert_eq!(
        decode_value(SNAPSHOT_CHECKPOINT_KEY, &v).unwrap_err(),
        DecodeError::MissingField("minutes".into())
    );
    let mut v = value(&checkpoint());
    v["schema_version"] = json!(2);
    assert_eq!(
        decode_value(SNAPSHOT_CHECKPOINT_KEY, &v)
            .unwrap_err()
            .kind(),
        "unknown_schema_version"
    );
    let mut v = value(&minute());
    v["type"] = json!("ItemStock");
    assert_eq!(decode_value(k, &v).unwrap_err().kind(), "unknown_type");
    assert_eq!(
        decode_snapshot(Some(b"x"), b"[]").unwrap_err(),
        DecodeError::NotAnObject
    );
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_snapshot(Some(SNAPSHOT_CHECKPOINT_KEY.as_bytes()), &bytes);
    }

    #[test]
    fn any_valid_record_round_trips(
        run in "[a-f0-9]{1,32}",
        counts in any::<(u64, u64, u64)>(),
        offsets in proptest::collection::btree_map(0i32..64, 0i64..i64::MAX, 0..4),
        minute in 0i64..60_000_000,
        ms in 0i64..4_000_000_000_000,
    ) {
        let updated_at = DateTime::from_timestamp_millis(ms).unwrap();
        let positions = BTreeMap::from([("orders".to_string(), offsets)]);
        let records = [
            SnapshotRecord::MinuteSnapshot(MinuteSnapshot {
                schema_version: SCHEMA_VERSION, run: run.clone(),
                minute: DateTime::from_timestamp(minute * 60, 0).unwrap(),
                orders: counts.0, reserved: counts.1, failed: counts.2,
                restocks: counts.2, restocked_units: counts.1, restocks_refused: counts.0,
                positions: positions.clone(), updated_at,
            }),
            SnapshotRecord::SnapshotCheckpoint(SnapshotCheckpoint {
                schema_version: SCHEMA_VERSION, run, positions,
                orders_total: counts.0, reserved_total: counts.1, failed_total: counts.2,
                minutes: counts.0, updated_at,
            }),
        ];
        for r in records {
            prop_assert_eq!(decode_snapshot(Some(r.key().as_bytes()), &r.encode()).unwrap(), r);
        }
    }

    /// A valid record with one field removed or retyped, cut short or a byte flipped:
    /// decoded (then it round-trips) or refused with a reason, never a panic.
    #[test]
    fn mutated_records_are_decoded_or_refused_with_a_reason(
        which in any::<bool>(),
        field in 0usize..16,
        cut in any::<proptest::sample::Index>(),
        flip in any::<(proptest::sample::Index, u8)>(),
        how in 0u8..4,
    ) {
        let r = if which { minute() } else { checkpoint() };
        let mut v = value(&r);
        let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        let key = keys[field % keys.len()].clone();
        let mut bytes = match how {
            0 => { v.as_object_mut().unwrap().remove(&key); serde_json::to_vec(&v).unwrap() }
            1 => { v[&key] = json!([1]); serde_json::to_vec(&v).unwrap() }
            _ => r.encode(),
        };
        if how == 2 { bytes.truncate(cut.index(bytes.len() + 1)); }
        if how == 3 { let i = flip.0.index(bytes.len()); bytes[i] ^= flip.1.max(1); }
        match decode_snapshot(Some(r.key().as_bytes()), &bytes) {
            Ok(ok) => prop_assert_eq!(decode_snapshot(Some(ok.key().as_bytes()), &ok.encode()).unwrap(), ok),
            Err(e) => prop_assert!(!e.kind().is_empty() && !e.to_string().is_empty()),
        }
    }
}

#[test]
fn a_minute_written_before_restocks_decodes_with_none() {
    let record = minute();
    let SnapshotRecord::MinuteSnapshot(m) = record.clone() else {
        unreachable!("minute() is a MinuteSnapshot")
    };
    let mut v: serde_json::Value = serde_json::from_slice(&record.encode()).unwrap();
    for f in ["restocks", "restocked_units", "restocks_refused"] {
        v.as_object_mut().unwrap().remove(f);
    }
    let bytes = serde_json::to_vec(&v).unwrap();
    let r = decode_snapshot(Some(record.key().as_bytes()), &bytes);
    let Ok(SnapshotRecord::MinuteSnapshot(back)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (back.restocks, back.restocked_units, back.restocks_refused),
        (0, 0, 0)
    );
    assert_eq!(back.orders, m.orders);
}
