#!/usr/bin/env python3
"""CPython's own regression tests, run three ways, must agree test by test.

The ways:
  plain    /usr/bin/python3 -m test ...
  literal  LD_PRELOAD=.../libcloseaudit.so /usr/bin/python3 -m test ...
           (the library starts a per-user `closeaudit daemon` by itself)
  run      closeaudit run -- /usr/bin/python3 -m test ...

Each way gets its own fresh HOME, XDG_RUNTIME_DIR, XDG_STATE_HOME and TMPDIR,
so that no daemon or state of an earlier run is reused. The per-test outcomes
(pass, fail, error, skip, expected failure, unexpected success) come from
regrtest's --junit-xml and its verbose log; the outcome of each test module
as regrtest judged it (passed, failed, env changed, timed out, crashed)
counts as one more test. Any test whose outcome differs between the ways
fails the check; a summary shows each such test's outcome per way and the
tail of its output.

Tests that fail or hang without the library are listed, each with its
reason, in cpython_exclusions.txt next to this script; regrtest skips them in
every way.

Usage:
  cpython_suite.py [--closeaudit PATH] [--lib PATH] [--logdir DIR]
                   [--long | --only-long] [--ways plain,literal,run]
                   [--jobs N] [--module-timeout S] [--batch-timeout S]
  The paths default to build/ of this checkout. --long (or
  CLOSEAUDIT_PEER_LONG=1) adds the longer modules (multiprocessing, ssl,
  http, ftp, ...), which CI does not run. A module that runs longer than
  --module-timeout is killed by regrtest with a traceback of where it hung;
  a way that runs longer than --batch-timeout is interrupted. Exits 77 (a
  meson skip) when /usr/bin/python3 or Debian's libpython3.11-testsuite is
  missing.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from regrtest_results import (TAIL_LINES, Outcome, abs_module, collect,
                              module_of)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
SKIP = 77

SELECTION = [
    "test_socket", "test_subprocess", "test_os", "test_selectors",
    "test_signal", "test_threading", "test_socketserver",
    "test.test_asyncio.test_events", "test.test_asyncio.test_sock_lowlevel",
    "test.test_asyncio.test_unix_events", "test.test_asyncio.test_subprocess",
]
# test_socketserver needs the 'network' resource, though it only serves on
# loopback; the one test it would let out (test_socket's test_idna) is
# excluded. The long modules' network tests do reach the internet, so the
# long batch runs without it.
SELECTION_RESOURCES = ["-u", "network"]
LONG_SELECTION = [
    "test_multiprocessing_fork", "test_multiprocessing_forkserver",
    "test_multiprocessing_spawn", "test_concurrent_futures", "test_ssl",
    "test_httplib", "test_httpservers", "test_ftplib", "test_smtplib",
    "test_poplib", "test_imaplib", "test_xmlrpc", "test_urllib2_localnet",
    "test_logging", "test_eintr", "test_pty", "test_epoll", "test_poll",
    "test_select", "test_fcntl", "test.test_asyncio.test_streams",
    "test.test_asyncio.test_server", "test.test_asyncio.test_base_events",
    "test.test_asyncio.test_sendfile", "test.test_asyncio.test_sslproto",
    "test.test_asyncio.test_ssl",
]
WAYS = ["plain", "literal", "run"]
# How many differences the last lines repeat.
RECAP = 20
# How long a daemon may take to write its last reports after SIGTERM.
DAEMON_GRACE_S = 30


def say(text=""):
    print(text, flush=True)


# ---------------------------------------------------------------- set-up

def check_python(modules):
    """None when PYTHON can run every module of the selection, else why not."""
    if not os.access(PYTHON, os.X_OK):
        return f"{PYTHON} is missing"
    probe = ("import importlib.util, sys\n"
             "missing = [m for m in sys.argv[1:]"
             " if importlib.util.find_spec(m) is None]\n"
             "print(' '.join(missing)); sys.exit(1 if missing else 0)\n")
    names = ["test.libregrtest"] + [abs_module(m) for m in modules]
    p = subprocess.run([PYTHON, "-c", probe] + names, capture_output=True,
                       text=True, env=clean_env({}))
    if p.returncode != 0:
        return (f"{PYTHON} lacks {p.stdout.strip() or p.stderr.strip()}: "
                "install Debian's libpython3.11-testsuite (scripts/deps does)")
    return None


def read_exclusions(path):
    """[(test id, reason)] from lines of `test.id  # reason`."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition("#")
            if not reason.strip():
                sys.exit(f"{path}:{n}: an exclusion needs its reason")
            out.append((test_id.strip(), reason.strip()))
    return out


def clean_env(extra):
    """The environment every way starts from: nothing of the caller's audit,
    Python or malloc set-up (meson sets MALLOC_PERTURB_), a fixed PATH, and
    the given HOME/XDG/TMPDIR."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOSEAUDIT_", "PYTHON", "XDG_", "LD_",
                                "MALLOC_"))
           and k not in ("HOME", "TMPDIR", "PATH")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra)
    return env


class Way:
    """One way of running the selection, with its private directories."""

    def __init__(self, name, base, opts):
        self.name = name
        self.dir = os.path.join(base, name)
        for sub in ("home", "run", "state", "tmp", "out"):
            os.makedirs(os.path.join(self.dir, sub), mode=0o700)
        self.env = clean_env({
            "HOME": os.path.join(self.dir, "home"),
            "XDG_RUNTIME_DIR": os.path.join(self.dir, "run"),
            "XDG_STATE_HOME": os.path.join(self.dir, "state"),
            "TMPDIR": os.path.join(self.dir, "tmp"),
            # Finds what this way left running, even detached (the daemon).
            "CPYTHON_PEER_TOKEN": self.dir,
        })
        if name == "literal":
            self.env["LD_PRELOAD"] = opts.lib
        self.socket = os.path.join(self.dir, "run", "closeaudit",
                                   "collector.sock")
        self.opts = opts

    def command(self, batch, xml_path, ignore_path):
        cmd = [PYTHON, "-m", "test", "-v", "-j", str(self.opts.jobs),
               "--timeout", str(self.opts.module_timeout * batch.slowness),
               "--junit-xml", xml_path, "--ignorefile", ignore_path]
        cmd += batch.resources + batch.modules
        if self.name == "run":
            out = os.path.join(self.dir, "out", batch.name)
            cmd = [self.opts.closeaudit, "run", "--out", out, "--"] + cmd
        return cmd


class Batch:
    """A regrtest run: its modules, their resources, and how much longer
    than the default batch it may take (per module and as a whole)."""

    def __init__(self, name, modules, resources, slowness):
        self.name, self.modules, self.resources = name, modules, resources
        self.slowness = slowness


# ---------------------------------------------------------------- running

def run_batch(way, batch, ignore_path, logdir, deadline_s):
    """Runs one batch one way; returns (log path, xml path, seconds, note)."""
    stem = os.path.join(logdir, f"{way.name}-{batch.name}")
    xml_path, log_path = stem + ".xml", stem + ".log"
    for p in (xml_path, log_path):
        if os.path.exists(p):
            os.unlink(p)
    cmd = way.command(batch, xml_path, ignore_path)
    start = time.monotonic()
    note = None
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, env=way.env, cwd=os.path.join(way.dir, "tmp"),
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            note = (f"HUNG: still running after {deadline_s} s; interrupted "
                    "(regrtest's own --timeout did not end it)")
            stop_group(proc)
    elapsed = time.monotonic() - start
    if note is None and proc.returncode not in (0, 2):
        # regrtest exits 0, or 2 when a test failed; 130 when interrupted.
        # Anything else is a crash of the runner or of closeaudit itself.
        note = f"exited with status {proc.returncode}"
    return log_path, xml_path, elapsed, note


def stop_group(proc):
    """SIGINT first, so that regrtest stops its workers and writes its XML;
    then SIGKILL whatever of the group is left."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass


def processes_of(way, closeaudit):
    """{pid: argv} of processes this way left: those with its token in their
    environment, and closeaudit daemons of this build that were not there
    before (a test that empties its child's environment can start one)."""
    found = {}
    real_bin = os.path.realpath(closeaudit)
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace")
                        for a in f.read().split(b"\0") if a]
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
            exe = os.path.realpath(f"/proc/{name}/exe")
        except OSError:
            continue
        token = b"CPYTHON_PEER_TOKEN=" + way.dir.encode() + b"\0"
        daemon = exe == real_bin and "daemon" in argv
        if token in environ or daemon:
            found[int(name)] = argv
    return found


def clean_up(way, before, closeaudit):
    """Stops the daemon(s) this way started (SIGTERM: they write their
    reports and exit) and kills anything else it left. Returns notes."""
    notes = []
    left = {p: a for p, a in processes_of(way, closeaudit).items()
            if p not in before}
    daemons = {p: a for p, a in left.items() if "daemon" in a}
    for pid, argv in daemons.items():
        where = argv[argv.index("--socket") + 1] if "--socket" in argv else "?"
        if where != way.socket:
            notes.append(f"a daemon (pid {pid}) served {where}, not "
                         f"this way's {way.socket}")
    if daemons:
        notes += final_snapshot(way)
    deaf = [p for p in daemons if blocks_sigterm(p)]
    if deaf:
        # It would only go at its idle timeout; final_snapshot has had it
        # write its reports.
        notes.append(f"WARNING: daemon(s) {deaf} block SIGTERM (their signal "
                     "mask has every signal blocked), so they cannot be stopped "
                     "but by SIGKILL or their idle timeout; killed")
    for pid in daemons:
        kill(pid, signal.SIGTERM)
    start = time.monotonic()
    if not wait_gone([p for p in daemons if p not in deaf], DAEMON_GRACE_S):
        notes.append(f"WARNING: daemon(s) {sorted(daemons)} still alive "
                     f"{DAEMON_GRACE_S} s after SIGTERM; killed")
    elif daemons and not deaf:
        notes.append(f"the daemon exited {time.monotonic() - start:.1f} s "
                     "after SIGTERM")
    others = [p for p in left if p not in daemons]
    if others:
        notes.append(f"processes left running, killed: "
                     + "; ".join(f"{p} {' '.join(left[p])[:80]}" for p in others))
    for pid in list(daemons) + others:
        kill(pid, signal.SIGKILL)
    return notes


def final_snapshot(way):
    """Has the literal way's daemon write its reports now, with every process
    of the run gone (`closeaudit snapshot`), so that they do not depend on
    how the daemon ends. Returns notes."""
    env = {k: v for k, v in way.env.items() if k != "LD_PRELOAD"}
    run_dir = os.path.join(way.dir, "state", "closeaudit", "latest")
    try:
        p = subprocess.run([way.opts.closeaudit, "snapshot", run_dir], env=env,
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return ["WARNING: `closeaudit snapshot` took over 60 s"]
    if p.returncode != 0:
        return [f"WARNING: `closeaudit snapshot` failed ({p.returncode}): "
                f"{(p.stderr or p.stdout).strip()[:300]}"]
    return []


def blocks_sigterm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") and not is_zombie(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def audit_note(way, batch):
    """(one line on the audited way's report, whether it shows an audit)."""
    if way.name == "run":
        path = os.path.join(way.dir, "out", batch.name, "report.json")
    else:
        path = os.path.join(way.dir, "state", "closeaudit", "latest",
                            "report.json")
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        return f"no report ({e})", False
    s = report.get("summary", {})
    kinds = {}
    for f in report.get("findings", []):
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + f.get("count", 1)
    text = (f"report: {s.get('processes', 0)} processes, "
            f"{s.get('sockets_tracked', 0)} sockets, "
            f"{s.get('events_dropped', 0)} events dropped; findings: "
            + (", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
               or "none"))
    return text, s.get("processes", 0) > 0


def keep_reports(way, batch, logdir):
    """Copies the audited way's text report and daemon log next to the logs."""
    if way.name == "run":
        src = os.path.join(way.dir, "out", batch.name)
    else:
        src = os.path.join(way.dir, "state", "closeaudit", "latest")
    for name in ("report.txt", "report.json", "daemon.log"):
        path = os.path.join(src, name)
        if os.path.exists(path):
            shutil.copy(path, os.path.join(logdir, f"{way.name}-{batch.name}-{name}"))


# ---------------------------------------------------------------- comparing

def compare(results, modules):
    """[(test id, {way: Outcome or None})] of the tests whose kinds differ."""
    ids = sorted(set().union(*(r.keys() for r in results.values())))
    diffs = []
    for test_id in ids:
        per_way = {w: r.get(test_id) for w, r in results.items()}
        kinds = {o.kind if o else "missing" for o in per_way.values()}
        if len(kinds) > 1:
            diffs.append((test_id, per_way))
    return diffs


def tail(text, n):
    lines = text.rstrip().splitlines()
    return (["..."] if len(lines) > n else []) + lines[-n:]


def print_counts(results, times, notes):
    say(f"{'way':8} {'time':>8} {'passed':>7} {'failed':>7} {'errors':>7} "
        f"{'skipped':>8} {'xfail':>6}  modules not passed")
    for way, r in results.items():
        n = {}
        for test_id, o in r.items():
            if not test_id.endswith(" (module)"):
                n[o.kind] = n.get(o.kind, 0) + 1
        bad = [f"{t[:-9]}: {o.kind}" for t, o in r.items()
               if t.endswith(" (module)") and o.kind not in ("passed",)]
        say(f"{way:8} {times[way]:7.1f}s {n.get('pass', 0):7} {n.get('fail', 0):7} "
            f"{n.get('error', 0):7} {n.get('skip', 0):8} "
            f"{n.get('xfail', 0) + n.get('xpass', 0):6}  {', '.join(bad) or '-'}")
    for way, lines in notes.items():
        for line in lines:
            say(f"  {way}: {line}")


def print_diffs(diffs, results, modules):
    # Tests missing from a way whose module ended early are counted, not
    # listed: the module's own line says why.
    missing = {}
    listed = []
    for test_id, per_way in diffs:
        module = module_of(test_id, modules)
        gone = [w for w, o in per_way.items() if o is None]
        if gone and not test_id.endswith(" (module)") and all(
                results[w].get(f"{module} (module)", Outcome("")).kind != "passed"
                for w in gone):
            key = (module, tuple(gone))
            missing[key] = missing.get(key, 0) + 1
        else:
            listed.append((test_id, per_way))
    for test_id, per_way in listed:
        say(f"DIFF {test_id}")
        say("     " + " | ".join(f"{w}: {o.kind if o else 'missing'}"
                                 for w, o in per_way.items()))
        shown = {}
        for w, o in per_way.items():
            if o and o.kind != "pass" and o.detail.strip():
                if o.detail in shown:
                    say(f"     --- {w}: the same as {shown[o.detail]}")
                    continue
                shown[o.detail] = w
                say(f"     --- {w}:")
                n = TAIL_LINES * (2 if test_id.endswith(" (module)") else 1)
                for line in tail(o.detail, n):
                    say(f"     {line}")
    for (module, gone), count in sorted(missing.items()):
        say(f"DIFF {count} tests of {module} did not report under "
            f"{', '.join(gone)} (see the module's line above)")


def stale_exclusions(exclusions, todo):
    """Exclusions that name no test of the selection (regrtest --list-cases)."""
    known = set()
    for batch in todo:
        p = subprocess.run(
            [PYTHON, "-m", "test", "--list-cases"] + batch.resources + batch.modules,
            capture_output=True, text=True, env=clean_env({}), timeout=300)
        known.update(p.stdout.split())
    modules = [m for b in todo for m in b.modules]
    return [t for t, _ in exclusions
            if t not in known and module_of(t, modules) is not None]


# ---------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--closeaudit",
                    default=os.path.join(ROOT, "build", "collector", "closeaudit"))
    ap.add_argument("--lib",
                    default=os.path.join(ROOT, "build", "shim", "libcloseaudit.so"))
    ap.add_argument("--exclusions",
                    default=os.path.join(HERE, "cpython_exclusions.txt"))
    ap.add_argument("--logdir", help="where the logs, XML and reports stay "
                    "(default: a new directory under /tmp)")
    ap.add_argument("--long", action="store_true",
                    default=os.environ.get("CLOSEAUDIT_PEER_LONG") == "1",
                    help="also the longer modules (CLOSEAUDIT_PEER_LONG=1)")
    ap.add_argument("--only-long", action="store_true",
                    help="only the longer modules")
    ap.add_argument("--ways", default=",".join(WAYS),
                    help="a subset of " + ",".join(WAYS))
    ap.add_argument("--jobs", type=int, default=2, help="regrtest -j")
    ap.add_argument("--module-timeout", type=int, default=300,
                    help="regrtest --timeout: seconds per test module")
    ap.add_argument("--batch-timeout", type=int, default=720,
                    help="seconds one way may take before it is interrupted "
                    "(this and --module-timeout are four times as long for "
                    "the long modules)")
    opts = ap.parse_args()
    opts.ways = [w for w in opts.ways.split(",") if w]
    if not set(opts.ways) <= set(WAYS):
        ap.error(f"--ways: one of {', '.join(WAYS)}")
    return opts


def batches(opts):
    out = []
    if not opts.only_long:
        out.append(Batch("default", SELECTION, SELECTION_RESOURCES, 1))
    if opts.long or opts.only_long:
        out.append(Batch("long", LONG_SELECTION, [], 4))
    return out


def main():
    opts = parse_args()
    todo = batches(opts)
    modules = [m for b in todo for m in b.modules]
    why = check_python(modules)
    if why:
        say(f"SKIP peer-cpython: {why}")
        return SKIP
    for path in (opts.closeaudit, opts.lib):
        if not os.access(path, os.R_OK):
            say(f"FAIL peer-cpython: {path} is missing (build first)")
            return 1
    opts.closeaudit = os.path.abspath(opts.closeaudit)
    opts.lib = os.path.abspath(opts.lib)
    exclusions = read_exclusions(opts.exclusions)
    logdir = opts.logdir or tempfile.mkdtemp(prefix="cpython-peer-logs-")
    os.makedirs(logdir, exist_ok=True)
    # Short: a test's Unix socket path under TMPDIR must fit in 108 bytes,
    # and every way's path has the same length.
    base = tempfile.mkdtemp(prefix="cpeer-", dir="/tmp")
    try:
        return run_all(opts, todo, modules, exclusions, base, logdir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_all(opts, todo, modules, exclusions, base, logdir):
    ignore_path = os.path.join(base, "ignore.txt")
    with open(ignore_path, "w") as f:
        f.write("".join(t + "\n" for t, _ in exclusions))
    say(f"peer-cpython: {PYTHON} -m test, {len(modules)} modules, "
        f"{len(exclusions)} exclusions, ways {', '.join(opts.ways)}; logs in {logdir}")
    started = time.monotonic()
    results, times, notes = {}, {}, {}
    failed = False
    for name in opts.ways:
        results[name], times[name], notes[name], bad = run_way(
            Way(name, base, opts), todo, ignore_path, logdir)
        failed |= bad
    say()
    print_counts(results, times, notes)
    for t in stale_exclusions(exclusions, todo):
        say(f"  warning: exclusion {t} names no test of the selection")
    diffs = compare(results, modules) if len(results) > 1 else []
    if diffs:
        say()
        print_diffs(diffs, results, modules)
    for t in results[opts.ways[0]]:
        if all(r.get(t) and r[t].kind in ("fail", "error") for r in results.values()):
            say(f"  note: {t} fails in every way (not a difference; exclude it "
                "if it fails without the library)")
    say(f"  total {time.monotonic() - started:.0f} s")
    say()
    if diffs or failed:
        # Again in short, last: CI shows the end of a failing test's log.
        for test_id, per_way in diffs[:RECAP]:
            say(f"  differs: {test_id}  " + " ".join(
                f"{w}={o.kind if o else 'missing'}" for w, o in per_way.items()))
        if len(diffs) > RECAP:
            say(f"  ... and {len(diffs) - RECAP} more")
        say(f"FAIL peer-cpython: {len(diffs)} tests differ between the ways"
            + ("; see the notes above" if failed else ""))
        return 1
    say("PASS peer-cpython: every test has the same outcome in every way")
    return 0


def run_way(way, todo, ignore_path, logdir):
    """Every batch one way: (results, seconds, notes, whether it failed
    other than by a differing test)."""
    closeaudit = way.opts.closeaudit
    before = processes_of(way, closeaudit)
    results, secs, notes, failed = {}, 0.0, [], False
    for batch in todo:
        log, xml, took, note = run_batch(way, batch, ignore_path, logdir,
                                         way.opts.batch_timeout * batch.slowness)
        secs += took
        say(f"  {way.name} {batch.name}: {took:.1f} s")
        if note:
            notes.append(f"{batch.name}: {note}")
            failed = True
        results.update(collect(log, xml, batch.modules))
        if way.name == "plain":
            continue
        notes += clean_up(way, before, closeaudit)
        text, audited = audit_note(way, batch)
        notes.append(f"{batch.name}: {text}")
        if not audited:
            notes.append(f"{batch.name}: FAIL: the library audited nothing, so "
                         "the comparison proves nothing")
            failed = True
        keep_reports(way, batch, logdir)
    notes += clean_up(way, before, closeaudit)
    return results, secs, notes, failed


if __name__ == "__main__":
    sys.exit(main())
