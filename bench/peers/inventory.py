"""P2 peer: consume orders, decide stock (idempotent by order_id), produce the decision,
flush, then commit: the same work as inventory-service. Exits after COUNT decisions."""
import argparse
import json
import uuid

from kafka import KafkaConsumer, KafkaProducer

from common import ITEMS, STOCK_PER_ITEM, Clock, kafka_python_fetch, now_iso, polled, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--count", type=int, required=True)
    a = ap.parse_args()
    clock = Clock()
    consumer = KafkaConsumer(
        a.input,
        bootstrap_servers=a.bootstrap,
        group_id=a.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", key_serializer=str.encode)
    stock = {item: STOCK_PER_ITEM for item in ITEMS}
    seen = set()
    decided = 0
    for records in polled(kafka_python_fetch(consumer, 500), lambda: f"{decided} decisions"):
        for r in records:
            order = json.loads(r.value)
            if order["order_id"] in seen:
                continue
            seen.add(order["order_id"])
            item, qty = order["item"], order["qty"]
            ok = stock.get(item, 0) >= qty
            if ok:
                stock[item] -= qty
            decision = dict(order)
            decision.update(
                type="InventoryReserved" if ok else "InventoryFailed",
                event_id=str(uuid.uuid4()),
                status="reserved" if ok else "failed",
                decided_at=now_iso(),
            )
            if not ok:
                decision["reason"] = "insufficient stock"
            producer.send(a.output, key=item, value=json.dumps(decision).encode())
            decided += 1
        producer.flush()
        consumer.commit()
        if decided >= a.count:
            break
    elapsed = clock.seconds()
    consumer.close()
    producer.close()
    report(decided=decided, seconds=elapsed)


if __name__ == "__main__":
    main()
