#!/usr/bin/env python3
"""The torture matrix's Java cases: Java programs behave exactly as without
closeaudit while the library asks the JVM for their Java frames.

Usage: java_torture.py --closeaudit PATH --lib PATH/libcloseaudit.so CASE

CASE is one of java/Workload.java's modes (load, exit). It runs under the
image's java, once plainly, once under `closeaudit run` and once with the
library preloaded literally (LD_PRELOAD). It fails unless every run writes
the same transcript and exits with the same status, says nothing of ours on
stderr, and the audited run's report tracked the program's sockets with
Java frames in its stacks.

Prints "PASS CASE" and exits 0, or "FAIL CASE: reason"; 77 if there is no
java. Stdlib only.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

from node_torture import ASAN_RUNTIME, asan_env, audited, clean_env
from py_torture import Failure, same_as_plain, transcript_run

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "java", "Workload.java")


def quiet(label, what, run, words):
    """The run's stderr has none of `words`: nothing the JVM says because
    of closeaudit ("Picked up JAVA_TOOL_OPTIONS"), nor the library."""
    err = run[0].stderr.decode(errors="replace")
    if any(w in err for w in words):
        raise Failure(f"[{label}] the {what} run's stderr:\n{err[-3000:]}")
    return run


def one(opts, java, case, tmp):
    label = "java"
    plain_t = os.path.join(tmp, "plain")
    plain = transcript_run([java, WORKLOAD, case, plain_t], clean_env(),
                           "the plain run", plain_t)
    out = os.path.join(tmp, "audit")
    audit_t = os.path.join(tmp, "audited")
    # Under a sanitizer the collector drains several times slower, and the
    # JVM's sixteen busy threads leave it little of two cores: a ring that
    # holds the whole run keeps the check about the findings, not about
    # the collector's speed. (A plain build keeps the default ring, which
    # its collector must keep up with.)
    ring = ["/usr/bin/env", "CLOSEAUDIT_RING_SLOTS=1048576"] if ASAN_RUNTIME else []
    # `closeaudit run` itself says where the report went.
    same_as_plain(label, "audited", quiet(label, "audited", transcript_run(
        [opts.closeaudit, "run", "--grace", "1s", "--out", out, "--"] + ring +
        audited(opts, java) + [WORKLOAD, case, audit_t], clean_env(),
        "the audited run", audit_t), ["Picked up"]), plain)
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    dropped = rep["summary"]["events_dropped"]
    if dropped:
        raise Failure(f"[{label}] {dropped} events were dropped: the findings "
                      f"cannot be judged")
    tracked = rep["summary"]["sockets_tracked"]
    if tracked < (40000 if case == "load" else 4):
        raise Failure(f"[{label}] the report tracked {tracked} sockets")
    java_frames = [fr for f in rep["findings"]
                   for st in f.get("stacks", {}).values()
                   for fr in st if fr.get("language") == "java"]
    if rep["findings"] and not java_frames:
        raise Failure(f"[{label}] no Java frame in any finding's stacks")
    errors = [(f["kind"], f["message"]) for f in rep["findings"]
              if f["severity"] == "error"]
    if case == "load" and errors:
        raise Failure(f"[{label}] a program that closes every connection "
                      f"got error findings: {errors}")
    literal_t = os.path.join(tmp, "literal")
    env = asan_env(clean_env(), opts.lib)
    env["CLOSEAUDIT_SOCKET"] = os.path.join(tmp, "no-collector.sock")
    same_as_plain(label, "preloaded", quiet(label, "preloaded", transcript_run(
        [java, WORKLOAD, case, literal_t], env, "the preloaded run",
        literal_t), ["Picked up", "closeaudit"]), plain)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("case", choices=["load", "exit"])
    opts = ap.parse_args()
    opts.closeaudit = os.path.abspath(opts.closeaudit)
    opts.lib = os.path.abspath(opts.lib)
    java = shutil.which("java")
    if java is None:
        print(f"SKIP java_{opts.case}: no java on PATH", flush=True)
        return 77
    tmp = tempfile.mkdtemp(prefix=f"closeaudit-torture-java-{opts.case}-")
    try:
        one(opts, java, opts.case, tmp)
    except (Failure, OSError, ValueError, KeyError) as err:
        print(f"FAIL java_{opts.case}: {err}", flush=True)
        print(f"(kept {tmp})", flush=True)
        return 1
    print(f"PASS java_{opts.case}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
