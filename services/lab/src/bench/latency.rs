//! P6 end-to-end latency, on a broker of its own: `POST /orders` to order-service at a fixed
//! rate ([`RATES`]), each accepted order timed from the moment its request was due (the
//! schedule's, so a slow answer does not hide the wait behind it) to
//! - the arrival of its decision at a `read_committed` consumer of the decision topic (the
//!   "decision" figures; a decision of an open transaction is not there yet), and
//! - analytics-service counting a decision for it (`reserved_total + failed_total` in
//!   `/api/metrics`, polled every [`COUNT_POLL`]; the k-th order of a rate is taken as counted
//!   when the count has grown by k, so these figures include up to one poll).
//!
//! Twice, each time on a fresh broker: inventory-service with transactions (its default) and
//! the peer with exactly-once v2, then both at-least-once (`TRANSACTIONS=false`; subjects
//! "... at-least-once"). First orderflow: order-service, inventory-service and
//! analytics-service (its count is measured with transactions only). Then the Kafka Streams
//! inventory peer, with order-service still in front and inventory-service and
//! analytics-service stopped, deciding the same kind of orders into its own topic; the peer
//! has no analytics stage. Each side first decides one unmeasured second at the lower rate
//! (connections, the JVM's JIT).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use orderflow_events::{
    decode_inventory_record, InventoryRecord, DEFAULT_ITEMS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS,
};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;
use tokio::time::MissedTickBehavior;

use super::peers::killable;
use super::streams::java;
use super::{push, say, Options, Samples, Tools, STREAMS_DECISIONS};
use crate::probes::committed_to_end;
use crate::procs::{get_json, Broker, Service, ServiceKind};
use crate::wait;

/// The fixed rates (orders/s) and the name each has in the bench ids (`P6-1k-p99`).
pub const RATES: [(u64, &str); 2] = [(1000, "1k"), (5000, "5k")];

/// How often analytics' counts are read.
const COUNT_POLL: Duration = Duration::from_millis(5);

/// The Streams peer's application id (and consumer group) in P6.
const STREAMS_APP: &str = "bench-p6-streams";

/// How long a rate's decisions and counts may take to arrive after its last request.
const DRAIN: Duration = Duration::from_secs(120);

/// P6 in both guarantees, each on a broker of its own in `dir`; figures in ms into `s`.
pub(super) async fn end_to_end(
    opts: &Options,
    tools: &Tools,
    dir: &Path,
    s: &mut Samples,
) -> anyhow::Result<()> {
    for exactly_once in [true, false] {
        one_guarantee(opts, tools, dir, exactly_once, s).await?;
    }
    Ok(())
}

/// P6 with inventory-service's transactions and the peer's exactly-once v2 (subjects as
/// named), or both at-least-once (subjects with " at-least-once").
async fn one_guarantee(
    opts: &Options,
    tools: &Tools,
    dir: &Path,
    exactly_once: bool,
    s: &mut Samples,
) -> anyhow::Result<()> {
    let (suffix, tag) = if exactly_once {
        ("", "eos")
    } else {
        (" at-least-once", "alo")
    };
    let logs = dir.join(format!("logs-e2e-{tag}"));
    let broker = Broker::start_local(&dir.join(format!("broker-e2e-{tag}")))?;
    let kafka = broker.kafka();
    let b = broker.bootstrap.clone();
    orderflow_runtime::topics::ensure_topics(&kafka).await?;
    orderflow_runtime::topics::ensure_named_topics(&kafka, &[STREAMS_DECISIONS]).await?;
    let env = [
        ("THROTTLE_MS", "0".to_string()),
        ("TRANSACTIONS", exactly_once.to_string()),
    ];
    let inventory = Service::start(ServiceKind::Inventory, &b, &env, &logs).await?;
    let analytics = Service::start(ServiceKind::Analytics, &b, &[], &logs).await?;
    let order = Service::start(ServiceKind::Order, &b, &[], &logs).await?;
    let client = reqwest::Client::new();
    let load = Load {
        client: &client,
        url: &order.url,
        t0: Instant::now(),
    };

    let watch = Watch::start(&kafka, TOPIC_INVENTORY_EVENTS, load.t0)?;
    let counts = Counts::start(analytics.url.clone(), load.t0);
    load.warm_up(&watch).await?;
    for (rate, name) in RATES {
        let base = counts.now();
        let sent = load.run(rate, opts.e2e_seconds).await?;
        let decided = watch.until_all(&sent).await?;
        let d = percentiles(decision_latencies(&sent, &decided));
        report(s, name, &format!("orderflow{suffix}"), rate, sent.len(), d);
        if exactly_once {
            let counted = counts.until(base, sent.len()).await?;
            let c = percentiles(count_latencies(&sent, &counted, base));
            report(s, name, "orderflow analytics", rate, sent.len(), c);
        }
    }
    counts.stop();
    watch.stop();
    inventory.stop(Duration::from_secs(20)).await?;
    analytics.stop(Duration::from_secs(20)).await?;

    // the Kafka Streams inventory peer over the same path, once it has decided the orders
    // already on `orders` (its application starts from the earliest offsets)
    let state = dir.join("streams-state");
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("clearing {}", state.display()))?;
    }
    let mut cmd = java(tools, "inventory", &b, STREAMS_APP, dir, exactly_once);
    cmd.args(["--output", STREAMS_DECISIONS]);
    let peer_log = std::fs::File::create(logs.join("streams-p6.log"))?;
    let mut peer = killable(&cmd)
        .stdout(Stdio::null())
        .stderr(peer_log)
        .spawn()
        .context("starting the Kafka Streams inventory peer")?;
    wait::until(
        "the Kafka Streams peer to decide the orders before P6",
        Duration::from_secs(300),
        Duration::from_millis(100),
        || committed_to_end(&kafka, STREAMS_APP, &[TOPIC_ORDERS]),
    )
    .await?;
    let watch = Watch::start(&kafka, STREAMS_DECISIONS, load.t0)?;
    load.warm_up(&watch).await?;
    for (rate, name) in RATES {
        let sent = load.run(rate, opts.e2e_seconds).await?;
        let decided = watch.until_all(&sent).await?;
        let d = percentiles(decision_latencies(&sent, &decided));
        report(
            s,
            name,
            &format!("kafka streams{suffix}"),
            rate,
            sent.len(),
            d,
        );
    }
    watch.stop();
    let _ = peer.start_kill();
    let _ = peer.wait().await;
    order.stop(Duration::from_secs(20)).await?;
    drop(broker);
    Ok(())
}

fn report(s: &mut Samples, name: &str, subject: &str, rate: u64, n: usize, p: Percentiles) {
    say(&format!(
        "    P6 {subject:<19} {n} orders at {rate}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p.p50, p.p99, p.max
    ));
    push(s, &format!("P6-{name}-p50"), subject, p.p50);
    push(s, &format!("P6-{name}-p99"), subject, p.p99);
    push(s, &format!("P6-{name}-max"), subject, p.max);
}

/// One accepted order: its id and when its request was due, in ms since the load's `t0`.
type Sent = Vec<(String, f64)>;

/// `POST /orders` at a fixed rate.
struct Load<'a> {
    client: &'a reqwest::Client,
    url: &'a str,
    t0: Instant,
}

impl Load<'_> {
    /// One unmeasured second at the lower rate, until its decisions arrived.
    async fn warm_up(&self, watch: &Watch) -> anyhow::Result<()> {
        let sent = self.run(RATES[0].0, 1).await?;
        watch.until_all(&sent).await?;
        Ok(())
    }

    /// `rate` orders per second for `secs` seconds (the items in turn); the accepted ones.
    async fn run(&self, rate: u64, secs: u64) -> anyhow::Result<Sent> {
        let total = rate * secs;
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            let due = tick.tick().await.into_std();
            let due_ms = due.saturating_duration_since(self.t0).as_secs_f64() * 1e3;
            let request = self
                .client
                .post(format!("{}/orders", self.url))
                .json(&json!({
                    "item": DEFAULT_ITEMS[i as usize % DEFAULT_ITEMS.len()],
                    "qty": 1,
                    "user_id": "bench-e2e",
                }))
                .timeout(Duration::from_secs(30));
            tasks.spawn(async move {
                let r = request.send().await.ok()?;
                if r.status().as_u16() != 202 {
                    return None;
                }
                let body: serde_json::Value = r.json().await.ok()?;
                Some((body["order_id"].as_str()?.to_string(), due_ms))
            });
        }
        let mut sent = Vec::with_capacity(total as usize);
        while let Some(r) = tasks.join_next().await {
            sent.extend(r?);
        }
        ensure!(
            sent.len() as u64 * 100 >= total * 99,
            "order-service accepted {} of {total} orders at {rate}/s",
            sent.len()
        );
        Ok(sent)
    }
}

/// A `read_committed` consumer of a decision topic from its end, noting when each order's
/// decision arrived (ms since the load's `t0`).
struct Watch {
    stop: Arc<AtomicBool>,
    arrived: Arc<Mutex<HashMap<String, f64>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Watch {
    fn start(kafka: &KafkaConfig, topic: &str, t0: Instant) -> anyhow::Result<Self> {
        let mut cfg = kafka.client();
        cfg.set("group.id", "bench-p6-watch")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10");
        let consumer: BaseConsumer = cfg.create()?;
        let timeout = Duration::from_secs(10);
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        let mut tpl = TopicPartitionList::new();
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(high))?;
            }
        }
        ensure!(tpl.count() > 0, "{topic} has no partitions");
        consumer.assign(&tpl)?;
        let stop = Arc::new(AtomicBool::new(false));
        let arrived = Arc::new(Mutex::new(HashMap::new()));
        let (st, ar) = (stop.clone(), arrived.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let at = t0.elapsed().as_secs_f64() * 1e3;
                if let Ok(InventoryRecord::Order(d)) =
                    decode_inventory_record(m.payload().unwrap_or_default())
                {
                    if let Ok(mut a) = ar.lock() {
                        a.entry(d.order_id.to_string()).or_insert(at);
                    }
                }
            }
        });
        Ok(Self {
            stop,
            arrived,
            thread,
        })
    }

    /// Wait until every order of `sent` has its decision; their arrival times.
    async fn until_all(&self, sent: &Sent) -> anyhow::Result<HashMap<String, f64>> {
        wait::until(
            "every decision to arrive",
            DRAIN,
            Duration::from_millis(20),
            || async {
                let a = self.arrived.lock().ok()?;
                sent.iter()
                    .map(|(id, _)| a.get(id).map(|t| (id.clone(), *t)))
                    .collect::<Option<HashMap<_, _>>>()
            },
        )
        .await
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// analytics' count of decisions (`reserved_total + failed_total`), read every
/// [`COUNT_POLL`]: (ms since the load's `t0`, count).
struct Counts {
    samples: Arc<Mutex<Vec<(f64, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Counts {
    fn start(url: String, t0: Instant) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let into = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(COUNT_POLL);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Ok(m) = get_json(&url, "/api/metrics").await else {
                    continue;
                };
                let at = t0.elapsed().as_secs_f64() * 1e3;
                let n = m["reserved_total"].as_u64().unwrap_or(0)
                    + m["failed_total"].as_u64().unwrap_or(0);
                if let Ok(mut s) = into.lock() {
                    s.push((at, n));
                }
            }
        });
        Self { samples, task }
    }

    /// The latest count.
    fn now(&self) -> u64 {
        self.samples
            .lock()
            .ok()
            .and_then(|s| s.last().map(|(_, n)| *n))
            .unwrap_or(0)
    }

    /// Wait until the count is `n` past `base`; the samples then.
    async fn until(&self, base: u64, n: usize) -> anyhow::Result<Vec<(f64, u64)>> {
        wait::until(
            "analytics to count every decision",
            DRAIN,
            Duration::from_millis(20),
            || async {
                let s = self.samples.lock().ok()?;
                (s.last()?.1 >= base + n as u64).then(|| s.clone())
            },
        )
        .await
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// p50, p99 and max, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles of `v` (NaN when empty).
fn percentiles(mut v: Vec<f64>) -> Percentiles {
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = |q: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[i - 1]
    };
    Percentiles {
        p50: rank(0.50),
        p99: rank(0.99),
        max: rank(1.0),
    }
}

/// Each order's decision arrival minus when its request was due.
fn decision_latencies(sent: &Sent, arrived: &HashMap<String, f64>) -> Vec<f64> {
    sent.iter()
        .filter_map(|(id, due)| arrived.get(id).map(|at| at - due))
        .collect()
}

/// The k-th order by due time (k from 1) against the first sample where the count had grown
/// by k past `base`.
fn count_latencies(sent: &Sent, samples: &[(f64, u64)], base: u64) -> Vec<f64> {
    let mut due: Vec<f64> = sent.iter().map(|(_, d)| *d).collect();
    due.sort_by(|a, b| a.total_cmp(b));
    let mut out = Vec::with_capacity(due.len());
    let mut i = 0;
    for (k, d) in due.iter().enumerate() {
        let want = base + k as u64 + 1;
        while i < samples.len() && samples[i].1 < want {
            i += 1;
        }
        match samples.get(i) {
            Some((at, _)) => out.push(at - d),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        let p = percentiles(vec![3.0]);
        assert_eq!((p.p50, p.p99, p.max), (3.0, 3.0, 3.0));
        assert!(percentiles(vec![]).p50.is_nan());
    }

    #[test]
    fn decisions_are_matched_by_order_id() {
        let sent: Sent = vec![("a".into(), 10.0), ("b".into(), 11.0)];
        let arrived = HashMap::from([("b".to_string(), 15.0), ("a".to_string(), 12.5)]);
        assert_eq!(decision_latencies(&sent, &arrived), vec![2.5, 4.0]);
    }

    #[test]
    fn counts_are_matched_by_rank_past_the_base() {
        // three orders due at 0, 1, 2 ms; the count (base 7) reaches 8 at 5 ms and 10 at 9 ms
        let sent: Sent = vec![("c".into(), 2.0), ("a".into(), 0.0), ("b".into(), 1.0)];
        let samples = [(0.0, 7), (5.0, 8), (7.0, 8), (9.0, 10)];
        assert_eq!(count_latencies(&sent, &samples, 7), vec![5.0, 8.0, 7.0]);
        // not counted yet: no figure for it
        assert_eq!(count_latencies(&sent, &samples[..2], 7), vec![5.0]);
    }
}
