"""P1 peer: produce COUNT OrderPlaced events (acks=all), keyed by item, then flush."""
import argparse
import json

from kafka import KafkaProducer

from common import ITEMS, Clock, new_order, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    a = ap.parse_args()
    producer = KafkaProducer(
        bootstrap_servers=a.bootstrap,
        acks="all",
        key_serializer=str.encode,
        value_serializer=lambda v: json.dumps(v).encode(),
    )
    clock = Clock()
    for i in range(a.count):
        item = ITEMS[i % len(ITEMS)]
        producer.send(a.topic, key=item, value=new_order(item, 1 + (i // len(ITEMS)) % 3, f"user-{i % 100}"))
    producer.flush()
    elapsed = clock.seconds()
    producer.close()
    report(produced=a.count, seconds=elapsed)


if __name__ == "__main__":
    main()
