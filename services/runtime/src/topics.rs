//! Creating orderflow's topics at start-up (locally; in Kubernetes Strimzi's KafkaTopic
//! resources own them and this finds them already there).

use std::sync::Arc;
use std::time::{Duration, Instant};

use orderflow_events::{
    ALL_TOPICS, COMPACTED_SEGMENT_MS, COMPACTED_TOPICS, PARTITIONS, RETENTION_MS,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::http::Health;
use crate::kafka::KafkaConfig;

#[derive(Debug, Error)]
pub enum TopicError {
    #[error("Kafka at {bootstrap} did not answer within {secs}s: {last}")]
    Unreachable {
        bootstrap: String,
        secs: u64,
        last: String,
    },
    #[error("creating topic {topic} failed: {reason}")]
    Create { topic: String, reason: String },
    #[error("Kafka client error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Number of partitions of `topic`, or `None` when the topic does not exist.
pub fn partition_count(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, TopicError> {
    Ok(partition_counts(kafka, &[topic], timeout)?.pop().flatten())
}

/// Number of partitions of each of `topics` (`None`: it does not exist), asked with one
/// client: one connection for all of them.
pub fn partition_counts(
    kafka: &KafkaConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<Option<i32>>, TopicError> {
    let consumer: BaseConsumer = kafka.metadata_client("orderflow-metadata").create()?;
    topics
        .iter()
        .map(|topic| count_of(&consumer, topic, timeout))
        .collect()
}

fn count_of(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, TopicError> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0))
}

/// Partition count of `topic`, waiting up to `timeout` for it to exist (another service
/// or Strimzi may be creating it right now).
pub fn wait_for_topic(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<i32, TopicError> {
    Ok(wait_for_topics(kafka, &[topic], timeout)?
        .pop()
        .unwrap_or_default())
}

/// Partition counts of `topics`, in their order, waiting up to `timeout` for all of them
/// to exist; one client asks for all of them.
pub fn wait_for_topics(
    kafka: &KafkaConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<i32>, TopicError> {
    let consumer: BaseConsumer = kafka.metadata_client("orderflow-metadata").create()?;
    let start = Instant::now();
    loop {
        let counts: Result<Vec<Option<i32>>, TopicError> = topics
            .iter()
            .map(|topic| count_of(&consumer, topic, Duration::from_secs(5)))
            .collect();
        let last = match counts {
            Ok(c) => match topics.iter().zip(&c).find(|(_, n)| n.is_none()) {
                None => return Ok(c.into_iter().flatten().collect()),
                Some((topic, _)) => format!("topic {topic} does not exist"),
            },
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(TopicError::Unreachable {
                bootstrap: kafka.bootstrap.clone(),
                secs: timeout.as_secs(),
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Wait until the broker answers a metadata request, up to `timeout`.
pub fn wait_for_broker(kafka: &KafkaConfig, timeout: Duration) -> Result<(), TopicError> {
    let consumer: BaseConsumer = kafka.metadata_client("orderflow-probe").create()?;
    let start = Instant::now();
    loop {
        match consumer.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() >= timeout => {
                return Err(TopicError::Unreachable {
                    bootstrap: kafka.bootstrap.clone(),
                    secs: timeout.as_secs(),
                    last: e.to_string(),
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Wait, as long as it takes, until the broker answers a metadata request, then create
/// orderflow's topics ([`ensure_topics`]; a failure there is logged, the topics may be
/// managed elsewhere). Meanwhile `/readyz` says why the service is not ready. A service
/// started before Kafka (a node reboot, a rolling broker) stays up and connects when Kafka
/// comes, instead of exiting after a start-up timeout. Returns `Ok(false)` when `token` was
/// cancelled first.
pub async fn connect(
    kafka: &KafkaConfig,
    health: &Health,
    token: &CancellationToken,
) -> Result<bool, TopicError> {
    let probe: Arc<BaseConsumer> = Arc::new(kafka.metadata_client("orderflow-probe").create()?);
    let started = Instant::now();
    let answered = loop {
        let c = probe.clone();
        let answer = tokio::task::spawn_blocking(move || {
            c.fetch_metadata(None, Duration::from_secs(2)).map(|_| ())
        })
        .await;
        match answer {
            Ok(Ok(())) => break true,
            Ok(Err(e)) => {
                health.set_not_ready(format!("Kafka at {} unreachable: {e}", kafka.bootstrap))
            }
            Err(e) => health.set_not_ready(format!("probing Kafka failed: {e}")),
        }
        tokio::select! {
            _ = token.cancelled() => break false,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    // Destroying a client can block (librdkafka joins its threads): not on the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(probe)).await;
    if !answered {
        return Ok(false);
    }
    tracing::info!(
        bootstrap = %kafka.bootstrap,
        waited_seconds = started.elapsed().as_secs_f64(),
        "Kafka answered"
    );
    health.set_not_ready("connected to Kafka; creating topics");
    if let Err(e) = ensure_topics(kafka).await {
        tracing::warn!(error = %e, "could not ensure topics (they may be managed elsewhere)");
    }
    Ok(true)
}

/// Create every orderflow topic that does not exist yet (3 partitions; 7-day retention, or
/// compaction for the state stores `inventory-ledger` and
/// `analytics-snapshots`: [`topic_config`]). Existing topics are left as they are.
pub async fn ensure_topics(kafka: &KafkaConfig) -> Result<(), TopicError> {
    ensure_named_topics(kafka, &ALL_TOPICS).await
}

/// The configuration orderflow creates `topic` with (deploy/topics.yaml says the same for
/// Strimzi): `retention.ms` 7 days, or for a compacted topic ([`COMPACTED_TOPICS`])
/// `cleanup.policy=compact` with an hourly `segment.ms`.
pub fn topic_config(topic: &str) -> Vec<(&'static str, String)> {
    if COMPACTED_TOPICS.contains(&topic) {
        compacted_config()
    } else {
        vec![("retention.ms", RETENTION_MS.to_string())]
    }
}

/// The configuration of a state store: `cleanup.policy=compact` with an hourly `segment.ms`.
pub fn compacted_config() -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "compact".to_string()),
        ("segment.ms", COMPACTED_SEGMENT_MS.to_string()),
    ]
}

/// [`ensure_named_topics`] for state stores not in [`COMPACTED_TOPICS`] by name (e.g.
/// `<group>-snapshots` of an analytics running as another group): created compacted
/// ([`compacted_config`]) when missing.
pub async fn ensure_compacted_topics(
    kafka: &KafkaConfig,
    topics: &[&str],
) -> Result<(), TopicError> {
    create_missing(kafka, topics, |_| compacted_config()).await
}

/// [`ensure_topics`] for the given topic names (same partitions, [`topic_config`]). Topics
/// that exist already are found with one metadata client and not asked for again: a
/// restart creates nothing and opens no admin client (a `CreateTopics` round trip to the
/// controller for topics that exist cost a restart about half a second).
pub async fn ensure_named_topics(kafka: &KafkaConfig, topics: &[&str]) -> Result<(), TopicError> {
    create_missing(kafka, topics, topic_config).await
}

/// Create those of `topics` that do not exist, each with `config(topic)`.
async fn create_missing(
    kafka: &KafkaConfig,
    topics: &[&str],
    config: impl Fn(&str) -> Vec<(&'static str, String)>,
) -> Result<(), TopicError> {
    let missing = missing_topics(kafka, topics).await;
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let configs: Vec<Vec<(&str, String)>> = missing.iter().map(|t| config(t)).collect();
    let new: Vec<NewTopic> = missing
        .iter()
        .zip(&configs)
        .map(|(t, config)| {
            config.iter().fold(
                NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(-1)),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions = PARTITIONS, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError::Create {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Which of `topics` do not exist. When that cannot be told (metadata refused or timed
/// out), all of them: creating an existing topic is harmless (`TopicAlreadyExists`).
async fn missing_topics<'a>(kafka: &KafkaConfig, topics: &[&'a str]) -> Vec<&'a str> {
    let k = kafka.clone();
    let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let counts = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        partition_counts(&k, &refs, Duration::from_secs(5))
    })
    .await;
    match counts {
        Ok(Ok(counts)) => topics
            .iter()
            .zip(counts)
            .filter(|(_, n)| n.is_none())
            .map(|(t, _)| *t)
            .collect(),
        _ => topics.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_events::{TOPIC_ANALYTICS_SNAPSHOTS, TOPIC_INVENTORY_LEDGER, TOPIC_ORDERS};

    #[test]
    fn the_state_stores_are_compacted_the_history_topics_kept_seven_days() {
        for store in [TOPIC_INVENTORY_LEDGER, TOPIC_ANALYTICS_SNAPSHOTS] {
            assert!(
                ALL_TOPICS.contains(&store),
                "{store} is created at start-up"
            );
            let config = topic_config(store);
            assert!(
                config.contains(&("cleanup.policy", "compact".into())),
                "{store}"
            );
            assert!(!config.iter().any(|(k, _)| *k == "retention.ms"), "{store}");
        }
        assert_eq!(
            topic_config(TOPIC_ORDERS),
            vec![("retention.ms", "604800000".to_string())]
        );
        // a store named after another group (<group>-snapshots) is created the same way
        assert_eq!(compacted_config(), topic_config(TOPIC_ANALYTICS_SNAPSHOTS));
    }
}
