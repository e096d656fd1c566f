"""P3 peer: consume orders and inventory events from the beginning and compute the totals,
failure rate and per-minute counts (event time), committing as it goes. Exits after COUNT
records. confluent-kafka (librdkafka), as in the other Python peers, with its default fetch
sizes."""
import argparse
import json
from collections import defaultdict

from confluent_kafka import Consumer

from common import Clock, die, polled, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("topics", nargs="+")
    a = ap.parse_args()
    clock = Clock()
    consumer = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(a.topics)

    def fetch():
        msgs = consumer.consume(num_messages=2000, timeout=1.0)
        for m in msgs:
            if m.error():
                die(f"consume error: {m.error()}")
        return msgs

    per_minute = defaultdict(lambda: [0, 0, 0])  # orders, failed, reserved
    orders = reserved = failed = seen = 0
    for records in polled(fetch, lambda: f"{seen} records"):
        for r in records:
            e = json.loads(r.value())
            minute = e["ts"][:16] + ":00Z"
            if e["type"] == "OrderPlaced":
                orders += 1
                per_minute[minute][0] += 1
            elif e["type"] == "InventoryFailed":
                failed += 1
                per_minute[minute][1] += 1
            elif e["type"] == "InventoryReserved":
                reserved += 1
                per_minute[minute][2] += 1
            seen += 1
        consumer.commit(asynchronous=False)
        if seen >= a.count:
            break
    elapsed = clock.seconds()
    consumer.close()
    decided = reserved + failed
    report(
        records=seen,
        orders_total=orders,
        failure_rate=failed / decided if decided else 0.0,
        minutes=len(per_minute),
        seconds=elapsed,
    )


if __name__ == "__main__":
    main()
