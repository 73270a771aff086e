#!/usr/bin/env python3
"""End-to-end tests of closeaudit against small real servers.

Usage:
  e2e.py --closeaudit PATH/closeaudit --bindir DIR_WITH_TEST_PROGRAMS \
         --srcdir tests/e2e CASE

CASE is one of: leak, clean, late, threads, garbage.

Each case runs `closeaudit run ... -- PROG ARGS` in a fresh temporary
directory, drives it (loopback TCP clients, signals), waits for closeaudit to
exit and asserts on the JSON report it wrote with --json. Prints "PASS CASE"
and exits 0 on success; on failure prints the reason, the JSON report and
closeaudit's stdout/stderr, kills everything it started and exits 1. No case
runs longer than CASE_LIMIT seconds.

Stdlib only. Servers are started as `PROG PORT_FILE`; they publish their port
(and $CLOSEAUDIT_SOCKET in PORT_FILE.sock) as described in common.h.
"""

import argparse
import errno
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

CASE_LIMIT = 60            # seconds, whole case
STARTUP_TIMEOUT = 15       # seconds until the server has published its port
EXIT_TIMEOUT = 20          # seconds for closeaudit to finish after SIGTERM
THREADS_TIMEOUT = 40       # seconds for the self-terminating threaded run
CLIENT_TIMEOUT = 5         # seconds per socket operation of a TCP client
UNIX_TIMEOUT = 3           # seconds per operation on the collector socket

MARKER = "/* E2E:eof_recv */"
HELLO_MAGIC = 0x44554143   # "CAUD", little-endian (common/wire.h)
HELLO_SIZE = 56            # sizeof(HelloMsg)
THREADED_ITER = 50
THREADED_NTHREADS = 8      # NTHREADS in threaded.c
SIGTERM_EXIT = 128 + signal.SIGTERM


class Failure(Exception):
    pass


class CaseTimeout(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def log(msg):
    print(f"e2e: {msg}", flush=True)


# ---------------------------------------------------------------------------
# Process bookkeeping

def _proc_stat(pid):
    """(ppid, starttime) of pid from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def descendants(root):
    """{pid: starttime} of all live descendants of root."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _proc_stat(int(name))
        if st is not None:
            children.setdefault(st[0], []).append((int(name), st[1]))
    out = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in out:
                out[pid] = start
                todo.append(pid)
    return out


class Run:
    """One `closeaudit run` invocation in temp dir `tmp`."""

    def __init__(self, opts, tmp, program, prog_args, grace=None):
        self.tmp = tmp
        self.program = program
        self.json_path = os.path.join(tmp, "report.json")
        self.stdout_path = os.path.join(tmp, "closeaudit.stdout")
        self.stderr_path = os.path.join(tmp, "closeaudit.stderr")
        self.known = {}  # pid -> starttime of descendants seen so far
        prog = os.path.join(os.path.abspath(opts.bindir), program)
        check(os.access(prog, os.X_OK), f"test program not found: {prog}")
        cmd = [os.path.abspath(opts.closeaudit), "run"]
        if grace is not None:
            cmd += ["--grace", grace]
        cmd += ["--json", self.json_path, "--out", tmp, "--", prog] + prog_args
        self.cmd = cmd
        log("running: " + " ".join(cmd))
        with open(self.stdout_path, "wb") as out, \
                open(self.stderr_path, "wb") as err:
            # New session = new process group led by closeaudit, so cleanup
            # can kill the whole tree; signals we *mean* to send go to
            # closeaudit's pid only.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=tmp, start_new_session=True)
        opts.current_run = self  # from now on, cleanup knows about it
        self.started = time.monotonic()

    def remember_children(self):
        if self.proc.poll() is None:
            self.known.update(descendants(self.proc.pid))

    def running(self):
        return self.proc.poll() is None

    def wait_for_file(self, path, timeout=STARTUP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if os.path.exists(path):
                self.remember_children()
                return
            if not self.running():
                raise Failure(
                    f"closeaudit exited with {self.proc.returncode} before "
                    f"{os.path.basename(path)} appeared")
            if time.monotonic() > deadline:
                raise Failure(
                    f"{os.path.basename(path)} did not appear within "
                    f"{timeout}s (server not started?)")
            time.sleep(0.05)

    def wait_for_port(self, port_file):
        self.wait_for_file(port_file)
        with open(port_file) as f:
            text = f.read().strip()
        check(text.isdigit() and 0 < int(text) < 65536,
              f"bad port file contents: {text!r}")
        return int(text)

    def sigterm(self):
        rc = self.proc.poll()
        check(rc is None,
              f"closeaudit exited early with {rc}"
              + (f" (killed by signal {-rc}: crash?)" if rc and rc < 0 else "")
              + " while it should still be following the server")
        self.remember_children()
        log(f"sending SIGTERM to closeaudit (pid {self.proc.pid})")
        os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"closeaudit did not exit within {timeout}s")
        log(f"closeaudit exited with {rc}")
        return rc

    def kill_all(self):
        """Kill closeaudit and everything it started. Safe to call twice."""
        if self.proc.poll() is None:
            self.remember_children()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid, start in self.known.items():
            st = _proc_stat(pid)
            if st is not None and st[1] == start:  # same process, not reused
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def stdout(self):
        return _read_text(self.stdout_path)

    def stderr(self):
        return _read_text(self.stderr_path)

    def report(self):
        check(os.path.exists(self.json_path),
              f"closeaudit wrote no JSON report at {self.json_path}")
        try:
            with open(self.json_path, encoding="utf-8") as f:
                return json.load(f)
        except ValueError as e:
            raise Failure(f"JSON report does not parse: {e}")

    def dump(self):
        print("----- command", flush=True)
        print(" ".join(getattr(self, "cmd", [])))
        print(f"----- JSON report ({self.json_path})")
        print(_read_text(self.json_path) or "(none)")
        print("----- closeaudit stdout")
        print(self.stdout())
        print("----- closeaudit stderr")
        print(self.stderr())
        print("-----", flush=True)


def _read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# Clients

def echo_client(port, payload=b"hello\n"):
    """Connect, send payload, read it echoed back, close. Returns our port."""
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=CLIENT_TIMEOUT) as s:
        local_port = s.getsockname()[1]
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                raise Failure(f"no echo from server within {CLIENT_TIMEOUT}s")
            if not chunk:
                break
            got += chunk
        check(got == payload,
              f"server echoed {got!r}, expected {payload!r}")
    return local_port


def drive_clients(port, n):
    ports = set()
    for _ in range(n):
        ports.add(echo_client(port))
    log(f"{n} clients done, client ports {sorted(ports)}")
    return ports


def _connect_unix(path):
    addr = path
    if path.startswith("@"):
        addr = "\0" + path[1:]  # abstract namespace
    last = None
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
        s = socket.socket(socket.AF_UNIX, kind)
        s.settimeout(UNIX_TIMEOUT)
        try:
            s.connect(addr)
            return s
        except OSError as e:
            s.close()
            last = e
            if e.errno != errno.EPROTOTYPE:
                break
    raise Failure(f"cannot connect to collector socket {path!r}: {last}")


def _finish_unix(s, what):
    """Half-close, wait (bounded) for the collector to close, then close."""
    outcome = "kept open until our timeout"
    try:
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + UNIX_TIMEOUT
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                outcome = "closed by collector"
                break
    except socket.timeout:
        pass
    except OSError as e:
        outcome = f"error {e.errno} ({os.strerror(e.errno)})"
    finally:
        s.close()
    log(f"garbage: {what}: {outcome}")


def _send_garbage(s, data, what):
    try:
        s.sendall(data)
    except socket.timeout:
        raise Failure(f"garbage: {what}: collector stopped reading (send "
                      f"blocked for {UNIX_TIMEOUT}s)")
    except OSError as e:  # EPIPE / ECONNRESET: rejected early, which is fine
        log(f"garbage: {what}: send failed with {e.errno} "
            f"({os.strerror(e.errno)})")


def hello_bytes(version, exe_len=0, argv_len=0):
    now_mono = time.monotonic_ns()
    now_real = time.time_ns()
    msg = struct.pack("<IHHIIIIIIQQQ", HELLO_MAGIC, version, HELLO_SIZE,
                      os.getpid(), os.getppid(), 0, exe_len, argv_len, 0,
                      now_mono, now_real, 1 << 20)
    assert len(msg) == HELLO_SIZE
    return msg


def attack_collector(sock_path):
    st = None
    if not sock_path.startswith("@"):
        try:
            st = os.stat(sock_path)
        except OSError as e:
            raise Failure(f"collector socket {sock_path!r}: {e}")
        check(stat.S_ISSOCK(st.st_mode),
              f"CLOSEAUDIT_SOCKET {sock_path!r} is not a socket")

    what = "4 KiB of random bytes"
    s = _connect_unix(sock_path)
    _send_garbage(s, os.urandom(4096), what)
    _finish_unix(s, what)

    what = "10-byte truncated hello, then close"
    s = _connect_unix(sock_path)
    _send_garbage(s, hello_bytes(1)[:10], what)
    s.close()
    log(f"garbage: {what}: sent")

    what = "56-byte hello with version 999"
    s = _connect_unix(sock_path)
    _send_garbage(s, hello_bytes(999), what)
    _finish_unix(s, what)

    what = "56-byte version-1 hello, huge exe_len, no memfd"
    s = _connect_unix(sock_path)
    _send_garbage(s, hello_bytes(1, exe_len=0xFFFFFFFF), what)
    _finish_unix(s, what)

    what = "connect and close"
    s = _connect_unix(sock_path)
    s.close()
    log(f"garbage: {what}: done")


# ---------------------------------------------------------------------------
# Report checks

def find_marker_line(srcdir, filename):
    path = os.path.join(srcdir, filename)
    with open(path, encoding="utf-8") as f:
        lines = [i for i, text in enumerate(f, 1) if MARKER in text]
    check(len(lines) == 1,
          f"expected exactly one {MARKER} line in {path}, found {lines}")
    return lines[0]


def check_envelope(rep):
    check(isinstance(rep, dict), "report is not a JSON object")
    check(rep.get("tool") == "closeaudit",
          f"tool is {rep.get('tool')!r}, expected 'closeaudit'")
    check(rep.get("format_version") == 1,
          f"format_version is {rep.get('format_version')!r}, expected 1")
    summary = rep.get("summary")
    check(isinstance(summary, dict), "report has no summary object")
    for key in ("processes", "sockets_tracked", "events", "events_dropped",
                "findings"):
        check(isinstance(summary.get(key), int),
              f"summary.{key} is {summary.get(key)!r}, expected an integer")
    check(isinstance(rep.get("processes"), list), "processes is not a list")
    check(isinstance(rep.get("findings"), list), "findings is not a list")
    check(summary["findings"] == len(rep["findings"]),
          f"summary.findings={summary['findings']} but there are "
          f"{len(rep['findings'])} findings")
    check(summary["processes"] == len(rep["processes"]),
          f"summary.processes={summary['processes']} but there are "
          f"{len(rep['processes'])} process entries")
    return summary


def check_process(rep, program):
    procs = rep["processes"]
    check(len(procs) >= 1, "no processes in the report")
    exe = procs[0].get("exe")
    check(isinstance(exe, str) and exe.endswith(program),
          f"processes[0].exe is {exe!r}, expected it to end with {program!r}")
    return procs[0]


def frames(finding, which):
    stacks = finding.get("stacks")
    check(isinstance(stacks, dict), "finding has no stacks object")
    st = stacks.get(which)
    check(isinstance(st, list) and st,
          f"stacks.{which} is {st!r}, expected a non-empty list of frames")
    return st


def fmt_stack(st):
    return "\n".join(
        f"    {f.get('function')} {f.get('file')}:{f.get('line')} "
        f"[{f.get('module')} {f.get('address')}]" for f in st)


def check_eof_stack(finding, src_file, marker_line):
    st = frames(finding, "eof_seen")
    hc = [f for f in st if f.get("function") == "handle_client"]
    check(hc, "no handle_client frame in stacks.eof_seen:\n" + fmt_stack(st))
    f = hc[0]
    check(isinstance(f.get("file"), str) and f["file"].endswith(src_file),
          f"eof_seen handle_client frame file is {f.get('file')!r}, expected "
          f"it to end with {src_file!r}\n" + fmt_stack(st))
    check(f.get("line") == marker_line,
          f"eof_seen handle_client frame line is {f.get('line')!r}, expected "
          f"{marker_line} (the {MARKER} line)\n" + fmt_stack(st))


def check_created_stack(finding):
    st = frames(finding, "created")
    check(any(f.get("function") == "serve" for f in st),
          "stacks.created has no frame in serve():\n" + fmt_stack(st))


ADDR_RE = re.compile(r"^127\.0\.0\.1:(\d+)$")


def check_examples(finding, port, client_ports, pid, expect_n):
    ex = finding.get("examples")
    check(isinstance(ex, list), "finding has no examples list")
    check(len(ex) == expect_n,
          f"finding has {len(ex)} examples, expected {expect_n}")
    peers = set()
    for e in ex:
        check(e.get("local") == f"127.0.0.1:{port}",
              f"example local is {e.get('local')!r}, expected "
              f"'127.0.0.1:{port}'")
        m = ADDR_RE.match(str(e.get("peer")))
        check(m is not None,
              f"example peer is {e.get('peer')!r}, expected '127.0.0.1:PORT'")
        peers.add(int(m.group(1)))
        if pid is not None:
            check(e.get("pid") == pid,
                  f"example pid is {e.get('pid')!r}, expected {pid}")
        check(isinstance(e.get("fd"), int) and e["fd"] >= 0,
              f"example fd is {e.get('fd')!r}")
    check(peers == set(client_ports),
          f"example peer ports {sorted(peers)} != our client ports "
          f"{sorted(client_ports)}")
    return ex


def only_leak(rep, count):
    findings = rep["findings"]
    check(len(findings) == 1,
          f"expected exactly 1 finding, got {len(findings)}: "
          f"{[f.get('kind') for f in findings]}")
    f = findings[0]
    check(f.get("kind") == "close_wait_leak",
          f"finding kind is {f.get('kind')!r}, expected 'close_wait_leak'")
    check(f.get("severity") == "error",
          f"finding severity is {f.get('severity')!r}, expected 'error'")
    check(f.get("count") == count,
          f"finding count is {f.get('count')!r}, expected {count}")
    return f


def check_exit_signal(rc):
    check(rc is not None and rc >= 0,
          f"closeaudit itself died of signal {-rc if rc else rc} (crash)")
    check(rc == SIGTERM_EXIT,
          f"closeaudit exit code is {rc}, expected {SIGTERM_EXIT} (server "
          f"killed by the forwarded SIGTERM)"
          + (" -- looks like a crash" if rc in (134, 135, 136, 139) else ""))


# ---------------------------------------------------------------------------
# Cases

def run_server_case(opts, tmp, program, src_file, grace, nclients, wait_s,
                    garbage=False):
    """Common shape of leak/clean/late/garbage. Returns (run, report, info)."""
    port_file = os.path.join(tmp, "port")
    run = Run(opts, tmp, program, [port_file], grace=grace)
    port = run.wait_for_port(port_file)
    log(f"{program} listening on 127.0.0.1:{port}")
    if garbage:
        sock_file = port_file + ".sock"
        run.wait_for_file(sock_file, timeout=2)
        with open(sock_file) as f:
            sock_path = f.read().strip()
        check(sock_path, "CLOSEAUDIT_SOCKET was empty in the server")
        log(f"collector socket: {sock_path}")
        attack_collector(sock_path)
        check(run.running(),
              f"closeaudit exited with {run.proc.returncode} after the "
              "garbage connections")
    client_ports = drive_clients(port, nclients)
    log(f"waiting {wait_s}s")
    time.sleep(wait_s)
    run.sigterm()
    rc = run.wait(EXIT_TIMEOUT)
    check_exit_signal(rc)
    rep = run.report()
    summary = check_envelope(rep)
    proc = check_process(rep, program)
    check(summary["sockets_tracked"] >= 1 + nclients,
          f"summary.sockets_tracked={summary['sockets_tracked']}, expected at "
          f"least {1 + nclients} (listener + accepted sockets)")
    return run, rep, dict(port=port, client_ports=client_ports,
                          pid=proc.get("pid"))


def case_leak(opts, tmp, garbage=False):
    program, src = "leak_server", "leak_server.c"
    line = find_marker_line(opts.srcdir, src)
    run, rep, info = run_server_case(opts, tmp, program, src, "1s", 3, 2.5,
                                     garbage=garbage)
    f = only_leak(rep, 3)
    check_eof_stack(f, src, line)
    check_created_stack(f)
    ex = check_examples(f, info["port"], info["client_ports"], info["pid"], 3)
    for e in ex:
        check("closed_after_ms" in e and e["closed_after_ms"] is None,
              f"example closed_after_ms is {e.get('closed_after_ms')!r}, "
              "expected null (never closed by the program)")
    if garbage:
        for p in rep["processes"]:
            check(str(p.get("exe")).endswith(program),
                  f"unexpected process entry {p!r}: the garbage connections "
                  "must not be registered as processes")
        err = run.stderr()
        check("dropped" in err.lower(),
              "closeaudit stderr does not mention the rejected connections "
              "(no 'dropped')")


def case_clean(opts, tmp):
    run, rep, info = run_server_case(opts, tmp, "good_server", "good_server.c",
                                     "1s", 3, 2.5)
    check(rep["findings"] == [],
          f"expected no findings, got {len(rep['findings'])}: "
          f"{[f.get('kind') for f in rep['findings']]}")


def case_late(opts, tmp):
    program, src = "late_close_server", "late_close_server.c"
    line = find_marker_line(opts.srcdir, src)
    run, rep, info = run_server_case(opts, tmp, program, src, "2s", 1, 10)
    f = only_leak(rep, 1)
    check_eof_stack(f, src, line)
    ex = check_examples(f, info["port"], info["client_ports"], info["pid"], 1)
    closed = [e.get("closed_after_ms") for e in ex]
    check(any(isinstance(c, (int, float)) and 6500 <= c <= 9500
              for c in closed),
          f"closed_after_ms values {closed}, expected one within 8000+-1500")


def case_threads(opts, tmp):
    program = "threaded"
    expected = 1 + THREADED_NTHREADS * THREADED_ITER * 3
    run = Run(opts, tmp, program, [str(THREADED_ITER)])
    rc = run.wait(THREADS_TIMEOUT)
    check(rc == 0, f"closeaudit exit code is {rc}, expected 0 "
          "(threaded exits 0 on success)")
    m = re.search(r"^sockets_created=(\d+)$", run.stdout(), re.M)
    check(m is not None, "threaded's sockets_created=N line is missing from "
          "closeaudit's stdout (the program's output must pass through)")
    n = int(m.group(1))
    check(n == expected,
          f"threaded printed sockets_created={n}, expected {expected}")
    rep = run.report()
    summary = check_envelope(rep)
    check_process(rep, program)
    check(rep["findings"] == [],
          f"expected no findings, got {len(rep['findings'])}: "
          f"{[(f.get('kind'), f.get('count')) for f in rep['findings']]}")
    check(summary["sockets_tracked"] == n,
          f"summary.sockets_tracked={summary['sockets_tracked']}, expected "
          f"{n} (events_dropped={summary['events_dropped']})")


def case_garbage(opts, tmp):
    case_leak(opts, tmp, garbage=True)


CASES = {
    "leak": case_leak,
    "clean": case_clean,
    "late": case_late,
    "threads": case_threads,
    "garbage": case_garbage,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--closeaudit", required=True,
                    help="path of the closeaudit binary")
    ap.add_argument("--bindir", required=True,
                    help="directory holding the built test programs")
    ap.add_argument("--srcdir", required=True,
                    help="tests/e2e source directory (for marker lines)")
    ap.add_argument("case", choices=sorted(CASES))
    opts = ap.parse_args()
    opts.current_run = None

    if not os.access(opts.closeaudit, os.X_OK):
        print(f"FAIL {opts.case}: closeaudit not executable: "
              f"{opts.closeaudit}", flush=True)
        return 1

    def on_alarm(signum, frame):
        raise CaseTimeout()

    tmp = tempfile.mkdtemp(prefix=f"closeaudit-e2e-{opts.case}-")
    ok = False
    reason = None
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CASE_LIMIT)
    try:
        CASES[opts.case](opts, tmp)
        ok = True
    except Failure as e:
        reason = str(e)
    except CaseTimeout:
        reason = f"case did not finish within {CASE_LIMIT}s"
    except Exception as e:  # a bug here, or an unexpected OS error
        import traceback
        traceback.print_exc()
        reason = f"unexpected {type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
        run = opts.current_run
        if run is not None:
            run.kill_all()
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"PASS {opts.case}", flush=True)
        return 0
    print(f"FAIL {opts.case}: {reason}", flush=True)
    if opts.current_run is not None:
        opts.current_run.dump()
    print(f"(temporary files kept in {tmp})", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
