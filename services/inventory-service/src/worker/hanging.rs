//! Transactions of a partition's own producer that Kafka left open for good ("hanging"),
//! and how taking the partition over ends them.
//!
//! **Why.** A transaction ends when its coordinator writes a marker to every partition it
//! touched. Apache Kafka's coordinator skips the marker of a partition that has no leader
//! at that moment, taking it for deleted ("Couldn't find leader endpoint for partitions
//! ... these partitions are likely deleted already and hence can be skipped"), and
//! completes the transaction all the same. Seen here (4.3.1) when a single-node broker was
//! killed right after a batch's commit had been prepared (`PrepareCommit` in
//! `__transaction_state`): the restarted node loaded the coordinator while its own
//! partitions were still without a leader, and skipped all three markers of the batch. Its
//! decisions and ledger records then stayed open on `inventory-events` and
//! `inventory-ledger` (their last stable offset stuck, so `read_committed` readers saw
//! nothing past them), and its offsets stayed pending in `__consumer_offsets`, where every
//! committed-offset query of the group that requires stable offsets (librdkafka's, with
//! `read_committed`) waits for them: inventory never fetched `orders` again.
//!
//! **How.** The open transaction belongs to the partition's own producer id
//! (`transactional.id` `<prefix>-<p>`), and a marker of that producer id with a newer epoch
//! ends it. Once `init_transactions` has returned, nothing of this producer may still be
//! open, so a transaction open on partition `p` of `inventory-events` or `inventory-ledger`
//! (high watermark above the last stable offset) hangs. The new producer then opens a
//! transaction that touches the partitions that hang (a record keyed [`HEAL_KEY`], with no
//! value, on each) and the group's offset of `orders` `p` (whose marker goes to the group's
//! `__consumer_offsets` partition), and aborts it: every record of the hanging transaction
//! is aborted with it. No reader saw them (a `read_committed` reader stops at the last
//! stable offset), the ledger is rebuilt without them, and the group's committed offset is
//! the one before them, so their orders are decided again, once.
//!
//! Offsets that hang alone (their marker skipped, the changelog's written) show only as the
//! stall the fetch watch reports. The session that stalled names its `orders` partitions
//! as suspects ([`Suspects`]); the next take-over of a suspect aborts the same way. Its
//! decisions stand, their orders come again, and the rebuilt ledger skips them as decided.
//!
//! A hanging transaction of another producer id (a transactional id that expired unused)
//! cannot be ended so: the take-over says so in an ERROR line with Kafka's own remedy.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use orderflow_events::{
    decision_partition, ledger_partition, TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER,
    TOPIC_ORDERS,
};
use orderflow_runtime::{kafka, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::InventoryError;

/// The key of the record a take-over writes to a partition whose transaction hangs, in a
/// transaction it aborts at once: no `read_committed` reader ever sees it.
pub const HEAL_KEY: &str = "orderflow.abort-hanging";

/// What inventory logs once it has aborted a hanging transaction (tests count it).
pub const HANGING_ABORTED: &str = "the hanging transaction is aborted";

/// The words of the WARN line that says a hanging transaction was found.
pub const HANGING_FOUND: &str = "was left open by Kafka";

/// `orders` partitions whose committed offsets a session waited for in vain (the fetch
/// watch's stall): their next take-over aborts whatever of their producer may hang.
pub(super) type Suspects = Mutex<BTreeSet<i32>>;

/// How long each watermark query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an abort's markers may take to show in the last stable offsets.
const MARKERS_WAIT: Duration = Duration::from_secs(10);

/// How often they are looked for meanwhile.
const MARKERS_POLL: Duration = Duration::from_millis(20);

/// The changelog partitions of one `orders` partition on which a transaction is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Open {
    pub events: bool,
    pub ledger: bool,
}

/// What a take-over aborts: the changelog topics to write a [`HEAL_KEY`] record to (the
/// group's offset is always in it), or `None` when nothing hangs.
pub(super) fn plan(open: Open, suspect: bool) -> Option<Vec<&'static str>> {
    let mut topics = Vec::new();
    if open.events {
        topics.push(TOPIC_INVENTORY_EVENTS);
    }
    if open.ledger {
        topics.push(TOPIC_INVENTORY_LEDGER);
    }
    (suspect || !topics.is_empty()).then_some(topics)
}

/// The two readers that tell whether a transaction is open on a partition: one pair per
/// session, made with it and shared by its take-overs (a pair made per take-over cost a
/// restart 0.2-0.3 s: the new clients' connections).
pub(super) struct Watermarks {
    committed: BaseConsumer,
    uncommitted: BaseConsumer,
}

impl Watermarks {
    pub(super) fn new(kafka: &KafkaConfig) -> Result<Self, InventoryError> {
        // the rebuild's client id (and so its reader group's ACLs, deploy/secure/): this is
        // part of a take-over
        let mut cfg = kafka.reader("inventory-rebuild");
        cfg.set("isolation.level", "read_uncommitted");
        Ok(Self {
            committed: kafka.reader("inventory-rebuild").create()?,
            uncommitted: cfg.create()?,
        })
    }

    /// Whether a transaction is open on `inventory-events` and `inventory-ledger` for
    /// `orders` partition `p`: the high watermark (a `read_uncommitted` reader's) above the
    /// last stable offset (a `read_committed` reader's).
    pub(super) fn open_on(&self, p: i32) -> Result<Open, InventoryError> {
        let open = |topic: &str, partition: i32| -> Result<bool, InventoryError> {
            let (_, hw) = self
                .uncommitted
                .fetch_watermarks(topic, partition, QUERY_TIMEOUT)?;
            let (_, lso) = self
                .committed
                .fetch_watermarks(topic, partition, QUERY_TIMEOUT)?;
            Ok(hw > lso)
        };
        Ok(Open {
            events: open(TOPIC_INVENTORY_EVENTS, decision_partition(p))?,
            ledger: open(TOPIC_INVENTORY_LEDGER, ledger_partition(p))?,
        })
    }

    /// [`Watermarks::open_on`] after an abort: the coordinator answers the abort once it
    /// has logged it, and writes the markers after, so what is still open is asked again
    /// (every [`MARKERS_POLL`]) until nothing is or [`MARKERS_WAIT`] has passed.
    pub(super) fn open_after_abort(&self, p: i32) -> Result<Open, InventoryError> {
        let deadline = Instant::now() + MARKERS_WAIT;
        loop {
            let open = self.open_on(p)?;
            if open == Open::default() || Instant::now() >= deadline {
                return Ok(open);
            }
            std::thread::sleep(MARKERS_POLL);
        }
    }
}

/// With `w` (partition `p`'s transactional producer, just initialised): open a transaction
/// on `topics` (partition `p`'s of each) and on the group's offset of `orders` `p`, and
/// abort it, which aborts the hanging transaction of the same producer id there.
/// Blocking.
pub(super) fn abort_hanging(
    w: &FutureProducer,
    p: i32,
    topics: &[&'static str],
    group: &ConsumerGroupMetadata,
    timeout: Duration,
) -> Result<(), InventoryError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| InventoryError::Txn {
        partition: p,
        error: format!("aborting a hanging transaction ({what}): {e}"),
    };
    w.begin_transaction().map_err(|e| failed("begin", &e))?;
    let mut sends = Vec::new();
    for &topic in topics {
        let partition = match topic {
            TOPIC_INVENTORY_LEDGER => ledger_partition(p),
            _ => decision_partition(p),
        };
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .partition(partition)
            .key(HEAL_KEY)
            .payload(&[]);
        sends.push(kafka::enqueue(w, record).map_err(|e| failed("write", &e))?);
    }
    // Delivered first: a record still queued at the abort is dropped with its partition's
    // place in the transaction, and then the marker would not go there.
    for delivered in futures::executor::block_on(join_all(sends)) {
        match delivered {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(failed("write", &e)),
            Err(_) => return Err(failed("write", &"the producer went away")),
        }
    }
    // Any offset: it is aborted with the rest; only its marker's partition matters.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC_ORDERS, p, Offset::Offset(0))?;
    w.send_offsets_to_transaction(&tpl, group, timeout)
        .map_err(|e| failed("offsets", &e))?;
    w.abort_transaction(timeout)
        .map_err(|e| failed("abort", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_open_and_no_stall_means_nothing_to_abort() {
        assert_eq!(plan(Open::default(), false), None);
    }

    #[test]
    fn each_open_changelog_partition_gets_a_record_and_the_offsets_always_go_along() {
        let both = Open {
            events: true,
            ledger: true,
        };
        assert_eq!(
            plan(both, false),
            Some(vec![TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER])
        );
        let events = Open {
            events: true,
            ledger: false,
        };
        assert_eq!(plan(events, false), Some(vec![TOPIC_INVENTORY_EVENTS]));
        // a stall alone: the offsets are aborted, no record is written
        assert_eq!(plan(Open::default(), true), Some(vec![]));
    }
}
