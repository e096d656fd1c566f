#!/usr/bin/env python3
"""What failed, in a few lines: printed by scripts/test-summary.sh just above `make test`'s
summary line, so that the end of a CI log (often all a reader gets) names each failed test and
says why, instead of only counting it.

From each log (cargo's output: "Running SRC (EXE)", then the failing tests' captured output
as "---- NAME stdout ----" sections): every failed test as `SRC NAME`, then the lines of its
section that say why (an `Error:`, a panic and its message, an assertion's left/right), at
most MAX_LINES each, cut at 240 characters. scripts/test-lanes.py also writes "test-lanes:
kept DIR" lines for the scratch directories a failing test binary left behind (a passing test
removes its own); those are listed with the last WARN/ERROR line of each service log there.

Usage: scripts/test-failures.py LOG ...     (prints nothing when nothing failed)
"""
import glob
import json
import os
import re
import sys

MAX_LINES = 6
WIDTH = 240
RUNNING = re.compile(r"^\s*Running (\S+)")
SECTION = re.compile(r"^---- (\S+) stdout ----$")
WHY = re.compile(r"^(Error: |thread '.*' (\(\d+\) )?panicked at|  left: |  right: |assertion)")
FAILED_LINE = re.compile(r"^test (\S+) \.\.\. FAILED$")


def cut(line):
    line = line.rstrip("\n")
    return line if len(line) <= WIDTH else line[:WIDTH] + " ..."


def failures(path):
    """[(src, test, [why lines])] and the kept directories, from one log."""
    out, kept = [], []
    src, name, why, after_panic = "?", None, [], False
    failed = set()
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return out, kept
    for line in lines:
        if m := RUNNING.match(line):
            src = m.group(1)
        elif m := FAILED_LINE.match(line):
            failed.add((src, m.group(1)))
        elif line.startswith("test-lanes: kept "):
            kept.append(line[len("test-lanes: kept "):].strip())
        elif m := SECTION.match(line):
            if name:
                out.append((src, name, why))
            name, why, after_panic = m.group(1), [], False
        elif name and (line == "failures:" or line.startswith("test result:")):
            out.append((src, name, why))
            name = None
        elif name:
            if after_panic and line.strip():
                why.append(line)  # the panic's message is on the line after "panicked at"
                after_panic = False
            elif WHY.match(line):
                why.append(line)
                after_panic = "panicked at" in line
    if name:
        out.append((src, name, why))
    seen = {(s, n) for s, n, _ in out}
    out += [(s, n, []) for s, n in sorted(failed) if (s, n) not in seen]
    return out, kept


def last_warning(log):
    """The last WARN or ERROR line of a service's JSON log, shortened."""
    found = None
    try:
        for line in open(log, errors="replace"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("level") in ("WARN", "ERROR"):
                found = rec
    except OSError:
        return None
    if not found:
        return None
    keep = {k: v for k, v in found.items() if k not in ("target", "level")}
    return f"{found['level']} {json.dumps(keep, separators=(',', ':'))}"


def main():
    printed = False
    for path in sys.argv[1:]:
        tests, kept = failures(path)
        for src, name, why in tests:
            if not printed:
                print("failed tests (their captured output is in the logs above):")
                printed = True
            print(f"  {src} {name}")
            for line in why[-MAX_LINES:]:
                print(f"      {cut(line)}")
        for d in kept:
            if not printed:
                print("failed tests:")
                printed = True
            print(f"  kept {d}")
            for log in sorted(glob.glob(os.path.join(d, "**", "*.log"), recursive=True))[:8]:
                w = last_warning(log)
                if w:
                    print(f"      {os.path.relpath(log, d)}: {cut(w)}")


if __name__ == "__main__":
    main()
