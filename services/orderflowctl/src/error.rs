//! What can go wrong in consumer-group work.

use rdkafka::error::KafkaError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GroupError {
    /// The Kafka client or broker failed a request.
    #[error("Kafka error: {0}")]
    Kafka(#[from] KafkaError),

    /// Offsets of a group with live members cannot be reset. Kafka refuses it too
    /// ([`GroupError::RefusedByKafka`]); this check of ours comes first, so the refusal
    /// names the members' count and the group's state.
    #[error(
        "consumer group {group} has {members} active member(s) (state {state}): \
         stop its consumers before resetting offsets"
    )]
    NotEmpty {
        group: String,
        state: String,
        members: usize,
    },

    /// Kafka refused to commit the reset's offsets because the group is not empty: a
    /// consumer joined after our own check, or the check was skipped. Kafka answers
    /// `UNKNOWN_MEMBER_ID` (a commit from outside a group that has members),
    /// `REBALANCE_IN_PROGRESS` or `ILLEGAL_GENERATION`.
    #[error(
        "Kafka refused to reset consumer group {group}: the group has active members \
         (Kafka answered {code}); stop its consumers before resetting offsets"
    )]
    RefusedByKafka { group: String, code: String },

    /// Topics that are not on the broker.
    #[error("topic(s) not found on the broker: {}", .0.join(", "))]
    UnknownTopic(Vec<String>),

    /// The call needs at least one topic.
    #[error("no topics given")]
    NoTopics,

    /// A per-partition request (committed offset, offset for a timestamp) failed.
    #[error("{what} for {topic}[{partition}] failed: {reason}")]
    Partition {
        what: &'static str,
        topic: String,
        partition: i32,
        reason: String,
    },

    /// A timestamp reset without an offsets-for-times answer for this partition.
    #[error("no offset for the reset timestamp was found for {topic}[{partition}]")]
    MissingTimeOffset { topic: String, partition: i32 },

    /// A shift of a partition on which the group has no committed offset (Kafka's tool
    /// refuses it too: there is nothing to shift from).
    #[error(
        "cannot shift the offset of {topic}[{partition}]: the group has no committed offset there"
    )]
    NoCommittedOffset { topic: String, partition: i32 },

    /// An explicit offset for a partition the topic does not have.
    #[error("{topic}[{partition}] is not a partition of topic {topic} on the broker")]
    UnknownPartition { topic: String, partition: i32 },

    /// After a reset, the offsets read back from the broker are not the planned ones.
    #[error(
        "reset of group {group} not verified: {topic}[{partition}] reads back offset {actual} \
         (metadata {metadata:?}), expected {expected}"
    )]
    VerifyMismatch {
        group: String,
        topic: String,
        partition: i32,
        expected: i64,
        actual: String,
        metadata: String,
    },

    /// A state topic could not be read, copied or deleted, or a group deleted (shadow
    /// replays, [`crate::state`]).
    #[error("{0}")]
    State(String),
}

/// An unparsable `--to` / `resetTo` value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseResetToError {
    #[error(
        "invalid reset target {0:?}: expected earliest, latest, timestamp or an RFC 3339 timestamp"
    )]
    Unknown(String),
    #[error(
        "invalid timestamp {value:?}: {reason} (expected RFC 3339, e.g. 2026-11-22T10:00:00Z)"
    )]
    BadTimestamp { value: String, reason: String },
    #[error("reset to timestamp needs a timestamp (RFC 3339, e.g. 2026-11-22T10:00:00Z)")]
    MissingTimestamp,
    #[error("a timestamp ({0}) is only valid with reset to timestamp")]
    UnexpectedTimestamp(String),
    #[error(
        "invalid duration {value:?}: {reason} (expected ISO 8601 as PnDTnHnMnS, e.g. PT1H or P1DT12H)"
    )]
    BadDuration { value: String, reason: String },
    #[error("offsets line {line} ({text:?}): {reason}")]
    BadOffsets {
        line: usize,
        text: String,
        reason: String,
    },
    #[error("no offsets for the group in the file (expected lines topic,partition,offset)")]
    NoOffsets,
}
