#!/usr/bin/env python3
"""Does a Service answer throughout a hand-over between two Deployments?

On a running release (`make kind-up` + `helm install`, or `make e2e E2E_KIND_KEEP=1`), this
does by hand what a shadow replay's promotion does, ROUNDS times: a second analytics
Deployment (`analytics-b`, the live pod template plus a label, its own consumer group) joins
the analytics Service; once its pod is a ready endpoint the live deployment goes to 0, comes
back, and once a live pod is a ready endpoint again `analytics-b` is deleted. Meanwhile two
pollers ask the Service (NodePort, URL) for /api/metrics every 50 ms: one opens a new
connection each time, one keeps its connection alive as browsers do (and reconnects when the
server answers `Connection: close`). Every failure is printed with its time. Kafka keeps
what analytics-b made: the consumer group analytics-handover and its topic
analytics-handover-snapshots (remove them with kafka-consumer-groups.sh --delete and
kafka-topics.sh --delete, or with the cluster).

    scripts/k8s/handover.py [--namespace orderflow] [--rounds 4] [--url http://127.0.0.1:8082]

Measured on the kind bed (docs/replay-controller.md, "Why the live API keeps answering"):
with the chart's preStop sleep and HTTP drain, 0 failures in 16 hand-overs; with
HTTP_DRAIN_SECONDS=0 (`kubectl set env deploy/analytics HTTP_DRAIN_SECONDS=0`), the kept-alive
poller failed once per stopped pod.
"""
import argparse
import datetime
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

COMPONENT = "app.kubernetes.io/component=analytics"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def say(msg):
    print(f"{now()} {msg}", flush=True)


class Polls:
    def __init__(self, url):
        self.url = url
        self.ok = 0
        self.closes = 0
        self.failed = []
        self.stop = False

    def fail(self, how, e):
        self.failed.append(f"{now()} {how} {e!r}")
        say(f"FAIL {how} {e!r}")

    def fresh(self):
        while not self.stop:
            req = urllib.request.Request(self.url + "/api/metrics", headers={"Connection": "close"})
            try:
                with urllib.request.urlopen(req, timeout=2) as r:
                    r.read()
                    self.ok += 1
            except Exception as e:  # every failure counts, whatever it is
                self.fail("new connection", e)
            time.sleep(0.05)

    def kept_alive(self):
        u = urllib.parse.urlsplit(self.url)
        conn = None
        while not self.stop:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=2)
                conn.request("GET", "/api/metrics")
                r = conn.getresponse()
                r.read()
                self.ok += 1
                if (r.getheader("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
                    self.closes += 1
            except Exception as e:
                self.fail("kept-alive connection", e)
                conn = None
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--namespace", default="orderflow")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--url", default="http://127.0.0.1:8082")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per wait")
    a = ap.parse_args()

    def k(*args, inp=None):
        return subprocess.run(["kubectl", "-n", a.namespace, *args], input=inp,
                              capture_output=True, text=True, check=True).stdout

    def until(what, cond):
        deadline = time.monotonic() + a.timeout
        while not cond():
            if time.monotonic() > deadline:
                sys.exit(f"gave up waiting for {what}")
            time.sleep(0.1)

    def available(name):
        st = json.loads(k("get", "deploy", name, "-o", "json")).get("status", {})
        return (st.get("availableReplicas") or 0) >= 1 and (st.get("replicas") or 0) == 1 \
            and (st.get("updatedReplicas") or 0) >= 1

    def ready_endpoint(selector):
        pods = set(k("get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}").split())
        slices = json.loads(k("get", "endpointslices", "-l", "kubernetes.io/service-name=analytics", "-o", "json"))
        return any((e.get("conditions") or {}).get("ready", True) and (e.get("targetRef") or {}).get("name") in pods
                   for s in slices["items"] for e in s.get("endpoints") or [])

    def gone(selector):
        return not k("get", "pods", "-l", selector, "-o", "name").strip()

    live = json.loads(k("get", "deploy", "analytics", "-o", "json"))
    spec = json.loads(json.dumps(live["spec"]))
    spec["replicas"] = 1
    spec["selector"]["matchLabels"]["handover"] = "b"
    spec["template"]["metadata"]["labels"]["handover"] = "b"
    for c in spec["template"]["spec"]["containers"]:
        c["env"] = [e for e in c.get("env", []) if e["name"] != "CONSUMER_GROUP"]
        c["env"].append({"name": "CONSUMER_GROUP", "value": "analytics-handover"})
    copy = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "analytics-b", "namespace": a.namespace}, "spec": spec}
    replicas = live["spec"].get("replicas", 1)
    polls = Polls(a.url)
    threads = [threading.Thread(target=polls.fresh), threading.Thread(target=polls.kept_alive)]
    for t in threads:
        t.start()
    try:
        for r in range(a.rounds):
            say(f"round {r + 1}/{a.rounds}: analytics-b joins the Service")
            k("apply", "-f", "-", inp=json.dumps(copy))
            until("analytics-b available", lambda: available("analytics-b"))
            until("analytics-b a ready endpoint", lambda: ready_endpoint("handover=b"))
            say("  analytics-b is a ready endpoint; analytics to 0")
            k("scale", "deploy/analytics", "--replicas=0")
            until("the live pods gone", lambda: gone(f"{COMPONENT},!handover"))
            k("scale", "deploy/analytics", "--replicas=1")
            until("analytics available", lambda: available("analytics"))
            until("a live pod a ready endpoint", lambda: ready_endpoint(f"{COMPONENT},!handover"))
            say("  analytics is back and a ready endpoint; deleting analytics-b")
            k("delete", "deploy/analytics-b", "--wait=false")
            until("analytics-b's pod gone", lambda: gone("handover=b"))
    finally:
        polls.stop = True
        for t in threads:
            t.join()
        subprocess.run(["kubectl", "-n", a.namespace, "delete", "deploy/analytics-b", "--ignore-not-found"],
                       capture_output=True)
        subprocess.run(["kubectl", "-n", a.namespace, "scale", "deploy/analytics", f"--replicas={replicas}"],
                       capture_output=True)
    print(f"handover: {2 * a.rounds} hand-overs, {polls.ok} polls answered, {len(polls.failed)} failed; "
          f"kept-alive connections moved by Connection: close: {polls.closes}")
    for f in polls.failed:
        print("  " + f)
    sys.exit(1 if polls.failed else 0)


if __name__ == "__main__":
    main()
