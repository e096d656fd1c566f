//! The decoder's fast path: a well-formed event straight from its bytes into its type.
//!
//! [`crate::decode`]'s general path parses a record into a `serde_json::Value` (a map of
//! owned strings), takes `type` out and converts the rest, keeping the path of a wrong field
//! for the reason it gives. Replaying analytics over 600,000 records spent most of its time
//! there (perf: `Value`'s map inserts, string copies and frees). Here a record is read
//! straight into the struct of its type, the `type` key stepped over. A record as
//! [`crate::encode`] writes it begins with its `type` (`{"type":"OrderPlaced",...`), so that
//! prefix names the struct and the record is read once; any other record is read twice,
//! once for `type` only (every other value skipped), then into the struct. Either way the
//! struct's `schema_version` must be this crate's, and a second `type` key refuses the
//! record here (the general path says what it makes of it).
//!
//! Anything this path does not accept (bad JSON, a missing or duplicate field, a wrong type,
//! an unknown `type` or version) returns `None`, and the caller takes the general path, so a
//! refused record gets exactly the general path's reason. What this path accepts, the
//! general path decodes to the same event (property test in `codec`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer};
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::model::Event;
use crate::SCHEMA_VERSION;

/// The envelope's `type` alone; every other field is skipped unread.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "type")]
    type_name: Cow<'a, str>,
}

/// `bytes` as an event of the type its `type` names, not yet validated; `None` when anything
/// is off (the general path then says what).
pub(crate) fn decode(bytes: &[u8]) -> Option<Event> {
    let type_name = match leading_type(bytes) {
        Some(name) => Cow::Borrowed(name),
        None => serde_json::from_slice::<Envelope>(bytes).ok()?.type_name,
    };
    let event = crate::codec::event_of(&type_name, Record(bytes)).ok()??;
    (schema_version(&event) == SCHEMA_VERSION).then_some(event)
}

/// The `type` a record begins with, as our encoder writes it: `{"type":"NAME",` with no
/// escape in NAME; `None` for any other beginning.
fn leading_type(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(br#"{"type":""#)?;
    let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
    if rest[end] != b'"' || rest.get(end + 1) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

fn schema_version(event: &Event) -> u32 {
    match event {
        Event::OrderPlaced(o) => o.schema_version,
        Event::InventoryReserved(d) | Event::InventoryFailed(d) => d.schema_version,
        Event::StockRestockRequested(r) => r.schema_version,
        Event::InventoryRestocked(r) | Event::InventoryRestockRefused(r) => r.schema_version,
    }
}

/// A record's bytes, read as one struct without its `type`.
struct Record<'a>(&'a [u8]);

impl crate::codec::Fields for Record<'_> {
    type Error = ();
    fn read<T: DeserializeOwned>(self) -> Result<T, ()> {
        without_type(self.0).ok_or(())
    }
}

/// The JSON object `bytes` as a `T`, its `type` key stepped over (the structs refuse
/// unknown fields, and `type` is the envelope's, not theirs).
fn without_type<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = (&mut de)
        .deserialize_map(SkipTypeVisitor(PhantomData))
        .ok()?;
    de.end().ok()?;
    Some(value)
}

struct SkipTypeVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SkipTypeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(SkipType {
            map,
            seen_type: false,
        }))
    }
}

/// A map without its `type` entry; a second one is an error.
struct SkipType<A> {
    map: A,
    seen_type: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipType<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(Key(key)) = self.map.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            if key == "type" {
                if std::mem::replace(&mut self.seen_type, true) {
                    return Err(serde::de::Error::duplicate_field("type"));
                }
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            return match key {
                Cow::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::new(k)).map(Some),
                Cow::Owned(k) => seed.deserialize(StringDeserializer::new(k)).map(Some),
            };
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A map key, borrowed from the record unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OrderPlaced;
    use chrono::{TimeZone, Utc};

    fn order() -> OrderPlaced {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        OrderPlaced::new("pizza", 2, "u-1", at)
    }

    #[test]
    fn a_well_formed_event_in_any_key_order_with_escaped_keys() {
        let e = Event::OrderPlaced(order());
        assert_eq!(decode(&crate::encode(&e)), Some(e.clone()));
        // `type` last and spelled with an escape, another key escaped too
        let mut v: serde_json::Value = serde_json::from_slice(&crate::encode(&e)).unwrap();
        let t = v.as_object_mut().unwrap().remove("type").unwrap();
        let qty = v.as_object_mut().unwrap().remove("qty").unwrap();
        let body = serde_json::to_string(&v).unwrap();
        let text = format!(
            "{},\"q\\u0074y\":{qty},\"\\u0074ype\":{t}}}",
            body.trim_end_matches('}')
        );
        assert_eq!(decode(text.as_bytes()), Some(e));
    }

    #[test]
    fn a_record_as_encoded_names_its_type_up_front() {
        let e = Event::OrderPlaced(order());
        let bytes = crate::encode(&e);
        assert_eq!(leading_type(&bytes), Some("OrderPlaced"));
        for other in [
            &br#"{"type":"Order\u0050laced","qty":1}"#[..],
            br#"{"type":"OrderPlaced"}"#,
            br#"{ "type":"OrderPlaced","qty":1}"#,
            br#"{"type":"OrderPlaced""#,
        ] {
            assert_eq!(leading_type(other), None);
        }
    }

    #[test]
    fn anything_off_is_left_to_the_general_path() {
        let good = String::from_utf8(crate::encode(&Event::OrderPlaced(order()))).unwrap();
        for bad in [
            good.replace("\"qty\":2", "\"qty\":\"2\""),
            good.replace("\"schema_version\":1", "\"schema_version\":2"),
            good.replace("OrderPlaced", "OrderShipped"),
            good.replace("\"qty\":2", "\"qty\":2,\"qty\":3"),
            good.replace("\"qty\":2", "\"qty\":2,\"surprise\":1"),
            good.replace("\"qty\":2", "\"qty\":2,\"type\":\"OrderPlaced\""),
            good.replace("\"qty\":2", "\"qty\":2,\"type\":\"InventoryFailed\""),
            good.replace("\"qty\":2,", ""),
            format!("{good} x"),
            good[..good.len() - 1].to_string(),
            "[]".to_string(),
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad}");
        }
    }
}
