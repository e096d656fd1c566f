"""Shared bits of the Python peer: the menu, the event shape, timing output.

The events are the same JSON documents orderflow writes (services/events), so every peer
works on the same records.
"""
import datetime
import json
import sys
import time
import uuid

ITEMS = ["burger", "pizza", "salad", "sushi", "taco", "ramen", "curry", "wrap"]
STOCK_PER_ITEM = 2000


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_order(item, qty, user_id):
    return {
        "type": "OrderPlaced",
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "order_id": str(uuid.uuid4()),
        "item": item,
        "qty": qty,
        "user_id": user_id,
        "ts": now_iso(),
    }


def report(**fields):
    """One JSON line on stdout: what the bench reads back."""
    print(json.dumps(fields), flush=True)


class Clock:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self):
        return time.perf_counter() - self.start


IDLE_LIMIT_S = 60


def polled(fetch, progress):
    """Yield the non-empty results of fetch() (a list of records, waiting up to about 1 s);
    the peer dies after IDLE_LIMIT_S seconds without a record (progress() says how far it
    got)."""
    idle = 0
    while True:
        records = fetch()
        if not records:
            idle += 1
            if idle > IDLE_LIMIT_S:
                die(f"no records for {IDLE_LIMIT_S} s after {progress()}")
            continue
        idle = 0
        yield records


def kafka_python_fetch(consumer, max_records):
    """fetch() for polled(): one kafka-python poll, its records in one list."""
    return lambda: [
        r for rs in consumer.poll(timeout_ms=1000, max_records=max_records).values() for r in rs
    ]


def die(msg):
    print(f"peer: {msg}", file=sys.stderr)
    sys.exit(1)
