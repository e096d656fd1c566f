//! The catalogue: which items exist, learnt from Kafka (issue 18). order-service reads the
//! compacted `inventory-ledger` (every partition, outside any consumer group, from its
//! start, then following it) and refuses orders and restocks for items no inventory knows,
//! before anything is published.
//!
//! An item is known when a partition's `ItemStock` record of it has an `initial` stock (the
//! record of an item no longer in `INITIAL_STOCK` says `null`). Inventory writes a record for
//! every configured item of a partition when it rebuilds that partition's ledger and finds
//! none, then a checkpoint (inventory-service's `ledger` module docs), so:
//!
//! - **Loading** until the reader has reached the end the ledger had when it started:
//!   requests wait for it up to `PUBLISH_TIMEOUT_MS` (at most [`CATALOGUE_WAIT`]), then get 503
//!   `{"error": "catalogue not loaded yet: ..."}`, and `/readyz` is 503 with that reason.
//! - **Incomplete** while some ledger partition has no checkpoint (no inventory has rebuilt
//!   it yet: a fresh cluster, inventory not started): an item not (yet) in the catalogue may
//!   still be about to appear, so such a request also waits, then gets 503 naming the
//!   partitions. `/readyz` stays 200 (its detail says so), so order-service may start before
//!   inventory-service.
//! - **Complete**: an unknown item is refused with 422 naming the known items.
//!
//! The pure state is [`Catalogue`]; [`follow`] feeds it from Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use orderflow_events::{
    decode_ledger, LedgerRecord, MAX_STOCK, PARTITIONS, TOPIC_INVENTORY_LEDGER,
};
use orderflow_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The most a request for an item the catalogue cannot answer yet (loading, or incomplete)
/// waits for it before the 503; main.rs makes it `PUBLISH_TIMEOUT_MS` when that is shorter,
/// so an unreachable Kafka still means a 503 after `PUBLISH_TIMEOUT_MS`.
pub const CATALOGUE_WAIT: Duration = Duration::from_secs(20);

/// What one ledger record says about an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    initial: Option<u64>,
    restocked: u64,
}

/// Why the catalogue cannot accept an item.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CatalogueError {
    #[error("catalogue not loaded yet: reading {TOPIC_INVENTORY_LEDGER} to its end")]
    Loading,
    #[error("catalogue incomplete: {TOPIC_INVENTORY_LEDGER} partitions {0:?} have no checkpoint yet (no inventory-service has started on them), and item {1:?} is not in it so far")]
    Incomplete(Vec<i32>, String),
    #[error("unknown item {item:?}; known items: {}", known.join(", "))]
    Unknown { item: String, known: Vec<String> },
    #[error("stock beyond the maximum: {item:?} has {stock} units, +{qty} exceeds {MAX_STOCK}")]
    BeyondMax { item: String, stock: u64, qty: u64 },
}

impl CatalogueError {
    /// Whether waiting may change the answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Loading | Self::Incomplete(..))
    }
}

/// The items inventory knows, as the ledger says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// Per item, per ledger partition, its latest record.
    items: BTreeMap<String, BTreeMap<i32, Entry>>,
    /// Ledger partitions with a checkpoint.
    checkpointed: BTreeSet<i32>,
    loaded: bool,
}

impl Catalogue {
    /// Apply a record of ledger partition `p`, in log order.
    pub fn apply(&mut self, p: i32, r: &LedgerRecord) {
        match r {
            LedgerRecord::ItemStock(s) => {
                self.items.entry(s.item.clone()).or_default().insert(
                    p,
                    Entry {
                        initial: s.initial,
                        restocked: s.restocked,
                    },
                );
            }
            LedgerRecord::LedgerCheckpoint(_) => {
                self.checkpointed.insert(p);
            }
        }
    }

    /// The reader reached the end the ledger had when it started.
    pub fn set_loaded(&mut self) {
        self.loaded = true;
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Known items, sorted.
    pub fn known(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|(_, ps)| ps.values().any(|e| e.initial.is_some()))
            .map(|(i, _)| i.clone())
            .collect()
    }

    /// Ledger partitions no inventory has checkpointed yet.
    pub fn missing_partitions(&self) -> Vec<i32> {
        (0..PARTITIONS)
            .filter(|p| !self.checkpointed.contains(p))
            .collect()
    }

    /// The item's stock as the ledger last said (initial + restocked), if it is known.
    fn stock(&self, item: &str) -> Option<u64> {
        let ps = self.items.get(item)?;
        ps.values()
            .filter_map(|e| e.initial.map(|i| i.saturating_add(e.restocked)))
            .max()
    }

    /// Whether an order or restock for `item` may be published.
    pub fn check(&self, item: &str) -> Result<(), CatalogueError> {
        if !self.loaded {
            return Err(CatalogueError::Loading);
        }
        if self.stock(item).is_some() {
            return Ok(());
        }
        let missing = self.missing_partitions();
        if !missing.is_empty() {
            return Err(CatalogueError::Incomplete(missing, item.to_string()));
        }
        Err(CatalogueError::Unknown {
            item: item.to_string(),
            known: self.known(),
        })
    }

    /// Whether restocking `qty` units of `item` may be published: a known item whose stock
    /// (as the ledger last said) plus `qty` stays within [`MAX_STOCK`]. Inventory checks
    /// again when it decides (two restocks may race past this check).
    pub fn check_restock(&self, item: &str, qty: u64) -> Result<(), CatalogueError> {
        self.check(item)?;
        let stock = self.stock(item).unwrap_or(0);
        match stock.checked_add(qty) {
            Some(after) if after <= MAX_STOCK => Ok(()),
            _ => Err(CatalogueError::BeyondMax {
                item: item.to_string(),
                stock,
                qty,
            }),
        }
    }

    /// What `/readyz` says: `Err` while loading.
    pub fn readiness(&self) -> Result<String, String> {
        if !self.loaded {
            return Err(CatalogueError::Loading.to_string());
        }
        let known = self.known().len();
        let missing = self.missing_partitions();
        if missing.is_empty() {
            Ok(format!("catalogue of {known} items"))
        } else {
            Ok(format!(
                "catalogue of {known} items; {TOPIC_INVENTORY_LEDGER} partitions {missing:?} not checkpointed by inventory-service yet"
            ))
        }
    }
}

/// The catalogue shared by the reader and the handlers; `changed` ticks after each update.
#[derive(Clone)]
pub struct SharedCatalogue {
    state: Arc<RwLock<Catalogue>>,
    changed: watch::Sender<u64>,
}

impl Default for SharedCatalogue {
    fn default() -> Self {
        Self::new(Catalogue::default())
    }
}

impl SharedCatalogue {
    pub fn new(c: Catalogue) -> Self {
        Self {
            state: Arc::new(RwLock::new(c)),
            changed: watch::Sender::new(0),
        }
    }

    /// Change the catalogue and wake the waiting requests.
    pub fn update(&self, f: impl FnOnce(&mut Catalogue)) {
        if let Ok(mut c) = self.state.write() {
            f(&mut c);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every update.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Run `f` on the catalogue.
    pub fn read<T>(&self, f: impl FnOnce(&Catalogue) -> T) -> Option<T> {
        self.state.read().ok().map(|c| f(&c))
    }

    /// `check` (e.g. [`Catalogue::check`]) now, and again after each update while its answer
    /// is transient, for at most `wait`.
    pub async fn wait_for(
        &self,
        wait: Duration,
        check: impl Fn(&Catalogue) -> Result<(), CatalogueError>,
    ) -> Result<(), CatalogueError> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let answer = self.read(&check).unwrap_or(Err(CatalogueError::Loading));
            match answer {
                Err(e) if e.is_transient() => {
                    match tokio::time::timeout_at(deadline, rx.changed()).await {
                        Ok(Ok(())) => continue,
                        _ => return Err(e),
                    }
                }
                other => return other,
            }
        }
    }
}

/// Read `inventory-ledger` from its start into `catalogue`, and keep following it until
/// `token` is cancelled (blocking: run it on a blocking thread). The catalogue is loaded
/// once the reader's position reached the end offsets (last stable offsets) as of its start.
pub fn follow(kafka: &KafkaConfig, catalogue: &SharedCatalogue, token: &CancellationToken) {
    while !token.is_cancelled() {
        if let Err(e) = follow_once(kafka, catalogue, token) {
            tracing::warn!(error = %e, "reading the catalogue ({TOPIC_INVENTORY_LEDGER}) failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn follow_once(
    kafka: &KafkaConfig,
    catalogue: &SharedCatalogue,
    token: &CancellationToken,
) -> Result<(), rdkafka::error::KafkaError> {
    let reader: BaseConsumer = kafka.follower("order-service-catalogue").create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (low, high) =
            reader.fetch_watermarks(TOPIC_INVENTORY_LEDGER, p, Duration::from_secs(10))?;
        if high > low {
            ends.insert(p, high);
        }
        tpl.add_partition_offset(TOPIC_INVENTORY_LEDGER, p, Offset::Beginning)?;
    }
    reader.assign(&tpl)?;
    let mut batch: Vec<(i32, LedgerRecord)> = Vec::new();
    while !token.is_cancelled() {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => match decode_ledger(m.key(), m.payload().unwrap_or_default()) {
                Ok(r) => {
                    if ends
                        .get(&m.partition())
                        .is_some_and(|end| m.offset() + 1 >= *end)
                    {
                        ends.remove(&m.partition());
                    }
                    batch.push((m.partition(), r))
                }
                Err(e) => tracing::warn!(
                    partition = m.partition(),
                    offset = m.offset(),
                    error = %e,
                    "catalogue: a record of {TOPIC_INVENTORY_LEDGER} that does not decode; skipped"
                ),
            },
            Some(Err(e)) => tracing::warn!(error = %e, "catalogue: read error"),
            None => {}
        }
        let loaded = catalogue.read(Catalogue::is_loaded).unwrap_or(false);
        let reached = !loaded && reached_ends(&reader, &ends);
        if !batch.is_empty() || reached {
            let records = std::mem::take(&mut batch);
            catalogue.update(|c| {
                for (p, r) in &records {
                    c.apply(*p, r);
                }
                if reached {
                    c.set_loaded();
                }
            });
            if reached {
                let (known, missing) = catalogue
                    .read(|c| (c.known().len(), c.missing_partitions()))
                    .unwrap_or_default();
                tracing::info!(known, missing_checkpoints = ?missing, "catalogue loaded from {TOPIC_INVENTORY_LEDGER}");
            }
        }
    }
    Ok(())
}

/// Whether `reader` has read every partition of `ends` to its end: by the last record
/// read (a partition is removed from `ends` then) or by its position (a `read_committed`
/// reader does not receive transaction markers, which occupy offsets).
fn reached_ends(reader: &BaseConsumer, ends: &BTreeMap<i32, i64>) -> bool {
    if ends.is_empty() {
        return true;
    }
    let Ok(pos) = reader.position() else {
        return false;
    };
    ends.iter().all(|(p, end)| {
        matches!(
            pos.find_partition(TOPIC_INVENTORY_LEDGER, *p).map(|e| e.offset()),
            Some(Offset::Offset(o)) if o >= *end
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use orderflow_events::{ItemStock, LedgerCheckpoint, SCHEMA_VERSION};

    fn item(name: &str, initial: Option<u64>, restocked: u64) -> LedgerRecord {
        LedgerRecord::ItemStock(ItemStock {
            schema_version: SCHEMA_VERSION,
            item: name.into(),
            initial,
            reserved: 0,
            restocked,
            orders_offset: 0,
            events_offset: 0,
            updated_at: Utc::now(),
        })
    }

    fn checkpoint(p: i32) -> LedgerRecord {
        LedgerRecord::LedgerCheckpoint(LedgerCheckpoint {
            schema_version: SCHEMA_VERSION,
            partition: p,
            orders_offset: 0,
            events_offset: 0,
            decided: 0,
            items: Default::default(),
            updated_at: Utc::now(),
        })
    }

    /// pizza on 0, taco on 1 (gone from INITIAL_STOCK), partitions 0 and 1 checkpointed.
    fn catalogue() -> Catalogue {
        let mut c = Catalogue::default();
        c.apply(0, &item("pizza", Some(2000), 500));
        c.apply(0, &checkpoint(0));
        c.apply(1, &item("taco", None, 0));
        c.apply(1, &checkpoint(1));
        c
    }

    #[test]
    fn loading_then_incomplete_then_complete() {
        let mut c = catalogue();
        assert_eq!(c.check("pizza"), Err(CatalogueError::Loading));
        assert!(c.readiness().is_err());
        c.set_loaded();
        assert_eq!(c.check("pizza"), Ok(()));
        let e = c.check("sushi").unwrap_err();
        assert!(e.is_transient(), "partition 2 not checkpointed: {e}");
        assert!(e.to_string().contains("[2]"), "{e}");
        assert!(c.readiness().unwrap().contains("[2]"));
        c.apply(2, &item("sushi", Some(10), 0));
        c.apply(2, &checkpoint(2));
        assert_eq!(c.check("sushi"), Ok(()));
        assert_eq!(c.readiness().unwrap(), "catalogue of 2 items");
    }

    #[test]
    fn unknown_items_are_named_with_the_known_ones() {
        let mut c = catalogue();
        c.apply(2, &checkpoint(2));
        c.set_loaded();
        let e = c.check("caviar").unwrap_err();
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "unknown item \"caviar\"; known items: pizza");
        // an item no longer configured is not known
        assert!(matches!(
            c.check("taco"),
            Err(CatalogueError::Unknown { .. })
        ));
        // ... until a record says it is again
        c.apply(1, &item("taco", Some(5), 0));
        assert_eq!(c.check("taco"), Ok(()));
    }

    #[test]
    fn restocks_stay_within_the_maximum() {
        let mut c = catalogue();
        c.set_loaded();
        assert_eq!(c.check_restock("pizza", 1000), Ok(()));
        assert_eq!(c.check_restock("pizza", MAX_STOCK - 2500), Ok(()));
        let e = c.check_restock("pizza", MAX_STOCK - 2499).unwrap_err();
        assert!(
            matches!(e, CatalogueError::BeyondMax { stock: 2500, .. }),
            "{e}"
        );
        assert!(c.check_restock("pizza", u64::MAX).is_err(), "no overflow");
    }

    #[tokio::test]
    async fn a_waiting_request_sees_the_catalogue_complete() {
        let shared = SharedCatalogue::default();
        let s = shared.clone();
        let filler = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.update(|c| {
                c.apply(0, &item("pizza", Some(1), 0));
                for p in 0..PARTITIONS {
                    c.apply(p, &checkpoint(p));
                }
                c.set_loaded();
            });
        });
        let got = shared
            .wait_for(Duration::from_secs(5), |c| c.check("pizza"))
            .await;
        assert_eq!(got, Ok(()));
        filler.await.unwrap();
        let unknown = shared
            .wait_for(Duration::from_secs(5), |c| c.check("caviar"))
            .await;
        assert!(matches!(unknown, Err(CatalogueError::Unknown { .. })));
        let never = SharedCatalogue::default()
            .wait_for(Duration::from_millis(20), |c| c.check("pizza"))
            .await;
        assert_eq!(never, Err(CatalogueError::Loading));
    }
}
