use super::*;
use proptest::prelude::*;

fn order(item: &str, qty: u32) -> OrderPlaced {
    OrderPlaced::new(item, qty, "u", Utc::now())
}

/// Decide `o` as the partition's next order.
fn next(l: &mut PartitionLedger, stock: &Stock, o: &OrderPlaced) -> Outcome {
    let offset = l.next_order();
    l.decide(stock, o, offset, Utc::now())
}

fn decided(o: Outcome) -> InventoryDecision {
    match o {
        Outcome::Decided(d) => d,
        Outcome::Duplicate => panic!("duplicate"),
    }
}

#[test]
fn reserves_until_exactly_empty_then_fails() {
    let stock = Stock::parse("pizza=5").unwrap();
    let mut l = PartitionLedger::default();
    assert_eq!(
        decided(next(&mut l, &stock, &order("pizza", 3))).status,
        DecisionStatus::Reserved
    );
    assert_eq!(
        decided(next(&mut l, &stock, &order("pizza", 2))).status,
        DecisionStatus::Reserved
    );
    let fail = decided(next(&mut l, &stock, &order("pizza", 1)));
    assert_eq!(fail.status, DecisionStatus::Failed);
    assert_eq!(
        fail.reason.as_deref(),
        Some("insufficient stock: requested 1, available 0")
    );
    assert_eq!(l.reserved("pizza"), 5);
    assert_eq!((l.decided_count(), l.next_order()), (3, 3));
}

#[test]
fn a_failed_large_order_leaves_stock_for_smaller_ones() {
    let stock = Stock::parse("pizza=2").unwrap();
    let mut l = PartitionLedger::default();
    let big = decided(next(&mut l, &stock, &order("pizza", 3)));
    assert_eq!(big.status, DecisionStatus::Failed);
    let small = decided(next(&mut l, &stock, &order("pizza", 2)));
    assert_eq!(small.status, DecisionStatus::Reserved);
}

#[test]
fn unknown_item_fails_with_reason_and_gets_no_ledger_record() {
    let mut l = PartitionLedger::default();
    let d = decided(next(&mut l, &Stock::default(), &order("caviar", 1)));
    assert_eq!(d.reason.as_deref(), Some("unknown item \"caviar\""));
    let records = l.flush_records(0, &Stock::default(), Utc::now());
    assert_eq!(records.len(), 1, "the checkpoint only: {records:?}");
}

#[test]
fn a_redelivered_offset_and_a_re_sent_order_id_are_not_decided_twice() {
    let stock = Stock::default();
    let mut l = PartitionLedger::default();
    let o = order("taco", 2);
    decided(l.decide(&stock, &o, 0, Utc::now()));
    // Redelivered at its offset: recognised by the offset, whatever its id.
    assert_eq!(
        l.decide(&stock, &order("taco", 1), 0, Utc::now()),
        Outcome::Duplicate
    );
    // Re-sent upstream, at a new offset: recognised by its order id.
    assert_eq!(l.decide(&stock, &o, 1, Utc::now()), Outcome::Duplicate);
    assert_eq!(l.reserved("taco"), 2);
    assert_eq!((l.decided_count(), l.next_order()), (1, 2));
    assert!(l.is_decided(&o.order_id));
}

#[test]
fn a_flush_writes_the_changed_items_then_the_checkpoint() {
    let stock = Stock::parse("a=10,b=4").unwrap();
    let mut l = PartitionLedger::default();
    decided(next(&mut l, &stock, &order("a", 3)));
    decided(next(&mut l, &stock, &order("b", 5))); // failed: b still written
    l.pass(2); // a bad record at offset 2
    l.written(7);
    let r = l.flush_records(2, &stock, Utc::now());
    let keys: Vec<&[u8]> = r.iter().map(LedgerRecord::key).collect();
    assert_eq!(keys, [&b"a"[..], b"b", b"#checkpoint"]);
    match (&r[0], &r[2]) {
        (LedgerRecord::ItemStock(a), LedgerRecord::LedgerCheckpoint(c)) => {
            assert_eq!((a.reserved, a.orders_offset, a.events_offset), (3, 3, 7));
            assert_eq!((c.partition, c.orders_offset, c.events_offset), (2, 3, 7));
            assert_eq!(c.decided, 2);
        }
        other => panic!("{other:?}"),
    }
    l.flushed();
    assert_eq!(
        l.flush_records(2, &stock, Utc::now()).len(),
        1,
        "nothing changed since"
    );
}

/// One partition's logs in the model: decisions (about orders and restocks) with the
/// `orders` offset of their record (`inventory-events`, index = offset) and ledger records
/// (`inventory-ledger`).
#[derive(Default)]
struct Logs {
    events: Vec<(InventoryRecord, i64)>,
    ledger: Vec<LedgerRecord>,
}

/// What identifies a decision and its outcome, for comparing runs.
fn outcome(r: &InventoryRecord) -> (uuid::Uuid, String) {
    match r {
        InventoryRecord::Order(d) => (d.order_id, format!("{:?}", d.status)),
        InventoryRecord::Restock(d) => (d.restock_id, format!("{:?} {}", d.status, d.stock)),
    }
}

/// How [`run`] runs: see there.
#[derive(Clone, Copy, Default)]
struct How {
    crash: Option<(usize, usize, usize)>,
    lose_one: bool,
    pipelined: bool,
}

/// Decide `orders[from..to]` in batches of `batch`, as the worker does: decisions, their
/// acknowledgement, the flush taken when the batch was decided. `pipelined` (the worker
/// without transactions): batch k+1 is decided and its decisions land before batch k's
/// ledger records are written. `crash`: stop in the batch holding that index, after the
/// first `dcut` of its decisions landed and (all of them landed) the first `lcut` records of
/// the flush written next (its own; pipelined, the batch before's): a SIGKILL in idempotent
/// mode; with transactions only the whole batch or nothing lands, a special case.
/// `lose_one`: that flush instead loses one item record and still lands its checkpoint (a
/// delivery timeout, then librdkafka's epoch bump), and the session ends there. Returns the
/// `orders` offset the group has committed (a batch is committed after its flush).
fn run(
    l: &mut PartitionLedger,
    stock: &Stock,
    logs: &mut Logs,
    orders: &[OrdersRecord],
    (from, batch): (usize, usize),
    How {
        crash,
        lose_one,
        pipelined,
    }: How,
) -> usize {
    /// A batch whose decisions landed and whose flush is still to be written.
    struct Decided {
        flush: Flush,
        events_end: i64,
        next: usize,
    }
    let mut committed = from;
    let mut waiting: Option<Decided> = None;
    let mut start = from;
    while start < orders.len() {
        let end = (start + batch).min(orders.len());
        let mut sent = Vec::new();
        for (i, o) in orders.iter().enumerate().take(end).skip(start) {
            if let Some(d) = l.apply(stock, o, i as i64, Utc::now()) {
                sent.push((d, i as i64));
            }
        }
        let flush = l.take_flush(stock, Utc::now());
        let dying = crash.filter(|(at, _, _)| (start..end).contains(at));
        let landed = dying.map_or(sent.len(), |(_, dcut, _)| dcut.min(sent.len()));
        let all = landed == sent.len();
        logs.events.extend(sent.into_iter().take(landed));
        if !all {
            return committed;
        }
        let this = Decided {
            flush,
            events_end: logs.events.len() as i64,
            next: end,
        };
        let to_write = match pipelined {
            true => waiting.replace(this),
            false => Some(this),
        };
        if let Some(w) = to_write {
            l.written(w.events_end);
            let mut records = w.flush.records(0, l.next_event());
            let mut lcut = dying.map_or(records.len(), |(_, _, lcut)| lcut.min(records.len()));
            if let (Some((_, _, i)), true, n @ 2..) = (dying, lose_one, records.len()) {
                records.remove(i % (n - 1)); // an item record, never the checkpoint
                lcut = records.len();
            }
            logs.ledger.extend(records.into_iter().take(lcut));
            if dying.is_some() {
                return committed; // killed before the offsets were committed
            }
            committed = w.next;
        } else if dying.is_some() {
            return committed;
        }
        start = end;
    }
    if let Some(w) = waiting {
        l.written(w.events_end);
        logs.ledger.extend(w.flush.records(0, l.next_event()));
    }
    orders.len()
}

/// The ledger as compaction leaves it: the last record per key, in log order.
fn compacted(ledger: &[LedgerRecord]) -> Vec<LedgerRecord> {
    let mut out: Vec<LedgerRecord> = Vec::new();
    for r in ledger {
        out.retain(|o| o.key() != r.key());
        out.push(r.clone());
    }
    out
}

proptest! {
    /// A stream of orders and restocks (some re-sent upstream under the same id) decided in
    /// batches, one at a time or pipelined (a batch's decisions land before the batch
    /// before's ledger records), killed at a random point between any two writes, the ledger rebuilt from
    /// the compacted `inventory-ledger` and the tail of `inventory-events`, and the stream
    /// taken up again from the committed offset or earlier (a redelivery): the same
    /// decisions as a run without the crash, each order decided once, no oversell. Without
    /// re-sent orders the rebuild reads only the tail after the checkpoint; with them it
    /// also reads the idempotency window (here: every decision) for their order ids.
    #[test]
    fn a_crash_anywhere_then_rebuild_matches_an_uninterrupted_run(
        picks in proptest::collection::vec((0usize..3, 1u32..5, 0usize..10, 0u8..8), 1..120),
        resend in any::<bool>(),
        lose_one in any::<bool>(),
        limit in 0u64..30,
        batch in 1usize..9,
        crash in (0usize..120, 0usize..9, 0usize..5),
        rewind in 0usize..20,
        pipelined in any::<bool>(),
    ) {
        let items = ["a", "b", "c"];
        let stock = Stock::parse(&format!("a={limit},b={limit},c={limit}")).unwrap();
        let mut orders: Vec<OrdersRecord> = Vec::new();
        for (i, q, again, kind) in &picks {
            // 1 in 10 re-sends an earlier record under its id; 1 in 8 is a restock
            let o = match (again, orders.len(), kind) {
                (0, n, _) if n > 0 && resend => orders[n / 2].clone(),
                (_, _, 0) => OrdersRecord::Restock(StockRestockRequested::new(items[*i], q * 3, Utc::now())),
                _ => OrdersRecord::Order(order(items[*i], *q)),
            };
            orders.push(o);
        }

        let (mut straight, mut straight_logs) = (PartitionLedger::default(), Logs::default());
        run(&mut straight, &stock, &mut straight_logs, &orders, (0, batch), How::default());

        let mut logs = Logs::default();
        let mut first = PartitionLedger::default();
        let committed = run(&mut first, &stock, &mut logs, &orders, (0, batch), How { crash: Some(crash), lose_one, pipelined });
        let mut rebuild = Rebuild::new(&stock, window::DEFAULT_WINDOW, Utc::now());
        for r in compacted(&logs.ledger) {
            rebuild.ledger_record(&r);
        }
        let from = if resend { 0 } else { rebuild.tail_from() };
        for (e, (d, o)) in logs.events.iter().enumerate().skip(from as usize) {
            rebuild.record(d, e as i64, Some(*o));
        }
        let mut rebuilt = rebuild.finish(0);
        run(&mut rebuilt, &stock, &mut logs, &orders, (committed.saturating_sub(rewind), batch), How { pipelined, ..How::default() });
        // What the ledger says after one more crash right now equals the live state too.
        let mut again = Rebuild::new(&stock, window::DEFAULT_WINDOW, Utc::now());
        for r in compacted(&logs.ledger) {
            again.ledger_record(&r);
        }
        let tail = again.tail_from() as usize;
        for (e, (d, o)) in logs.events.iter().enumerate().skip(tail) {
            again.record(d, e as i64, Some(*o));
        }
        let again = again.finish(0);
        for item in items {
            prop_assert_eq!(again.reserved(item), straight.reserved(item), "{} after a second rebuild", item);
            prop_assert_eq!(again.restocked(item), straight.restocked(item), "{} restocked after a second rebuild", item);
        }

        let got: Vec<_> = logs.events.iter().map(|(d, _)| outcome(d)).collect();
        let want: Vec<_> = straight_logs.events.iter().map(|(d, _)| outcome(d)).collect();
        prop_assert_eq!(got, want);
        for item in items {
            prop_assert_eq!(rebuilt.reserved(item), straight.reserved(item));
            prop_assert_eq!(rebuilt.restocked(item), straight.restocked(item));
            prop_assert!(rebuilt.reserved(item) <= limit + rebuilt.restocked(item));
        }
        prop_assert_eq!(rebuilt.decided_count(), straight.decided_count());
        prop_assert_eq!(rebuilt.next_order(), straight.next_order());
    }

    #[test]
    fn never_oversells(qtys in proptest::collection::vec((0usize..3, 1u32..6), 0..200), limit in 0u64..40) {
        let items = ["a", "b", "c"];
        let stock = Stock::parse(&format!("a={limit},b={limit},c={limit}")).unwrap();
        let mut l = PartitionLedger::default();
        let mut reserved = [0u64; 3];
        for (i, q) in qtys {
            if let Outcome::Decided(d) = next(&mut l, &stock, &order(items[i], q)) {
                if d.status == DecisionStatus::Reserved { reserved[i] += u64::from(q); }
            }
        }
        for (i, item) in items.iter().enumerate() {
            prop_assert!(reserved[i] <= limit);
            prop_assert_eq!(l.reserved(item), reserved[i]);
        }
    }
}

#[test]
fn a_re_sent_order_is_caught_within_the_window_only() {
    let stock = Stock::default();
    let mut l = PartitionLedger::new(Duration::from_secs(3600));
    let now = Utc::now();
    let o = OrderPlaced::new("taco", 1, "u", now - chrono::TimeDelta::minutes(30));
    decided(l.decide(&stock, &o, 0, now));
    assert_eq!(l.decide(&stock, &o, 1, now), Outcome::Duplicate);
    // Two hours later the id is forgotten: re-sent then, it is decided again.
    let later = now + chrono::TimeDelta::hours(2);
    decided(l.decide(&stock, &o, 2, later));
    assert_eq!(
        l.window().len(),
        0,
        "placed before the window: not remembered"
    );
}

fn restock(item: &str, qty: u32) -> StockRestockRequested {
    StockRestockRequested::new(item, qty, Utc::now())
}

fn restocked(o: RestockOutcome) -> RestockDecision {
    match o {
        RestockOutcome::Decided(d) => d,
        RestockOutcome::Duplicate => panic!("duplicate"),
    }
}

#[test]
fn a_restock_after_selling_out_allows_exactly_its_units_more() {
    let stock = Stock::parse("pizza=5").unwrap();
    let mut l = PartitionLedger::default();
    decided(next(&mut l, &stock, &order("pizza", 5)));
    assert_eq!(
        decided(next(&mut l, &stock, &order("pizza", 1))).status,
        DecisionStatus::Failed
    );
    let offset = l.next_order();
    let r = restocked(l.restock(&stock, &restock("pizza", 7), offset, Utc::now()));
    assert_eq!(
        (r.status, r.stock, r.reason),
        (RestockStatus::Restocked, 12, None)
    );
    assert_eq!((l.restocked("pizza"), l.available(&stock, "pizza")), (7, 7));
    let mut more = 0;
    for _ in 0..20 {
        if decided(next(&mut l, &stock, &order("pizza", 1))).status == DecisionStatus::Reserved {
            more += 1;
        }
    }
    assert_eq!(more, 7);
    assert_eq!(l.available(&stock, "pizza"), 0);
    // the flush writes the restocked units with the item, and the checkpoint repeats them
    let records = l.flush_records(0, &stock, Utc::now());
    match (&records[0], records.last()) {
        (LedgerRecord::ItemStock(s), Some(LedgerRecord::LedgerCheckpoint(c))) => {
            assert_eq!((s.initial, s.reserved, s.restocked), (Some(5), 12, 7));
            assert_eq!(
                c.items["pizza"],
                ItemTotals {
                    reserved: 12,
                    restocked: 7
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn restocks_beyond_the_maximum_or_of_unknown_items_are_refused_without_panic() {
    let max = orderflow_events::MAX_STOCK;
    let stock = Stock::parse(&format!("pizza={}", max - 10)).unwrap();
    let mut l = PartitionLedger::default();
    let ok = restocked(l.restock(&stock, &restock("pizza", 10), 0, Utc::now()));
    assert_eq!((ok.status, ok.stock), (RestockStatus::Restocked, max));
    let over = restocked(l.restock(&stock, &restock("pizza", u32::MAX), 1, Utc::now()));
    assert_eq!((over.status, over.stock), (RestockStatus::Refused, max));
    assert!(over.reason.unwrap().contains("maximum"));
    let unknown = restocked(l.restock(&stock, &restock("caviar", 3), 2, Utc::now()));
    assert_eq!(unknown.status, RestockStatus::Refused);
    assert_eq!(unknown.reason.as_deref(), Some("unknown item \"caviar\""));
    assert_eq!(l.restocked("pizza"), 10);
    assert_eq!(l.restocked("caviar"), 0);
    // an unknown item gets no ledger record
    let keys: Vec<Vec<u8>> = l
        .flush_records(0, &stock, Utc::now())
        .iter()
        .map(|r| r.key().to_vec())
        .collect();
    assert_eq!(keys, [b"pizza".to_vec(), b"#checkpoint".to_vec()]);
}

#[test]
fn a_redelivered_or_re_sent_restock_is_applied_once() {
    let stock = Stock::default();
    let mut l = PartitionLedger::default();
    let r = restock("taco", 100);
    restocked(l.restock(&stock, &r, 0, Utc::now()));
    assert_eq!(
        l.restock(&stock, &r, 0, Utc::now()),
        RestockOutcome::Duplicate
    );
    assert_eq!(
        l.restock(&stock, &r, 5, Utc::now()),
        RestockOutcome::Duplicate
    );
    assert_eq!(l.restocked("taco"), 100);
    assert_eq!(l.next_order(), 6);
}

#[test]
fn a_rebuild_adds_the_catalogue_items_of_its_partition_and_a_first_checkpoint() {
    let stock = Stock::parse("tofu=3").unwrap();
    let p = orderflow_events::item_partition("tofu", orderflow_events::PARTITIONS);
    let l = Rebuild::new(&stock, window::DEFAULT_WINDOW, Utc::now()).finish(p);
    assert!(l.needs_flush());
    let records = l.flush_records(p, &stock, Utc::now());
    let items: Vec<&str> = records
        .iter()
        .filter_map(|r| match r {
            LedgerRecord::ItemStock(s) => Some(s.item.as_str()),
            _ => None,
        })
        .collect();
    let want: Vec<&str> = stock
        .items_of_partition(p, orderflow_events::PARTITIONS)
        .collect();
    assert!(items.contains(&"tofu"));
    assert_eq!(items, want, "exactly the configured items of partition {p}");
    assert!(matches!(
        records.last(),
        Some(LedgerRecord::LedgerCheckpoint(_))
    ));

    // Read back: nothing to write any more ...
    let mut again = Rebuild::new(&stock, window::DEFAULT_WINDOW, Utc::now());
    for r in &records {
        again.ledger_record(r);
    }
    let l = again.finish(p);
    assert!(!l.needs_flush());
    // ... until INITIAL_STOCK changes: a new quantity, or the item gone (`initial: null`).
    for (spec, want) in [("tofu=9", Some(9)), ("", None)] {
        let changed = Stock::parse(spec).unwrap();
        let mut r = Rebuild::new(&changed, window::DEFAULT_WINDOW, Utc::now());
        for rec in &records {
            r.ledger_record(rec);
        }
        let l = r.finish(p);
        assert!(l.needs_flush(), "{spec}");
        let tofu = l
            .flush_records(p, &changed, Utc::now())
            .into_iter()
            .find_map(|r| match r {
                LedgerRecord::ItemStock(s) if s.item == "tofu" => Some(s),
                _ => None,
            })
            .unwrap();
        assert_eq!(tofu.initial, want, "{spec}");
    }
}
