#!/usr/bin/env python3
"""The torture matrix's Python cases: CPython programs behave exactly as
without closeaudit while their stacks' Python frames are walked.

Usage: py_torture.py --closeaudit PATH --lib PATH/libcloseaudit.so CASE

CASE is one of py_workload.py's modes (threads, fork, signals,
exit_in_recv, subinterp). It runs under every CPython 3.8-3.13 installed (Debian's
/usr/bin/python3, pyenv's ~/.pyenv/versions/3.X.*), and, for each, once
plainly and once under `closeaudit run`, then once with the library
preloaded literally (LD_PRELOAD, no closeaudit run). It fails unless every
run writes the same transcript and exits with the same status, and the
audited run's report accounts for sockets, with Python frames in its
stacks and no word that the walk stopped. exit_in_recv runs five times
per interpreter: it races the interpreter's finalization.

Prints "PASS CASE" and exits 0, or "FAIL CASE: reason"; 77 if no CPython
is installed. Stdlib only.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "py_workload.py")
RUN_TIMEOUT = 90


class Failure(Exception):
    pass


def interpreters():
    found = []
    if os.access("/usr/bin/python3", os.X_OK):
        found.append(("debian", "/usr/bin/python3"))
    home = os.path.expanduser("~")
    for minor in range(8, 14):
        paths = sorted(glob.glob(
            f"{home}/.pyenv/versions/3.{minor}.*/bin/python3.{minor}"))
        if paths:
            found.append((f"3.{minor}", paths[-1]))
        else:
            print(f"note: CPython 3.{minor} not installed under pyenv, "
                  "skipped", flush=True)
    return found


def clean_env():
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "CLOSEAUDIT_SOCKET", "CLOSEAUDIT_RUN_PID",
              "PYTHONPATH", "DEBUGINFOD_URLS"):
        env.pop(k, None)
    return env


def run(argv, env, what):
    try:
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Failure(f"{what} did not finish within {RUN_TIMEOUT}s: {argv}")
    return p


def transcript_run(argv, env, what, transcript):
    """Runs argv (which writes `transcript`); (process, transcript bytes)."""
    p = run(argv, env, what)
    with open(transcript, "rb") as f:
        return p, f.read()


def same_as_plain(label, what, got, plain):
    """got and plain are (process, transcript) pairs: the same exit and
    transcript, or a Failure that shows both."""
    (proc, text), (plain_proc, plain_text) = got, plain
    if proc.returncode != plain_proc.returncode or text != plain_text:
        raise Failure(
            f"[{label}] {what} run differs: exit {proc.returncode} vs "
            f"{plain_proc.returncode}\n--- plain\n"
            f"{plain_text.decode(errors='replace')}"
            f"--- {what}\n{text.decode(errors='replace')}"
            f"--- stderr\n{proc.stderr.decode(errors='replace')[-3000:]}")


def one(opts, python, case, tmp, label):
    plain_t = os.path.join(tmp, f"{label}.plain")
    plain = transcript_run([python, WORKLOAD, case, plain_t], clean_env(),
                           "the plain run", plain_t)
    out = os.path.join(tmp, f"{label}.audit")
    audit_t = os.path.join(tmp, f"{label}.audited")
    same_as_plain(label, "audited", transcript_run(
        [opts.closeaudit, "run", "--grace", "1s", "--out", out, "--",
         python, WORKLOAD, case, audit_t], clean_env(), "the audited run",
        audit_t), plain)
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    if rep["summary"]["sockets_tracked"] < 2:
        raise Failure(f"[{label}] the report tracked "
                      f"{rep['summary']['sockets_tracked']} sockets")
    stopped = [w for w in rep.get("warnings", []) if "Python frames" in w]
    if stopped:
        raise Failure(f"[{label}] the walk did not run: {stopped}")
    literal_t = os.path.join(tmp, f"{label}.literal")
    env = clean_env()
    env["LD_PRELOAD"] = opts.lib
    env["CLOSEAUDIT_SOCKET"] = os.path.join(tmp, "no-collector.sock")
    same_as_plain(label, "preloaded", transcript_run(
        [python, WORKLOAD, case, literal_t], env, "the preloaded run",
        literal_t), plain)
    return rep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("case", choices=["threads", "fork", "signals",
                                     "exit_in_recv", "subinterp"])
    opts = ap.parse_args()
    opts.closeaudit = os.path.abspath(opts.closeaudit)
    opts.lib = os.path.abspath(opts.lib)
    pythons = interpreters()
    if not pythons:
        print(f"SKIP py_{opts.case}: no CPython installed", flush=True)
        return 77
    tmp = tempfile.mkdtemp(prefix=f"closeaudit-torture-py-{opts.case}-")
    failures = []
    for label, python in pythons:
        rounds = 5 if opts.case == "exit_in_recv" else 1
        try:
            for r in range(rounds):
                one(opts, python, opts.case, tmp, f"{label}-{r}")
            print(f"ok {label} ({python})", flush=True)
        except (Failure, OSError, ValueError, KeyError) as err:
            failures.append(f"{label} ({python}): {err}")
    if failures:
        print(f"FAIL py_{opts.case}: " + "\n\n".join(failures), flush=True)
        print(f"(kept {tmp})", flush=True)
        return 1
    print(f"PASS py_{opts.case}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
