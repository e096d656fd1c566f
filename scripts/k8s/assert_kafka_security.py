#!/usr/bin/env python3
"""Assertions on the Kafka settings of the chart's Deployments (values kafka.tls / kafka.sasl).

Reads on stdin either `helm template` output (YAML documents) or `kubectl get deploy -o json`
(a List). Every Deployment must be one of the chart's services; each must carry:
  --protocol NONE: no KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_* variable, no CA volume or
                   mount (the default install, as before TLS/SASL existed);
  --protocol SSL | SASL_SSL | SASL_PLAINTEXT: KAFKA_SECURITY_PROTOCOL with that value;
     with SASL: KAFKA_SASL_MECHANISM and KAFKA_SASL_USERNAME as given, KAFKA_SASL_PASSWORD from a
                secretKeyRef (--password-secret, --password-key) and never a literal value;
     with SSL:  a volume from Secret --ca-secret holding only key --ca-key, mounted read-only at
                /etc/orderflow/kafka-ca, KAFKA_SSL_CA_LOCATION pointing at the file in it;
     without the SASL or SSL half: none of that half's variables, volumes or mounts;
and in every case KAFKA_BOOTSTRAP == --bootstrap, the root filesystem read-only, and no literal
value in any variable whose name mentions a password.
Usage: ... | assert_kafka_security.py --protocol P --bootstrap HOST:PORT [--deployments N] [options]
Prints one line per failed assertion and exits 1 when any failed.
"""
import argparse
import json
import sys

import yaml

CA_DIR = "/etc/orderflow/kafka-ca"
SERVICES = {"order", "inventory", "analytics", "replay-controller"}
SASL_VARS = ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")

ap = argparse.ArgumentParser()
ap.add_argument("--protocol", required=True, choices=["NONE", "SSL", "SASL_SSL", "SASL_PLAINTEXT"])
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--deployments", type=int, default=4, help="how many Deployments the chart renders")
ap.add_argument("--mechanism", default="SCRAM-SHA-512")
ap.add_argument("--username", default="orderflow")
ap.add_argument("--password-secret", default="orderflow")
ap.add_argument("--password-key", default="password")
ap.add_argument("--ca-secret", default="orderflow-cluster-ca-cert")
ap.add_argument("--ca-key", default="ca.crt")
ap.add_argument("--label", default="", help="prefix for the messages (which render this is)")
args = ap.parse_args()

text = sys.stdin.read()
try:
    objs = json.loads(text)["items"]
except ValueError:
    objs = [d for d in yaml.safe_load_all(text) if d]
deploys = [o for o in objs if o.get("kind") == "Deployment"]
fails = []
sasl = args.protocol in ("SASL_SSL", "SASL_PLAINTEXT")
tls = args.protocol in ("SSL", "SASL_SSL")


def check(cond, what):
    if not cond:
        fails.append(f"{args.label}{what}")


check(len(deploys) == args.deployments, f"{args.deployments} Deployments (got {len(deploys)})")
for d in deploys:
    name = d["metadata"]["name"]
    check(name in SERVICES, f"{name}: one of the chart's services")
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    check(env.get("KAFKA_BOOTSTRAP", {}).get("value") == args.bootstrap,
          f"{name}: KAFKA_BOOTSTRAP == {args.bootstrap} (got {env.get('KAFKA_BOOTSTRAP', {}).get('value')})")
    check(c.get("securityContext", {}).get("readOnlyRootFilesystem") is True, f"{name}: root filesystem still read-only")
    for var, e in env.items():
        check("PASSWORD" not in var.upper() or "value" not in e, f"{name}: {var} has no literal value")

    proto = env.get("KAFKA_SECURITY_PROTOCOL", {})
    if args.protocol == "NONE":
        check("KAFKA_SECURITY_PROTOCOL" not in env, f"{name}: no KAFKA_SECURITY_PROTOCOL by default")
    else:
        check(proto.get("value") == args.protocol, f"{name}: KAFKA_SECURITY_PROTOCOL == {args.protocol} (got {proto})")

    if sasl:
        check(env.get("KAFKA_SASL_MECHANISM", {}).get("value") == args.mechanism, f"{name}: KAFKA_SASL_MECHANISM {args.mechanism}")
        check(env.get("KAFKA_SASL_USERNAME", {}).get("value") == args.username, f"{name}: KAFKA_SASL_USERNAME {args.username}")
        pw = env.get("KAFKA_SASL_PASSWORD", {})
        ref = pw.get("valueFrom", {}).get("secretKeyRef", {})
        check("value" not in pw and ref.get("name") == args.password_secret and ref.get("key") == args.password_key,
              f"{name}: KAFKA_SASL_PASSWORD from secretKeyRef {args.password_secret}/{args.password_key} (got {pw})")
    else:
        for var in SASL_VARS:
            check(var not in env, f"{name}: no {var} without SASL")

    ca_vars = [v for v in env if v.startswith("KAFKA_SSL_")]
    if tls:
        vol = vols.get("kafka-ca", {})
        secret = vol.get("secret", {})
        check(secret.get("secretName") == args.ca_secret, f"{name}: volume kafka-ca from Secret {args.ca_secret} (got {vol})")
        check(secret.get("items") == [{"key": args.ca_key, "path": args.ca_key}],
              f"{name}: volume kafka-ca holds only the key {args.ca_key} (got {secret.get('items')})")
        m = mounts.get("kafka-ca", {})
        check(m.get("mountPath") == CA_DIR and m.get("readOnly") is True, f"{name}: kafka-ca mounted read-only at {CA_DIR} (got {m})")
        check(env.get("KAFKA_SSL_CA_LOCATION", {}).get("value") == f"{CA_DIR}/{args.ca_key}",
              f"{name}: KAFKA_SSL_CA_LOCATION == {CA_DIR}/{args.ca_key}")
        check(ca_vars == ["KAFKA_SSL_CA_LOCATION"], f"{name}: KAFKA_SSL_CA_LOCATION is the only KAFKA_SSL_* variable")
    else:
        check("kafka-ca" not in vols and "kafka-ca" not in mounts, f"{name}: no CA volume or mount without TLS")
        check(not any(m.get("mountPath", "").startswith(CA_DIR) for m in c.get("volumeMounts", [])),
              f"{name}: nothing mounted at {CA_DIR} without TLS")
        check(not ca_vars, f"{name}: no KAFKA_SSL_* variable without TLS (got {ca_vars})")

for f in fails:
    print(f"assert_kafka_security: FAILED: {f}")
print(f"assert_kafka_security: {args.label}{args.protocol}, {len(deploys)} Deployments, {len(fails)} failed assertions")
sys.exit(1 if fails else 0)
