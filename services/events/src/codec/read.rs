//! Reading the two hot events by hand: the mirror of [`super::write`]. An order (inventory
//! decides a million per bulk run, analytics counts them again on a replay) and an inventory
//! decision (analytics counts one per order).
//!
//! Only the bytes [`super::write`] writes are read here: the `type` first, the fields in
//! declaration order, no whitespace, strings without escapes or control characters, numbers
//! as plain digits, event times as `YYYY-MM-DDTHH:MM:SS.mmmZ`, and this crate's
//! `schema_version`. Any other byte anywhere returns `None`, and the caller takes
//! [`crate::fast`]'s path, then the general one; so this is only a faster way to the event
//! serde reads from the same bytes (property tests below and in `codec`), and a record this
//! path refuses still gets the general path's reason. The record is not validated here
//! ([`super::decode`] does that for every path).
//!
//! What it saves per record, against serde's derive on the same bytes: the key matching and
//! per-field dispatch, the UTF-8 check of every key, chrono's general RFC 3339 parser and two
//! `String`s' worth of scanning for escapes.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::model::{DecisionStatus, Event, InventoryDecision, OrderPlaced};
use crate::SCHEMA_VERSION;

/// `bytes` as the order or decision [`super::write`] wrote, or `None`.
pub(super) fn event(bytes: &[u8]) -> Option<Event> {
    let mut r = Reader(bytes.strip_prefix(b"{\"type\":\"")?);
    if r.eat(b"OrderPlaced\"") {
        let o = order(&mut r)?;
        r.end()?;
        return Some(Event::OrderPlaced(o));
    }
    let reserved = if r.eat(b"InventoryReserved\"") {
        true
    } else if r.eat(b"InventoryFailed\"") {
        false
    } else {
        return None;
    };
    let d = decision(&mut r)?;
    r.end()?;
    Some(if reserved {
        Event::InventoryReserved(d)
    } else {
        Event::InventoryFailed(d)
    })
}

/// The fields of an order, `schema_version` to `ts`, as [`super::write`]'s `head` writes them.
fn order(r: &mut Reader<'_>) -> Option<OrderPlaced> {
    r.key(b"schema_version")?;
    let schema_version = r.number()?;
    if schema_version != SCHEMA_VERSION {
        return None;
    }
    r.key(b"event_id")?;
    let event_id = r.uuid()?;
    r.key(b"order_id")?;
    let order_id = r.uuid()?;
    r.key(b"item")?;
    let item = r.string()?.to_owned();
    r.key(b"qty")?;
    let qty = r.number()?;
    r.key(b"user_id")?;
    let user_id = r.string()?.to_owned();
    r.key(b"ts")?;
    let ts = r.time()?;
    Some(OrderPlaced {
        schema_version,
        event_id,
        order_id,
        item,
        qty,
        user_id,
        ts,
    })
}

/// A decision: an order's fields, then `status`, an optional `reason` and `decided_at`.
fn decision(r: &mut Reader<'_>) -> Option<InventoryDecision> {
    let o = order(r)?;
    r.key(b"status")?;
    let status = if r.eat(b"\"reserved\"") {
        DecisionStatus::Reserved
    } else if r.eat(b"\"failed\"") {
        DecisionStatus::Failed
    } else {
        return None;
    };
    let reason = if r.eat(b",\"reason\":") {
        Some(r.string()?.to_owned())
    } else {
        None
    };
    r.key(b"decided_at")?;
    let decided_at = r.time()?;
    Some(InventoryDecision {
        schema_version: o.schema_version,
        event_id: o.event_id,
        order_id: o.order_id,
        item: o.item,
        qty: o.qty,
        user_id: o.user_id,
        ts: o.ts,
        status,
        reason,
        decided_at,
    })
}

/// The bytes not read yet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Step over `prefix` if the rest begins with it.
    fn eat(&mut self, prefix: &[u8]) -> bool {
        match self.0.strip_prefix(prefix) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    /// `,"key":`
    fn key(&mut self, key: &[u8]) -> Option<()> {
        let rest = self.0.strip_prefix(b",\"")?.strip_prefix(key)?;
        self.0 = rest.strip_prefix(b"\":")?;
        Some(())
    }

    /// The closing brace, and nothing after it.
    fn end(&self) -> Option<()> {
        (self.0 == b"}").then_some(())
    }

    /// A JSON number that is a `u32`, in plain digits (no sign, fraction, exponent or
    /// leading zero: those are serde's to read).
    fn number(&mut self) -> Option<u32> {
        let len = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (digits, rest) = self.0.split_at(len);
        if len == 0 || len > 10 || (len > 1 && digits[0] == b'0') {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        self.0 = rest;
        u32::try_from(n).ok()
    }

    /// A JSON string with nothing escaped in it (the text between the quotes, as it lies).
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.0.strip_prefix(b"\"")?;
        let len = rest
            .iter()
            .position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&rest[..len]).ok()?;
        self.0 = &rest[len + 1..];
        Some(text)
    }

    /// A UUID in its hyphenated form, between quotes.
    fn uuid(&mut self) -> Option<Uuid> {
        const LEN: usize = uuid::fmt::Hyphenated::LENGTH;
        let rest = self.0.strip_prefix(b"\"")?;
        if rest.get(LEN) != Some(&b'"') {
            return None;
        }
        let id = Uuid::try_parse_ascii(&rest[..LEN]).ok()?;
        self.0 = &rest[LEN + 1..];
        Some(id)
    }

    /// `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (no leap second: serde's to read).
    fn time(&mut self) -> Option<DateTime<Utc>> {
        let rest = self.0.strip_prefix(b"\"")?;
        let (t, rest) = (rest.get(..24)?, rest.get(24..)?);
        let rest = rest.strip_prefix(b"\"")?;
        let shape = b"0000-00-00T00:00:00.000Z";
        let fits = t.iter().zip(shape).all(|(b, s)| match s {
            b'0' => b.is_ascii_digit(),
            _ => b == s,
        });
        if !fits {
            return None;
        }
        let n = |from: usize, to: usize| {
            t[from..to]
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
        };
        let date = NaiveDate::from_ymd_opt(n(0, 4) as i32, n(5, 7), n(8, 10))?;
        let (hour, minute, second) = (n(11, 13), n(14, 16), n(17, 19));
        if second > 59 {
            return None;
        }
        let time = date.and_hms_milli_opt(hour, minute, second, n(20, 23))?;
        self.0 = rest;
        Some(time.and_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::truncate_ms;
    use proptest::prelude::*;

    fn time(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    /// What serde's derive makes of the same bytes, when it makes an order or a decision.
    fn by_serde(bytes: &[u8]) -> Option<Event> {
        serde_json::from_slice(bytes).ok()
    }

    #[test]
    fn what_the_encoder_writes_is_read_back() {
        let o = OrderPlaced::new("apple", 3, "user-7", time(1_733_558_400_123));
        let at = time(1_733_558_400_456);
        for e in [
            Event::OrderPlaced(o.clone()),
            o.decide(None, at).into_event(),
            o.decide(Some("out of stock".into()), at).into_event(),
        ] {
            assert_eq!(event(&crate::encode(&e)), Some(e));
        }
    }

    #[test]
    fn anything_off_the_encoders_layout_is_left_to_serde() {
        let o = crate::encode(&Event::OrderPlaced(OrderPlaced::new(
            "apple",
            3,
            "u",
            time(0),
        )));
        let text = String::from_utf8(o).unwrap_or_default();
        for other in [
            text.replace("\"qty\":3", "\"qty\":03"),
            text.replace("\"qty\":3", "\"qty\":3.0"),
            text.replace("\"qty\":3", "\"qty\": 3"),
            text.replace("\"item\":\"apple\"", "\"item\":\"app\\u006ce\""),
            text.replace("\"schema_version\":1", "\"schema_version\":2"),
            text.replace("T00:00:00.000Z", "t00:00:00.000Z"),
            text.replace("T00:00:00.000Z", "T00:00:60.000Z"),
            text.replace("T00:00:00.000Z", "T00:00:00.000+00:00"),
            format!("{text} "),
        ] {
            assert_ne!(other, text);
            assert_eq!(event(other.as_bytes()), None, "{other}");
        }
        // a leap second is serde's: chrono reads it, this path does not
        let leap = text.replace("T00:00:00.000Z", "T23:59:60.500Z");
        assert!(by_serde(leap.as_bytes()).is_some());
    }

    proptest! {
        #[test]
        fn any_order_or_decision_is_read_as_serde_reads_it(
            item in any::<String>(), user in any::<String>(), qty in any::<u32>(),
            reason in proptest::option::of(any::<String>()), decided in any::<bool>(),
            // years 0 to 9999 (serde cannot read back what chrono writes before year 0)
            ms in -62_167_219_200_000i64..253_402_300_700_000, later in 0i64..100_000_000,
        ) {
            let o = OrderPlaced::new(item, qty, user, time(ms));
            let e = if decided {
                o.decide(reason, truncate_ms(time(ms + later))).into_event()
            } else {
                Event::OrderPlaced(o)
            };
            let bytes = crate::encode(&e);
            match event(&bytes) {
                Some(got) => prop_assert_eq!(got, e),
                // escapes
                None => prop_assert_eq!(by_serde(&bytes), Some(e)),
            }
        }

        #[test]
        fn a_changed_record_is_read_as_serde_reads_it_or_left_to_serde(
            decided in any::<bool>(), at in any::<proptest::sample::Index>(), to in any::<u8>(),
            cut in any::<proptest::sample::Index>(), how in 0u8..3,
        ) {
            let o = OrderPlaced::new("apple", 12, "user-1", time(1_733_558_400_123));
            let e = if decided {
                o.decide(Some("sold out".into()), time(1_733_558_400_999)).into_event()
            } else {
                Event::OrderPlaced(o)
            };
            let mut bytes = crate::encode(&e);
            match how {
                0 => { let i = at.index(bytes.len()); bytes[i] = to; }
                1 => bytes.truncate(cut.index(bytes.len() + 1)),
                _ => { let i = at.index(bytes.len() + 1); bytes.insert(i, to); }
            }
            if let Some(got) = event(&bytes) {
                prop_assert_eq!(Some(got), by_serde(&bytes));
            }
        }
    }
}
