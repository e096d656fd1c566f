#!/usr/bin/env python3
"""Static checks of the Dockerfile (no Docker daemon needed):
- it parses (Docker's own Go parser, via the `dockerfile` package);
- every `COPY --from=` names an earlier stage; the last stage runs as a numeric non-root USER;
- every image of scripts/k8s/kind.sh (SERVICES) is a bin target of the cargo workspace, built by
  the build stage (`-p NAME`) and copied to /out;
- .dockerignore lets the whole workspace into the build context (every member under services/);
- classic `docker build` can build it (Docker 20.10 without BuildKit, as on the test bed): no
  `# syntax=` line (BuildKit would pull that frontend), no RUN --mount; the base images are the
  build arguments RUST_IMAGE and RUNTIME_IMAGE, whose defaults are the public images;
- Dockerfile.prebuilt (host-built binaries) is ./Dockerfile's runtime stage: the same
  instructions after FROM but for the COPY of the binaries, and the same RUNTIME_IMAGE default.
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

text = open("Dockerfile").read()
if re.search(r"^#\s*syntax\s*=", text, re.M):
    errors.append("a `# syntax=` line makes BuildKit pull a frontend image: drop it")
for c in cmds:
    if c.cmd == "RUN" and any(f.startswith("--mount") for f in c.flags):
        errors.append(f"RUN --mount needs BuildKit (classic docker build refuses it): {c.original[:60]}")
meta_args = {}
for c in cmds:
    if c.cmd == "FROM":
        break
    if c.cmd == "ARG":
        k, _, v = c.value[0].partition("=")
        meta_args[k] = v
froms = [c.value[0] for c in cmds if c.cmd == "FROM"]
if froms[:1] != ["${RUST_IMAGE}"] or froms[-1:] != ["${RUNTIME_IMAGE}"]:
    errors.append(f"the stages must start FROM ${{RUST_IMAGE}} (build) and FROM ${{RUNTIME_IMAGE}} (runtime), got {froms}")
for k in ("RUST_IMAGE", "RUNTIME_IMAGE"):
    v = meta_args.get(k, "")
    host = v.split("/")[0] if "/" in v else ""
    if not v or "." in host or ":" in host or host == "localhost":
        errors.append(f"ARG {k} needs a default naming a public image without a registry host (got {meta_args.get(k)!r})")


def runtime_stage(path):
    """(FROM argument, ARG defaults before the first FROM, the last stage's instructions after
    FROM without COPY)."""
    cs = dockerfile.parse_file(path)
    meta, last = {}, -1
    for i, c in enumerate(cs):
        if c.cmd == "FROM":
            last = i
        elif last < 0 and c.cmd == "ARG":
            k, _, v = c.value[0].partition("=")
            meta[k] = v
    body = [(c.cmd, c.value) for c in cs[last + 1:] if c.cmd != "COPY"]
    return cs[last].value[0], meta, body


try:
    pre_from, pre_meta, pre_body = runtime_stage("Dockerfile.prebuilt")
    main_from, _, main_body = runtime_stage("Dockerfile")
    if pre_from != main_from or pre_meta.get("RUNTIME_IMAGE") != meta_args.get("RUNTIME_IMAGE"):
        errors.append(f"Dockerfile.prebuilt's runtime base {pre_from} ({pre_meta.get('RUNTIME_IMAGE')}) differs from the Dockerfile's")
    if pre_body != main_body:
        errors.append("Dockerfile.prebuilt's runtime stage differs from the Dockerfile's (apart from COPY)")
    copies = [c.value for c in dockerfile.parse_file("Dockerfile.prebuilt") if c.cmd == "COPY"]
    if copies != [("bin/${SERVICE}", "bin/orderflowctl", "/usr/local/bin/")]:
        errors.append(f"Dockerfile.prebuilt must COPY bin/${{SERVICE}} bin/orderflowctl /usr/local/bin/, got {copies}")
except FileNotFoundError:
    errors.append("Dockerfile.prebuilt is missing")

for e in errors:
    print(f"dockerfile_check: {e}", file=sys.stderr)
print(f"dockerfile_check: {len(stages)} stages, images {services}, {len(errors)} errors")
sys.exit(1 if errors else 0)
