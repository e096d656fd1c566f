#!/usr/bin/env python3
"""Static checks of the Dockerfile (no Docker daemon needed):
- it parses (Docker's own Go parser, via the `dockerfile` package);
- every `COPY --from=` names an earlier stage; the last stage runs as a numeric non-root USER;
- every image of scripts/k8s/kind.sh (SERVICES) is a bin target of the cargo workspace, built by
  the build stage (`-p NAME`) and copied to /out;
- .dockerignore lets the whole workspace into the build context (every member under services/).
Usage: dockerfile_check.py  (from the repository root; reads `cargo metadata --no-deps`)
"""
import json
import re
import subprocess
import sys

import dockerfile

errors = []
cmds = dockerfile.parse_file("Dockerfile")
stages, user = [], None
for c in cmds:
    if c.cmd == "FROM":
        v = [x.lower() for x in c.value]
        stages.append(v[2] if len(v) >= 3 and v[1] == "as" else str(len(stages)))
        user = None
    for f in c.flags:
        if f.startswith("--from=") and f[len("--from="):] not in stages[:-1]:
            errors.append(f"{c.original}: no earlier stage {f[7:]!r}")
    if c.cmd == "USER":
        user = c.value[0]
if not (user and re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user)):
    errors.append(f"the final stage must end with a numeric non-root USER (got {user!r})")
build_runs = " ".join(" ".join(c.value) for c in cmds if c.cmd == "RUN")

services = re.search(r"^SERVICES=\((.*)\)$", open("scripts/k8s/kind.sh").read(), re.M).group(1).split()
meta = json.loads(subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
                                 check=True, capture_output=True, text=True).stdout)
bins = {t["name"]: p["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}
for s in services + ["orderflowctl"]:
    if s not in bins:
        errors.append(f"{s}: not a bin target of the workspace")
    elif f"-p {bins[s]}" not in build_runs or f"target/release/{s}" not in build_runs:
        errors.append(f"{s}: not built (-p {bins[s]}) and copied to /out by the build stage")
root = meta["workspace_root"]
for m in meta["workspace_members"]:
    path = next(p["manifest_path"] for p in meta["packages"] if p["id"] == m)
    if not path.startswith(root + "/services/"):
        errors.append(f"workspace member {path} is outside services/ (.dockerignore leaves it out)")
ignore = open(".dockerignore").read().split()
for need in ("!Cargo.toml", "!Cargo.lock", "!services/"):
    if need not in ignore:
        errors.append(f".dockerignore must keep {need[1:]}")

for e in errors:
    print(f"dockerfile_check: {e}", file=sys.stderr)
print(f"dockerfile_check: {len(stages)} stages, images {services}, {len(errors)} errors")
sys.exit(1 if errors else 0)
