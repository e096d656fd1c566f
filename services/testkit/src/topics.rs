//! Reading a topic back from the beginning up to its current end, for assertions.

use std::collections::BTreeMap;
use std::time::Duration;

use orderflow_events::{decode_on, Event};
use orderflow_runtime::{read, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

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
    read_back(kafka.reader("orderflow-harness").create()?, topic)
}

/// [`read_all`] as a `read_uncommitted` consumer: also the records of open and of aborted
/// transactions, up to the high watermarks.
pub fn read_all_uncommitted(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<Record>> {
    let mut cfg = kafka.reader("orderflow-harness");
    cfg.set("isolation.level", "read_uncommitted");
    read_back(cfg.create()?, topic)
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

fn read_back(consumer: BaseConsumer, topic: &str) -> anyhow::Result<Vec<Record>> {
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let spans = read::spans_to_end(&consumer, topic, &partitions, timeout)?;
    let mut out = Vec::new();
    read::read_to_end(&consumer, &spans, Duration::from_secs(120), |m| {
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
    })
    .map_err(|e| anyhow::anyhow!("reading {topic} back: {e}"))?;
    Ok(out)
}
