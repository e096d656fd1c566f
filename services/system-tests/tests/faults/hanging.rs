//! A transaction that Kafka itself leaves open for good ("hanging"), made the way it
//! happens: its coordinator skips the marker of a partition that has no leader at that
//! moment ("Couldn't find leader endpoint ... likely deleted already and hence can be
//! skipped") and completes the transaction all the same. The next owner of the partition
//! must end it, or its records become part of the owner's first commit there.

use std::time::Duration;

use inventory_service::worker::{HANGING_ABORTED, HANGING_FOUND, HEAL_KEY};
use orderflow_events::{
    GROUP_INVENTORY, TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER, TOPIC_ORDERS,
};
use orderflow_runtime::topics::topic_config;
use orderflow_runtime::KafkaConfig;
use orderflow_testkit::procs::test_dir;
use orderflow_testkit::{topics, wait, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::load::{accepted, Load};
use super::{partition_state, small_stock, start_services, stop_all, verify_after_fault};

/// The key of the records the previous owner leaves in its hanging transaction.
const LEFT_OPEN: &str = "left-open-by-kafka";

/// The node that alone holds the changelog topics.
const CHANGELOG_NODE: usize = 3;

/// Three nodes; `orders` replicated on all, `inventory-events` and `inventory-ledger` on
/// node 3 alone. A previous owner of `orders` partition 0 (inventory's transactional id
/// for it, a member of its group) writes to both changelog partitions and hands over its
/// offset; node 3 is killed, and the commit then finds both partitions without a leader:
/// Kafka completes it without their markers. With node 3 back, the records hang. Inventory
/// takes the partition over: the hanging records are aborted (never seen by a
/// `read_committed` reader, before or after inventory's own commits there), and every
/// order is decided once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_kafka_left_open_is_aborted_by_the_next_owner() -> anyhow::Result<()> {
    let dir = test_dir("hanging");
    let broker = Broker::start_cluster(&dir.join("kafka"), 3)?;
    let kafka = broker.kafka();
    create_topics(&kafka).await?;

    leave_open(&kafka, &broker).await?;
    broker.start_again()?;
    events_0_led(&kafka, true).await?;
    for topic in [TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER] {
        let (_, hw, lso) = open_on_0(&kafka, topic)?;
        assert!(
            hw > lso,
            "{topic}/0 holds a transaction Kafka left open (high watermark {hw}, last stable offset {lso})"
        );
    }

    let logs = dir.join("logs");
    let (stock, stock_env) = small_stock(20);
    let [mut order, mut inventory, mut analytics] =
        start_services(&broker.bootstrap, &logs, stock_env, true, [&[], &[], &[]]).await?;
    let load = Load::start(order.url.clone(), 4);
    load.accept(300, "300 orders accepted").await?;
    let tally = load.tally.clone();
    load.stop().await?;
    let on_orders = verify_after_fault(
        &kafka,
        &tally,
        [&mut order, &mut inventory, &mut analytics],
        &stock,
    )
    .await?;

    for topic in [TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER] {
        let (_, hw, lso) = open_on_0(&kafka, topic)?;
        assert_eq!(
            hw, lso,
            "{topic}/0: no transaction open once inventory is idle"
        );
        let committed = topics::read_all(&kafka, topic)?;
        assert!(
            !committed.iter().any(left_open),
            "{topic}: the hanging records are not committed by inventory's commits"
        );
        let all = topics::read_all_uncommitted(&kafka, topic)?;
        assert!(
            all.iter().any(left_open),
            "{topic}: the hanging records are still in the log (aborted)"
        );
        // inventory's own record, which carried the abort to the open partition
        let heal = |r: &topics::Record| r.key.as_deref() == Some(HEAL_KEY.as_bytes());
        assert!(
            all.iter().any(heal) && !committed.iter().any(heal),
            "{topic}: inventory wrote its {HEAL_KEY} record there, and aborted it"
        );
    }
    assert_eq!(
        inventory
            .metric(
                "orderflow_inventory_hanging_transactions_aborted_total",
                &[]
            )
            .await?,
        1.0,
        "one hanging transaction aborted"
    );
    let log = std::fs::read_to_string(&inventory.log)?;
    assert!(
        log.contains(HANGING_FOUND) && log.contains(HANGING_ABORTED),
        "inventory says what it aborted"
    );
    println!(
        "hanging transaction: left open on inventory-events/0 and inventory-ledger/0 by a \
         commit while node {CHANGELOG_NODE} was down; inventory aborted it at its take-over; \
         {} orders accepted, {on_orders} on orders, each decided once",
        accepted(&tally)
    );
    stop_all([order, inventory, analytics], broker, &dir).await
}

/// `orders` on every node; the changelog topics on [`CHANGELOG_NODE`] alone (so
/// `min.insync.replicas` 1), with their usual configuration.
async fn create_topics(kafka: &KafkaConfig) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let node = i32::try_from(CHANGELOG_NODE)?;
    let replicas = [node];
    let alone: Vec<&[i32]> = vec![&replicas[..]; 3];
    let configs = [TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER].map(|t| (t, topic_config(t)));
    let mut topics = vec![NewTopic::new(TOPIC_ORDERS, 3, TopicReplication::Fixed(3))];
    for (name, config) in &configs {
        let mut t = NewTopic::new(name, 3, TopicReplication::Variable(&alone))
            .set("min.insync.replicas", "1");
        for (k, v) in config {
            t = t.set(k, v);
        }
        topics.push(t);
    }
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

fn left_open(r: &topics::Record) -> bool {
    r.key.as_deref() == Some(LEFT_OPEN.as_bytes())
}

/// Wait until `inventory-events` partition 0 has a leader (`led`) or none.
async fn events_0_led(kafka: &KafkaConfig, led: bool) -> anyhow::Result<()> {
    let what = match led {
        true => "inventory-events/0 to have a leader again",
        false => "inventory-events/0 to have no leader",
    };
    wait::until(
        what,
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            partition_state(kafka, TOPIC_INVENTORY_EVENTS, 0)
                .ok()
                .filter(|(leader, _, _)| (*leader >= 0) == led)
        },
    )
    .await
    .map(drop)
}

/// Partition 0 of `topic`: (0, high watermark, last stable offset).
fn open_on_0(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<(i32, i64, i64)> {
    topics::open_transactions(kafka, topic)?
        .into_iter()
        .find(|(p, _, _)| *p == 0)
        .ok_or_else(|| anyhow::anyhow!("{topic} has no partition 0"))
}

/// The previous owner of `orders` partition 0 commits a transaction on both changelog
/// partitions (and its offset) while they have no leader; Kafka completes it without
/// their markers.
async fn leave_open(kafka: &KafkaConfig, broker: &Broker) -> anyhow::Result<()> {
    let member: BaseConsumer = kafka.consumer(GROUP_INVENTORY, "previous-owner").create()?;
    member.subscribe(&[TOPIC_ORDERS])?;
    let group = wait::until(
        "the previous owner to join group inventory",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async {
            let _ = member.poll(Duration::from_millis(100));
            let assigned = member.assignment().ok()?.count() > 0;
            assigned.then(|| member.group_metadata()).flatten()
        },
    )
    .await?;
    let producer: FutureProducer = kafka
        .transactional_producer("previous-owner", "orderflow-inventory-0")
        .create()?;
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout)?;
    producer.begin_transaction()?;
    for topic in [TOPIC_INVENTORY_EVENTS, TOPIC_INVENTORY_LEDGER] {
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(LEFT_OPEN)
            .payload("not a record of this build");
        producer
            .send(record, timeout)
            .await
            .map_err(|(e, _)| anyhow::anyhow!("writing to {topic}/0: {e}"))?;
    }
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(TOPIC_ORDERS, 0, Offset::Offset(0))?;
    producer.send_offsets_to_transaction(&offsets, &group, timeout)?;

    broker.kill_node(CHANGELOG_NODE)?;
    events_0_led(kafka, false).await?;
    producer.commit_transaction(timeout)?;
    wait::until(
        "the coordinator to complete the commit",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let out = orderflow_lab::procs::kafka_tool(
                "kafka-transactions",
                &[
                    "--bootstrap-server",
                    &kafka.bootstrap,
                    "describe",
                    "--transactional-id",
                    "orderflow-inventory-0",
                ],
            )
            .ok()?;
            out.contains("CompleteCommit").then_some(())
        },
    )
    .await?;
    drop(producer);
    member.unsubscribe();
    drop(member);
    Ok(())
}
