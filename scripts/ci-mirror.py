#!/usr/bin/env python3
"""Make DST an exact copy of the work tree SRC, touching only what differs (.ci/run).

Cargo decides what to rebuild by the path of each workspace crate and the modification time of
its files. A clean clone lives in a new directory and every file in it is new, so each clone
rebuilt every workspace crate and test binary (about 12 minutes here) even when one file had
changed. CI therefore builds in one fixed directory that this script turns into the clone:

- a file whose bytes (and mode) are the same in DST keeps DST's copy and its old time;
- a file that differs or is new is written, so its time is now and cargo rebuilds what uses it;
- whatever DST holds that SRC does not (files, directories, symlinks, a previous run's
  outputs) is deleted.

After it runs, DST has the same paths, bytes, modes and symlinks as SRC, .git included.

Usage: scripts/ci-mirror.py SRC DST     prints "ci-mirror: N written, N deleted, N kept"
"""
import filecmp
import os
import shutil
import stat
import sys


def entries(root):
    """Relative path -> ('dir' | 'file' | 'link', mode or link target), for everything under root."""
    out = {}
    for d, dirs, files in os.walk(root, followlinks=False):
        rel_d = os.path.relpath(d, root)
        for name in dirs + files:
            path = os.path.join(d, name)
            rel = os.path.normpath(os.path.join(rel_d, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode))
        # os.walk lists a symlink to a directory among dirs; do not descend into it
        dirs[:] = [n for n in dirs if not os.path.islink(os.path.join(d, n))]
    return out


def remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def main(src, dst):
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    if src == dst or dst.startswith(src + os.sep):
        sys.exit(f"ci-mirror: {dst} must be outside {src}")
    os.makedirs(dst, exist_ok=True)
    want = entries(src)
    have = entries(dst)
    deleted = 0
    # deepest first, so a directory's contents go before it
    for rel in sorted(have, key=lambda r: r.count(os.sep), reverse=True):
        if rel not in want or want[rel][0] != have[rel][0] or (
                want[rel][0] == "link" and want[rel][1] != have[rel][1]):
            path = os.path.join(dst, rel)
            if os.path.lexists(path):
                remove(path)
                deleted += 1
    written = kept = 0
    for rel in sorted(want, key=lambda r: r.count(os.sep)):
        kind, info = want[rel]
        s, d = os.path.join(src, rel), os.path.join(dst, rel)
        if kind == "dir":
            os.makedirs(d, exist_ok=True)
        elif kind == "link":
            if not os.path.islink(d):
                os.symlink(info, d)
                written += 1
        elif os.path.isfile(d) and filecmp.cmp(s, d, shallow=False):
            if stat.S_IMODE(os.lstat(d).st_mode) != info:
                os.chmod(d, info)
            kept += 1
        else:
            shutil.copyfile(s, d)
            os.chmod(d, info)
            written += 1
    print(f"ci-mirror: {dst}: {written} written, {deleted} deleted, {kept} kept")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
