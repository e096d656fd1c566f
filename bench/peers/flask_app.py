"""P4 peer: POST /orders {item, qty, user_id} -> 202 {order_id} once the broker acknowledged
the OrderPlaced record (acks=all), like order-service. Flask's own server, threaded."""
import argparse
import json

from flask import Flask, jsonify, request
from kafka import KafkaProducer

from common import new_order

app = Flask(__name__)
producer = None
topic = None


@app.post("/orders")
def place_order():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="body must be a JSON object"), 400
    item, qty, user_id = body.get("item"), body.get("qty"), body.get("user_id")
    if not isinstance(item, str) or not isinstance(qty, int) or qty < 1 or not isinstance(user_id, str):
        return jsonify(error="item (string), qty (integer >= 1) and user_id (string) are required"), 400
    order = new_order(item, qty, user_id)
    try:
        producer.send(topic, key=item.encode(), value=json.dumps(order).encode()).get(timeout=10)
    except Exception as e:  # the broker did not take it
        return jsonify(error=f"not published: {e}"), 503
    return jsonify(order_id=order["order_id"]), 202


@app.get("/healthz")
def healthz():
    return "ok"


def main():
    global producer, topic
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    topic = a.topic
    producer = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all")
    app.run(host="127.0.0.1", port=a.port, threaded=True)


if __name__ == "__main__":
    main()
