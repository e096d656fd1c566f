//! The orderflow event contract, shared by every service and tool.
//!
//! One JSON object per Kafka record. Every event carries `type`, `schema_version`,
//! `event_id`, `order_id`, `item`, `qty`, `user_id` and `ts` (the order's event time,
//! RFC 3339 with milliseconds). Inventory decisions add `status`, `reason` (failures only)
//! and `decided_at`.
//!
//! ## Encoding
//! The bytes are serde_json's for these types ([`encode`], [`decode`]). The two events of
//! every order, `OrderPlaced` and its decision, are written and read by hand on the hot
//! paths (a million per bulk run, each read again by a replay), in exactly serde's layout;
//! property tests hold the hand-written writer and reader to serde over any strings,
//! quantities and times, and a record in any other layout is read by serde.
//!
//! ## Keys and partitions
//! Records on `orders` are keyed by **item**. Kafka sends every record with the same key to
//! the same partition and a consumer group gives each partition to exactly one member, so
//! the stock of one item is only ever decided by one inventory replica at a time: two
//! replicas can never both reserve the last unit of an item (no oversell), and the orders
//! of one item are decided in the order they were placed.
//!
//! Decisions on `inventory-events` are keyed by item too and written to the **same
//! partition number** as the order they decide (see [`decision_partition`]). Partition `p`
//! of `inventory-events` is then the changelog of the stock ledger for exactly the items of
//! partition `p` of `orders`, which is what lets an inventory replica rebuild the ledger for
//! the partitions it is assigned, and lets analytics read recorded decisions instead of
//! re-deciding them.
//!
//! The stock ledger, `inventory-ledger`, is keyed by item as well and written to the same
//! partition number again ([`ledger_partition`]): a compacted topic (`cleanup.policy=compact`,
//! [`COMPACTED_TOPICS`]) that keeps each item's latest stock state, however old, while the
//! other topics keep [`RETENTION_MS`]. Its records are the [`ledger`] module's.
//!
//! analytics-service keeps its counts the same way in the compacted `analytics-snapshots`
//! ([`TOPIC_ANALYTICS_SNAPSHOTS`]): one record per event-time minute and a checkpoint, all
//! in partition [`SNAPSHOT_PARTITION`]. Its records are the [`snapshot`] module's.
//!
//! ## Restocks
//! `orders` also carries `StockRestockRequested` (an admin's restock, keyed by the item like
//! its orders, so it is decided in order with them) and `inventory-events` its recorded
//! outcome, `InventoryRestocked` / `InventoryRestockRefused`: the [`restock`] module. An
//! item's records go to partition [`item_partition`] (librdkafka's default partitioner),
//! which is where inventory writes the ledger record of a configured item before its first
//! order, so that order-service's catalogue (the ledger) knows it.
//!
//! ## Commit metadata
//! What orderflow writes next to a group's committed offsets (an offset reset's mark,
//! analytics' base and run) is one type, [`CommitMark`], whose `Display` and `FromStr` are the wire
//! format.

mod codec;
mod fast;
pub mod ledger;
mod mark;
mod model;
pub mod restock;
pub mod snapshot;

pub use codec::{
    decode, decode_decision, decode_inventory_record, decode_on, decode_order,
    decode_orders_record, encode, encode_into, DecodeError,
};
pub use ledger::{
    decode_ledger, ItemStock, ItemTotals, LedgerCheckpoint, LedgerRecord, LEDGER_CHECKPOINT_KEY,
};
pub use mark::{
    CommitMark, NotACommitMark, ResetBy, ANALYTICS_BASE_PREFIX, ANALYTICS_RUN_TOKEN,
    RESET_MARK_PREFIX,
};
pub use model::{truncate_ms, DecisionStatus, Event, InventoryDecision, OrderPlaced};
pub use restock::{
    item_partition, InventoryRecord, OrdersRecord, RestockDecision, RestockStatus,
    StockRestockRequested, MAX_STOCK,
};
pub use snapshot::{
    decode_snapshot, minute_key, MinuteSnapshot, SnapshotCheckpoint, SnapshotRecord,
    SNAPSHOT_CHECKPOINT_KEY, SNAPSHOT_PARTITION,
};

/// Topic of `OrderPlaced` events (and `StockRestockRequested`, keyed by item the same way).
pub const TOPIC_ORDERS: &str = "orders";
/// Topic of `InventoryReserved` / `InventoryFailed` events (and `InventoryRestocked` /
/// `InventoryRestockRefused`).
pub const TOPIC_INVENTORY_EVENTS: &str = "inventory-events";
/// The compacted stock ledger of inventory-service: [`ledger::LedgerRecord`]s.
pub const TOPIC_INVENTORY_LEDGER: &str = "inventory-ledger";
/// The compacted state store of analytics-service: [`snapshot::SnapshotRecord`]s. The store
/// of an analytics running as another group (a shadow replay) is
/// [`analytics_snapshots_topic`]`(group)`; this is the one of [`GROUP_ANALYTICS`].
pub const TOPIC_ANALYTICS_SNAPSHOTS: &str = "analytics-snapshots";
/// The suffix of the snapshot topic after the group: `<group>-snapshots`.
pub const SNAPSHOTS_SUFFIX: &str = "snapshots";
/// Records that failed to decode or validate, with the reason in [`HEADER_DLQ_REASON`].
pub const TOPIC_DLQ: &str = "orderflow.dlq";
/// All topics orderflow owns, in the order they are created.
pub const ALL_TOPICS: [&str; 5] = [
    TOPIC_ORDERS,
    TOPIC_INVENTORY_EVENTS,
    TOPIC_INVENTORY_LEDGER,
    TOPIC_ANALYTICS_SNAPSHOTS,
    TOPIC_DLQ,
];
/// Topics that keep the latest record per key for ever (`cleanup.policy=compact`) instead of
/// [`RETENTION_MS`]: state, not history.
pub const COMPACTED_TOPICS: [&str; 2] = [TOPIC_INVENTORY_LEDGER, TOPIC_ANALYTICS_SNAPSHOTS];
/// `segment.ms` of a compacted topic: the active segment is never compacted, so it rolls
/// hourly and the ledger stays about one record per key plus an hour of updates.
pub const COMPACTED_SEGMENT_MS: i64 = 60 * 60 * 1000;
/// Partitions per topic (deploy/topics.yaml creates them the same under Strimzi).
pub const PARTITIONS: i32 = 3;
/// Retention of every topic: 7 days.
pub const RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Header of a decision: the `orders` offset of the order it decides (decimal), so that a
/// ledger rebuilt from the tail of `inventory-events` knows how far orders are decided.
pub const HEADER_ORDERS_OFFSET: &str = "orderflow.orders.offset";

/// Consumer group of inventory-service.
pub const GROUP_INVENTORY: &str = "inventory";
/// Consumer group of analytics-service (its default: `CONSUMER_GROUP` sets another one, e.g.
/// for a shadow replay, `analytics-shadow-<request>`).
pub const GROUP_ANALYTICS: &str = "analytics";

/// The snapshot topic of an analytics consuming as `group`: `<group>-snapshots`. Every topic
/// a shadow-capable consumer owns as state is named `<group>-<suffix>` (like Kafka Streams'
/// `<application.id>-...`), so a shadow's state is apart from the live one's, the
/// replay-controller deletes it with the prefix `<group>-` and promotes it by copying
/// `<shadow group>-<suffix>` onto `<live group>-<suffix>`.
pub fn analytics_snapshots_topic(group: &str) -> String {
    format!("{group}-{SNAPSHOTS_SUFFIX}")
}

/// The schema version this build writes and the only one it accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// DLQ header: why the record was rejected.
pub const HEADER_DLQ_REASON: &str = "orderflow.dlq.reason";
/// DLQ header: topic the rejected record came from.
pub const HEADER_DLQ_TOPIC: &str = "orderflow.dlq.topic";
/// DLQ header: partition the rejected record came from.
pub const HEADER_DLQ_PARTITION: &str = "orderflow.dlq.partition";
/// DLQ header: offset of the rejected record.
pub const HEADER_DLQ_OFFSET: &str = "orderflow.dlq.offset";

/// The consumer group that reports a bad record of `topic` to [`TOPIC_DLQ`]: one DLQ entry
/// per bad record, although both groups read `orders` (and inventory-service reads
/// `inventory-events` too, to rebuild its ledger). The group that acts on a topic's records
/// reports them: `inventory` decides orders, `analytics` is the consumer of
/// `inventory-events`. Any other reader steps over the record, logs it and counts it.
pub fn dlq_group(topic: &str) -> Option<&'static str> {
    match topic {
        TOPIC_ORDERS => Some(GROUP_INVENTORY),
        TOPIC_INVENTORY_EVENTS => Some(GROUP_ANALYTICS),
        _ => None,
    }
}

/// The record key of any event about `item` (see the module docs for why it is the item).
pub fn record_key(item: &str) -> &[u8] {
    item.as_bytes()
}

/// The `inventory-events` partition a decision about an order read from `orders`
/// partition `order_partition` is written to: the same number, so that each
/// `inventory-events` partition is the ledger changelog of one `orders` partition.
pub fn decision_partition(order_partition: i32) -> i32 {
    order_partition
}

/// The `inventory-ledger` partition holding the stock of the items of `orders` partition
/// `order_partition`: the same number, like [`decision_partition`].
pub fn ledger_partition(order_partition: i32) -> i32 {
    order_partition
}

/// The campus menu: items order-service picks from for bulk orders and inventory-service
/// stocks by default (`INITIAL_STOCK` overrides the quantities and may add items).
pub const DEFAULT_ITEMS: [&str; 8] = [
    "burger", "pizza", "salad", "sushi", "taco", "ramen", "curry", "wrap",
];
/// Default initial stock of each item in [`DEFAULT_ITEMS`].
pub const DEFAULT_STOCK_PER_ITEM: u64 = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_topic_is_named_after_the_group() {
        assert_eq!(
            analytics_snapshots_topic(GROUP_ANALYTICS),
            TOPIC_ANALYTICS_SNAPSHOTS
        );
        assert_eq!(
            analytics_snapshots_topic("analytics-shadow-s1"),
            "analytics-shadow-s1-snapshots"
        );
    }

    #[test]
    fn each_topic_has_one_dlq_reporter() {
        assert_eq!(dlq_group(TOPIC_ORDERS), Some(GROUP_INVENTORY));
        assert_eq!(dlq_group(TOPIC_INVENTORY_EVENTS), Some(GROUP_ANALYTICS));
        assert_eq!(dlq_group(TOPIC_DLQ), None);
        assert_eq!(
            dlq_group(TOPIC_INVENTORY_LEDGER),
            None,
            "inventory's own state"
        );
        assert_eq!(
            dlq_group(TOPIC_ANALYTICS_SNAPSHOTS),
            None,
            "analytics' own state"
        );
    }
}
