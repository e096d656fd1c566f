#!/usr/bin/env python3
"""Validate custom resources against their CRDs' openAPIV3Schema, refusing unknown fields.

An offline check (no API server needed; scripts/k8s/lint.sh runs it first): a typo such as
`spec.partitons` is caught here as the API server's strict field validation would. Every object whose
apiVersion/kind is served by one of the given CRDs is validated (types, enums, required
fields, and additionalProperties: false wherever the schema lists properties and does not
preserve unknown fields); objects of other kinds are skipped, or with --require-crd are errors
(a typo in apiVersion or kind would otherwise go unchecked). Exit status 1 on any error.

Usage: crd_check.py --crds DIR_OR_FILE [--crds ...] [--require-crd] MANIFEST.yaml...
"""
import argparse
import pathlib
import sys

import jsonschema
import yaml


def to_json_schema(node):
    """Structural schema -> JSON schema with unknown fields refused."""
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("x-kubernetes-validations", "description", "x-kubernetes-list-type",
                   "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-embedded-resource"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        else:
            out[key] = to_json_schema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("x-kubernetes-int-or-string", None)
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable"):
        out.pop("nullable", None)
        if "type" in out:
            out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def load_crds(paths):
    schemas = {}
    for p in paths:
        p = pathlib.Path(p)
        files = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")) if p.is_dir() else [p]
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    schema = version.get("schema", {}).get("openAPIV3Schema")
                    if not schema or not version.get("served", True):
                        continue
                    api = f"{spec['group']}/{version['name']}"
                    root = to_json_schema(schema)
                    # the apiserver always accepts these at the root, listed in the schema or not
                    for field in ("apiVersion", "kind", "metadata"):
                        root.setdefault("properties", {}).setdefault(field, {})
                    schemas[(api, spec["names"]["kind"])] = root
    return schemas



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crds", action="append")
    ap.add_argument("--require-crd", action="store_true", help="an object no given CRD serves is an error")
    ap.add_argument("manifests", nargs="+")
    args = ap.parse_args()
    if not args.crds:
        ap.error("--crds is required")
    schemas = load_crds(args.crds)
    if not schemas:
        print(f"crd_check: no CRDs found in {args.crds}", file=sys.stderr)
        return 1
    errors = checked = 0
    for m in args.manifests:
        for doc in yaml.safe_load_all(pathlib.Path(m).read_text()):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            schema = schemas.get(key)
            if schema is None:
                if args.require_crd:
                    print(f"crd_check: {m}: {key[1]}/{doc.get('metadata', {}).get('name', '?')}: "
                          f"no CRD given serves {key[0]} {key[1]}", file=sys.stderr)
                    errors += 1
                continue
            checked += 1
            name = f"{m}: {doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
            found = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
            for e in found:
                path = ".".join(str(p) for p in e.path) or "(root)"
                print(f"crd_check: {name}: {path}: {e.message}", file=sys.stderr)
            errors += len(found)
    print(f"crd_check: {checked} custom resources checked against {len(schemas)} CRD versions, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
