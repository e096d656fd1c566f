//! A consumer group's own state topics, for shadow replays (issue 19).
//!
//! A consumer that keeps state in Kafka names those topics after its group, as Kafka Streams
//! names its internal topics after the application id: group `analytics` keeps
//! `analytics-snapshots`. So a copy of the consumer under group `analytics-shadow-r1` keeps
//! `analytics-shadow-r1-snapshots`, apart from the live state, and:
//! - [`state_topics`] finds a group's state topics by that prefix;
//! - [`copy_state`] makes a live state topic hold what a shadow's holds (promotion);
//! - [`delete_topics`] and [`delete_group`] remove a shadow's topics and group.
//!
//! The copy is by key, not by record: the latest value per key of the source (in the order
//! the source wrote them) and a tombstone for every key only the destination has. A reader
//! that takes the latest record per key (a compacted topic's contract) then sees the source's
//! state. Records the destination already holds as its latest are not written again, so a
//! copy interrupted and made again writes only what is still missing, and a record that
//! depends on earlier ones (analytics' checkpoint, written after its minutes) still follows
//! them in the log.

use std::collections::HashMap;
use std::time::Duration;

use orderflow_runtime::read::{read_to_end, spans_to_end};
use orderflow_runtime::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::GroupError;

const STATE_CLIENT_ID: &str = "orderflowctl-state";

/// The prefix of `group`'s state topics: `<group>-`.
pub fn state_prefix(group: &str) -> String {
    format!("{group}-")
}

/// The topics on the broker whose name starts with `<group>-`, sorted.
pub fn state_topics(
    kafka: &KafkaConfig,
    group: &str,
    timeout: Duration,
) -> Result<Vec<String>, GroupError> {
    let client: BaseConsumer = kafka.metadata_client(STATE_CLIENT_ID).create()?;
    let md = client.fetch_metadata(None, timeout)?;
    let prefix = state_prefix(group);
    let mut names: Vec<String> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && t.name().starts_with(&prefix))
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// The latest record per key of one partition: key -> (offset, value; `None`: tombstone).
pub type Latest = HashMap<Vec<u8>, (i64, Option<Vec<u8>>)>;

fn partitions(
    reader: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, GroupError> {
    let md = reader.fetch_metadata(Some(topic), timeout)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| GroupError::UnknownTopic(vec![topic.to_string()]))?;
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

fn latest(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Latest, GroupError> {
    let spans = spans_to_end(reader, topic, &[partition], timeout)?;
    let mut out = Latest::new();
    read_to_end(reader, &spans, timeout, |m| {
        if let Some(k) = m.key() {
            out.insert(k.to_vec(), (m.offset(), m.payload().map(<[u8]>::to_vec)));
        }
    })
    .map_err(|e| GroupError::State(e.to_string()))?;
    reader.unassign()?;
    Ok(out)
}

/// The writes that make `to` (a partition's latest records) hold `from`'s state: tombstones
/// for keys only `to` has (or that `from` deleted), then `from`'s values in its offset
/// order, skipping what `to` holds already. Pure, for the tests.
pub fn copy_plan(from: &Latest, to: &Latest) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut gone: Vec<(&Vec<u8>, i64)> = to
        .iter()
        .filter(|(k, (_, v))| v.is_some() && from.get(*k).is_none_or(|(_, fv)| fv.is_none()))
        .map(|(k, (o, _))| (k, *o))
        .collect();
    gone.sort_by_key(|(_, o)| *o);
    let mut kept: Vec<(&Vec<u8>, i64, &Vec<u8>)> = from
        .iter()
        .filter_map(|(k, (o, v))| v.as_ref().map(|v| (k, *o, v)))
        .filter(|(k, _, v)| to.get(*k).and_then(|(_, tv)| tv.as_ref()) != Some(*v))
        .collect();
    kept.sort_by_key(|(_, o, _)| *o);
    gone.into_iter()
        .map(|(k, _)| (k.clone(), None))
        .chain(
            kept.into_iter()
                .map(|(k, _, v)| (k.clone(), Some(v.clone()))),
        )
        .collect()
}

/// Make topic `to` hold the state topic `from` holds (see the module docs), partition by
/// partition; returns the records written. Both topics must exist, `to` with at least as
/// many partitions.
pub fn copy_state(
    kafka: &KafkaConfig,
    from: &str,
    to: &str,
    timeout: Duration,
) -> Result<u64, GroupError> {
    let reader: BaseConsumer = kafka.reader(STATE_CLIENT_ID).create()?;
    let (src, dst) = (
        partitions(&reader, from, timeout)?,
        partitions(&reader, to, timeout)?,
    );
    if let Some(p) = src.iter().find(|p| !dst.contains(p)) {
        return Err(GroupError::State(format!(
            "cannot copy {from} onto {to}: {to} has no partition {p}"
        )));
    }
    let producer: FutureProducer = kafka.producer(STATE_CLIENT_ID).create()?;
    let mut written = 0;
    for p in src {
        let writes = copy_plan(
            &latest(&reader, from, p, timeout)?,
            &latest(&reader, to, p, timeout)?,
        );
        // one at a time, each acknowledged before the next: the order is the contract
        for (key, value) in &writes {
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(to).partition(p).key(key);
            if let Some(v) = value {
                rec = rec.payload(v);
            }
            futures::executor::block_on(producer.send(rec, timeout))
                .map_err(|(e, _)| GroupError::Kafka(e))?;
            written += 1;
        }
    }
    tracing::info!(from, to, written, "state topic copied");
    Ok(written)
}

fn admin(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, GroupError> {
    Ok(kafka.client().create()?)
}

fn opts(timeout: Duration) -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout))
}

/// Delete `topics` (one that is already gone is not an error).
pub fn delete_topics(
    kafka: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<(), GroupError> {
    if topics.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let results = futures::executor::block_on(admin(kafka)?.delete_topics(&names, &opts(timeout)))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(GroupError::State(format!("deleting topic {topic}: {code}")))
            }
        }
    }
    tracing::info!(topics = ?topics, "topics deleted");
    Ok(())
}

/// Delete consumer group `group` and its committed offsets. `Ok(false)`: there was no such
/// group. Kafka refuses while the group has members ([`GroupError::RefusedByKafka`]).
pub fn delete_group(
    kafka: &KafkaConfig,
    group: &str,
    timeout: Duration,
) -> Result<bool, GroupError> {
    let results =
        futures::executor::block_on(admin(kafka)?.delete_groups(&[group], &opts(timeout)))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::GroupIdNotFound)) => return Ok(false),
            Err((_, RDKafkaErrorCode::NonEmptyGroup)) => {
                return Err(GroupError::RefusedByKafka {
                    group: group.to_string(),
                    code: "NON_EMPTY_GROUP".to_string(),
                })
            }
            Err((g, code)) => return Err(GroupError::State(format!("deleting group {g}: {code}"))),
        }
    }
    tracing::info!(group, "consumer group deleted");
    Ok(true)
}

/// The latest value of `key` in partition `partition` of `topic`, looking at the last
/// `window` records first (where a state topic's newest checkpoint is) and at the whole
/// partition only when they do not hold it. `None`: no such key, or deleted.
pub fn latest_value(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    key: &[u8],
    window: i64,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, GroupError> {
    let reader: BaseConsumer = kafka.reader(STATE_CLIENT_ID).create()?;
    let mut spans = spans_to_end(&reader, topic, &[partition], timeout)?;
    let full = spans.clone();
    for s in &mut spans {
        s.from = s.from.max(s.to - window);
    }
    for attempt in [spans, full] {
        let mut found: Option<Option<Vec<u8>>> = None;
        read_to_end(&reader, &attempt, timeout, |m| {
            if m.key() == Some(key) {
                found = Some(m.payload().map(<[u8]>::to_vec));
            }
        })
        .map_err(|e| GroupError::State(e.to_string()))?;
        reader.unassign()?;
        if let Some(v) = found {
            return Ok(v);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(entries: &[(&str, i64, Option<&str>)]) -> Latest {
        entries
            .iter()
            .map(|(k, o, v)| {
                (
                    k.as_bytes().to_vec(),
                    (*o, v.map(|v| v.as_bytes().to_vec())),
                )
            })
            .collect()
    }

    fn show(w: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<(String, Option<String>)> {
        w.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn copy_deletes_keys_only_the_destination_has_then_writes_in_source_order() {
        let from = l(&[
            ("#checkpoint", 9, Some("c2")),
            ("m1", 7, Some("a")),
            ("m2", 8, Some("b")),
        ]);
        let to = l(&[
            ("#checkpoint", 30, Some("c1")),
            ("m0", 10, Some("x")),
            ("m1", 20, Some("old")),
        ]);
        assert_eq!(
            show(&copy_plan(&from, &to)),
            vec![
                ("m0".into(), None),
                ("m1".into(), Some("a".into())),
                ("m2".into(), Some("b".into())),
                ("#checkpoint".into(), Some("c2".into())),
            ]
        );
    }

    #[test]
    fn a_copy_made_again_writes_nothing_and_tombstones_stay_deleted() {
        let from = l(&[("m1", 1, Some("a")), ("m9", 2, None)]);
        let to = l(&[("m1", 5, Some("a")), ("m9", 6, Some("z")), ("m8", 7, None)]);
        assert_eq!(show(&copy_plan(&from, &to)), vec![("m9".into(), None)]);
        let done = l(&[("m1", 5, Some("a")), ("m9", 8, None), ("m8", 7, None)]);
        assert!(copy_plan(&from, &done).is_empty());
    }
}
