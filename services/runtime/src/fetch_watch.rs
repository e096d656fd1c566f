//! A watch on the group consumer's assigned partitions: one whose fetcher has not started
//! long after its assignment ends the session, so that new clients take over.
//!
//! Why: librdkafka (2.12.1) asks the group coordinator for an assigned partition's
//! committed offset before it starts fetching it. When that OffsetFetch fails as a whole
//! (a request-level `NOT_COORDINATOR`, which Apache Kafka's group coordinator answers when
//! an OffsetFetch that requires stable offsets times out, e.g. right after a broker restart
//! with a transaction's offsets pending), librdkafka neither retries it nor starts the
//! fetcher: the partition stays assigned and silent for good, while heartbeats go on
//! (librdkafka issue 5586, open). inventory-service was seen so, three minutes without a
//! record after a broker restart, its three partitions "in pending state" with "3 offset
//! queries" and no answer. A new consumer (a new assignment) recovers at once.
//!
//! How: the consumer's statistics (`statistics.interval.ms`, [`STATS_EVERY`]) name each
//! partition's fetch state. An assigned partition (`desired`) whose state is not `active`
//! for longer than [`STALL_AFTER`] is stalled; [`crate::session::consume`] then ends the
//! session with [`crate::session::ClientFailed`]. A partition that is fetching, even from
//! a broker that is gone, stays `active`, so an outage alone does not restart the session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerContext;
use rdkafka::{ClientConfig, ClientContext, Statistics};

/// How often librdkafka hands the consumer's statistics to its context.
pub const STATS_EVERY: Duration = Duration::from_secs(2);

/// How long an assigned partition may go without fetching before the session ends. A
/// committed-offset query that is answered at all takes well under a second; an unstable
/// offset (a transaction in progress) is retried by librdkafka and resolves within the
/// transaction timeout, so this is generous.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// The words of every stall [`FetchWatch::stalled`] reports (tests look for them in logs).
pub const STALLED: &str = "have not started fetching";

/// `config` with the statistics a [`FetchWatch`] reads turned on.
pub fn watched(mut config: ClientConfig) -> ClientConfig {
    config.set(
        "statistics.interval.ms",
        STATS_EVERY.as_millis().to_string(),
    );
    config
}

/// Since when each assigned partition has not been fetching.
#[derive(Debug, Default)]
pub struct FetchWatch {
    idle_since: Mutex<HashMap<(String, i32), Instant>>,
}

/// One partition as the statistics describe it.
#[derive(Debug, Clone, Copy)]
pub struct PartitionState<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// Assigned to this consumer.
    pub desired: bool,
    /// librdkafka's fetch state: `none`, `offset-query`, `offset-wait`, `active`, ...
    pub fetch_state: &'a str,
}

impl FetchWatch {
    /// Take in the partitions of one statistics report, seen at `now`.
    pub fn observe<'a>(
        &self,
        partitions: impl IntoIterator<Item = PartitionState<'a>>,
        now: Instant,
    ) {
        let Ok(mut idle) = self.idle_since.lock() else {
            return;
        };
        let mut seen = HashMap::new();
        for p in partitions {
            // librdkafka's placeholder for messages not yet routed to a partition
            if !p.desired || p.partition < 0 || p.fetch_state == "active" {
                continue;
            }
            let key = (p.topic.to_string(), p.partition);
            let since = idle.get(&key).copied().unwrap_or(now);
            seen.insert(key, since);
        }
        *idle = seen;
    }

    /// Take in librdkafka's statistics.
    pub fn observe_stats(&self, stats: &Statistics) {
        let partitions = stats.topics.iter().flat_map(|(topic, t)| {
            t.partitions.values().map(move |p| PartitionState {
                topic,
                partition: p.partition,
                desired: p.desired,
                fetch_state: &p.fetch_state,
            })
        });
        self.observe(partitions, Instant::now());
    }

    /// The partitions assigned and not fetching for longer than `after` at `now`, said in
    /// a sentence; `None` when there are none.
    pub fn stalled(&self, now: Instant, after: Duration) -> Option<String> {
        let late: Vec<String> = self
            .stalled_partitions(now, after)
            .iter()
            .map(|(topic, p)| format!("{topic} [{p}]"))
            .collect();
        if late.is_empty() {
            return None;
        }
        Some(format!(
            "assigned partitions {} {STALLED} in {} s (their committed offsets were never \
             answered)",
            late.join(", "),
            after.as_secs()
        ))
    }

    /// The (topic, partition) assigned and not fetching for longer than `after` at `now`,
    /// sorted: what [`FetchWatch::stalled`] names, for a service that acts on them (inventory
    /// suspects a transaction left open on their committed offsets).
    pub fn stalled_partitions(&self, now: Instant, after: Duration) -> Vec<(String, i32)> {
        let Ok(idle) = self.idle_since.lock() else {
            return Vec::new();
        };
        let mut late: Vec<(String, i32)> = idle
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) > after)
            .map(|(key, _)| key.clone())
            .collect();
        late.sort();
        late
    }
}

/// A consumer context that carries a [`FetchWatch`].
pub trait Watched {
    fn fetch_watch(&self) -> &FetchWatch;
}

/// The consumer context of a service that needs nothing else from one: the watch alone.
#[derive(Debug, Default)]
pub struct WatchedContext {
    pub watch: FetchWatch,
}

impl ClientContext for WatchedContext {
    fn stats(&self, statistics: Statistics) {
        self.watch.observe_stats(&statistics);
    }
}

impl ConsumerContext for WatchedContext {}

impl Watched for WatchedContext {
    fn fetch_watch(&self) -> &FetchWatch {
        &self.watch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(partition: i32, desired: bool, fetch_state: &str) -> PartitionState<'_> {
        PartitionState {
            topic: "orders",
            partition,
            desired,
            fetch_state,
        }
    }

    #[test]
    fn an_assigned_partition_not_fetching_past_the_limit_is_stalled() {
        let (w, t0, limit) = (
            FetchWatch::default(),
            Instant::now(),
            Duration::from_secs(30),
        );
        w.observe([state(0, true, "active"), state(1, true, "none")], t0);
        assert_eq!(w.stalled(t0 + Duration::from_secs(29), limit), None);
        // still not fetching in a later report: the time counts from the first
        w.observe(
            [state(0, true, "active"), state(1, true, "offset-query")],
            t0 + Duration::from_secs(20),
        );
        let why = w.stalled(t0 + Duration::from_secs(31), limit);
        assert_eq!(
            w.stalled_partitions(t0 + Duration::from_secs(31), limit),
            [("orders".to_string(), 1)]
        );
        assert_eq!(
            why.as_deref(),
            Some(
                "assigned partitions orders [1] have not started fetching in 30 s (their \
                 committed offsets were never answered)"
            )
        );
    }

    #[test]
    fn fetching_again_unassigned_or_the_placeholder_partition_is_not_stalled() {
        let (w, t0, limit) = (
            FetchWatch::default(),
            Instant::now(),
            Duration::from_secs(30),
        );
        w.observe([state(1, true, "none"), state(2, true, "none")], t0);
        let later = t0 + Duration::from_secs(10);
        // 1 started fetching, 2 was revoked, -1 is librdkafka's placeholder
        w.observe(
            [
                state(1, true, "active"),
                state(2, false, "none"),
                state(-1, true, "none"),
            ],
            later,
        );
        assert_eq!(w.stalled(t0 + Duration::from_secs(60), limit), None);
        // 1 stops fetching again: its time starts anew
        w.observe(
            [state(1, true, "offset-query")],
            t0 + Duration::from_secs(50),
        );
        assert_eq!(w.stalled(t0 + Duration::from_secs(60), limit), None);
        assert!(w.stalled(t0 + Duration::from_secs(81), limit).is_some());
    }

    #[test]
    fn librdkafka_statistics_are_read_per_partition() {
        let json = r#"{"name":"c","client_id":"c","type":"consumer","ts":1,"time":1,"age":1,
            "replyq":0,"msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"simple_cnt":0,
            "metadata_cache_cnt":0,"brokers":{},"tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,
            "txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0,
            "topics":{"orders":{"topic":"orders","age":1,"metadata_age":1,
              "batchsize":{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0},
              "batchcnt":{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0},
              "partitions":{"0":{"partition":0,"broker":1,"leader":1,"desired":true,"unknown":false,
                "msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,
                "fetchq_size":0,"fetch_state":"none","query_offset":-1001,"next_offset":-1001,
                "app_offset":-1001,"stored_offset":-1001,"commited_offset":-1001,
                "committed_offset":-1001,"eof_offset":-1001,"lo_offset":-1,"hi_offset":-1,
                "ls_offset":-1,"consumer_lag":-1,"consumer_lag_stored":-1,"txmsgs":0,"txbytes":0,
                "rxmsgs":0,"rxbytes":0,"msgs":0,"rx_ver_drops":0,"msgs_inflight":0,
                "next_ack_seq":0,"next_err_seq":0,"acked_msgid":0}}}}}"#;
        let stats: Statistics = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let w = FetchWatch::default();
        w.observe_stats(&stats);
        let later = Instant::now() + Duration::from_secs(31);
        assert!(w
            .stalled(later, Duration::from_secs(30))
            .is_some_and(|why| why.contains("orders [0]")));
    }
}
