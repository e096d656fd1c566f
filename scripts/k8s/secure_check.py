#!/usr/bin/env python3
"""Consistency of the opt-in secured setup (deploy/secure/) with the rest of the project.

1. deploy/secure/kafka.yaml is the Kafka of deploy/kafka.yaml with exactly three changes: its
   only listener is deploy/kafka.yaml's `tls` listener (TLS, SCRAM-SHA-512), authorization is
   `simple`, and the User Operator is on. Anything else that differs is drift.
2. The KafkaUser in deploy/secure/kafka-user.yaml belongs to that Kafka, logs in the way the
   listener expects, and its ACLs are exactly what the code uses, nothing more: Read, Write,
   Describe on each topic the services name (services/events: TOPIC_*; also every KafkaTopic in
   deploy/topics.yaml), Read and Describe on each consumer group (GROUP_*), Describe only on the
   group.id of each client that never joins a group (KafkaConfig::reader("x") and
   ::follower("x") -> "x-reader", in services/ outside the test harness; analytics' reader ids
   derive from its group, services/analytics-service/src/group.rs, resolved with the default
   group); literal names, no cluster ACLs, no All/Create/Alter/Delete/IdempotentWrite. With the
   chart's inventory.transactions.enabled (the default), also Write and Describe on the transactionalId
   prefix inventory uses (`<release>-inventory`, release `orderflow` as docs/kubernetes.md
   installs it, or inventory.transactions.idPrefix). For each shadow-capable group (a chart
   template passes it as CONSUMER_GROUP), the prefix `<group>-shadow-` of a shadow replay's names:
   Create, Read, Write, Describe, Delete, DescribeConfigs on topics and Read, Describe, Delete on
   groups. Those are the only prefixed ACLs.
3. The chart's defaults (helm/orderflow/values.yaml) match: cluster name, SASL user name, SCRAM
   mechanism, the Secret keys Strimzi writes (ca.crt, password), TLS listener port 9093.

Usage: secure_check.py   (from the repository root). Prints one line per failed check, exit 1 if any.
"""
import copy
import pathlib
import re
import sys

import yaml

fails = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        fails.append(what)


def docs(path):
    return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]


def one(path, kind):
    found = [d for d in docs(path) if d.get("kind") == kind]
    check(len(found) == 1, f"{path}: exactly one {kind} (found {len(found)})")
    return found[0] if found else {}


# 1. the secured Kafka is the default Kafka with three changes
base = one("deploy/kafka.yaml", "Kafka")
secure = one("deploy/secure/kafka.yaml", "Kafka")
name = base.get("metadata", {}).get("name")
check(secure.get("metadata", {}).get("name") == name, f"deploy/secure/kafka.yaml names the Kafka {name!r}")
base_tls = [lst for lst in base.get("spec", {}).get("kafka", {}).get("listeners", []) if lst.get("name") == "tls"]
check(len(base_tls) == 1, "deploy/kafka.yaml has one listener named tls")
tls = base_tls[0] if base_tls else {}
check(tls.get("tls") is True and tls.get("type") == "internal", "the tls listener: internal, tls: true")
check(tls.get("authentication", {}).get("type") == "scram-sha-512", "the tls listener: authentication scram-sha-512")
check(tls.get("port") == 9093, "the tls listener: port 9093 (the chart's bootstrap port with kafka.tls.enabled)")
plain = [lst for lst in base.get("spec", {}).get("kafka", {}).get("listeners", []) if lst.get("name") == "plain"]
check(len(plain) == 1 and plain[0].get("port") == 9092 and "authentication" not in plain[0],
      "deploy/kafka.yaml keeps the unauthenticated plain listener on 9092 (the default flow)")
check("authorization" not in base.get("spec", {}).get("kafka", {}),
      "deploy/kafka.yaml has no authorization (it would deny the plain listener's ANONYMOUS clients)")
s_kafka = secure.get("spec", {}).get("kafka", {})
check(s_kafka.get("listeners") == base_tls, "deploy/secure/kafka.yaml: its only listener is deploy/kafka.yaml's tls listener")
check(s_kafka.get("authorization") == {"type": "simple"}, "deploy/secure/kafka.yaml: authorization {type: simple}")
check(secure.get("spec", {}).get("entityOperator", {}).get("userOperator") is not None,
      "deploy/secure/kafka.yaml: entityOperator.userOperator on (KafkaUsers need it)")
a, b = copy.deepcopy(base), copy.deepcopy(secure)
for k in (a, b):
    k.get("spec", {}).get("kafka", {}).pop("listeners", None)
    k.get("spec", {}).get("kafka", {}).pop("authorization", None)
    k.get("spec", {}).get("entityOperator", {}).pop("userOperator", None)
check(a == b, "deploy/secure/kafka.yaml equals deploy/kafka.yaml's Kafka apart from listeners, authorization, "
              "userOperator (update both)")

# 2. the KafkaUser and its ACLs
user = one("deploy/secure/kafka-user.yaml", "KafkaUser")
uname = user.get("metadata", {}).get("name")
check(user.get("metadata", {}).get("labels", {}).get("strimzi.io/cluster") == name,
      f"KafkaUser {uname}: label strimzi.io/cluster: {name}")
check(user.get("spec", {}).get("authentication", {}).get("type") == tls.get("authentication", {}).get("type"),
      f"KafkaUser {uname}: authentication type is the tls listener's")
authz = user.get("spec", {}).get("authorization", {})
check(authz.get("type") == "simple", f"KafkaUser {uname}: authorization simple")

events = pathlib.Path("services/events/src/lib.rs").read_text()
topics = set(re.findall(r'pub const TOPIC_\w+: &str = "([^"]+)";', events))
groups = set(re.findall(r'pub const GROUP_\w+: &str = "([^"]+)";', events))
check(topics, "services/events/src/lib.rs: TOPIC_* constants found")
check(groups, "services/events/src/lib.rs: GROUP_* constants found")
topics |= {d["spec"].get("topicName", d["metadata"]["name"]) for d in docs("deploy/topics.yaml") if d.get("kind") == "KafkaTopic"}

kafka_rs = pathlib.Path("services/runtime/src/kafka.rs").read_text()
check('format!("{client_id}-reader")' in kafka_rs,
      "services/runtime/src/kafka.rs: KafkaConfig::reader still names its group <client>-reader (update this check)")
readers = set()
sources = [rs for rs in sorted(pathlib.Path("services").glob("*/src/**/*.rs"))
           if rs.parts[1] != "testkit"]  # test-only
# string constants by crate: a client id may be named in a sibling module
crate_consts = {}
for rs in sources:
    crate_consts.setdefault(rs.parts[1], {}).update(
        re.findall(r'const (\w+): &str = "([^"]+)";', rs.read_text()))
# analytics' own names: fn x(&self) -> String { format!("{}-<suffix>", self.group) } in group.rs,
# called as .reader(&names.x()); resolved with the default group (GROUP_ANALYTICS)
own_rs = pathlib.Path("services/analytics-service/src/group.rs").read_text()
own_names = dict(re.findall(
    r'fn (\w+)\(&self\) -> String \{\s*format!\("\{\}-([\w.-]+)", self\.group\)', own_rs))
check(own_names, "services/analytics-service/src/group.rs: OwnNames' reader ids found")
default_group = re.search(r'pub const GROUP_ANALYTICS: &str = "([^"]+)";', events)
for rs in sources:
    text = rs.read_text()
    consts = crate_consts[rs.parts[1]]
    for method in re.findall(r'\.(?:reader|follower)\(\s*&\w+\.(\w+)\(\)\s*\)', text):
        if method in own_names and default_group:
            readers.add(f"{default_group.group(1)}-{own_names[method]}-reader")
        else:
            check(False, f"{rs}: reader(&_.{method}()): cannot resolve the client id (update this check)")
    for arg in re.findall(r'\.(?:reader|follower)\(\s*("[^"]+"|\w+)\s*\)', text):
        if arg.startswith('"'):
            readers.add(arg.strip('"') + "-reader")
        elif arg in consts:
            readers.add(consts[arg] + "-reader")
        else:
            check(False, f"{rs}: reader({arg}): cannot resolve the client id (update this check)")
check(readers, "services/: KafkaConfig::reader calls found")

want = {("topic", t): {"Read", "Write", "Describe"} for t in topics}
want.update({("group", g): {"Read", "Describe"} for g in groups})
want.update({("group", r): {"Describe"} for r in readers})
inv = yaml.safe_load(pathlib.Path("helm/orderflow/values.yaml").read_text())["inventory"]["transactions"]
txn_key = ("transactionalId", inv.get("idPrefix") or "orderflow-inventory")
if inv.get("enabled"):
    want[txn_key] = {"Write", "Describe"}
# shadow-capable groups: the chart passes them as CONSUMER_GROUP
shadow_groups = set()
for tpl in sorted(pathlib.Path("helm/orderflow/templates").glob("*.yaml")):
    shadow_groups |= set(re.findall(r'"name" "CONSUMER_GROUP" "value" "([^"]+)"', tpl.read_text()))
check(shadow_groups <= groups, f"CONSUMER_GROUP of the chart ({sorted(shadow_groups)}) is a GROUP_* constant")
prefixed = {txn_key}
for g in shadow_groups:
    want[("topic", f"{g}-shadow-")] = {"Create", "Read", "Write", "Describe", "Delete", "DescribeConfigs"}
    want[("group", f"{g}-shadow-")] = {"Read", "Describe", "Delete"}
    prefixed |= {("topic", f"{g}-shadow-"), ("group", f"{g}-shadow-")}
got = {}
for acl in authz.get("acls", []):
    res = acl.get("resource", {})
    key = (res.get("type"), res.get("name"))
    check(acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*", f"ACL {key}: allow from any host")
    if key == txn_key:
        check(res.get("patternType") == "prefix" and "*" not in (res.get("name") or "*"),
              f"ACL {key}: inventory's transactional ids, a prefix without wildcards")
    elif key in prefixed:
        check(res.get("patternType") == "prefix" and "*" not in (res.get("name") or "*"),
              f"ACL {key}: a shadow replay's names, a prefix without wildcards")
    else:
        check(res.get("patternType", "literal") == "literal" and "*" not in (res.get("name") or "*"),
              f"ACL {key}: a literal name, no prefix or wildcard")
        check(res.get("type") in ("topic", "group"), f"ACL {key}: topics and groups only (no cluster)")
    check(key not in got, f"ACL {key}: listed once")
    got[key] = set(acl.get("operations", []))
for key, ops in sorted(want.items()):
    check(got.get(key) == ops, f"ACL {key}: operations {sorted(ops)} (got {sorted(got.get(key, []))})")
for key in sorted(set(got) - set(want)):
    check(False, f"ACL {key}: not used by the code (stale or too broad)")

# 3. the chart's defaults
values = yaml.safe_load(pathlib.Path("helm/orderflow/values.yaml").read_text())["kafka"]
check(values.get("clusterName") == name, f"values.yaml kafka.clusterName == {name}")
sasl, tlsv = values.get("sasl", {}), values.get("tls", {})
check(sasl.get("enabled") is False and tlsv.get("enabled") is False, "values.yaml: kafka.tls and kafka.sasl off by default")
check(sasl.get("username") == uname, f"values.yaml kafka.sasl.username == the KafkaUser {uname}")
check(sasl.get("mechanism") == "SCRAM-SHA-512", "values.yaml kafka.sasl.mechanism SCRAM-SHA-512 (the listener's)")
check(sasl.get("passwordSecret") == "" and sasl.get("passwordKey") == "password",
      "values.yaml: password from the KafkaUser's Secret (named after the user), key password")
check(tlsv.get("caSecret") == "" and tlsv.get("caKey") == "ca.crt",
      "values.yaml: CA from <clusterName>-cluster-ca-cert, key ca.crt (Strimzi's cluster CA)")

for f in fails:
    print(f"secure_check: FAILED: {f}")
print(f"secure_check: {len(fails)} failed of {checks} checks ({len(want)} ACLs expected: {len(topics)} topics, "
      f"{len(groups)} groups, {len(readers)} reader group ids)")
sys.exit(1 if fails else 0)
