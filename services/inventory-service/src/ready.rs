//! What `/readyz` says, decided from the worker's state (pure, so it is tested without Kafka).
//!
//! Ready = Kafka answers, the group gave this replica its partitions (possibly none, when
//! there are more replicas than partitions) and the ledger of each one has been rebuilt from
//! `inventory-ledger` and the tail of `inventory-events`, so orders are being decided. Not ready while Kafka is unreachable,
//! before the first assignment, while a ledger is being rebuilt, and while stopping.

use std::collections::BTreeSet;

/// The inputs of the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The last Kafka error seen (probe or consume) since the last success; `None` = fine.
    pub kafka_error: Option<String>,
    /// `orders` partitions assigned to this replica; `None` before the first assignment.
    pub assigned: Option<BTreeSet<i32>>,
    /// Assigned partitions whose ledger is not rebuilt yet.
    pub stale: BTreeSet<i32>,
    /// SIGTERM received: finishing the batch in hand.
    pub stopping: bool,
}

/// `Ok(detail)` when ready, `Err(reason)` when not.
pub fn verdict(s: &Snapshot) -> Result<String, String> {
    if s.stopping {
        return Err("shutting down".into());
    }
    if let Some(e) = &s.kafka_error {
        return Err(format!("Kafka unreachable: {e}"));
    }
    let Some(assigned) = &s.assigned else {
        return Err("waiting for the consumer group to assign partitions".into());
    };
    let stale: Vec<_> = s.stale.intersection(assigned).collect();
    if !stale.is_empty() {
        return Err(format!(
            "rebuilding the ledger of orders partitions {stale:?} from inventory-ledger and inventory-events"
        ));
    }
    if assigned.is_empty() {
        Ok("connected; no partitions assigned (more replicas than partitions)".into())
    } else {
        Ok(format!("consuming orders partitions {assigned:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ps: &[i32]) -> BTreeSet<i32> {
        ps.iter().copied().collect()
    }

    #[test]
    fn ready_only_when_assigned_rebuilt_and_connected() {
        let mut s = Snapshot::default();
        assert!(verdict(&s).unwrap_err().contains("waiting"));
        s.assigned = Some(set(&[0, 2]));
        s.stale = set(&[2]);
        assert!(verdict(&s).unwrap_err().contains("[2]"));
        s.stale.clear();
        assert_eq!(verdict(&s).unwrap(), "consuming orders partitions {0, 2}");
        s.kafka_error = Some("all brokers down".into());
        assert_eq!(
            verdict(&s).unwrap_err(),
            "Kafka unreachable: all brokers down"
        );
        s.kafka_error = None;
        s.stopping = true;
        assert!(verdict(&s).is_err());
    }

    #[test]
    fn no_partitions_is_ready_when_connected() {
        let s = Snapshot {
            assigned: Some(BTreeSet::new()),
            ..Default::default()
        };
        assert!(verdict(&s).unwrap().contains("no partitions"));
    }

    #[test]
    fn stale_partitions_no_longer_assigned_do_not_block() {
        let s = Snapshot {
            assigned: Some(set(&[1])),
            stale: set(&[0]),
            ..Default::default()
        };
        assert!(verdict(&s).is_ok());
    }
}
