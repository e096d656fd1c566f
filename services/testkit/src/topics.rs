//! Reading a topic back from the beginning up to its current end, for assertions.

use std::collections::BTreeMap;
use std::time::Duration;

use orderflow_events::{decode_on, Event};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// One record as read back.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// The event, if the record is a valid one for its topic (as the services decode it).
    pub event: Option<Event>,
    pub raw: Vec<u8>,
    pub key: Option<Vec<u8>>,
    /// Header name -> value (as UTF-8, lossy; e.g. the DLQ's reason and origin).
    pub headers: BTreeMap<String, String>,
}

impl Record {
    /// The value of header `name`, if the record has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Every record of `topic` from the earliest offset to the end as of now, as a
/// `read_committed` consumer sees it: committed records only, up to the last stable offset.
pub fn read_all(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<Record>> {
    read_to_end(kafka.reader("orderflow-harness").create()?, topic)
}

/// [`read_all`] as a `read_uncommitted` consumer: also the records of open and of aborted
/// transactions, up to the high watermarks.
pub fn read_all_uncommitted(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<Record>> {
    let mut cfg = kafka.reader("orderflow-harness");
    cfg.set("isolation.level", "read_uncommitted");
    read_to_end(cfg.create()?, topic)
}

/// Per partition of `topic`, (partition, high watermark, last stable offset): the two
/// differ while a transaction is open on the partition.
pub fn open_transactions(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let mut cfg = kafka.reader("orderflow-harness-hw");
    cfg.set("isolation.level", "read_uncommitted");
    let uncommitted: BaseConsumer = cfg.create()?;
    let committed: BaseConsumer = kafka.reader("orderflow-harness-lso").create()?;
    let timeout = Duration::from_secs(10);
    let md = committed.fetch_metadata(Some(topic), timeout)?;
    let mut out = Vec::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (_, hw) = uncommitted.fetch_watermarks(topic, p.id(), timeout)?;
            let (_, lso) = committed.fetch_watermarks(topic, p.id(), timeout)?;
            out.push((p.id(), hw, lso));
        }
    }
    Ok(out)
}

fn read_to_end(consumer: BaseConsumer, topic: &str) -> anyhow::Result<Vec<Record>> {
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Offset(low))?;
            ends.push((*p, high));
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut done = std::collections::HashMap::new();
    let mut last_error = None;
    while done.len() < ends.len() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "reading {topic} back timed out (last error: {})",
                last_error.as_deref().unwrap_or("none")
            );
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            // A partition may end in transaction markers: no record, but the position moves.
            for (p, end) in &ends {
                if orderflow_runtime::kafka::reached(&consumer, topic, *p, *end) {
                    done.insert(*p, ());
                }
            }
            continue;
        };
        // A broker of the cluster that is down (a fault test killed it) is reported as an
        // error while the reader goes on with the others.
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                last_error = Some(e.to_string());
                continue;
            }
        };
        let end = ends
            .iter()
            .find(|(p, _)| *p == m.partition())
            .map(|(_, h)| *h)
            .unwrap_or(0);
        if m.offset() < end {
            let raw = m.payload().unwrap_or_default().to_vec();
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                            (h.key.to_string(), v.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                event: decode_on(topic, &raw).ok(),
                raw,
                key: m.key().map(<[u8]>::to_vec),
                headers,
            });
        }
        if m.offset() + 1 >= end {
            done.insert(m.partition(), ());
        }
    }
    Ok(out)
}
