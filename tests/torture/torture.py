#!/usr/bin/env python3
"""The "never break the host" torture matrix.

Usage:
  torture.py --closeaudit PATH/closeaudit --lib PATH/libcloseaudit.so \
             --bin PATH/torture CASE

Each case runs tests/torture/torture.c (built as `torture`) twice: once plainly,
with no LD_PRELOAD, and once under the audit, and fails unless

  - the program's stdout is byte-for-byte the same (fd numbers, return values,
    errno names, totals: torture.c prints only what does not depend on timing),
  - its exit status is the same,
  - and the audit kept working: the JSON report accounts for the sockets the
    program made (per case, see the case functions).

Under `closeaudit run` the program's stdout is closeaudit's stdout, followed
by the text report; the transcript is what comes before the report.

Cases:
  threads16, signals, fork_mt, fork_storm, exec_chain, closeall_loop,
  closeall_range, closeall_from, dup2_onto_all, dup2_high, emfile32,
  sigkill_after_leak    one subcommand of torture.c each (signals runs its
                        three modes: restart, norestart, closerace)
  collector_absent      LD_PRELOAD with $CLOSEAUDIT_SOCKET naming a socket
                        that does not exist: nothing may change or hang
  collector_stopped     SIGSTOP the collector for 3 s in the middle of a big
                        threads16, then SIGCONT: same transcript, and every
                        event is either in the report or counted as dropped
  collector_killed      SIGKILL the collector in the middle of a big
                        threads16: the orphaned program must finish normally
  exec_after_fork       tests/torture/exec_after_fork.c: a fork child execs
                        while the parent closes; the exec's mark is unseen
                        and the child holds nothing after it
  literal_unprivileged  LD_PRELOAD alone, as uid 65534 with HOME=/root: a
                        working daemon under the runtime directory; where
                        none can start, no wait and one line in all (root
                        only, else skipped)
  fd_view               tests/torture/fd_view.c (--fd-view): what the
                        program sees of its fd table at four RLIMIT_NOFILE
                        settings, across execs, plainly, under closeaudit run
                        and preloaded with no collector

Prints "PASS CASE" and exits 0, or "FAIL CASE: reason" (with the evidence)
and exits 1. Nothing here asserts on timing; every wait is bounded, a case
is abandoned after CASE_LIMIT seconds, and every process group it started is
killed on the way out. Stdlib only.
"""

import argparse
import ctypes
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CASE_LIMIT = 90          # seconds, whole case
RUN_TIMEOUT = 40         # seconds, one run of the program (plain or audited)
GATE_TIMEOUT = 30        # seconds to wait for a rendezvous file
STOP_SECONDS = 3         # collector_stopped: how long the collector is stopped
BIG_ROUNDS = 3000        # threads16 rounds for collector_stopped / _killed
PR_SET_CHILD_SUBREAPER = 36


class Failure(Exception):
    pass


class CaseTimeout(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def log(msg):
    print(f"torture: {msg}", flush=True)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def status_of(rc):
    """subprocess returncode -> shell-style status (128 + N for signal N)."""
    return 128 - rc if rc is not None and rc < 0 else rc


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if k != "LD_PRELOAD" and not k.startswith("CLOSEAUDIT_")
           and not k.startswith("TORTURE_")}
    if extra:
        env.update(extra)
    return env


def diff(expected, got, what_a, what_b):
    lines = list(difflib.unified_diff(
        expected.splitlines(), got.splitlines(), what_a, what_b, lineterm="",
        n=2))
    if len(lines) > 60:
        lines = lines[:60] + [f"... ({len(lines) - 60} more diff lines)"]
    return "\n".join(lines)


def stats_of(stderr):
    """The key=value pairs of torture.c's "torture-stats:" stderr lines."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("torture-stats: "):
            for kv in line[len("torture-stats: "):].split():
                k, _, v = kv.partition("=")
                if v.lstrip("-").isdigit():
                    out[k] = int(v)
    return out


def failed_line(stderr):
    m = re.search(r"^torture: FAILED: .*$", stderr, re.M)
    return m.group(0) if m else None


# ---------------------------------------------------------------------------
# Runs

class Ctx:
    def __init__(self, opts, tmp):
        self.opts = opts
        self.tmp = tmp
        self.procs = []      # Popen objects, each the leader of its own group
        self.orphans = []    # (pid, pgid) we wait for ourselves
        self.seq = 0
        self.evidence = []   # (title, text) shown on failure

    def path(self, name):
        self.seq += 1
        return os.path.join(self.tmp, f"{self.seq:02d}-{name}")

    def popen(self, cmd, stdout_path, stderr_path, env):
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, env=env, cwd=self.tmp,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def wait(self, p, timeout, what):
        try:
            return status_of(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            raise Failure(f"{what} did not finish within {timeout}s (hang); "
                          f"pid {p.pid}")

    def kill_all(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.kill(p.pid, signal.SIGCONT)
            except (ProcessLookupError, PermissionError):
                pass
        for pid, pgid in self.orphans:
            for target in (lambda: os.killpg(pgid, signal.SIGKILL),
                           lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except (ProcessLookupError, PermissionError):
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for pid, _ in self.orphans:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


class Result:
    def __init__(self, label, cmd, stdout, stderr, status, report=None,
                 report_text=""):
        self.label = label
        self.cmd = cmd
        self.stdout = stdout        # the program's transcript
        self.stderr = stderr
        self.status = status
        self.report = report        # parsed JSON, or None
        self.report_text = report_text


def run_plain(ctx, args, env_extra=None, label="plain", timeout=RUN_TIMEOUT):
    cmd = [ctx.opts.bin] + args
    out, err = ctx.path(label + ".stdout"), ctx.path(label + ".stderr")
    log(f"{label}: {' '.join(cmd)}")
    p = ctx.popen(cmd, out, err, clean_env(env_extra))
    status = ctx.wait(p, timeout, f"{label} run of `{' '.join(args)}`")
    r = Result(label, cmd, read_text(out), read_text(err), status)
    ctx.evidence.append((f"{label} stderr", r.stderr))
    return r


def closeaudit_cmd(ctx, args, json_path, out_dir, grace):
    return [ctx.opts.closeaudit, "run", "--grace", grace, "--json", json_path,
            "--out", out_dir, "--", ctx.opts.bin] + args


def audit_env(ctx, extra=None):
    env = {"CLOSEAUDIT_LIB": ctx.opts.lib}
    env.update(extra or {})
    return clean_env(env)


# "closeaudit 0.1.0 (library 0.1.0): 3 findings (1 error) in ..."
REPORT_START = re.compile(r"^closeaudit(?: [^:\n]*)?: \d+ findings? \(", re.M)


def split_transcript(text, plain):
    """closeaudit's stdout = the program's transcript + the text report."""
    if text.startswith(plain) and REPORT_START.match(text, len(plain)):
        return plain, text[len(plain):]
    m = None
    for m in REPORT_START.finditer(text):
        pass  # the last one: the program's own output comes first
    if m is None:
        return text, ""
    return text[:m.start()], text[m.start():]


def load_report(path):
    check(os.path.exists(path), f"closeaudit wrote no JSON report at {path}")
    try:
        with open(path, encoding="utf-8") as f:
            rep = json.load(f)
    except ValueError as e:
        raise Failure(f"JSON report {path} does not parse: {e}")
    check(isinstance(rep, dict) and rep.get("tool") == "closeaudit",
          "report is not a closeaudit report")
    s = rep.get("summary")
    check(isinstance(s, dict), "report has no summary")
    for key in ("processes", "sockets_tracked", "events", "events_dropped",
                "findings"):
        check(isinstance(s.get(key), int),
              f"summary.{key} is {s.get(key)!r}, expected an integer")
    check(isinstance(rep.get("processes"), list), "processes is not a list")
    check(isinstance(rep.get("findings"), list), "findings is not a list")
    return rep


def run_audited(ctx, args, plain, grace="1s", label="audited",
                timeout=RUN_TIMEOUT):
    d = ctx.path(label)
    os.mkdir(d)
    json_path = os.path.join(d, "report.json")
    out, err = os.path.join(d, "stdout"), os.path.join(d, "stderr")
    cmd = closeaudit_cmd(ctx, args, json_path, d, grace)
    log(f"{label}: {' '.join(cmd)}")
    p = ctx.popen(cmd, out, err, audit_env(ctx))
    status = ctx.wait(p, timeout, f"closeaudit run of `{' '.join(args)}`")
    text, stderr = read_text(out), read_text(err)
    transcript, report_text = split_transcript(text, plain.stdout)
    ctx.evidence.append((f"{label} stderr (closeaudit + program)", stderr))
    ctx.evidence.append((f"{label} text report", report_text))
    rep = load_report(json_path) if os.path.exists(json_path) else None
    ctx.evidence.append((f"{label} JSON summary",
                         json.dumps(rep.get("summary")) if rep else "(none)"))
    return Result(label, cmd, transcript, stderr, status, rep, report_text)


def same(plain, other):
    """The observable results match."""
    problems = []
    if plain.stdout != other.stdout:
        problems.append(
            "stdout differs:\n" + diff(plain.stdout, other.stdout,
                                       plain.label, other.label))
    if plain.status != other.status:
        problems.append(f"exit status {other.status} under {other.label}, "
                        f"{plain.status} plain")
    if problems:
        why = failed_line(other.stderr)
        if why:
            problems.append(f"the program under {other.label} said: {why}")
        raise Failure(f"`{' '.join(plain.cmd[1:])}`: " + "; ".join(problems))


def expect_status(r, status):
    check(r.status == status,
          f"{r.label} run of `{' '.join(r.cmd)}` exited {r.status}, expected "
          f"{status}" + (f" ({failed_line(r.stderr)})"
                         if failed_line(r.stderr) else ""))


def transcript_int(r, key):
    m = re.search(r"(?:^|\s)" + re.escape(key) + r"=(\d+)(?:\s|$)", r.stdout,
                  re.M)
    check(m is not None, f"`{key}=N` missing from the transcript")
    return int(m.group(1))


def need_report(r):
    check(r.report is not None, f"{r.label}: no JSON report")
    return r.report, r.report["summary"]


def errors(rep):
    return [(f.get("kind"), f.get("count"), f.get("message"))
            for f in rep["findings"] if f.get("severity") == "error"]


def no_errors(rep):
    bad = errors(rep)
    check(not bad, f"expected no error findings, got {bad}")


def kinds(rep):
    return [(f.get("kind"), f.get("severity"), f.get("count"))
            for f in rep["findings"]]


def check_sockets(summary, expected, what):
    """sockets_tracked == expected when nothing was dropped; with drops, the
    shortfall must be covered by the dropped count."""
    tracked, dropped = summary["sockets_tracked"], summary["events_dropped"]
    if dropped == 0:
        check(tracked == expected,
              f"summary.sockets_tracked={tracked}, expected {expected} "
              f"({what}) with events_dropped=0: sockets were lost silently"
              if tracked < expected else
              f"summary.sockets_tracked={tracked}, expected {expected} "
              f"({what})")
    else:
        check(tracked <= expected and tracked + dropped >= expected,
              f"summary.sockets_tracked={tracked}, events_dropped={dropped}, "
              f"expected {expected} sockets ({what})")


def pair(ctx, args, grace="1s", status=0):
    """Plain run, audited run, same results. Returns (plain, audited)."""
    plain = run_plain(ctx, args)
    expect_status(plain, status)
    audited = run_audited(ctx, args, plain, grace=grace)
    same(plain, audited)
    need_report(audited)
    log(f"`{' '.join(args)}`: identical; summary "
        f"{json.dumps(audited.report['summary'])}; findings "
        f"{kinds(audited.report)}")
    return plain, audited


# ---------------------------------------------------------------------------
# Cases: one subcommand each

def case_threads16(ctx):
    plain, a = pair(ctx, ["threads16", "200"])
    rep, s = need_report(a)
    created = transcript_int(plain, "sockets_created")
    check_sockets(s, created, "every socket() and accept() of threads16")
    check(s["events_dropped"] == 0,
          f"events_dropped={s['events_dropped']} for a run that fits the ring")
    no_errors(rep)


def case_signals(ctx):
    failures = []
    for mode in ("restart", "norestart", "closerace"):
        try:
            plain, a = pair(ctx, ["signals", mode, "3000"])
            rep, s = need_report(a)
            st = stats_of(a.stderr)
            check("sockets_total" in st,
                  "no torture-stats sockets_total line on the audited stderr")
            log(f"signals {mode}: audited run stats {st}")
            check_sockets(s, st["sockets_total"],
                          "socketpairs + main loop + every socket() the "
                          "SIGALRM handler made, as the audited run counted "
                          "them")
            if mode != "closerace":
                no_errors(rep)
            else:
                bad = [f for f in rep["findings"]
                       if f.get("kind") == "bad_close"]
                log(f"signals closerace: bad_close findings "
                    f"{[(f.get('reason'), f.get('count')) for f in bad]}")
        except Failure as e:
            failures.append(f"mode {mode}: {e}")
            log(f"signals {mode}: FAILED: {e}")
    check(not failures, "\n  - ".join([""] + failures).lstrip("\n"))


def case_fork_mt(ctx):
    plain, a = pair(ctx, ["fork_mt", "50"])
    rep, s = need_report(a)
    check(s["processes"] >= 51,
          f"summary.processes={s['processes']}, expected >= 51 (parent + 50 "
          "fork children)")
    st = stats_of(a.stderr)
    check("sockets_total" in st, "no torture-stats sockets_total line")
    check_sockets(s, st["sockets_total"],
                  "busy threads' sockets + one per child + the final socket")
    no_errors(rep)


def case_fork_storm(ctx):
    plain, a = pair(ctx, ["fork_storm", "200"])
    check("children=200" in plain.stdout.splitlines(),
          "transcript lacks children=200")
    rep, s = need_report(a)
    check(s["processes"] >= 201,
          f"summary.processes={s['processes']}, expected >= 201")
    # listener + 100 socketpairs (200) + 100 clients + 100 accepted + final
    check_sockets(s, 1 + 200 + 100 + 100 + 1, "fork_storm's sockets")
    no_errors(rep)


def case_exec_chain(ctx):
    plain, a = pair(ctx, ["exec_chain", "3"])
    check("chain done data=chain eof=yes close=0" in plain.stdout,
          "plain transcript lacks the chain's end")
    rep, s = need_report(a)
    chain = [p for p in rep["processes"]
             if isinstance(p.get("argv"), list) and len(p["argv"]) >= 3
             and p["argv"][1] == "exec_chain"]
    levels = sorted(p["argv"][2] for p in chain)
    check(levels == ["0", "1", "2", "3"],
          f"exec_chain images in processes have levels {levels}, expected "
          f"0,1,2,3 (processes: {[(p.get('pid'), p.get('argv')) for p in rep['processes']]})")
    pids = {p.get("pid") for p in chain}
    check(len(pids) == 1, f"the chain's images have pids {pids}, expected one")
    # listener, client (passed down), accepted
    check_sockets(s, 3, "the chain's three sockets")


def _closeall(ctx, sub):
    plain, a = pair(ctx, [sub])
    rep, s = need_report(a)
    check(s["sockets_tracked"] >= 1,
          "the socket made after closing everything was not tracked")
    check(s["events_dropped"] == 0,
          f"events_dropped={s['events_dropped']}, expected 0")
    check_sockets(s, transcript_int(plain, "sockets_created"),
                  "sockets made after the close-all")
    no_errors(rep)
    # The library holds no fd the program could close.
    ps, as_ = stats_of(plain.stderr), stats_of(a.stderr)
    check(ps.get("closed_at_start") == as_.get("closed_at_start"),
          f"{sub} closed {ps.get('closed_at_start')} open fds at start "
          f"plainly, {as_.get('closed_at_start')} under the audit")


def case_closeall_loop(ctx):
    _closeall(ctx, "closeall_loop")


def case_closeall_range(ctx):
    _closeall(ctx, "closeall_range")


def case_closeall_from(ctx):
    _closeall(ctx, "closeall_from")


def case_dup2_onto_all(ctx):
    plain, a = pair(ctx, ["dup2_onto_all"])
    rep, s = need_report(a)
    check_sockets(s, transcript_int(plain, "sockets_created"),
                  "dup2_onto_all's sockets")
    no_errors(rep)


def case_dup2_high(ctx):
    plain, a = pair(ctx, ["dup2_high"])
    rep, s = need_report(a)
    check_sockets(s, transcript_int(plain, "sockets_created"),
                  "dup2_high's sockets")
    no_errors(rep)


def case_emfile32(ctx):
    # The transcript holds the number of sockets that fit under the limit, in
    # the parent and in a fork child: the same number under the audit means
    # the shim took none of the 32.
    plain, a = pair(ctx, ["emfile32"])
    rep, s = need_report(a)
    check_sockets(s, transcript_int(plain, "sockets_created"),
                  "emfile32's sockets, parent and child")


def case_accept_buffers(ctx):
    # The program sees the same accept() results however it passes its
    # address buffer (none, stack, too short, heap, a bad pointer), and the
    # report still has both endpoints of every kept connection.
    plain, a = pair(ctx, ["accept_buffers"])
    rep, _ = need_report(a)
    kept = transcript_int(plain, "kept")
    leaks = [f for f in rep["findings"] if f.get("kind") == "close_wait_leak"]
    check(sum(f["count"] for f in leaks) == kept,
          f"close_wait_leak findings {kinds(rep)}, expected {kept} sockets")
    for f in leaks:
        for e in f["examples"]:
            check(str(e.get("local")).startswith("127.0.0.1:") and
                  str(e.get("peer")).startswith("127.0.0.1:"),
                  f"example without both endpoints: {e}")


def case_sigkill_after_leak(ctx):
    n = 50
    # --grace 0s: the process dies right after its last EOF, and a leak is
    # judged only when the holder outlived the EOF by more than the grace
    # period. With 0 every never-closed socket counts, with no sleep needed.
    plain, a = pair(ctx, ["sigkill_after_leak", str(n)], grace="0s",
                    status=128 + signal.SIGKILL)
    check(f"leaked={n}" in plain.stdout.splitlines(), "transcript lacks leaked=")
    rep, s = need_report(a)
    check(s["events_dropped"] == 0,
          f"events_dropped={s['events_dropped']}, expected 0")
    check(s["sockets_tracked"] == 1 + 2 * n,
          f"summary.sockets_tracked={s['sockets_tracked']}, expected "
          f"{1 + 2 * n} (listener + {n} accepted + {n} clients): events of the "
          "SIGKILLed process were lost")
    leaks = [f for f in rep["findings"] if f.get("kind") == "close_wait_leak"]
    check(len(leaks) == 1 and leaks[0].get("count") == n,
          f"expected exactly one close_wait_leak finding with count {n}, got "
          f"{[(f.get('count'), f.get('message')) for f in leaks]} (all: "
          f"{kinds(rep)})")
    procs = rep["processes"]
    check(procs and procs[0].get("exit_status") == 128 + signal.SIGKILL,
          f"processes[0].exit_status is "
          f"{procs[0].get('exit_status') if procs else None}, expected 137")


# ---------------------------------------------------------------------------
# Cases: the collector misbehaves

ABSENT_WORKLOADS = [
    ["threads16", "50"],
    ["signals", "restart", "1000"],
    ["signals", "closerace", "1000"],
    ["fork_mt", "10"],
    ["fork_storm", "50"],
    ["exec_chain", "3"],
    ["closeall_loop"],
    ["closeall_range"],
    ["closeall_from"],
    ["dup2_onto_all"],
    ["dup2_high"],
    ["emfile32"],
    ["sigkill_after_leak", "20"],
]


def case_collector_absent(ctx):
    sock_dir = os.path.join(ctx.tmp, "no-collector")
    sock = os.path.join(sock_dir, "collector.sock")
    env = {"LD_PRELOAD": ctx.opts.lib, "CLOSEAUDIT_SOCKET": sock}
    failures = []
    for args in ABSENT_WORKLOADS:
        status = 128 + signal.SIGKILL if args[0] == "sigkill_after_leak" else 0
        plain = run_plain(ctx, args, timeout=20)
        expect_status(plain, status)
        shimmed = run_plain(ctx, args, env_extra=env, label="preloaded",
                            timeout=20)
        try:
            same(plain, shimmed)
            log(f"`{' '.join(args)}`: identical without a collector")
        except Failure as e:
            failures.append(str(e))
            log(f"`{' '.join(args)}`: DIFFERS: {e}")
    check(not os.path.exists(sock_dir),
          f"something created {sock_dir}: a collector was started for an "
          "explicit $CLOSEAUDIT_SOCKET")
    check(not failures, f"{len(failures)} of {len(ABSENT_WORKLOADS)} "
          "workloads differ without a collector:\n  - " +
          "\n  - ".join(failures))


def wait_file(path, procs, what, timeout=GATE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        for p in procs:
            check(p.poll() is None,
                  f"{what}: pid {p.pid} exited with {status_of(p.returncode)} "
                  f"before {os.path.basename(path)} appeared")
        check(time.monotonic() < deadline,
              f"{what}: {os.path.basename(path)} did not appear within "
              f"{timeout}s")
        time.sleep(0.01)


def touch(path):
    with open(path + ".tmp", "w") as f:
        f.write("go\n")
    os.rename(path + ".tmp", path)


def start_gated(ctx, label, args):
    """closeaudit run of a gated threads16; returns (popen, paths...)."""
    d = ctx.path(label)
    os.mkdir(d)
    g = {k: os.path.join(d, k) for k in ("ready", "go", "pause")}
    json_path = os.path.join(d, "report.json")
    out, err = os.path.join(d, "stdout"), os.path.join(d, "stderr")
    cmd = closeaudit_cmd(ctx, args, json_path, d, "1s")
    log(f"{label}: {' '.join(cmd)}")
    env = audit_env(ctx, {"TORTURE_READY": g["ready"], "TORTURE_GO": g["go"],
                          "TORTURE_PAUSE": g["pause"]})
    p = ctx.popen(cmd, out, err, env)
    wait_file(g["ready"], [p], label)
    text = read_text(g["ready"]).strip()
    check(text.isdigit(), f"bad pid in the ready file: {text!r}")
    return p, int(text), g, json_path, out, err


def case_collector_stopped(ctx):
    args = ["threads16", str(BIG_ROUNDS)]
    plain = run_plain(ctx, args)
    expect_status(plain, 0)
    p, prog, g, json_path, out, err = start_gated(ctx, "stopped", args)
    touch(g["go"])
    wait_file(g["pause"] + ".reached", [p], "stopped")
    log(f"all 16 threads are halfway: SIGSTOP closeaudit (pid {p.pid}) for "
        f"{STOP_SECONDS}s, program pid {prog} goes on")
    os.kill(p.pid, signal.SIGSTOP)
    try:
        touch(g["pause"])
        time.sleep(STOP_SECONDS)
    finally:
        os.kill(p.pid, signal.SIGCONT)
    log("SIGCONT sent")
    status = ctx.wait(p, RUN_TIMEOUT, "closeaudit run after SIGCONT")
    text, stderr = read_text(out), read_text(err)
    transcript, report_text = split_transcript(text, plain.stdout)
    ctx.evidence.append(("stopped stderr", stderr))
    ctx.evidence.append(("stopped text report", report_text))
    a = Result("stopped", [ctx.opts.bin] + args, transcript, stderr, status,
               load_report(json_path), report_text)
    ctx.evidence.append(("stopped JSON summary", json.dumps(a.report["summary"])))
    same(plain, a)
    s = a.report["summary"]
    log(f"summary {json.dumps(s)}; warnings {a.report.get('warnings')}")
    calls = transcript_int(plain, "lifecycle_calls")
    check(s["events"] + s["events_dropped"] >= calls,
          f"events={s['events']} + events_dropped={s['events_dropped']} < "
          f"{calls} lifecycle calls the program made: events were lost "
          "without being counted")
    check_sockets(s, transcript_int(plain, "sockets_created"),
                  "threads16's sockets")
    if s["events_dropped"] > 0:
        warnings = " ".join(str(w) for w in a.report.get("warnings") or [])
        check("drop" in warnings.lower(),
              f"events_dropped={s['events_dropped']} but no warning says so: "
              f"{a.report.get('warnings')!r}")


def set_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise Failure("prctl(PR_SET_CHILD_SUBREAPER) failed: "
                      f"{os.strerror(ctypes.get_errno())}")


def socket_dir_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    for e in env:
        if e.startswith(b"CLOSEAUDIT_SOCKET="):
            return os.path.dirname(e.split(b"=", 1)[1].decode())
    return None


def case_collector_killed(ctx):
    args = ["threads16", str(BIG_ROUNDS)]
    plain = run_plain(ctx, args)
    expect_status(plain, 0)
    # The program outlives its parent: become its reaper, to learn its status.
    set_subreaper()
    p, prog, g, json_path, out, err = start_gated(ctx, "killed", args)
    ctx.orphans.append((prog, p.pid))
    sock_dir = socket_dir_of(prog)
    touch(g["go"])
    wait_file(g["pause"] + ".reached", [p], "killed")
    log(f"all 16 threads are halfway: SIGKILL closeaudit (pid {p.pid}); "
        f"program pid {prog} goes on")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    touch(g["pause"])
    deadline = time.monotonic() + RUN_TIMEOUT
    status = None
    while status is None:
        try:
            pid, raw = os.waitpid(prog, os.WNOHANG)
        except ChildProcessError:
            raise Failure(f"program pid {prog} is not our child after the "
                          "collector died (subreaper failed?)")
        if pid == prog:
            status = (os.WEXITSTATUS(raw) if os.WIFEXITED(raw)
                      else 128 + os.WTERMSIG(raw))
            break
        check(time.monotonic() < deadline,
              f"the orphaned program (pid {prog}) did not finish within "
              f"{RUN_TIMEOUT}s after the collector was killed (hang)")
        time.sleep(0.02)
    if sock_dir and sock_dir.startswith("/tmp/closeaudit-run-"):
        shutil.rmtree(sock_dir, ignore_errors=True)
    stderr = read_text(err)
    ctx.evidence.append(("killed stderr", stderr))
    a = Result("killed", [ctx.opts.bin] + args, read_text(out), stderr, status)
    same(plain, a)
    log(f"orphaned program exited {status} with the plain transcript")


def case_vfork_exec(ctx):
    plain, a = pair(ctx, ["vfork_exec", "50"])
    check("vfork_exec ok=50 bad_rbp=50 spawned=50 socketpair=fine"
          in plain.stdout.splitlines(), "transcript lacks the success line")
    rep, s = need_report(a)
    # The parent and every exec'd /bin/true report (each a new image).
    check(s["processes"] >= 101,
          f"summary.processes={s['processes']}, expected >= 101")
    no_errors(rep)


def case_fd_view(ctx):
    # fd_view execs itself through four RLIMIT_NOFILE settings (as started,
    # soft = hard, lowered to 29 with fds of its own above that, and 8) and
    # prints what it sees of its fd table at each: /proc/self/fd, an
    # F_GETFD probe up to the limit, the next socket() number. The library
    # may hold nothing it could see, with a collector or without one.
    check(ctx.opts.fd_view, "fd_view needs --fd-view PATH")
    ctx.opts.bin = ctx.opts.fd_view
    plain, a = pair(ctx, [])
    check("tiny after EMFILE" in plain.stdout,
          "fd_view did not reach its last stage:\n" + plain.stdout)
    rep, s = need_report(a)
    images = [p for p in rep["processes"]
              if isinstance(p.get("argv"), list) and p["argv"][:1] == ["fd_view"]]
    check(len(images) >= 3, f"expected the fd_view images in processes, got "
          f"{[p.get('argv') for p in rep['processes']]}")
    no_errors(rep)
    absent = os.path.join(ctx.tmp, "no-collector", "collector.sock")
    literal = run_plain(ctx, [], label="preloaded", env_extra={
        "LD_PRELOAD": ctx.opts.lib, "CLOSEAUDIT_SOCKET": absent})
    same(plain, literal)


NOBODY = 65534
LINE_LIMIT_S = 3  # one run; waiting for a daemon that cannot come took 5 s


class Skip(Exception):
    pass


def run_as_nobody(ctx, args, env, label):
    out, err = ctx.path(label + ".stdout"), ctx.path(label + ".stderr")
    start = time.monotonic()
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=o,
                             stderr=e, env=env, cwd=ctx.tmp,
                             start_new_session=True, user=NOBODY,
                             group=NOBODY, extra_groups=[])
    ctx.procs.append(p)
    status = ctx.wait(p, 20, f"{label} run of `{' '.join(args)}`")
    took = time.monotonic() - start
    r = Result(label, args, read_text(out), read_text(err), status)
    ctx.evidence.append((f"{label} stderr", r.stderr))
    check(took < LINE_LIMIT_S, f"{label}: `{' '.join(args)}` took {took:.1f}s "
          "under the library: it waited for a collector")
    return r


def closeaudit_lines(results):
    return [line for r in results for line in r.stderr.splitlines()
            if line.startswith("closeaudit")]


def private_dir(ctx, name, owner=NOBODY, mode=0o700):
    d = os.path.join(ctx.tmp, name)
    os.mkdir(d)
    os.chown(d, owner, owner)
    os.chmod(d, mode)
    return d


def clear_shm_markers():
    for name in os.listdir("/dev/shm"):
        if name.startswith(f".closeaudit-{NOBODY}-"):
            os.unlink(os.path.join("/dev/shm", name))


def daemons_of(runtime_dir):
    """The pids of every `closeaudit daemon` listening under runtime_dir."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"daemon" in argv and any(runtime_dir.encode() in a for a in argv):
            pids.append(int(pid))
    return pids


def stop_daemons_of(runtime_dir):
    for pid in daemons_of(runtime_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def check_daemon_signals(runtime_dir):
    """The daemon the library started blocks and ignores no signal of the
    ones it is stopped and asked with, and SIGTERM ends it."""
    pids = daemons_of(runtime_dir)
    check(len(pids) == 1, f"expected one daemon under {runtime_dir}, got {pids}")
    with open(f"/proc/{pids[0]}/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f
                      if ":\t" in line)
    for key in ("SigBlk", "SigIgn"):
        mask = int(status.get(key, "0"), 16)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            check(not mask & (1 << (sig - 1)),
                  f"the daemon has {sig.name} in {key} ({status.get(key)})")
    os.kill(pids[0], signal.SIGTERM)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pids[0]}") and time.monotonic() < deadline:
        time.sleep(0.05)
    check(not daemons_of(runtime_dir), "the daemon ignored SIGTERM")


def case_literal_unprivileged(ctx):
    # The literal LD_PRELOAD form for a service user (uid 65534) whose HOME
    # (/root) is not theirs: it gets a working daemon under its runtime
    # directory; where the daemon cannot start (the binary fails, no
    # writable directory, a directory another user owns) no process waits,
    # and one line is said in all.
    if os.geteuid() != 0:
        raise Skip("needs root to run programs as uid 65534")
    probe = subprocess.run(["sh", "-c", 'test -r "$0" && test -x "$1"',
                            ctx.opts.lib, ctx.opts.fd_view],
                           user=NOBODY, group=NOBODY, extra_groups=[])
    if probe.returncode != 0:
        raise Skip("uid 65534 cannot read the build tree")
    check(ctx.opts.fd_view, "literal_unprivileged needs --fd-view PATH")
    os.chmod(ctx.tmp, 0o755)
    work = [ctx.opts.fd_view, "tiny"]
    # The harness's environment (a sanitizer build's options among it),
    # without anything that says where this user's directories are.
    base = {k: v for k, v in clean_env({"HOME": "/root"}).items()
            if not k.startswith("XDG_")}
    plain = run_as_nobody(ctx, work, base, "plain")
    expect_status(plain, 0)
    clear_shm_markers()
    try:
        # A working daemon, its state under the runtime directory.
        rt = private_dir(ctx, "rt-working")
        env = dict(base, XDG_RUNTIME_DIR=rt, LD_PRELOAD=ctx.opts.lib)
        runs = [run_as_nobody(ctx, work, env, f"working-{i}") for i in range(5)]
        for r in runs:
            same(plain, r)
        check(not closeaudit_lines(runs),
              f"closeaudit said {closeaudit_lines(runs)} with a working daemon")
        report = os.path.join(rt, "closeaudit", "state", "latest", "report.json")
        deadline = time.monotonic() + 15
        rep = None
        while time.monotonic() < deadline:
            if os.path.exists(report):
                rep = load_report(report)
                if rep["summary"]["processes"] >= 5:
                    break
            time.sleep(0.1)
        check(rep is not None, f"the daemon wrote no report at {report}")
        check(rep["summary"]["processes"] >= 5,
              f"the daemon's report has {rep['summary']['processes']} "
              "processes, expected the 5 runs")
        check_daemon_signals(rt)

        # A daemon that cannot start: once, and nobody waits.
        rt = private_dir(ctx, "rt-failing")
        env = dict(base, XDG_RUNTIME_DIR=rt, LD_PRELOAD=ctx.opts.lib,
                   CLOSEAUDIT_BIN="/bin/false")
        runs = [run_as_nobody(ctx, work, env, f"failing-{i}") for i in range(5)]
        for r in runs:
            same(plain, r)
        lines = closeaudit_lines(runs)
        check(len(lines) == 1, f"5 processes whose daemon cannot start said "
              f"{len(lines)} lines, expected 1: {lines}")

        # A runtime directory another user owns: never used, never waited on.
        rt = private_dir(ctx, "rt-foreign", owner=0, mode=0o755)
        os.mkdir(os.path.join(rt, "closeaudit"), 0o755)
        env = dict(base, XDG_RUNTIME_DIR=rt, LD_PRELOAD=ctx.opts.lib)
        runs = [run_as_nobody(ctx, work, env, f"foreign-{i}") for i in range(3)]
        for r in runs:
            same(plain, r)
        lines = closeaudit_lines(runs)
        check(len(lines) <= 1, f"3 processes said {len(lines)} lines: {lines}")
        check(os.listdir(os.path.join(rt, "closeaudit")) == [],
              "something was created in another user's runtime directory")

        # No writable runtime directory at all, one process tree.
        clear_shm_markers()
        env = dict(base, XDG_RUNTIME_DIR="/proc", LD_PRELOAD=ctx.opts.lib,
                   CLOSEAUDIT_BIN="/bin/false")
        tree = run_as_nobody(ctx, ["bash", "-c", '"$0" tiny; "$0" tiny; "$0" tiny',
                                   ctx.opts.fd_view], env, "unwritable")
        expect_status(tree, 0)
        lines = closeaudit_lines([tree])
        check(len(lines) <= 1, f"one process tree said {len(lines)} lines: "
              f"{lines}")
    finally:
        clear_shm_markers()
        stop_daemons_of(ctx.tmp)


def case_exec_after_fork(ctx):
    # A fork child that execs (all sockets CLOEXEC) while the parent closes
    # its connections: the timer-slack mark of the exec is invisible (the
    # transcript prints the slacks), and the sockets the exec closed are not
    # held by the child afterwards (no fork_held).
    check(ctx.opts.exec_after_fork, "needs --exec-after-fork PATH")
    ctx.opts.bin = ctx.opts.exec_after_fork
    plain, a = pair(ctx, [])
    check("sleeper: timer slack" in plain.stdout, "the child never exec'd:\n" +
          plain.stdout)
    rep, s = need_report(a)
    no_errors(rep)
    check(s["sockets_tracked"] >= 7, f"summary.sockets_tracked="
          f"{s['sockets_tracked']}, expected the listener and 6 ends")


CASES = {
    "exec_after_fork": case_exec_after_fork,
    "fd_view": case_fd_view,
    "literal_unprivileged": case_literal_unprivileged,
    "vfork_exec": case_vfork_exec,
    "threads16": case_threads16,
    "signals": case_signals,
    "fork_mt": case_fork_mt,
    "fork_storm": case_fork_storm,
    "exec_chain": case_exec_chain,
    "closeall_loop": case_closeall_loop,
    "closeall_range": case_closeall_range,
    "closeall_from": case_closeall_from,
    "dup2_onto_all": case_dup2_onto_all,
    "dup2_high": case_dup2_high,
    "emfile32": case_emfile32,
    "sigkill_after_leak": case_sigkill_after_leak,
    "accept_buffers": case_accept_buffers,
    "collector_absent": case_collector_absent,
    "collector_stopped": case_collector_stopped,
    "collector_killed": case_collector_killed,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--closeaudit", required=True, help="the closeaudit binary")
    ap.add_argument("--lib", required=True, help="libcloseaudit.so")
    ap.add_argument("--bin", required=True, help="the torture program")
    ap.add_argument("--fd-view", help="the fd_view program (case fd_view)")
    ap.add_argument("--exec-after-fork",
                    help="the exec_after_fork program (its case)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory on success too")
    ap.add_argument("case", choices=sorted(CASES))
    opts = ap.parse_args()
    for attr in ("closeaudit", "lib", "bin", "fd_view", "exec_after_fork"):
        if getattr(opts, attr):
            setattr(opts, attr, os.path.abspath(getattr(opts, attr)))
    for path in (opts.closeaudit, opts.bin):
        if not os.access(path, os.X_OK):
            print(f"FAIL {opts.case}: not executable: {path}", flush=True)
            return 1
    if not os.path.exists(opts.lib):
        print(f"FAIL {opts.case}: no such library: {opts.lib}", flush=True)
        return 1

    def on_alarm(signum, frame):
        raise CaseTimeout()

    tmp = tempfile.mkdtemp(prefix=f"closeaudit-torture-{opts.case}-")
    ctx = Ctx(opts, tmp)
    ok, reason = False, None
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CASE_LIMIT)
    try:
        CASES[opts.case](ctx)
        ok = True
    except Skip as e:
        signal.alarm(0)
        ctx.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"SKIP {opts.case}: {e}", flush=True)
        return 77
    except Failure as e:
        reason = str(e)
    except CaseTimeout:
        reason = f"case did not finish within {CASE_LIMIT}s (hang)"
    except Exception as e:  # a bug here, or an unexpected OS error
        import traceback
        traceback.print_exc()
        reason = f"unexpected {type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
        ctx.kill_all()
    if ok:
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"PASS {opts.case}", flush=True)
        return 0
    print(f"FAIL {opts.case}: {reason}", flush=True)
    for title, text in ctx.evidence[-8:]:
        text = text.strip()
        if len(text) > 4000:
            text = text[:4000] + "\n... (truncated)"
        print(f"----- {title}\n{text or '(empty)'}", flush=True)
    print(f"(temporary files kept in {tmp})", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
