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


def polled(consumer, max_records, progress):
    """Yield the records of each poll, one list per poll; the peer dies after 60 s without a
    record (progress() says how far it got)."""
    idle = 0
    while True:
        batch = consumer.poll(timeout_ms=1000, max_records=max_records)
        if not batch:
            idle += 1
            if idle > 60:
                die(f"no records for 60 s after {progress()}")
            continue
        idle = 0
        yield [r for records in batch.values() for r in records]


def die(msg):
    print(f"peer: {msg}", file=sys.stderr)
    sys.exit(1)
