//! Where a session's state comes from: the group's committed offsets and their marks, the
//! low watermarks and `<group>-snapshots` decide ([`crate::snapshot::begin`]) between
//! restoring a snapshot and starting from the log; then the spans still to read are read
//! with a group-less reader ([`rebuild`]).

use std::collections::BTreeSet;
use std::time::Duration;

use orderflow_events::decode_on;
use orderflow_runtime::read::{self, ReadError, Span};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;

use crate::consumer::{AnalyticsError, TOPICS};
use crate::group::OwnNames;
use crate::snapshot::{self, Committed};
use crate::state::{Aggregates, Bases};
use crate::store;

/// How a session starts.
#[derive(Debug)]
pub struct Plan {
    /// The state before the spans are read: restored, or empty at the start offsets.
    pub state: Aggregates,
    pub bases: Bases,
    /// Spans to read into the state before consuming.
    pub rebuild: Vec<Span>,
    /// The run the session writes its snapshots and commits as.
    pub run: String,
    /// Minute keys of other runs, tombstoned by the first flush.
    pub stale: BTreeSet<String>,
    /// Whether the state was restored from the snapshot topic.
    pub restored: bool,
    /// Records read from the snapshot topic.
    pub snapshot_records: u64,
}

/// Decide the start of group `names.group` (blocking: Kafka requests).
pub fn plan(
    kafka: &KafkaConfig,
    names: &OwnNames,
    timeout: Duration,
) -> Result<Plan, AnalyticsError> {
    let committed: Vec<Committed> =
        orderflowctl::committed_with_watermarks(kafka, &names.group, &TOPICS, timeout)?
            .into_iter()
            .map(|(c, (low, _))| Committed {
                low,
                topic: c.topic,
                partition: c.partition,
                offset: c.offset,
                metadata: c.metadata,
            })
            .collect();
    let read = store::read_snapshots(kafka, names, timeout)?;
    let started = snapshot::start(&committed, &read.restore, snapshot::new_run);
    if let Some(e) = &started.unusable {
        tracing::error!(
            error = %e,
            "cannot restore the snapshot: the state starts from the log as a new run"
        );
    }
    for (topic, partition, from, low) in &started.gone {
        tracing::error!(
            %topic, partition, snapshot_offset = from, low_watermark = low,
            "the snapshot is older than the retention: records between are gone and not counted"
        );
    }
    Ok(Plan {
        state: started.state,
        bases: started.bases,
        rebuild: started.rebuild,
        run: started.run,
        stale: started.stale,
        restored: started.restored,
        snapshot_records: read.records,
    })
}

/// Read `[from, to)` of every span into `state`. Records that do not decode were handled
/// (sent to the DLQ or skipped) by the run that first read them; here they are only
/// stepped over.
pub fn rebuild(
    kafka: &KafkaConfig,
    names: &OwnNames,
    spans: &[Span],
    state: &mut Aggregates,
    timeout: Duration,
) -> Result<u64, AnalyticsError> {
    if spans.is_empty() {
        return Ok(0);
    }
    let reader: BaseConsumer = kafka.reader(&names.rebuild_reader()).create()?;
    let n = read::read_to_end(&reader, spans, timeout, |m| {
        if m.offset() < state.next_offset(m.topic(), m.partition()).unwrap_or(0) {
            return; // counted already (restored)
        }
        match decode_on(m.topic(), m.payload().unwrap_or_default()) {
            Ok(e) => state.apply(m.topic(), m.partition(), m.offset(), &e),
            Err(_) => state.advance(m.topic(), m.partition(), m.offset()),
        }
    })
    .map_err(|e| match e {
        ReadError::Kafka(e) => AnalyticsError::Kafka(e),
        ReadError::Stalled {
            topic,
            partition,
            end,
            ..
        } => AnalyticsError::RebuildStalled {
            reached: state.next_offset(&topic, partition).unwrap_or(-1),
            topic,
            partition,
            wanted: end,
        },
    })?;
    // The spans were read to their ends, including any transaction markers after their last
    // records: the state's next offsets are the spans' ends (the committed offsets).
    for s in spans {
        if s.to > 0 {
            state.advance(&s.topic, s.partition, s.to - 1);
        }
    }
    Ok(n)
}
