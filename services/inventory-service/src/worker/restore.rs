//! Reading a partition's ledger back (blocking; the rule is in [`crate::ledger`]): the
//! compacted `inventory-ledger` partition to its end, then `inventory-events` from the
//! checkpoint's offset, or from the start of the idempotency window if that is earlier, to
//! its end; both as a `read_committed` reader (committed transactions only). One reader
//! does the three reads of a rebuild (ledger, offsets-for-times, changelog): a restart
//! pays one client and one connection per partition, not three.

use std::time::Duration;

use chrono::Utc;
use orderflow_events::{
    decode_inventory_record, decode_ledger, DecodeError, InventoryRecord, HEADER_ORDERS_OFFSET,
    TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER,
};
use orderflow_runtime::read::{self, ReadError};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::InventoryError;
use crate::ledger::{PartitionLedger, Rebuild, Stock};

/// What a rebuild read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Restored {
    /// Records read from `inventory-ledger`.
    pub ledger_records: u64,
    /// Records read from `inventory-events`, and the offset the read started at.
    pub tail_records: u64,
    pub tail_from: i64,
    /// The checkpoint's `inventory-events` offset: decisions from there on count for stock.
    pub checkpoint: i64,
    /// Seconds spent reading the ledger, finding the window's first offset, and reading the
    /// tail.
    pub secs: [f64; 3],
}

/// Rebuild the ledger of `orders` partition `p`. A ledger record that does not decode
/// (never written by this build) makes the ledger untrustworthy for its key: the rebuild
/// then ignores the ledger and reads all of `inventory-events` (as before the ledger
/// existed), saying so in an ERROR line. Bad decisions go to `bad` and are stepped over
/// (analytics reports them to the DLQ).
pub fn restore(
    kafka: &KafkaConfig,
    p: i32,
    stock: &Stock,
    window: Duration,
    stall: Duration,
    mut bad: impl FnMut(&BorrowedMessage<'_>, &DecodeError),
) -> Result<(PartitionLedger, Restored), InventoryError> {
    let now = Utc::now();
    let clock = std::time::Instant::now();
    let mut rebuild = Rebuild::new(stock, window, now);
    let mut undecodable = 0u64;
    let reader: BaseConsumer = kafka.reader("inventory-rebuild").create()?;
    let ledger_records =
        read_from(
            &reader,
            TOPIC_INVENTORY_LEDGER,
            p,
            (0, 0),
            stall,
            |m| match decode_ledger(m.key(), m.payload().unwrap_or_default()) {
                Ok(r) => rebuild.ledger_record(&r),
                Err(e) => {
                    undecodable += 1;
                    bad(m, &e);
                }
            },
        )?;
    if undecodable > 0 {
        tracing::error!(
            partition = p,
            undecodable,
            "inventory-ledger holds records this build cannot read; rebuilding from all of inventory-events instead"
        );
        rebuild = Rebuild::new(stock, window, now);
    }
    let checkpoint = rebuild.tail_from();
    let ledger_secs = clock.elapsed().as_secs_f64();
    let window_from =
        offset_for_time(&reader, p, rebuild.window_start().timestamp_millis(), stall)?;
    let tail_from = window_from.map_or(checkpoint, |w| w.min(checkpoint));
    let window_secs = clock.elapsed().as_secs_f64() - ledger_secs;
    let tail_records = read_decisions(
        &reader,
        p,
        (tail_from, checkpoint),
        stall,
        |d, offset, orders| rebuild.record(d, offset, orders),
        bad,
    )?;
    // Closing a reader takes about 100 ms (librdkafka leaves its unused group): off the
    // take-over's path.
    std::thread::spawn(move || drop(reader));
    Ok((
        rebuild.finish(p),
        Restored {
            ledger_records,
            tail_records,
            tail_from,
            checkpoint,
            secs: [
                ledger_secs,
                window_secs,
                clock.elapsed().as_secs_f64() - ledger_secs - window_secs,
            ],
        },
    ))
}

/// Feed every decision (about an order or a restock) recorded on `inventory-events` partition `p` from offset `from.0` up
/// to the last stable offset as of now to `apply` (with its offset and the `orders` offset
/// of its header), and every record that is not a valid decision to `bad`. When Kafka
/// already deleted records at or past `from.1` (retention), says so in an ERROR line:
/// decisions the ledger does not count are lost. Returns how many records were read.
fn read_decisions(
    reader: &BaseConsumer,
    p: i32,
    from: (i64, i64),
    stall: Duration,
    mut apply: impl FnMut(&InventoryRecord, i64, Option<i64>),
    mut bad: impl FnMut(&BorrowedMessage<'_>, &DecodeError),
) -> Result<u64, InventoryError> {
    read_from(
        reader,
        TOPIC_INVENTORY_EVENTS,
        p,
        from,
        stall,
        |m| match decode_inventory_record(m.payload().unwrap_or_default()) {
            Ok(d) => apply(&d, m.offset(), orders_offset(m)),
            Err(e) => bad(m, &e),
        },
    )
}

/// The first offset of `inventory-events` partition `p` whose record timestamp (the
/// order's event time) is at or after `ms`; `None` when there is none.
fn offset_for_time(
    reader: &BaseConsumer,
    p: i32,
    ms: i64,
    timeout: Duration,
) -> Result<Option<i64>, InventoryError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC_INVENTORY_EVENTS, p, Offset::Offset(ms))?;
    let found = reader.offsets_for_times(tpl, timeout)?;
    Ok(found
        .find_partition(TOPIC_INVENTORY_EVENTS, p)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

/// Read `topic`/`p` from `from` (or its first record, if later) to its end. The records
/// from `must_from` on are needed: an ERROR line says so when some are gone.
fn read_from(
    reader: &BaseConsumer,
    topic: &'static str,
    p: i32,
    (from, must_from): (i64, i64),
    stall: Duration,
    each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, InventoryError> {
    let mut spans = read::spans_to_end(reader, topic, &[p], stall)?;
    if let Some(kept) = spans
        .first()
        .map(|s| s.from)
        .filter(|kept| *kept > must_from)
    {
        tracing::error!(
            topic,
            partition = p,
            needed_from = must_from,
            first_kept = kept,
            "records the rebuild needs were deleted (retention): the stock they reserved is unknown"
        );
    }
    for s in &mut spans {
        s.from = s.from.max(from);
    }
    read::read_to_end(reader, &spans, stall, each).map_err(|e| match e {
        ReadError::Kafka(e) => InventoryError::Kafka(e),
        ReadError::Stalled { end, .. } => InventoryError::ChangelogStalled {
            topic,
            partition: p,
            end,
        },
    })
}

/// The `orders` offset a decision's header names (decisions written before the header
/// existed have none).
fn orders_offset(m: &BorrowedMessage<'_>) -> Option<i64> {
    let headers = m.headers()?;
    let h = headers.iter().find(|h| h.key == HEADER_ORDERS_OFFSET)?;
    std::str::from_utf8(h.value?).ok()?.parse().ok()
}
