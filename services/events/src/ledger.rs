//! The records of the compacted stock ledger, `inventory-ledger` (issue 18): the state store
//! of inventory-service, one partition per `orders` partition (same number, see
//! [`crate::ledger_partition`]). Why the keys and values are what they are, and how they are
//! written and read back, is in inventory-service's `ledger` module docs; this is the wire
//! contract.
//!
//! One JSON object per record, tagged by `type` and `schema_version` like the events:
//!
//! - `ItemStock`, key = the item ([`crate::record_key`]): `item`, `initial` (the item's
//!   `INITIAL_STOCK` when the record was written; `null` once the item is no longer
//!   configured: the record keeps its history should it come back), `reserved` (units
//!   reserved so far), `restocked` (units added by restocks so far, see [`crate::restock`]),
//!   `orders_offset` (the next `orders` offset of the partition it reflects),
//!   `events_offset` (the next `inventory-events` offset whose decisions it counts),
//!   `updated_at`.
//! - `LedgerCheckpoint`, key [`LEDGER_CHECKPOINT_KEY`]: `partition`, the same two offsets for
//!   the whole partition, `decided` (orders decided on it so far), `items` (the reserved and
//!   restocked units of the items written with it, so that the checkpoint alone carries what its flush
//!   changed, should one of its `ItemStock` records be missing), `updated_at`.
//!
//! The ledger is also the **catalogue**: order-service reads it (all partitions, no group)
//! to know which items exist (`initial` not `null`) and their stock, and refuses orders for
//! other items at the door. A partition with a checkpoint has been rebuilt by an inventory
//! replica at least once, which wrote a record for every configured item of the partition.
//!
//! Decoding validates (offsets not negative, an item that is not empty and not the
//! checkpoint's key, stock within [`crate::MAX_STOCK`]) and checks the record's key against its value: a record under the wrong
//! key would overwrite another item's state on compaction.

use std::collections::BTreeMap;

#[cfg(test)]
use crate::SCHEMA_VERSION;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
#[cfg(test)]
use serde_json::Value;

use crate::codec::{from_value, DecodeError};
use crate::model::rfc3339_ms;

/// Key of the per-partition checkpoint record. Not a valid item: inventory's `INITIAL_STOCK`
/// refuses it, so no item record can overwrite the checkpoint.
pub const LEDGER_CHECKPOINT_KEY: &str = "#checkpoint";

/// An item's stock state, as of the offsets it reflects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemStock {
    pub schema_version: u32,
    pub item: String,
    /// The item's initial stock (`INITIAL_STOCK`) as of this record; `None` (`null`): no
    /// longer configured, so not in the catalogue.
    pub initial: Option<u64>,
    /// Units of the item reserved so far (every `InventoryReserved` of it, summed).
    pub reserved: u64,
    /// Units added by restocks so far (every `InventoryRestocked` of it, summed).
    pub restocked: u64,
    /// Next `orders` offset of the partition: every order below it is decided.
    pub orders_offset: i64,
    /// Next `inventory-events` offset of the partition: every decision of this item below
    /// it is counted in `reserved`.
    pub events_offset: i64,
    #[serde(with = "rfc3339_ms")]
    pub updated_at: DateTime<Utc>,
}

/// The position of a whole ledger partition: every item record the state up to these
/// offsets needs is in the log before this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerCheckpoint {
    pub schema_version: u32,
    pub partition: i32,
    pub orders_offset: i64,
    pub events_offset: i64,
    /// Orders decided on the partition so far (reserved or failed).
    pub decided: u64,
    /// Reserved and restocked units of each item whose `ItemStock` record was written in the
    /// same flush, just before this checkpoint (as of this checkpoint's offsets).
    pub items: BTreeMap<String, ItemTotals>,
    #[serde(with = "rfc3339_ms")]
    pub updated_at: DateTime<Utc>,
}

/// An item's counts, as a checkpoint repeats them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemTotals {
    pub reserved: u64,
    pub restocked: u64,
}

/// A record of `inventory-ledger`, tagged by its `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LedgerRecord {
    ItemStock(ItemStock),
    LedgerCheckpoint(LedgerCheckpoint),
}

impl LedgerRecord {
    /// The record key: the item, or [`LEDGER_CHECKPOINT_KEY`].
    pub fn key(&self) -> &[u8] {
        match self {
            Self::ItemStock(s) => crate::record_key(&s.item),
            Self::LedgerCheckpoint(_) => LEDGER_CHECKPOINT_KEY.as_bytes(),
        }
    }

    /// The record's JSON value.
    pub fn encode(&self) -> Vec<u8> {
        // Plain structs with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Parse and validate a record of `inventory-ledger` read under `key`.
pub fn decode_ledger(key: Option<&[u8]>, bytes: &[u8]) -> Result<LedgerRecord, DecodeError> {
    let (type_name, fields) = crate::codec::tagged_fields(bytes)?;
    let record = match type_name.as_str() {
        "ItemStock" => LedgerRecord::ItemStock(from_value(fields)?),
        "LedgerCheckpoint" => LedgerRecord::LedgerCheckpoint(from_value(fields)?),
        other => return Err(DecodeError::UnknownType(other.to_string())),
    };
    validate(&record)?;
    if key != Some(record.key()) {
        return Err(DecodeError::Invalid(format!(
            "record key {:?} does not match its value (expected {:?})",
            key.map(String::from_utf8_lossy),
            String::from_utf8_lossy(record.key())
        )));
    }
    Ok(record)
}

fn validate(record: &LedgerRecord) -> Result<(), DecodeError> {
    let (orders, events) = match record {
        LedgerRecord::ItemStock(s) => {
            if s.item.trim().is_empty() {
                return Err(DecodeError::Invalid("`item` is empty".into()));
            }
            if s.item == LEDGER_CHECKPOINT_KEY {
                return Err(DecodeError::Invalid(format!(
                    "`item` {LEDGER_CHECKPOINT_KEY:?} is the checkpoint's key"
                )));
            }
            if s.restocked > crate::MAX_STOCK || s.initial.is_some_and(|i| i > crate::MAX_STOCK) {
                return Err(DecodeError::Invalid(format!(
                    "`initial` and `restocked` must be at most {}",
                    crate::MAX_STOCK
                )));
            }
            (s.orders_offset, s.events_offset)
        }
        LedgerRecord::LedgerCheckpoint(c) => {
            if c.partition < 0 {
                return Err(DecodeError::Invalid("`partition` is negative".into()));
            }
            if c.items
                .keys()
                .any(|i| i.trim().is_empty() || i == LEDGER_CHECKPOINT_KEY)
            {
                return Err(DecodeError::Invalid(
                    "`items` names an empty item or the checkpoint's key".into(),
                ));
            }
            (c.orders_offset, c.events_offset)
        }
    };
    if orders < 0 || events < 0 {
        return Err(DecodeError::Invalid("offsets must not be negative".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap()
    }

    fn item() -> LedgerRecord {
        LedgerRecord::ItemStock(ItemStock {
            schema_version: SCHEMA_VERSION,
            item: "pizza".into(),
            initial: Some(2000),
            reserved: 812,
            restocked: 500,
            orders_offset: 1200,
            events_offset: 1190,
            updated_at: at(),
        })
    }

    fn checkpoint() -> LedgerRecord {
        LedgerRecord::LedgerCheckpoint(LedgerCheckpoint {
            schema_version: SCHEMA_VERSION,
            partition: 1,
            orders_offset: 1200,
            events_offset: 1190,
            decided: 1100,
            items: BTreeMap::from([(
                "pizza".to_string(),
                ItemTotals {
                    reserved: 812,
                    restocked: 500,
                },
            )]),
            updated_at: at(),
        })
    }

    fn value(r: &LedgerRecord) -> Value {
        serde_json::from_slice(&r.encode()).unwrap()
    }

    fn decode_value(key: &[u8], v: &Value) -> Result<LedgerRecord, DecodeError> {
        decode_ledger(Some(key), &serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn records_round_trip_with_their_contract_fields_and_keys() {
        let v = value(&item());
        assert_eq!(
            v,
            json!({"type": "ItemStock", "schema_version": 1, "item": "pizza", "initial": 2000,
                   "reserved": 812, "restocked": 500, "orders_offset": 1200, "events_offset": 1190,
                   "updated_at": "2026-12-05T10:00:00.000Z"})
        );
        assert_eq!(item().key(), b"pizza");
        assert_eq!(checkpoint().key(), LEDGER_CHECKPOINT_KEY.as_bytes());
        for r in [item(), checkpoint()] {
            assert_eq!(decode_ledger(Some(r.key()), &r.encode()).unwrap(), r);
        }
        assert_eq!(value(&checkpoint())["type"], "LedgerCheckpoint");
    }

    #[test]
    fn a_record_under_another_key_is_refused() {
        let e = decode_ledger(Some(b"taco"), &item().encode()).unwrap_err();
        assert_eq!(e.kind(), "invalid");
        assert!(e.to_string().contains("taco"), "{e}");
        assert!(decode_ledger(None, &checkpoint().encode()).is_err());
        assert!(decode_ledger(Some(b"pizza"), &checkpoint().encode()).is_err());
    }

    #[test]
    fn invalid_records_name_what_is_wrong() {
        let mut v = value(&item());
        v["item"] = json!(LEDGER_CHECKPOINT_KEY);
        let e = decode_value(LEDGER_CHECKPOINT_KEY.as_bytes(), &v).unwrap_err();
        assert!(e.to_string().contains("checkpoint"), "{e}");
        let mut v = value(&item());
        v["events_offset"] = json!(-1);
        assert_eq!(decode_value(b"pizza", &v).unwrap_err().kind(), "invalid");
        let mut v = value(&item());
        v["reserved"] = json!("8");
        let e = decode_value(b"pizza", &v).unwrap_err();
        assert!(e.to_string().contains("`reserved`"), "{e}");
        let mut v = value(&checkpoint());
        v.as_object_mut().unwrap().remove("decided");
        assert_eq!(
            decode_value(LEDGER_CHECKPOINT_KEY.as_bytes(), &v).unwrap_err(),
            DecodeError::MissingField("decided".into())
        );
        let mut v = value(&checkpoint());
        v["items"] = json!({"#checkpoint": {"reserved": 1, "restocked": 0}});
        let e = decode_value(LEDGER_CHECKPOINT_KEY.as_bytes(), &v).unwrap_err();
        assert!(e.to_string().contains("`items`"), "{e}");
        let mut v = value(&item());
        v["restocked"] = json!(crate::MAX_STOCK + 1);
        assert_eq!(decode_value(b"pizza", &v).unwrap_err().kind(), "invalid");
        let mut v = value(&item());
        v["initial"] = json!(null);
        assert!(matches!(
            decode_value(b"pizza", &v).unwrap(),
            LedgerRecord::ItemStock(ItemStock { initial: None, .. })
        ));
        let mut v = value(&item());
        v["schema_version"] = json!(2);
        assert_eq!(
            decode_value(b"pizza", &v).unwrap_err().kind(),
            "unknown_schema_version"
        );
        let mut v = value(&item());
        v["type"] = json!("OrderPlaced");
        assert_eq!(
            decode_value(b"pizza", &v).unwrap_err().kind(),
            "unknown_type"
        );
        assert_eq!(
            decode_ledger(Some(b"x"), b"[]").unwrap_err(),
            DecodeError::NotAnObject
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_ledger(Some(b"pizza"), &bytes);
        }

        #[test]
        fn any_valid_record_round_trips(
            item_name in "[a-z]{1,12}",
            reserved in any::<u64>(),
            restocked in 0..=crate::MAX_STOCK,
            initial in proptest::option::of(0..=crate::MAX_STOCK),
            orders in 0i64..i64::MAX,
            events in 0i64..i64::MAX,
            partition in 0i32..1000,
            ms in 0i64..4_000_000_000_000,
        ) {
            let updated_at = DateTime::from_timestamp_millis(ms).unwrap();
            let records = [
                LedgerRecord::ItemStock(ItemStock {
                    schema_version: SCHEMA_VERSION, item: item_name, initial, reserved, restocked,
                    orders_offset: orders, events_offset: events, updated_at,
                }),
                LedgerRecord::LedgerCheckpoint(LedgerCheckpoint {
                    schema_version: SCHEMA_VERSION, partition, orders_offset: orders,
                    events_offset: events, decided: reserved,
                    items: BTreeMap::from([(String::from("x"), ItemTotals { reserved, restocked })]),
                    updated_at,
                }),
            ];
            for r in records {
                prop_assert_eq!(decode_ledger(Some(r.key()), &r.encode()).unwrap(), r);
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
            let r = if which { item() } else { checkpoint() };
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
            match decode_ledger(Some(r.key()), &bytes) {
                Ok(ok) => prop_assert_eq!(decode_ledger(Some(ok.key()), &ok.encode()).unwrap(), ok),
                Err(e) => prop_assert!(!e.kind().is_empty() && !e.to_string().is_empty()),
            }
        }
    }
}
