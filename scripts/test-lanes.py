#!/usr/bin/env python3
"""The workspace's tests (`make test-rust`) in two lanes side by side.

Most integration tests wait on Kafka, the JVM or an API server rather than on the CPU, so two
test binaries at a time take less wall time than one. Cargo cannot run them so: it holds the
target directory's lock while its tests run, so a second `cargo test` waits for the first. So
every test binary is built once (`cargo test --no-run`, the whole workspace, one feature set),
and this script runs the executables itself, as cargo does: in the package's directory, with
CARGO_MANIFEST_DIR and CARGO_PKG_NAME set, one binary after the other in each lane (each binary
runs its own tests in parallel, as under cargo). The doc tests run last, through cargo.

  lane system: orderflow-system-tests and inventory-service (faults, restarts, bench smoke...)
  lane rest:   every other package (the controller's envtests, analytics, orderflowctl, ...)

Output: each lane's lines live with its name in front; LOG gets cargo's own lines per binary
("Running ...", "test result: ..."), for scripts/test-summary.sh; a binary that exits non-zero
before its "test result:" line (it crashed) gets one, counting one failed test. A failed
binary's leftover scratch directories get a "test-lanes: kept DIR" line each, which
scripts/test-failures.py lists at the end. Exit status 1
if any binary or the doc tests failed.

Usage: scripts/test-lanes.py LOG      (CARGO: cargo)
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

SYSTEM = {"orderflow-system-tests", "inventory-service"}


def build(cargo):
    """Build every test binary; the list of (package, manifest dir, source, executable)."""
    cmd = [cargo, "test", "--release", "--workspace", "--locked", "--no-run",
           "--message-format=json-render-diagnostics"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    tests = []
    for line in p.stdout:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") != "compiler-artifact" or not m.get("executable"):
            continue
        if not m.get("profile", {}).get("test"):
            continue
        pkg_dir = os.path.dirname(m["manifest_path"])
        name = m["package_id"]
        # package ids: "path+file:///.../services/x#name@0.1.0" or older "name 0.1.0 (path+...)"
        if "#" in name:
            name = name.rsplit("#", 1)[1].split("@")[0]
        else:
            name = name.split(" ")[0]
        if "#" in m["package_id"] and name and name[0].isdigit():
            name = os.path.basename(pkg_dir)  # "path+file:///.../x#0.1.0": name is the dir's
        src = os.path.relpath(m["target"]["src_path"], pkg_dir)
        tests.append((name, pkg_dir, src, m["executable"]))
    if p.wait() != 0:
        sys.exit(f"test-lanes: {' '.join(cmd)} failed")
    return tests


def kept_dirs(pid):
    """The scratch directories test process `pid` left (testkit's test_dir names them
    orderflow-test-NAME-PID; a passing test removes its own), for scripts/test-failures.py."""
    tmp = tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return []
    return sorted(os.path.join(tmp, n) for n in names
                  if n.startswith("orderflow-test-") and n.endswith(f"-{pid}"))


class Lane(threading.Thread):
    def __init__(self, name, tests, out, lock):
        super().__init__()
        self.lane, self.tests, self.out, self.lock = name, tests, out, lock
        self.lines, self.failed, self.seconds = [], [], 0.0

    def say(self, line):
        with self.lock:
            self.out.write(f"[{self.lane}] {line}")
            self.out.flush()

    def run(self):
        t0 = time.monotonic()
        for pkg, pkg_dir, src, exe in self.tests:
            head = f"     Running {src} ({exe})\n"
            self.lines.append(head)
            self.say(head)
            env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir, CARGO_PKG_NAME=pkg)
            p = subprocess.Popen([exe], cwd=pkg_dir, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, errors="replace")
            counted = False
            for line in p.stdout:
                counted = counted or line.startswith("test result:")
                self.lines.append(line)
                self.say(line)
            if p.wait() != 0:
                self.failed.append(f"{pkg} {src} (exit {p.returncode})")
                for d in kept_dirs(p.pid):
                    line = f"test-lanes: kept {d}\n"
                    self.lines.append(line)
                    self.say(line)
                if not counted:
                    # it died before its summary: one failure, not silence
                    line = (f"test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; "
                            f"0 filtered out; finished in 0s ({src} exited {p.returncode} "
                            f"before its summary)\n")
                    self.lines.append(line)
                    self.say(line)
        self.seconds = time.monotonic() - t0
        self.say(f"lane done in {self.seconds:.0f}s, {len(self.tests)} binaries, "
                 f"{len(self.failed)} failed\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    log = sys.argv[1]
    cargo = os.environ.get("CARGO", "cargo")
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    tests = build(cargo)
    lock = threading.Lock()
    lanes = [Lane("system", [t for t in tests if t[0] in SYSTEM], sys.stdout, lock),
             Lane("rest", [t for t in tests if t[0] not in SYSTEM], sys.stdout, lock)]
    t0 = time.monotonic()
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    print(f"test-lanes: {len(tests)} test binaries in {time.monotonic() - t0:.0f}s "
          f"({', '.join(f'{l.lane} {l.seconds:.0f}s' for l in lanes)})", flush=True)
    doc = subprocess.run([cargo, "test", "--release", "--workspace", "--locked", "--doc"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    sys.stdout.write(doc.stdout)
    with open(log, "w") as f:
        for lane in lanes:
            f.writelines(lane.lines)
        f.write(doc.stdout)
    failed = [x for lane in lanes for x in lane.failed]
    if doc.returncode != 0:
        failed.append("doc tests")
    for x in failed:
        print(f"test-lanes: FAILED {x}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
