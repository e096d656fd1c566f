//! Kafka client settings shared by every producer, consumer and admin client.

use rdkafka::ClientConfig;

use crate::config::{trimmed, ConfigError};

/// `fetch.wait.max.ms` of a [`KafkaConfig::reader`]: how long the broker may hold a fetch
/// that found nothing new.
const READER_FETCH_WAIT_MS: &str = "20";
/// `fetch.wait.max.ms` of a [`KafkaConfig::follower`] (librdkafka's default): a fetch that
/// finds nothing new is answered as soon as a record comes, else after this long. At the
/// reader's 20 ms, order-service's catalogue follower sent 50 fetches a second to an idle
/// broker for as long as it ran, which cost the broker 80 ms of CPU a second (2 cores).
const FOLLOWER_FETCH_WAIT_MS: &str = "500";
/// Default bootstrap servers: a local broker on Kafka's default port.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// A group consumer's `session.timeout.ms` unless `KAFKA_SESSION_TIMEOUT_MS` sets one.
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 10_000;

/// How many KiB of fetched records a consumer keeps ahead of the service unless
/// `KAFKA_FETCH_QUEUE_KB` sets it (librdkafka's own default is 64 MiB). Measured with
/// `scripts/measure-inventory.sh 200000` (BATCH_MAX 5000, transactions), single runs: 4 MiB
/// 49k decisions/s and 117 MiB peak RSS, 16 MiB 55k and 141 MiB, 64 MiB 57k and 160 MiB.
pub const DEFAULT_FETCH_QUEUE_KB: u32 = 16384;

/// librdkafka `fetch.queue.backoff.ms`: how long a partition whose fetched records fill the
/// queue waits before it is fetched again. librdkafka 2.x waits 1000 ms, which made a
/// service catching up stall about 0.9 s of every second: analytics replaying 600,000 records
/// took 7.3 s with it and 1.6 s with 10 ms (same broker, same records).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The Kafka settings every service shares (flattened into each one's settings; see
/// [`crate::config`]). A service whose producers want another `linger.ms` default sets it
/// on its command: `#[command(mut_arg("kafka_linger_ms", |a| a.default_value("0")))]`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = DEFAULT_BOOTSTRAP)]
    pub kafka_bootstrap: String,

    /// librdkafka `security.protocol` for TLS/SASL: PLAINTEXT, SSL, SASL_PLAINTEXT or
    /// SASL_SSL. Unset: librdkafka's default (plaintext).
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,

    /// librdkafka `sasl.mechanism`, e.g. SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,

    /// librdkafka `sasl.username`.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// librdkafka `sasl.password` (the Helm chart reads it from a Secret).
    #[arg(long, env = "KAFKA_SASL_PASSWORD")]
    pub kafka_sasl_password: Option<String>,

    /// librdkafka `ssl.ca.location`: the CA certificate(s) that signed the brokers'
    /// certificates.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,

    /// The producers' `linger.ms`: how long a producer waits to fill a batch.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 5, value_parser = trimmed::<u32>)]
    pub kafka_linger_ms: u32,

    /// The producers' `compression.type`: none, gzip, snappy, lz4 or zstd.
    #[arg(long, env = "KAFKA_COMPRESSION", default_value = "lz4", value_parser = trimmed::<String>)]
    pub kafka_compression: String,

    /// A group consumer's `session.timeout.ms`: Kafka expires a member that stopped
    /// heartbeating (a crashed replica) after this long and hands its partitions to the
    /// others. Kafka refuses values outside the broker's `group.min.session.timeout.ms` (6000
    /// by default) to `group.max.session.timeout.ms`.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = DEFAULT_SESSION_TIMEOUT_MS, value_parser = trimmed::<u32>)]
    pub kafka_session_timeout_ms: u32,

    /// The most a consumer fetches ahead of the service, in KiB (librdkafka
    /// `queued.max.messages.kbytes`; librdkafka's default is 64 MiB): what bounds the records
    /// a consumer holds however long the backlog. Too small a queue makes a catching-up
    /// service wait for fetches.
    #[arg(long, env = "KAFKA_FETCH_QUEUE_KB", default_value_t = DEFAULT_FETCH_QUEUE_KB, value_parser = fetch_queue_kb)]
    pub kafka_fetch_queue_kb: u32,

    /// Static group membership (KIP-345): a consumer restarted with the same id within the
    /// session timeout takes its partitions back at once, without a rebalance. Leave it unset
    /// for a consumer whose group must become empty when it stops (a static member does not
    /// leave the group on shutdown, so an offset reset would have to wait for its session to
    /// expire: analytics before a replay).
    #[arg(long, env = "GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,

    /// librdkafka's `debug` contexts for every client, e.g. `cgrp` (group membership,
    /// assignments, committed-offset fetches) or `cgrp,fetch,eos`: what to turn on when a
    /// consumer holds partitions but reads nothing. Its lines are logged at DEBUG with target
    /// `librdkafka`, so `RUST_LOG` must let them through too (`info,librdkafka=debug`).
    #[arg(long, env = "KAFKA_DEBUG")]
    pub kafka_debug: Option<String>,
}

impl KafkaArgs {
    /// The Kafka settings from the environment alone, for a tool with a command line of its
    /// own (orderflowctl); a variable that does not parse is an error naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`KafkaArgs::from_env`] with `var` giving a variable's value by name.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            kafka: KafkaArgs,
        }
        let only: Only = crate::config::parse_from(["kafka"], var)?;
        Ok(only.kafka)
    }
}

/// Client settings built from [`KafkaArgs`] (or [`KafkaConfig::new`] in tests and tools).
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    extra: Vec<(String, String)>,
    instance_id: Option<String>,
    session_timeout_ms: u32,
    linger_ms: Option<u32>,
    compression: Option<String>,
    fetch_queue_kb: u32,
}

impl From<&KafkaArgs> for KafkaConfig {
    fn from(args: &KafkaArgs) -> Self {
        let mut cfg = Self::new(args.kafka_bootstrap.clone());
        cfg.instance_id = args.group_instance_id.clone();
        cfg.session_timeout_ms = args.kafka_session_timeout_ms;
        cfg.linger_ms = Some(args.kafka_linger_ms);
        cfg.compression = Some(args.kafka_compression.clone());
        cfg.fetch_queue_kb = args.kafka_fetch_queue_kb;
        for (value, prop) in [
            (&args.kafka_security_protocol, "security.protocol"),
            (&args.kafka_sasl_mechanism, "sasl.mechanism"),
            (&args.kafka_sasl_username, "sasl.username"),
            (&args.kafka_sasl_password, "sasl.password"),
            (&args.kafka_ssl_ca_location, "ssl.ca.location"),
            (&args.kafka_debug, "debug"),
        ] {
            if let Some(v) = value {
                cfg.extra.push((prop.to_string(), v.clone()));
            }
        }
        cfg
    }
}

impl KafkaConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            extra: Vec::new(),
            instance_id: None,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            linger_ms: None,
            compression: None,
            fetch_queue_kb: DEFAULT_FETCH_QUEUE_KB,
        }
    }

    /// The settings from the environment alone ([`KafkaArgs::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::from(&KafkaArgs::from_env()?))
    }

    /// Settings common to every client.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("socket.keepalive.enable", "true")
            .set("reconnect.backoff.max.ms", "2000");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// A producer that never loses or duplicates an acknowledged record:
    /// idempotence on (acks=all, retries, ordering per partition kept). `linger.ms` is
    /// `KAFKA_LINGER_MS` (5 unless set, see [`KafkaArgs`]).
    pub fn producer(&self, client_id: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.unwrap_or(5).to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "60000")
            // orderflow's topics are created on purpose (topics::ensure_topics locally,
            // KafkaTopic resources under Strimzi). A record sent before they exist (an order
            // posted while Kafka was down) must not make a broker with auto-creation on create
            // the topic with its default partition count (librdkafka's producer default is true).
            .set("allow.auto.create.topics", "false")
            .set(
                "compression.type",
                self.compression.as_deref().unwrap_or("lz4"),
            );
        c
    }

    /// A transactional producer (`transactional.id` = `txn_id`): its records and the consumer
    /// offsets sent with them become visible together, to `read_committed` readers, or not at
    /// all. A new producer with the same id aborts what its predecessor left open and fences
    /// it off, so the id must name the unit of work (e.g. an input partition), not a process.
    pub fn transactional_producer(&self, client_id: &str, txn_id: &str) -> ClientConfig {
        let mut c = self.producer(client_id);
        c.set("transactional.id", txn_id)
            .set("transaction.timeout.ms", "60000");
        c
    }

    /// A group consumer that commits only what the service has finished with: no auto
    /// commit, start from the earliest record when the group has no committed offset.
    pub fn consumer(&self, group: &str, client_id: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // well under a third of the session, as Kafka asks
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 6).clamp(100, 1000).to_string(),
            )
            .set("partition.assignment.strategy", "range");
        self.bound_fetches(&mut c);
        if let Some(id) = &self.instance_id {
            c.set("group.instance.id", id);
        }
        c
    }

    /// A client for metadata requests only (topics, partitions, is the broker there): no
    /// group, so creating and closing it is quick (55-65 ms to close against 155-180 ms for
    /// a [`KafkaConfig::reader`], measured on the local broker).
    pub fn metadata_client(&self, client_id: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("client.id", client_id);
        c
    }

    /// A consumer outside any group (explicit `assign`, no commits): for reading a topic
    /// to rebuild state, or for tools. librdkafka needs a group.id even when it is unused
    /// (`assign` fails with "Unknown group" without one); closing a client that has one
    /// takes about 100 ms longer (measured), so metadata alone goes through
    /// [`KafkaConfig::metadata_client`].
    pub fn reader(&self, client_id: &str) -> ClientConfig {
        self.groupless(client_id, READER_FETCH_WAIT_MS)
    }

    /// A [`KafkaConfig::reader`] that keeps following its partitions once it has read them
    /// (order-service's catalogue): a fetch that finds nothing new waits at the broker for
    /// the next record instead of being asked again 50 times a second. Ask its watermarks
    /// before it fetches (see `reader`). Its group id is a reader's (`<client_id>-reader`).
    pub fn follower(&self, client_id: &str) -> ClientConfig {
        self.groupless(client_id, FOLLOWER_FETCH_WAIT_MS)
    }

    /// A reader's or a follower's settings, `fetch_wait_ms` being its `fetch.wait.max.ms`.
    fn groupless(&self, client_id: &str, fetch_wait_ms: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", format!("{client_id}-reader"))
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            // A reader reads up to an end fixed beforehand, then asks for watermarks or
            // offsets on the same connection, where the broker answers requests in order:
            // behind a fetch parked at the log end for librdkafka's default 500 ms. Measured:
            // a ledger rebuild's two ListOffsets after its read took 1 s each. A follower
            // asks for nothing after its start, so its fetches may wait.
            .set("fetch.wait.max.ms", fetch_wait_ms);
        self.bound_fetches(&mut c);
        c
    }

    /// Bound what a consumer fetches ahead to `KAFKA_FETCH_QUEUE_KB` (librdkafka caps a fetch
    /// response to the queue's size).
    fn bound_fetches(&self, c: &mut ClientConfig) {
        let kb = self.fetch_queue_kb;
        c.set("queued.max.messages.kbytes", kb.to_string())
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    }
}

/// `KAFKA_FETCH_QUEUE_KB`: at least 1024 (one fetch must hold the largest record Kafka
/// accepts by default, 1 MiB) and within librdkafka's bound (2,097,151).
fn fetch_queue_kb(s: &str) -> Result<u32, String> {
    match trimmed::<u32>(s) {
        Ok(n) if (1024..=2_097_151).contains(&n) => Ok(n),
        Ok(_) => Err("must be between 1024 and 2097151 (KiB)".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Hand `record` to the producer now, waiting while its local queue is full; the returned
/// future resolves when the broker acknowledged (or definitively refused) the record.
/// Lets a caller send a whole batch first and await the acknowledgements together.
pub fn enqueue<K, P>(
    producer: &rdkafka::producer::FutureProducer,
    mut record: rdkafka::producer::FutureRecord<'_, K, P>,
) -> Result<rdkafka::producer::DeliveryFuture, rdkafka::error::KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(f) => return Ok(f),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                producer.poll(std::time::Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// The fatal error of a client, if it had one: such a client (a consumer fenced as a static
/// member, an idempotent producer that lost its sequence) never works again and must be
/// replaced by a new one.
pub fn fatal<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
) -> Option<String> {
    client
        .fatal_error()
        .map(|(code, reason)| format!("fatal Kafka client error {code}: {reason}"))
}

/// The error of a delivery, if it failed.
pub fn delivery_error(
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Option<String> {
    match result {
        Ok(Ok(_)) => None,
        Ok(Err((e, _))) => Some(e.to_string()),
        Err(_) => Some("the producer dropped the record".into()),
    }
}

/// Ask the broker for metadata through `producer` every 2 s until `token` is cancelled, and
/// hand each outcome to `report` (`None`: Kafka answered; `Some`: the request's error). A consumer with
/// nothing to read does not notice a broker that is gone; this keeps a service's
/// `/readyz` honest while it is idle as well as while it is busy.
pub async fn probe_reachable(
    producer: rdkafka::producer::FutureProducer,
    token: tokio_util::sync::CancellationToken,
    mut report: impl FnMut(Option<String>) + Send,
) {
    loop {
        let p = producer.clone();
        let probe = tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::client(&p)
                .fetch_metadata(None, std::time::Duration::from_secs(3))
                .map(|_| ())
        })
        .await;
        report(match probe {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the probe failed: {e}")),
        });
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(vars: &[(&str, &str)]) -> Result<KafkaArgs, ConfigError> {
        KafkaArgs::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn every_consumer_bounds_what_it_fetches_ahead() -> Result<(), ConfigError> {
        let default = KafkaConfig::from(&args(&[])?);
        let set = KafkaConfig::from(&args(&[("KAFKA_FETCH_QUEUE_KB", " 2048 ")])?);
        for (cfg, kb) in [(&default, "16384"), (&set, "2048")] {
            for c in [
                cfg.consumer("g", "c"),
                cfg.reader("inventory-rebuild"),
                cfg.follower("order-service-catalogue"),
            ] {
                assert_eq!(c.get("queued.max.messages.kbytes"), Some(kb));
                assert_eq!(
                    c.get("fetch.queue.backoff.ms"),
                    Some(FETCH_QUEUE_BACKOFF_MS)
                );
            }
            assert_eq!(cfg.producer("p").get("queued.max.messages.kbytes"), None);
        }
        Ok(())
    }

    #[test]
    fn a_reader_asks_again_soon_and_a_follower_waits_at_the_broker() -> Result<(), ConfigError> {
        let cfg = KafkaConfig::from(&args(&[])?);
        let reader = cfg.reader("inventory-rebuild");
        let follower = cfg.follower("order-service-catalogue");
        assert_eq!(reader.get("fetch.wait.max.ms"), Some("20"));
        assert_eq!(follower.get("fetch.wait.max.ms"), Some("500"));
        // otherwise the same reader: a reader's group id, nothing committed, read_committed
        let same_id = cfg.reader("order-service-catalogue");
        for key in ["enable.auto.commit", "isolation.level", "group.id"] {
            assert_eq!(follower.get(key), same_id.get(key), "{key}");
        }
        assert_eq!(
            follower.get("group.id"),
            Some("order-service-catalogue-reader")
        );
        Ok(())
    }

    #[test]
    fn kafka_debug_reaches_every_client() -> Result<(), ConfigError> {
        let none = KafkaConfig::from(&args(&[])?);
        let set = KafkaConfig::from(&args(&[("KAFKA_DEBUG", "cgrp,fetch")])?);
        assert_eq!(none.consumer("g", "c").get("debug"), None);
        for c in [
            set.consumer("g", "c"),
            set.reader("inventory-rebuild"),
            set.producer("p"),
            set.client(),
        ] {
            assert_eq!(c.get("debug"), Some("cgrp,fetch"));
        }
        Ok(())
    }

    #[test]
    fn a_fetch_queue_too_small_or_not_a_number_is_refused_by_name() {
        for bad in ["512", "lots", "3000000"] {
            let e = args(&[("KAFKA_FETCH_QUEUE_KB", bad)])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("KAFKA_FETCH_QUEUE_KB"), "{bad}: {e}");
        }
    }
}
