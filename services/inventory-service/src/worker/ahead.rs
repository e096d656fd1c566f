//! With transactions, a batch's ledger records are sent with its decisions, not after their
//! acknowledgements: one wait for the broker per batch instead of two.
//!
//! A ledger record names the `inventory-events` offset after the batch's last decision of its
//! partition ([`crate::ledger`]), which the broker tells when it acknowledges them. With
//! transactions it is known before, once the partition's producer has committed a
//! transaction of its own in this session:
//! - the producer of `orders` partition `p` is the only writer of `inventory-events/p` (the
//!   group gives `p` to one replica, and a previous owner is fenced off);
//! - a committed transaction ends, on each partition it wrote, with its commit marker: one
//!   offset, right after its last record;
//! - the next transaction's records come after that marker: Kafka refuses to add the
//!   partition to the next transaction (`CONCURRENT_TRANSACTIONS`, librdkafka retries) until
//!   the markers of the last one are written.
//!
//! So after a commit whose decisions of `p` ended at `e` (the offset after the last one), the
//! next decision of `p` takes offset `e + 1`, and a batch of `n` decisions ends at `e + 1 + n`
//! ([`predict`]). A batch with no decision of `p` ends where the ledger already is.
//!
//! The prediction is checked before the commit: the batch's tail compares it with the end
//! the acknowledgements gave. Should they differ (something else wrote to the partition), the
//! tail writes the records again at the acknowledged end, in the same transaction, and counts
//! it (`orderflow_inventory_ledger_rewritten_total`); a rebuild reads `inventory-ledger` to
//! its end and takes the latest record of each key, so the second records are the ones that
//! count, and the transaction shows both or neither. Until the first commit of a session (or
//! after a partition is taken over) the end is unknown and the records wait for the
//! acknowledgements, as without transactions, where they always do: there a record is
//! visible as soon as it is written, so it must not name an end before the broker confirmed
//! it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rdkafka::producer::DeliveryFuture;

use super::commit::Committer;
use super::flush::{ledger_mut, send_records};
use super::{InventoryError, Ledgers};
use crate::ledger::Flush;
use crate::metrics::InventoryMetrics;

/// A batch's ledger records sent with its decisions: their deliveries, and the end of
/// `inventory-events` each partition's records name.
#[derive(Default)]
pub(super) struct Ahead {
    pub(super) sends: Vec<DeliveryFuture>,
    pub(super) ends: BTreeMap<i32, i64>,
}

/// With transactions, send the records of each of `flushes` whose end [`LogEnds::predict`]
/// knows, given the batch's `decisions` (each with its partition); nothing without.
pub(super) fn send_ahead(
    committer: &Committer,
    log_ends: &LogEnds,
    ledgers: &Ledgers,
    metrics: &InventoryMetrics,
    decisions: &[(i32, DeliveryFuture)],
    flushes: &BTreeMap<i32, Flush>,
) -> Result<Ahead, InventoryError> {
    let mut ahead = Ahead::default();
    if !committer.transactional() {
        return Ok(ahead);
    }
    for (&p, flush) in flushes {
        let n = decisions.iter().filter(|(q, _)| *q == p).count();
        let next_event = ledger_mut(ledgers, p, |l| l.next_event())?;
        if let Some(end) = log_ends.predict(p, next_event, n) {
            ahead
                .sends
                .extend(send_records(committer, metrics, p, flush, end)?);
            ahead.ends.insert(p, end);
            metrics.ledger_ahead.inc();
        }
    }
    Ok(ahead)
}

/// What is known of the end of each `inventory-events` partition this replica writes with
/// transactions (shared by the loop, which predicts, and the tails, which commit).
#[derive(Default)]
pub(super) struct LogEnds(Mutex<BTreeMap<i32, Known>>);

/// After a commit of `p`'s producer: its ledger's `next_event` then (the end of its last
/// decision), and the offset its next decision takes (one past the commit marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    next_event: i64,
    next_decision: i64,
}

impl LogEnds {
    /// `p` is (re)taken over: nothing is known of its log's end until its next commit.
    pub(super) fn forget(&self, p: i32) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&p);
        }
    }

    /// `p`'s transaction committed decisions ending at `next_event` (the offset after the
    /// last one): its commit marker takes `next_event`, its next decision the offset after.
    pub(super) fn committed(&self, p: i32, next_event: i64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(
                p,
                Known {
                    next_event,
                    next_decision: next_event + 1,
                },
            );
        }
    }

    /// Where a batch's `decisions` of `p` end on `inventory-events/p`, the ledger of `p`
    /// being at `next_event` before them; `None`: not known before their acknowledgements.
    pub(super) fn predict(&self, p: i32, next_event: i64, decisions: usize) -> Option<i64> {
        let known = self.0.lock().ok().and_then(|m| m.get(&p).copied());
        predict(known, next_event, decisions)
    }
}

/// The end of a batch's `decisions` of a partition whose ledger is at `next_event`, given
/// what the last commit left (`known`): a commit known for a ledger that has moved since is
/// not used.
fn predict(known: Option<Known>, next_event: i64, decisions: usize) -> Option<i64> {
    if decisions == 0 {
        return Some(next_event);
    }
    let n = i64::try_from(decisions).ok()?;
    known
        .filter(|k| k.next_event == next_event)
        .map(|k| k.next_decision + n)
}

/// The partitions whose ledger records were sent `ahead` at the end the acknowledgements
/// then gave (`actual`, per partition); the others' records are written again.
pub(super) fn confirmed(
    ahead: &BTreeMap<i32, i64>,
    actual: impl Fn(i32) -> Option<i64>,
) -> Vec<i32> {
    ahead
        .iter()
        .filter(|(&p, &end)| actual(p) == Some(end))
        .map(|(&p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_predicted_before_the_first_commit() {
        let ends = LogEnds::default();
        assert_eq!(ends.predict(0, 40, 3), None);
    }

    #[test]
    fn after_a_commit_the_marker_takes_one_offset() {
        let ends = LogEnds::default();
        ends.committed(0, 40); // decisions up to 39, the marker at 40
        assert_eq!(ends.predict(0, 40, 3), Some(44)); // decisions at 41, 42, 43
        assert_eq!(
            ends.predict(1, 40, 3),
            None,
            "another partition is not known"
        );
    }

    #[test]
    fn a_batch_without_decisions_ends_where_the_ledger_is() {
        assert_eq!(predict(None, 40, 0), Some(40));
    }

    #[test]
    fn a_ledger_that_moved_since_the_commit_is_not_predicted() {
        let ends = LogEnds::default();
        ends.committed(0, 40);
        assert_eq!(ends.predict(0, 41, 1), None);
        ends.forget(0);
        assert_eq!(ends.predict(0, 40, 1), None);
    }

    #[test]
    fn only_matching_ends_are_confirmed() {
        let ahead = BTreeMap::from([(0, 44), (1, 10), (2, 7)]);
        let actual = |p| match p {
            0 => Some(44),
            1 => Some(11),
            _ => None,
        };
        assert_eq!(confirmed(&ahead, actual), vec![0]);
    }
}
