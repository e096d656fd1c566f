//! Helpers shared by the integration tests: Apache Kafka started per test (scripts/kafka.sh,
//! free port, own state dir, stopped by PID on drop), topics, records, the CLI.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use orderflow_events::CommitMark;
use orderflow_runtime::KafkaConfig;
use orderflowctl::ResetTo;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The bound on each Kafka request of a test (the library's `timeout`, the CLI's
/// `--request-timeout-ms`): not a timing target. The CLI's default, 5 s, was too short on a
/// loaded CI machine (two test lanes, each starting brokers and JVM tools): a fresh group's
/// coordinator still answered NotCoordinator after it.
pub const T: Duration = Duration::from_secs(30);
pub const PER_PARTITION: i64 = 10;

pub struct Broker {
    pub dir: PathBuf,
    pub bootstrap: String,
}

pub fn script() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../../scripts/kafka.sh")
}

impl Broker {
    pub fn start(name: &str) -> Broker {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "orderflowctl-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // The guard exists before the start, so a half-started broker is stopped too.
        let mut broker = Broker {
            dir,
            bootstrap: String::new(),
        };
        // kafka.sh draws the port (and draws again should another process take it first)
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&broker.dir)
            .env_remove("KAFKA_PORT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kafka.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        broker.bootstrap = stdout
            .lines()
            .find_map(|l| l.strip_prefix("BOOTSTRAP="))
            .unwrap_or_else(|| panic!("kafka.sh printed no BOOTSTRAP=: {stdout}"))
            .to_string();
        broker
    }

    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig::new(self.bootstrap.clone())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Poll `f` until it returns `Some`, or panic after `timeout` naming `what`.
pub fn wait_for<R>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal executor for rdkafka's admin futures (driven by rdkafka's own thread).
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

pub fn create_topic(kafka: &KafkaConfig, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let res = block_on(admin.create_topics([&new], &opts)).unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    wait_for("topic metadata", Duration::from_secs(10), || {
        orderflow_runtime::topics::partition_count(kafka, topic, T)
            .ok()
            .flatten()
            .filter(|n| *n == partitions)
    });
}

/// `PER_PARTITION` records on each partition; record i of every partition has timestamp
/// `base_ms + i * 1000`.
pub fn produce(kafka: &KafkaConfig, topic: &str, partitions: i32, base_ms: i64) {
    let producer: BaseProducer = kafka.producer("orderflowctl-test").create().unwrap();
    for p in 0..partitions {
        for i in 0..PER_PARTITION {
            let payload = format!("{{\"p\":{p},\"i\":{i}}}");
            let key = format!("k{p}-{i}");
            producer
                .send(
                    BaseRecord::to(topic)
                        .partition(p)
                        .key(&key)
                        .payload(&payload)
                        .timestamp(base_ms + i * 1000),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

pub fn ctl(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderflowctl"))
        .arg(format!("--request-timeout-ms={}", T.as_millis()))
        .args(args)
        .env("KAFKA_BOOTSTRAP", bootstrap)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn ts(ms: i64) -> ResetTo {
    ResetTo::Timestamp(DateTime::<Utc>::from_timestamp_millis(ms).unwrap())
}

/// One of Kafka's own command-line tools (`scripts/kafka.sh tool NAME ARGS`); its stdout.
pub fn kafka_tool(name: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .arg("tool")
        .arg(name)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kafka.sh tool {name} {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The rows of a table printed by `kafka-consumer-groups` for `group`, each split on
/// whitespace, header and blank lines left out.
pub fn tool_rows(table: &str, group: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|r| r.first().is_some_and(|g| g == group))
        .collect()
}

/// `(partition, new offset)` of `kafka-consumer-groups --reset-offsets ... --dry-run`.
pub fn tool_plan(bootstrap: &str, group: &str, topic: &str, to: &[&str]) -> Vec<(i32, i64)> {
    let mut args = vec![
        "--bootstrap-server",
        bootstrap,
        "--reset-offsets",
        "--group",
        group,
        "--topic",
        topic,
        "--dry-run",
    ];
    args.extend_from_slice(to);
    let out = kafka_tool("kafka-consumer-groups", &args);
    // GROUP TOPIC PARTITION NEW-OFFSET
    let mut plan: Vec<(i32, i64)> = tool_rows(&out, group)
        .iter()
        .map(|r| (r[2].parse().unwrap(), r[3].parse().unwrap()))
        .collect();
    plan.sort_unstable();
    assert!(!plan.is_empty(), "no plan in {out}");
    plan
}

/// DeleteRecords: on each `(partition, before)`, every record below offset `before` goes;
/// returns the new low watermarks (log start offsets).
pub fn delete_records(kafka: &KafkaConfig, topic: &str, cuts: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, before) in cuts {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*before))
            .unwrap();
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let done = block_on(admin.delete_records(&tpl, &opts)).unwrap();
    let lows = done
        .elements()
        .iter()
        .map(|e| {
            assert!(
                e.error().is_ok(),
                "DeleteRecords {topic}[{}]",
                e.partition()
            );
            (e.partition(), e.offset().to_raw().unwrap_or(-1))
        })
        .collect();
    drop(done);
    drop(tpl);
    lows
}

/// A group member (subscribe) that consumed every record and committed `upto` on each
/// partition (as if it had processed the records below it).
pub fn member_that_committed(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    partitions: i32,
    upto: i64,
) -> BaseConsumer {
    let consumer: BaseConsumer = kafka.consumer(group, "orderflowctl-test").create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut seen = 0;
    wait_for(
        "the member to consume every record",
        Duration::from_secs(20),
        || {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                assert_eq!(m.topic(), topic);
                seen += 1;
            }
            (seen == i64::from(partitions) * PER_PARTITION).then_some(())
        },
    );
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(upto))
            .unwrap();
    }
    // A commit can be refused during a rebalance; retry until it is accepted.
    wait_for("the member's commit", Duration::from_secs(10), || {
        consumer.poll(Duration::from_millis(50));
        consumer.commit(&tpl, CommitMode::Sync).ok()
    });
    drop(tpl);
    consumer
}

/// `(partition, offset)` of the group's committed offsets, and whether every partition
/// carries the reset marker.
pub fn committed(kafka: &KafkaConfig, group: &str, topic: &str) -> (Vec<(i32, Option<i64>)>, bool) {
    let c = orderflowctl::committed_offsets(kafka, group, &[topic], T).unwrap();
    let marked = c
        .iter()
        .all(|c| matches!(c.mark(), Some(CommitMark::Reset { .. })));
    (c.iter().map(|c| (c.partition, c.offset)).collect(), marked)
}
