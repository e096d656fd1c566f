//! The Kafka side of the controller's tests: log ends, group members, a stray consumer,
//! records produced at given times, DeleteRecords and commits from outside a group.

use std::time::Duration;

use orderflow_events::{GROUP_ANALYTICS, TOPIC_INVENTORY_EVENTS, TOPIC_ORDERS};
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::wait;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub async fn log_ends(kafka: &KafkaConfig) -> anyhow::Result<Vec<orderflowctl::PartitionLag>> {
    let k = kafka.clone();
    Ok(tokio::task::spawn_blocking(move || {
        orderflowctl::lag(
            &k,
            GROUP_ANALYTICS,
            &[TOPIC_ORDERS, TOPIC_INVENTORY_EVENTS],
            Duration::from_secs(10),
        )
    })
    .await??)
}

/// A consumer in group `analytics` outside any Deployment (e.g. someone's laptop): the
/// group never becomes empty while it runs.
pub fn stray_consumer(
    kafka: &KafkaConfig,
) -> anyhow::Result<(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let consumer: BaseConsumer = kafka.consumer(GROUP_ANALYTICS, "stray").create()?;
    consumer.subscribe(&[TOPIC_ORDERS])?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        consumer.unsubscribe();
    });
    Ok((stop, t))
}

pub async fn wait_group_members(kafka: &KafkaConfig, n: usize) -> anyhow::Result<()> {
    wait::until(
        &format!("{n} member(s) in group {GROUP_ANALYTICS}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let k = kafka.clone();
            async move {
                let info = tokio::task::spawn_blocking(move || {
                    orderflowctl::describe_group(&k, GROUP_ANALYTICS, Duration::from_secs(5))
                })
                .await
                .ok()?
                .ok()?;
                (info.members == n && info.state == "Stable").then_some(())
            }
        },
    )
    .await
}

/// `per_partition` records on each of `topic`'s 3 partitions (orderflow's topics); record i
/// is written at `base_ms + i * 1000` (its Kafka timestamp).
pub async fn produce_at(
    kafka: &KafkaConfig,
    topic: &str,
    per_partition: i64,
    base_ms: i64,
) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let partitions = 3;
    let producer: FutureProducer = kafka.producer("rc-test").create()?;
    for p in 0..partitions {
        for i in 0..per_partition {
            let payload = format!("{{\"p\":{p},\"i\":{i}}}");
            let record = FutureRecord::<(), _>::to(topic)
                .partition(p)
                .payload(&payload)
                .timestamp(base_ms + i * 1000);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)?;
        }
    }
    Ok(())
}

/// DeleteRecords: every record of `topic[partition]` below offset `before` goes (what
/// retention does to old segments). Returns the new log start offset.
pub async fn delete_records(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    before: i64,
) -> anyhow::Result<i64> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::{Offset, TopicPartitionList};
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(before))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let done = admin.delete_records(&tpl, &opts).await?;
    let low = match done.elements().first() {
        Some(e) => {
            e.error()?;
            e.offset().to_raw().unwrap_or(-1)
        }
        None => anyhow::bail!("DeleteRecords {topic}[{partition}]: no answer"),
    };
    Ok(low)
}

/// Commit `offsets` (topic, partition, offset) for `group` from outside it, as a consumer of
/// an empty group that has read that far would.
pub fn commit_offsets(
    kafka: &KafkaConfig,
    group: &str,
    offsets: &[(String, i32, i64)],
) -> anyhow::Result<()> {
    use rdkafka::consumer::CommitMode;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = kafka.consumer(group, "rc-test-commit").create()?;
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}
