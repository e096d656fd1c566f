#!/usr/bin/env python3
"""Assertions on what `helm install orderflow helm/orderflow` created in a namespace.

Reads `kubectl get deploy,svc,sa,role,rolebinding -o json` on stdin.
Usage: kubectl -n NS get ... -o json | assert_install.py NS EXPECTED_INVENTORY_REPLICAS
Prints one line per failed assertion and exits 1 when any failed.
"""
import json
import sys

ns, inventory_replicas = sys.argv[1], int(sys.argv[2])
items = json.load(sys.stdin)["items"]
objs = {(o["kind"], o["metadata"]["name"]): o for o in items}
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


def get(kind, name):
    o = objs.get((kind, name))
    check(o is not None, f"{kind}/{name} exists")
    return o or {}


bootstrap = f"orderflow-kafka-bootstrap.{ns}.svc:9092"
ports = {"order": 8080, "inventory": 8081, "analytics": 8082, "replay-controller": 8083}
replicas = {"order": 1, "inventory": inventory_replicas, "analytics": 1, "replay-controller": 1}
for name, port in ports.items():
    d = get("Deployment", name)
    if not d:
        continue
    spec = d["spec"]
    pod = spec["template"]["spec"]
    check(spec.get("replicas") == replicas[name], f"{name}: spec.replicas == {replicas[name]} (got {spec.get('replicas')})")
    ann = spec["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
          and ann.get("prometheus.io/path") == "/metrics", f"{name}: prometheus scrape annotations")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccomp RuntimeDefault")
    (c,) = pod["containers"]
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation false")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities drop ALL")
    check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{name}: readiness /readyz")
    check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{name}: liveness /healthz")
    check(c.get("imagePullPolicy") == "IfNotPresent", f"{name}: imagePullPolicy IfNotPresent")
    check(c.get("resources", {}).get("requests") and c.get("resources", {}).get("limits", {}).get("memory"),
          f"{name}: resource requests and a memory limit")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("KAFKA_BOOTSTRAP", {}).get("value") == bootstrap, f"{name}: KAFKA_BOOTSTRAP == {bootstrap}")
    check(env.get("HTTP_ADDR", {}).get("value") == f"0.0.0.0:{port}", f"{name}: HTTP_ADDR on {port}")
    check(env.get("LOG_FORMAT", {}).get("value") == "json", f"{name}: LOG_FORMAT json")
    is_ctl = name == "replay-controller"
    # the controller, and analytics for its dashboard's ReplayRequests panel (read-only Role)
    own_sa = {"replay-controller": "replay-controller", "analytics": "analytics"}.get(name)
    check(pod.get("serviceAccountName") == own_sa, f"{name}: service account {own_sa}")
    check(pod.get("automountServiceAccountToken") is (own_sa is not None),
          f"{name}: API token mounted only for the controller and analytics")
    if name == "analytics" or is_ctl:
        check(spec.get("strategy", {}).get("type") == "Recreate", f"{name}: Recreate (never two at once)")
    check(env.get("HTTP_DRAIN_SECONDS", {}).get("value") == "3",
          f"{name}: HTTP_DRAIN_SECONDS=3 (kept-alive clients move off a stopping pod)")
    check((c.get("lifecycle") or {}).get("preStop", {}).get("sleep", {}).get("seconds") == 3,
          f"{name}: preStop sleep 3 s (kube-proxy takes a stopping pod out first)")
    if name == "inventory":
        check("THROTTLE_MS" in env, "inventory: THROTTLE_MS set")
    if is_ctl:
        check(env.get("WATCH_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
              == "metadata.namespace", "controller: WATCH_NAMESPACE from its namespace")
    if name == "analytics":
        check(env.get("REPLAY_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
              == "metadata.namespace", "analytics: REPLAY_NAMESPACE from its namespace")
        check("LAG_INTERVAL_MS" in env, "analytics: LAG_INTERVAL_MS set")
        check(env.get("CONSUMER_GROUP", {}).get("value") == "analytics",
              "analytics: CONSUMER_GROUP=analytics (shadow-capable)")
    else:
        check("CONSUMER_GROUP" not in env, f"{name}: no CONSUMER_GROUP (only analytics can run as a shadow)")

    s = get("Service", name)
    if s:
        sel = s["spec"].get("selector", {})
        labels = spec["template"]["metadata"]["labels"]
        check(sel and all(labels.get(k) == v for k, v in sel.items()), f"service {name} selects its pods")
        check(s["spec"]["ports"][0]["port"] == port, f"service {name}: port {port}")

for name, node_port in (("order", 30080), ("analytics", 30082)):
    s = objs.get(("Service", name), {})
    check(s.get("spec", {}).get("type") == "NodePort" and s["spec"]["ports"][0].get("nodePort") == node_port,
          f"service {name}: NodePort {node_port} (kind-config.yaml maps it)")

get("ServiceAccount", "replay-controller")
role = get("Role", "replay-controller")
rb = get("RoleBinding", "replay-controller")
if rb:
    check(rb["roleRef"]["name"] == "replay-controller"
          and rb["subjects"] == [{"kind": "ServiceAccount", "name": "replay-controller", "namespace": ns}],
          "rolebinding binds the controller's service account to its Role")
for r in role.get("rules", []):
    check("*" not in r.get("verbs", []) and "*" not in r.get("resources", []), f"role: no wildcards ({r})")
    # events are created; deployments created, patched and deleted: a shadow replay's copy
    check("delete" not in r.get("verbs", []) and "create" not in r.get("verbs", [])
          or r.get("resources") == ["events"]
          or (r.get("resources") == ["deployments"] and r.get("apiGroups") == ["apps"]),
          f"role: create only for events and deployments (a shadow's copy), delete only deployments ({r})")

def grants(rules, group, resource, verb):
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
               and verb in r.get("verbs", []) for r in rules)


# a shadow's promotion waits for the Services in front of the live pods to route to the others
for group, resource in (("", "services"), ("", "pods"), ("discovery.k8s.io", "endpointslices")):
    check(grants(role.get("rules", []), group, resource, "list"),
          f"role: list {resource} (a promotion waits for ready endpoints)")


def only_replayrequests(account, verbs, why):
    """ServiceAccount `account`, bound by its RoleBinding to its Role, which grants exactly
    `verbs` on replayrequests and nothing else."""
    get("ServiceAccount", account)
    role = get("Role", account)
    binding = get("RoleBinding", account)
    if binding:
        check(binding["roleRef"]["name"] == account
              and binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
              f"rolebinding binds {account}'s service account to its Role")
    if role:
        check(role.get("rules") == [{"apiGroups": ["orderflow.io"], "resources": ["replayrequests"],
                                     "verbs": verbs}],
              f"role {account}: {'/'.join(verbs)} replayrequests only ({why}; {role.get('rules')})")


# analytics: read-only on replayrequests (the dashboard's panel)
only_replayrequests("analytics", ["get", "list", "watch"], "the dashboard's panel")
# replay-drain (the pre-delete hook's `replay-controller drain`)
only_replayrequests("replay-drain", ["list", "delete"], "the pre-delete hook")

for f in fails:
    print(f"assert_install: FAILED: {f}")
print(f"assert_install: {len(fails)} failed assertions over {len(objs)} objects")
sys.exit(1 if fails else 0)
