//! Reading partitions back up to an end fixed beforehand, outside any consumer group: how
//! inventory rebuilds a ledger from its changelog, analytics its state from its own
//! committed span, and the tests what a topic holds.
//!
//! A span is done when a record at `end - 1` arrives or, failing that, when the reader's
//! position reaches `end`. The position is what counts: a `read_committed` reader never
//! receives transaction markers or aborted records, yet they occupy offsets, so the record
//! at `end - 1` may never arrive while the position moves past it. The position is checked
//! whenever a poll comes back empty, so the poll is short ([`POLL`]): a span ending in a
//! transaction marker (the last record of every committed transaction) would otherwise wait
//! a whole poll timeout, once per read, which a restart pays several times.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;

/// How long one poll waits for a record before the positions are checked.
const POLL: Duration = Duration::from_millis(10);

/// Offsets `[from, to)` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// No record arrived and no span ended for the whole stall timeout.
    #[error("reading {topic}/{partition} stalled before offset {end} (last error: {})", .last_error.as_deref().unwrap_or("none"))]
    Stalled {
        topic: String,
        partition: i32,
        end: i64,
        last_error: Option<String>,
    },
}

/// The span from the low to the high watermark (as `reader` sees them now: for a
/// `read_committed` reader the end is the last stable offset) of each of `partitions` of
/// `topic` that holds anything.
pub fn spans_to_end<C: ConsumerContext>(
    reader: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<Vec<Span>, KafkaError> {
    let mut spans = Vec::new();
    for &partition in partitions {
        let (low, high) = reader.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            spans.push(Span {
                topic: topic.to_string(),
                partition,
                from: low,
                to: high,
            });
        }
    }
    Ok(spans)
}

/// Assign `spans` to `reader` (a consumer outside any group, [`crate::KafkaConfig::reader`])
/// and hand every record inside them to `each`, until every span is done (see the module
/// docs). Records past a span's end are not handed over. Fails when nothing moves for
/// `stall`; a poll error is logged and reading goes on (a broker of a cluster may be down
/// while the others answer). Returns how many records were handed over.
pub fn read_to_end<C: ConsumerContext>(
    reader: &BaseConsumer<C>,
    spans: &[Span],
    stall: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, ReadError> {
    let mut open: Vec<&Span> = spans.iter().filter(|s| s.from < s.to).collect();
    if open.is_empty() {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    for s in &open {
        tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.from))?;
    }
    reader.assign(&tpl)?;
    let mut read = 0;
    let mut last_progress = Instant::now();
    let mut last_error = None;
    while !open.is_empty() {
        match reader.poll(POLL) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let Some(i) = open
                    .iter()
                    .position(|s| s.partition == m.partition() && s.topic == m.topic())
                else {
                    continue;
                };
                if m.offset() < open[i].to {
                    read += 1;
                    each(&m);
                }
                if m.offset() + 1 >= open[i].to {
                    open.swap_remove(i);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "read error (retrying)");
                last_error = Some(e.to_string());
            }
            None => {
                let before = open.len();
                open.retain(|s| !reached(reader, &s.topic, s.partition, s.to));
                if open.len() < before {
                    last_progress = Instant::now();
                }
            }
        }
        if let Some(s) = open.first().filter(|_| last_progress.elapsed() > stall) {
            return Err(ReadError::Stalled {
                topic: s.topic.clone(),
                partition: s.partition,
                end: s.to,
                last_error,
            });
        }
    }
    // No more fetches: the next request on this reader's connection (watermarks, offsets
    // for times) need not wait behind one parked at the log end.
    let _ = reader.unassign();
    Ok(read)
}

/// Whether `consumer` has read `topic`/`partition` up to `end` (exclusive), by its
/// position rather than by the offset of the last record (see the module docs).
fn reached<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    end: i64,
) -> bool {
    consumer
        .position()
        .ok()
        .and_then(|tpl| {
            tpl.find_partition(topic, partition)
                .and_then(|e| e.offset().to_raw())
        })
        .is_some_and(|o| o >= end)
}
