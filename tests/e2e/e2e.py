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

# Reports here are symbolized from this machine's files only: a debuginfod
# server the environment names would make them depend on the network.
os.environ.pop("DEBUGINFOD_URLS", None)

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

    def __init__(self, opts, tmp, program, prog_args, grace=None, extra=(),
                 stderr=None):
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
        cmd += list(extra)
        cmd += ["--json", self.json_path, "--out", tmp, "--", prog] + prog_args
        self.cmd = cmd
        log("running: " + " ".join(cmd))
        with open(self.stdout_path, "wb") as out, \
                open(self.stderr_path, "wb") as err_file:
            err = err_file if stderr is None else stderr
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
    check(rep.get("format_version") == 3,
          f"format_version is {rep.get('format_version')!r}, expected 3")
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
                    garbage=False, args=()):
    """Common shape of leak/clean/late/garbage. Returns (run, report, info)."""
    port_file = os.path.join(tmp, "port")
    run = Run(opts, tmp, program, [port_file] + list(args), grace=grace)
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
    # Frames the C library names only in part (without its debug package)
    # are no reason for a warning.
    bare = [w for w in rep.get("warnings", []) if "bare offsets" in w]
    check(not bare, f"unexpected warnings about unnamed frames: {bare}")
    ex = check_examples(f, info["port"], info["client_ports"], info["pid"], 3)
    for e in ex:
        check("closed_after_ms" in e and e["closed_after_ms"] is None,
              f"example closed_after_ms is {e.get('closed_after_ms')!r}, "
              "expected null (never closed by the program)")
    check_regenerated(opts, tmp, rep)
    if garbage:
        for p in rep["processes"]:
            check(str(p.get("exe")).endswith(program),
                  f"unexpected process entry {p!r}: the garbage connections "
                  "must not be registered as processes")
        err = run.stderr()
        check("dropped" in err.lower(),
              "closeaudit stderr does not mention the rejected connections "
              "(no 'dropped')")


def case_dlopen_plugin(opts, tmp):
    """An object loaded with dlopen() after the image started (and sent its
    module list) is a module like the others: the leak in the plugin is
    named by the plugin's file and line, in the JSON and in the text."""
    src = "leak_server.c"  # built into the plugin with -DE2E_PLUGIN
    line = find_marker_line(opts.srcdir, src)
    plugin = os.path.join(os.path.abspath(opts.bindir), "libleak_plugin.so")
    check(os.path.exists(plugin), f"test plugin not found: {plugin}")
    run, rep, info = run_server_case(opts, tmp, "plugin_host", src, "1s", 3,
                                     2.5, args=[plugin])
    f = only_leak(rep, 3)
    check_eof_stack(f, src, line)
    st = frames(f, "eof_seen")
    hc = [fr for fr in st if fr.get("function") == "handle_client"][0]
    check(str(hc.get("module", "")).endswith("libleak_plugin.so"),
          f"the handle_client frame's module is {hc.get('module')!r}, "
          "expected the plugin\n" + fmt_stack(st))
    check(any(fr.get("function") == "serve" for fr in frames(f, "created")),
          "stacks.created has no frame in the plugin's serve():\n" +
          fmt_stack(frames(f, "created")))
    text = _read_text(os.path.join(tmp, "report.txt"))
    want = f"handle_client ({src}:{line})"
    check(want in text, f"report.txt does not name {want!r}:\n{text[:3000]}")
    check_regenerated(opts, tmp, rep)


def run_to_done(opts, tmp, program, args=(), grace="1s"):
    """Runs a program that is its own client to its end (it writes DONE_FILE,
    its first argument, when it is through): (run, report)."""
    done = os.path.join(tmp, "done")
    run = Run(opts, tmp, program, [done] + list(args), grace=grace)
    check_client_exit(run)
    return run, finish_report(run)


def nothing_above_info(rep, text=""):
    bad = [(f.get("kind"), f.get("severity"), f.get("message"))
           for f in rep["findings"] if f.get("severity") != "info"]
    check(not bad, f"expected no finding above info, got {bad}\n{text[:3000]}")


def case_jit(opts, tmp):
    """JIT-compiled code (anonymous memory, in no module) named by the perf
    map its runtime wrote, /tmp/perf-PID.map: the frame carries the name, in
    the JSON and the text, and the frames around it still symbolize."""
    src = "jit_reader.c"
    line = find_marker(opts.srcdir, src, "jit_call")
    run, rep = run_to_done(opts, tmp, "jit_reader")
    f = one_of_kind(rep, "close_wait_leak", 2)
    st = frames(f, "eof_seen")
    jit = [fr for fr in st if fr.get("function") == "jit_read_request"]
    check(jit and jit[0].get("module") == "" and jit[0].get("in_app") is True,
          "eof_seen has no frame jit_read_request named by the perf map:\n" +
          fmt_stack(st))
    check_frame(f, "eof_seen", src, line, "main")
    text = _read_text(os.path.join(tmp, "report.txt"))
    check("jit_read_request" in text and f"main ({src}:{line})" in text,
          f"report.txt does not name the JIT function and its caller:\n"
          f"{text[:3000]}")
    check_regenerated(opts, tmp, rep)


def case_client_pool(opts, tmp):
    """A client's pool that never reads its idle connections after the
    server closed them: the kernel shows them in CLOSE_WAIT, and the report
    tells the owner of the pool, not of a server, what to do."""
    src = "pool_client.c"
    line = find_marker(opts.srcdir, src, "pool_open")
    run, rep = run_to_done(opts, tmp, "pool_client")
    f = one_of_kind(rep, "close_wait_leak", 3)
    check(f.get("confirmed_by_kernel") is True,
          "the pool's CLOSE_WAIT was not confirmed by the kernel")
    check_frame(f, "created", src, line, "pool_open")
    msg, advice = f.get("message", ""), f.get("advice", "")
    check(f"opened at pool_open ({src}:{line})" in msg and "client" in msg,
          f"the message does not say the client opened them: {msg}")
    check("pool" in advice and "accept" not in advice,
          f"the advice is a server's, not a pool's: {advice}")
    text = _read_text(os.path.join(tmp, "report.txt"))
    check(advice in text, f"report.txt lacks the pool's advice:\n{text[:3000]}")


def case_dlopen_plugin_clean(opts, tmp):
    """The correct twin of dlopen_plugin: a plugin that closes at the EOF
    gets no finding above info."""
    plugin = os.path.join(os.path.abspath(opts.bindir), "libgood_plugin.so")
    check(os.path.exists(plugin), f"test plugin not found: {plugin}")
    run, rep, info = run_server_case(opts, tmp, "plugin_host", "good_server.c",
                                     "1s", 3, 2.5, args=[plugin])
    nothing_above_info(rep)


def case_stripped_clean(opts, tmp):
    """The correct twin of stripped: a stripped -O2 server that closes gets
    no finding above info, even with nothing to name its frames."""
    run, rep, info = run_server_case(opts, tmp, "good_server_stripped",
                                     "good_server.c", "1s", 3, 2.5)
    nothing_above_info(rep)


def case_stripped(opts, tmp):
    """A stripped -O2 binary whose debug file sits in a build-id directory
    (where distributions put them; here one of the test's own, named by
    CLOSEAUDIT_DEBUGINFO_PATH): the report names the line."""
    src, program = "leak_server.c", "leak_server_stripped"
    line = find_marker_line(opts.srcdir, src)
    binary = os.path.join(os.path.abspath(opts.bindir), program)
    notes = subprocess.run(["readelf", "-n", binary], capture_output=True,
                           text=True, check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", notes)
    check(m is not None, f"{program} has no build-id:\n{notes}")
    build_id = m.group(1)
    symbols = subprocess.run(["readelf", "-S", binary], capture_output=True,
                             text=True, check=True).stdout
    check(".symtab" not in symbols and ".debug_info" not in symbols,
          f"{program} is not stripped")
    # Without the debug file: bare offsets, and the report says what would
    # name them, once.
    bare_tmp = os.path.join(tmp, "bare")
    os.makedirs(bare_tmp)
    run_server_case(opts, bare_tmp, program, src, "1s", 1, 1.0)
    text = _read_text(os.path.join(bare_tmp, "report.txt"))
    hint = "no symbol table (stripped)"
    check(text.count(hint) == 1 and "CLOSEAUDIT_DEBUGINFO_PATH" in text,
          f"report.txt of the stripped binary without its debug file does "
          f"not say once what would name its frames:\n{text[:3000]}")
    debug_dir = os.path.join(tmp, "debug")
    where = os.path.join(debug_dir, ".build-id", build_id[:2])
    os.makedirs(where)
    shutil.copy(binary + ".symbols",
                os.path.join(where, build_id[2:] + ".debug"))
    os.environ["CLOSEAUDIT_DEBUGINFO_PATH"] = debug_dir
    try:
        run, rep, info = run_server_case(opts, tmp, program, src, "1s", 3, 2.5)
    finally:
        del os.environ["CLOSEAUDIT_DEBUGINFO_PATH"]
    f = only_leak(rep, 3)
    check_eof_stack(f, src, line)
    text = _read_text(os.path.join(tmp, "report.txt"))
    want = f"handle_client ({src}:{line})"
    check(want in text, f"report.txt does not name {want!r}:\n{text[:3000]}")


def check_regenerated(opts, tmp, rep):
    """`closeaudit report DIR` must rebuild the same report from the trace."""
    again = os.path.join(tmp, "regenerated.json")
    r = subprocess.run([os.path.abspath(opts.closeaudit), "report", tmp,
                        "--json", again], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, f"closeaudit report failed: {r.stderr}")
    with open(again, encoding="utf-8") as f:
        rep2 = json.load(f)
    for key in ("summary", "processes", "findings", "audited"):
        check(rep2.get(key) == rep.get(key),
              f"the regenerated report differs in {key!r}:\n"
              f"live:        {json.dumps(rep.get(key))[:600]}\n"
              f"regenerated: {json.dumps(rep2.get(key))[:600]}")


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
    # The clients close first, so each ends in TIME_WAIT: that is the one
    # (informational) finding this clean program may get, for every client.
    problems = [f for f in rep["findings"] if f.get("kind") != "time_wait"]
    check(problems == [],
          f"expected no findings but time_wait, got "
          f"{[(f.get('kind'), f.get('count')) for f in problems]}")
    tw = [f for f in rep["findings"] if f.get("kind") == "time_wait"]
    check(len(tw) == 1 and tw[0]["severity"] == "info"
          and tw[0]["count"] == THREADED_NTHREADS * THREADED_ITER,
          f"expected one time_wait (info) finding for all "
          f"{THREADED_NTHREADS * THREADED_ITER} clients, got "
          f"{[(f['severity'], f['count']) for f in tw]}")
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


# In an ASan build the sanitizer runtime must come first in a runtime's
# LD_PRELOAD when the library is preloaded literally (Node.js crashes in its
# own start otherwise). V8 and the JVM leave their heaps to the exit, which
# LeakSanitizer would call leaks.
ASAN_RUNTIME = os.environ.get("CLOSEAUDIT_TEST_ASAN_RUNTIME")
RUNTIME_ASAN_OPTIONS = "verify_asan_link_order=0:detect_leaks=0"


def preload_env(lib):
    """The variables that preload the library into a runtime (Node.js, a
    JVM), behind an ASan build's runtime."""
    lib = os.path.abspath(lib)
    if not ASAN_RUNTIME:
        return {"LD_PRELOAD": lib}
    return {"LD_PRELOAD": f"{ASAN_RUNTIME} {lib}",
            "ASAN_OPTIONS": RUNTIME_ASAN_OPTIONS}


def literal_env(opts, tmp, preload=None):
    """The environment of a program run with the library preloaded
    literally, the daemon it starts by itself keeping its runtime and state
    under tmp: (env, runtime_dir, state_dir). `preload`: the preload
    variables (preload_env()'s by default)."""
    lib = os.path.join(os.path.dirname(os.path.abspath(opts.closeaudit)),
                       "..", "shim", "libcloseaudit.so")
    runtime = os.path.join(tmp, "run")
    os.makedirs(runtime, 0o700)
    state = os.path.join(tmp, "state")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CLOSEAUDIT_") and k != "LD_PRELOAD"}
    env.update(XDG_RUNTIME_DIR=runtime, XDG_STATE_HOME=state,
               **(preload if preload is not None else preload_env(lib)))
    return env, runtime, state


def main_with(cases, limit=CASE_LIMIT):
    """main() for another driver's cases (python_frames.py, ...), each
    allowed `limit` seconds."""
    global CASE_LIMIT
    CASES.clear()
    CASES.update(cases)
    CASE_LIMIT = limit
    return main()


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


# ---------------------------------------------------------------------------
# Cases for the finding kinds beyond close_wait_leak: fork_held,
# exec_inherited, the kernel-confirmed close_wait_leak, fin_wait2_held,
# abortive_close, bad_close and time_wait (see docs/report-format.md).
#
# Servers publish their port like leak_server (common.h). Clients
# (half_close_client, linger_client, active_close_client) connect to a
# listener that this driver runs in-process (Listener below): the driver
# writes its port to PORT_FILE before it starts the client.

import threading  # noqa: E402  (only the cases below use it)

KIND_SEVERITY = {
    "close_wait_leak": "error",
    "fork_held": "error",
    "exec_inherited": "warning",
    "fin_wait2_held": "warning",
    "abortive_close": "warning",
    "bad_close": "error",
    "time_wait": "info",
    "pool_idle": "info",
}
CLIENT_RUN_TIMEOUT = 25     # seconds for a self-terminating program's run
ACCEPT_TIMEOUT = 10         # seconds for a server to accept our clients
NEVER_READ_CLIENTS = 3
TIME_WAIT_CONNECTIONS = 5


def find_marker(srcdir, filename, name):
    """Line number of the one line of srcdir/filename that carries the marker
    comment `/* E2E:name */` (C), `# E2E:name` (Python) or `// E2E:name`
    (JavaScript), the last two at the end of the line."""
    path = os.path.join(srcdir, filename)
    m = re.escape("E2E:" + name)
    pat = re.compile(r"/\* " + m + r" \*/|(#|//) " + m + r"\s*$")
    with open(path, encoding="utf-8") as f:
        lines = [i for i, text in enumerate(f, 1) if pat.search(text)]
    check(len(lines) == 1,
          f"expected exactly one E2E:{name} line in {path}, found {lines}")
    return lines[0]


def kinds(rep):
    return [(f.get("kind"), f.get("severity"), f.get("count"))
            for f in rep["findings"]]


def check_findings_shape(rep):
    """Every finding has the common fields, and its kind's severity."""
    for f in rep["findings"]:
        check(isinstance(f, dict), f"finding is not an object: {f!r}")
        kind = f.get("kind")
        check(kind in KIND_SEVERITY, f"unknown finding kind {kind!r}")
        check(f.get("severity") == KIND_SEVERITY[kind],
              f"{kind} finding has severity {f.get('severity')!r}, expected "
              f"{KIND_SEVERITY[kind]!r}")
        check(isinstance(f.get("count"), int) and f["count"] >= 1,
              f"{kind} finding count is {f.get('count')!r}")
        check(isinstance(f.get("confirmed_by_kernel"), bool),
              f"{kind} finding confirmed_by_kernel is "
              f"{f.get('confirmed_by_kernel')!r}, expected true/false")
        for key in ("message", "advice"):
            check(isinstance(f.get(key), str) and f[key],
                  f"{kind} finding {key} is {f.get(key)!r}")
        stacks = f.get("stacks")
        check(isinstance(stacks, dict), f"{kind} finding has no stacks object")
        for name, st in stacks.items():
            check(isinstance(st, list) and
                  all(isinstance(fr, dict) for fr in st),
                  f"{kind} stacks.{name} is not a list of frames: {st!r}")
        ex = f.get("examples")
        check(isinstance(ex, list) and all(isinstance(e, dict) for e in ex),
              f"{kind} finding examples is not a list of objects")
        check(len(ex) <= 5 and len(ex) <= f["count"],
              f"{kind} finding has {len(ex)} examples for count {f['count']} "
              "(at most 5, at most count)")


def finish_report(run):
    rep = run.report()
    check_envelope(rep)
    check_findings_shape(rep)
    log(f"findings: {kinds(rep)}")
    return rep


def of_kind(rep, kind):
    return [f for f in rep["findings"] if f.get("kind") == kind]


def one_of_kind(rep, kind, count=None):
    fs = of_kind(rep, kind)
    check(len(fs) == 1,
          f"expected exactly 1 {kind} finding, got {len(fs)}; all findings: "
          f"{kinds(rep)}")
    f = fs[0]
    if count is not None:
        check(f.get("count") == count,
              f"{kind} finding count is {f.get('count')!r}, expected {count}")
    return f


def none_of_kind(rep, *kinds_):
    bad = [(f.get("kind"), f.get("count")) for f in rep["findings"]
           if f.get("kind") in kinds_]
    check(not bad, f"expected no {'/'.join(kinds_)} findings, got {bad}")


def no_errors(rep):
    bad = [(f.get("kind"), f.get("count"), f.get("message"))
           for f in rep["findings"] if f.get("severity") == "error"]
    check(not bad, f"expected no error-severity findings, got {bad}")


def stack_list(finding, which):
    """stacks.<which>: must be present, may be empty."""
    st = finding["stacks"].get(which, "missing")
    check(isinstance(st, list),
          f"{finding.get('kind')} stacks.{which} is {st!r}, expected a list")
    return st


def check_frame(finding, which, src_file, line, function=None):
    """stacks.<which> has a frame in src_file at line (in function)."""
    st = frames(finding, which)
    for fr in st:
        if (os.path.basename(str(fr.get("file") or "")) == src_file
                and fr.get("line") == line
                and (function is None or fr.get("function") == function)):
            return fr
    want = f"{function} " if function else ""
    raise Failure(f"{finding.get('kind')} stacks.{which} has no frame "
                  f"{want}({src_file}:{line}):\n" + fmt_stack(st))


def check_app_frame(finding, which, src_file, line, function, language):
    """check_frame(), and the frame is the program's own (in_app) in
    `language` ("python", "java")."""
    fr = check_frame(finding, which, src_file, line, function)
    check(fr.get("language") == language and fr.get("in_app") is True,
          f"{function} ({src_file}:{line}) in stacks.{which} is not an in_app "
          f"{language} frame: {fr}")
    return fr


def one_example(finding):
    ex = finding.get("examples")
    check(isinstance(ex, list) and len(ex) == 1,
          f"{finding.get('kind')} finding has examples {ex!r}, expected one")
    return ex[0]


def check_addr(e, key, expected):
    """e[key] is expected, or null (unknown) when allowed by the format."""
    got = e.get(key)
    check(got == expected,
          f"{key} is {got!r}, expected {expected!r} in example {e!r}")


def check_peer_ports(examples, port, client_ports):
    peers = set()
    for e in examples:
        check_addr(e, "local", f"127.0.0.1:{port}")
        m = ADDR_RE.match(str(e.get("peer")))
        check(m is not None,
              f"example peer is {e.get('peer')!r}, expected '127.0.0.1:PORT'")
        peers.add(int(m.group(1)))
        check(isinstance(e.get("fd"), int) and e["fd"] >= 0,
              f"example fd is {e.get('fd')!r}")
    check(peers == set(client_ports),
          f"example peer ports {sorted(peers)} != our client ports "
          f"{sorted(client_ports)}")


def procs_by_pid(rep):
    return {p.get("pid"): p for p in rep["processes"] if isinstance(p, dict)}


def check_client_exit(run, timeout=CLIENT_RUN_TIMEOUT):
    rc = run.wait(timeout)
    check(rc == 0, f"closeaudit exit code is {rc}, expected 0 (the program "
          "exits 0 on success)\n----- program output (closeaudit stderr):\n"
          + run.stderr())
    return rc


class CmdRun(Run):
    """A `closeaudit run` of an arbitrary command line (argv[0] a path)."""

    def __init__(self, opts, tmp, argv, grace=None):
        self.tmp = tmp
        self.program = os.path.basename(argv[0])
        self.json_path = os.path.join(tmp, "report.json")
        self.stdout_path = os.path.join(tmp, "closeaudit.stdout")
        self.stderr_path = os.path.join(tmp, "closeaudit.stderr")
        self.known = {}
        check(os.access(argv[0], os.X_OK), f"not executable: {argv[0]}")
        cmd = [os.path.abspath(opts.closeaudit), "run"]
        if grace is not None:
            cmd += ["--grace", grace]
        cmd += ["--json", self.json_path, "--out", tmp, "--"] + list(argv)
        self.cmd = cmd
        log("running: " + " ".join(cmd))
        with open(self.stdout_path, "wb") as out, \
                open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=tmp, start_new_session=True)
        opts.current_run = self
        self.started = time.monotonic()


class Listener:
    """An in-process loopback listener for the client programs.

    mode "hold": keep every accepted connection open, never read, never close
    (until close()). mode "drain": read each connection until EOF (or an
    error such as a reset) in its own thread, then close it.
    """

    def __init__(self, n, mode):
        assert mode in ("hold", "drain")
        self.n = n
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []          # accepted sockets not yet closed
        self.peer_ports = []     # the clients' ports, in accept order
        self.drained = []        # per drained connection: "eof" or an error
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def write_port_file(self, path):
        e2e_write_atomic(path, f"{self.port}\n")

    def _accept_loop(self):
        while not self.stop.is_set():
            with self.lock:
                if len(self.peer_ports) >= self.n:
                    return
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self.lock:
                self.conns.append(conn)
                self.peer_ports.append(addr[1])
            if self.mode == "drain":
                threading.Thread(target=self._drain, args=(conn,),
                                 daemon=True).start()

    def _drain(self, conn):
        outcome = "eof"
        conn.settimeout(CLIENT_TIMEOUT * 4)
        try:
            while conn.recv(4096):
                pass
        except OSError as e:
            outcome = f"{type(e).__name__}: {e}"
        with self.lock:
            self.drained.append(outcome)
            if conn in self.conns:
                self.conns.remove(conn)
        conn.close()

    def wait_accepted(self, k, timeout=ACCEPT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.peer_ports) >= k:
                    return list(self.peer_ports)
            time.sleep(0.05)
        raise Failure(f"the listener accepted {len(self.peer_ports)} "
                      f"connections within {timeout}s, expected {k}")

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


def e2e_write_atomic(path, content):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)


def hold_client(port):
    """Connect and keep the connection open; returns (socket, our port)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    return s, s.getsockname()[1]


def server_run(opts, tmp, program, extra_args=(), grace="1s"):
    port_file = os.path.join(tmp, "port")
    run = Run(opts, tmp, program, [port_file] + list(extra_args), grace=grace)
    port = run.wait_for_port(port_file)
    log(f"{program} listening on 127.0.0.1:{port}")
    return run, port_file, port


def stop_server(run, wait_s):
    log(f"waiting {wait_s}s")
    time.sleep(wait_s)
    run.sigterm()
    check_exit_signal(run.wait(EXIT_TIMEOUT))
    return finish_report(run)


# ---- fork_held / fork_clean (fork_server.c) ----

def _fork_server_case(opts, tmp, good):
    program, src = "fork_server", "fork_server.c"
    close_line = find_marker(opts.srcdir, src, "close")
    accept_line = find_marker(opts.srcdir, src, "accept")
    nclients = 3
    run, _, port = server_run(opts, tmp, program, ["good" if good else "bad"])
    client_ports = drive_clients(port, nclients)
    rep = stop_server(run, 2.5)
    parent = check_process(rep, program)
    ppid = parent.get("pid")
    procs = procs_by_pid(rep)
    children = [p for p in rep["processes"] if p.get("ppid") == ppid
                and str(p.get("exe")).endswith(program)]
    check(len(children) >= nclients,
          f"expected at least {nclients} forked children of pid {ppid} in "
          f"processes, got {[c.get('pid') for c in children]}")
    if good:
        none_of_kind(rep, "fork_held", "close_wait_leak")
        no_errors(rep)
        return
    f = one_of_kind(rep, "fork_held", nclients)
    check_frame(f, "close", src, close_line, "handle_child")
    check_frame(f, "created", src, accept_line, "serve")
    stack_list(f, "fork")  # may be empty: the holder is the creator
    holders = f.get("holders")
    check(isinstance(holders, list) and holders,
          f"fork_held holders is {holders!r}, expected a non-empty list")
    for h in holders:
        check(isinstance(h, dict) and isinstance(h.get("pid"), int)
              and isinstance(h.get("fd"), int) and isinstance(h.get("exe"), str),
              f"bad holder entry {h!r}, expected {{pid, fd, exe}}")
    mine = [h for h in holders if h["pid"] == ppid]
    check(mine, f"fork_held holders {holders!r} do not include the parent "
          f"pid {ppid}")
    check(mine[0]["exe"].endswith(program),
          f"holder exe is {mine[0]['exe']!r}, expected it to end with "
          f"{program!r}")
    ex = f.get("examples")
    check(isinstance(ex, list) and len(ex) == nclients,
          f"fork_held has {len(ex) if isinstance(ex, list) else ex!r} "
          f"examples, expected {nclients}")
    check_peer_ports(ex, port, client_ports)
    for e in ex:
        pid = e.get("pid")
        check(pid != ppid and pid in procs and procs[pid].get("ppid") == ppid,
              f"fork_held example pid {pid!r} is not one of the forked "
              f"children of {ppid} (the closer)")
        check("tcp_state" in e, f"fork_held example has no tcp_state: {e!r}")


def case_fork_held(opts, tmp):
    _fork_server_case(opts, tmp, good=False)


def case_fork_clean(opts, tmp):
    _fork_server_case(opts, tmp, good=True)


# ---- never_read (never_read_server.py): kernel-confirmed close_wait_leak ----

def case_never_read(opts, tmp):
    script = os.path.join(os.path.abspath(opts.srcdir), "never_read_server.py")
    check(os.path.exists(script), f"missing {script}")
    port_file = os.path.join(tmp, "port")
    n = NEVER_READ_CLIENTS
    run = CmdRun(opts, tmp, [sys.executable, script, port_file, str(n)],
                 grace="1s")
    port = run.wait_for_port(port_file)
    log(f"never_read_server.py listening on 127.0.0.1:{port}")
    client_ports = set()
    for _ in range(n):
        s, p = hold_client(port)
        client_ports.add(p)
        s.sendall(b"never read\n")
        s.close()
    accepted = port_file + ".accepted"
    deadline = time.monotonic() + ACCEPT_TIMEOUT
    while True:
        try:
            with open(accepted) as fh:
                if fh.read().strip() == str(n):
                    break
        except OSError:
            pass
        check(time.monotonic() < deadline,
              f"the server did not accept {n} connections in "
              f"{ACCEPT_TIMEOUT}s")
        check(run.running(), "closeaudit exited while the server accepted")
        time.sleep(0.05)
    log(f"{n} clients connected and closed, ports {sorted(client_ports)}")
    rep = stop_server(run, 3.0)  # grace 1 s + kernel sampling every 0.5 s
    leaks = of_kind(rep, "close_wait_leak")
    total = sum(f.get("count", 0) for f in leaks)
    check(total == n, f"close_wait_leak findings cover {total} sockets, "
          f"expected {n}; all findings: {kinds(rep)}")
    examples = []
    pythons = {p.get("pid") for p in rep["processes"]
               if os.path.basename(str(p.get("exe"))).startswith("python")}
    for f in leaks:
        check(f.get("confirmed_by_kernel") is True,
              "never-read close_wait_leak has confirmed_by_kernel "
              f"{f.get('confirmed_by_kernel')!r}, expected true")
        check(stack_list(f, "eof_seen") == [],
              "never-read close_wait_leak has a non-empty eof_seen stack "
              "(the program never read the EOF):\n"
              + fmt_stack(f["stacks"]["eof_seen"]))
        frames(f, "created")
        ex = f.get("examples")
        check(len(ex) == min(f["count"], 5),
              f"finding has {len(ex)} examples for count {f['count']}")
        examples += ex
    check_peer_ports(examples, port, client_ports)
    for e in examples:
        check(e.get("tcp_state") == "CLOSE_WAIT",
              f"example tcp_state is {e.get('tcp_state')!r}, expected "
              "'CLOSE_WAIT'")
        check(e.get("pid") in pythons,
              f"example pid {e.get('pid')!r} is not a python process in "
              f"processes ({sorted(pythons)})")
        check(e.get("closed_after_ms", "missing") is None,
              f"example closed_after_ms is {e.get('closed_after_ms', 'missing')!r}"
              ", expected null (never closed)")


# ---- fin_wait2 (half_close_client.c) ----

def case_fin_wait2(opts, tmp):
    program, src = "half_close_client", "half_close_client.c"
    shut_line = find_marker(opts.srcdir, src, "shutdown")
    sock_line = find_marker(opts.srcdir, src, "socket")
    listener = Listener(1, "hold")
    try:
        port_file = os.path.join(tmp, "port")
        listener.write_port_file(port_file)
        run = Run(opts, tmp, program, [port_file, "4"], grace="1s")
        peers = listener.wait_accepted(1)
        check_client_exit(run)
    finally:
        listener.close()
    rep = finish_report(run)
    f = one_of_kind(rep, "fin_wait2_held", 1)
    check_frame(f, "shutdown", src, shut_line, "half_close")
    check_frame(f, "created", src, sock_line, "connect_to")
    e = one_example(f)
    check(e.get("tcp_state", "missing") in ("FIN_WAIT2", None),
          f"fin_wait2_held tcp_state is {e.get('tcp_state', 'missing')!r}, "
          "expected 'FIN_WAIT2' (or null)")
    if e.get("tcp_state") is None:
        log("note: fin_wait2_held tcp_state is null (kernel never sampled?)")
    check_addr(e, "local", f"127.0.0.1:{peers[0]}")
    check_addr(e, "peer", f"127.0.0.1:{listener.port}")
    proc = check_process(rep, program)
    check(e.get("pid") == proc.get("pid"),
          f"example pid {e.get('pid')!r}, expected {proc.get('pid')}")


# ---- linger (linger_client.c) ----

def case_linger(opts, tmp):
    program, src = "linger_client", "linger_client.c"
    set_line = find_marker(opts.srcdir, src, "setsockopt")
    close_line = find_marker(opts.srcdir, src, "close")
    sock_line = find_marker(opts.srcdir, src, "socket")
    listener = Listener(1, "drain")
    try:
        port_file = os.path.join(tmp, "port")
        listener.write_port_file(port_file)
        run = Run(opts, tmp, program, [port_file], grace="1s")
        peers = listener.wait_accepted(1)
        check_client_exit(run)
    finally:
        listener.close()
    log(f"listener saw: {listener.drained}")
    rep = finish_report(run)
    f = one_of_kind(rep, "abortive_close", 1)
    check_frame(f, "setsockopt", src, set_line, "abort_connection")
    check_frame(f, "close", src, close_line, "abort_connection")
    check_frame(f, "created", src, sock_line, "connect_to")
    e = one_example(f)
    ub = e.get("unsent_bytes", "missing")
    check(ub is None or (isinstance(ub, int) and not isinstance(ub, bool)
                         and ub >= 0),
          f"abortive_close unsent_bytes is {ub!r}, expected an integer >= 0 "
          "or null")
    check_addr(e, "local", f"127.0.0.1:{peers[0]}")
    check_addr(e, "peer", f"127.0.0.1:{listener.port}")


# ---- double_close / reused_fd / close_sweep (bad_close.c) ----

def _bad_close_run(opts, tmp, mode):
    info = os.path.join(tmp, "info")
    run = Run(opts, tmp, "bad_close", [info, mode], grace="1s")
    check_client_exit(run)
    with open(info) as fh:
        log(f"bad_close said: {fh.read().strip()}")
    return finish_report(run)


def _one_bad_close(rep, reason):
    fs = of_kind(rep, "bad_close")
    reasons = [(f.get("reason"), f.get("count")) for f in fs]
    check(len(fs) == 1 and fs[0].get("reason") == reason,
          f"expected exactly one bad_close finding, reason {reason!r}; got "
          f"(reason, count) {reasons}")
    check(fs[0].get("count") == 1,
          f"bad_close count is {fs[0].get('count')!r}, expected 1")
    return fs[0]


def case_double_close(opts, tmp):
    src = "bad_close.c"
    bad = find_marker(opts.srcdir, src, "double_bad_close")
    first = find_marker(opts.srcdir, src, "double_first_close")
    rep = _bad_close_run(opts, tmp, "double")
    f = _one_bad_close(rep, "double_close")
    check_frame(f, "close", src, bad, "double_close")
    check_frame(f, "previous_close", src, first, "double_close")


def case_reused_fd(opts, tmp):
    src = "bad_close.c"
    bad = find_marker(opts.srcdir, src, "reuse_bad_close")
    first = find_marker(opts.srcdir, src, "reuse_first_close")
    victim = find_marker(opts.srcdir, src, "victim")
    rep = _bad_close_run(opts, tmp, "reuse")
    f = _one_bad_close(rep, "reused_fd")
    check_frame(f, "close", src, bad, "thread_a")
    check_frame(f, "previous_close", src, first, "thread_a")
    check_frame(f, "victim_created", src, victim, "thread_b")


def case_close_sweep(opts, tmp):
    rep = _bad_close_run(opts, tmp, "sweep")
    none_of_kind(rep, "bad_close")
    check(rep["summary"]["sockets_tracked"] >= 1,
          f"summary.sockets_tracked={rep['summary']['sockets_tracked']}, "
          "expected the socket made after the sweep")


# ---- exec_fork / exec_spawn (spawn_server.c) ----

def _exec_case(opts, tmp, mode):
    program, src = "spawn_server", "spawn_server.c"
    accept_line = find_marker(opts.srcdir, src, "accept")
    exec_line = find_marker(opts.srcdir, src,
                            "exec" if mode == "fork" else "spawn")
    exec_fn = "start_sleep_fork" if mode == "fork" else "start_sleep_spawn"
    run, _, port = server_run(opts, tmp, program, [mode])
    s, client_port = hold_client(port)
    try:
        check_client_exit(run)  # sleep 3 exits, then the server exits 0
        s.settimeout(CLIENT_TIMEOUT)
        try:
            rest = s.recv(4096)
        except OSError as e:
            rest = repr(e)
        log(f"client saw after the run: {rest!r}")
    finally:
        s.close()
    rep = finish_report(run)
    server = check_process(rep, program)
    f = one_of_kind(rep, "exec_inherited", 1)
    check_frame(f, "created", src, accept_line, "accept_one")
    frames(f, "exec")
    check_frame(f, "exec", src, exec_line, exec_fn)
    e = one_example(f)
    check(str(e.get("exe")).endswith("sleep"),
          f"exec_inherited example exe is {e.get('exe')!r}, expected the new "
          "image (…/sleep)")
    procs = procs_by_pid(rep)
    p = procs.get(e.get("pid"))
    check(p is not None and str(p.get("exe")).endswith("sleep")
          and p.get("ppid") == server.get("pid"),
          f"exec_inherited example pid {e.get('pid')!r} is not the sleep "
          f"image started by {server.get('pid')} (processes entry {p!r})")
    check(isinstance(e.get("fd"), int) and e["fd"] >= 0,
          f"example fd is {e.get('fd')!r}")
    check_addr(e, "local", f"127.0.0.1:{port}")
    check_addr(e, "peer", f"127.0.0.1:{client_port}")


def case_exec_fork(opts, tmp):
    _exec_case(opts, tmp, "fork")


def case_exec_spawn(opts, tmp):
    _exec_case(opts, tmp, "spawn")


# ---- daemon (daemon_server.c) ----

def case_daemon(opts, tmp):
    program, src = "daemon_server", "daemon_server.c"
    eof_line = find_marker(opts.srcdir, src, "eof_recv")
    daemon = None  # (pid, starttime)
    try:
        run, port_file, port = server_run(opts, tmp, program)
        with open(port_file + ".pid") as fh:
            text = fh.read().strip()
        check(text.isdigit(), f"bad pid file contents {text!r}")
        st = _proc_stat(int(text))
        check(st is not None, f"daemon pid {text} is not running")
        daemon = (int(text), st[1])
        log(f"daemon pid {daemon[0]}")
        nclients = 3
        client_ports = drive_clients(port, nclients)
        rep = stop_server(run, 2.5)
    finally:
        if daemon is not None:
            st = _proc_stat(daemon[0])
            if st is not None and st[1] == daemon[1]:
                try:
                    os.kill(daemon[0], signal.SIGKILL)
                    log(f"killed daemon {daemon[0]}")
                except (ProcessLookupError, PermissionError):
                    pass
    procs = procs_by_pid(rep)
    check(daemon[0] in procs,
          f"daemon pid {daemon[0]} is not in processes {sorted(procs)}")
    f = one_of_kind(rep, "close_wait_leak", nclients)
    check_frame(f, "eof_seen", src, eof_line, "handle_client")
    check_created_stack(f)
    check_examples(f, port, client_ports, daemon[0], nclients)
    # close_range(3, ~0U) is a sweep, not a bad close, and nothing else in
    # daemon_server closes an fd that is not open.
    none_of_kind(rep, "bad_close")


# ---- master_worker (master_worker.c) ----

def case_master_worker(opts, tmp):
    program = "master_worker"
    run, _, port = server_run(opts, tmp, program)
    drive_clients(port, 6)
    rep = stop_server(run, 2.5)
    master = check_process(rep, program)
    workers = [p for p in rep["processes"]
               if p.get("ppid") == master.get("pid")
               and str(p.get("exe")).endswith(program)]
    check(len(workers) == 3,
          f"expected 3 workers of pid {master.get('pid')} in processes, got "
          f"{[w.get('pid') for w in workers]}")
    none_of_kind(rep, "fork_held", "close_wait_leak")
    no_errors(rep)


# ---- time_wait (active_close_client.c) ----

def case_time_wait(opts, tmp):
    program, src = "active_close_client", "active_close_client.c"
    close_line = find_marker(opts.srcdir, src, "close")
    n = TIME_WAIT_CONNECTIONS
    listener = Listener(n, "drain")
    try:
        port_file = os.path.join(tmp, "port")
        listener.write_port_file(port_file)
        run = Run(opts, tmp, program, [port_file, str(n), "1500"], grace="1s")
        listener.wait_accepted(n)
        check_client_exit(run)
    finally:
        listener.close()
    log(f"listener saw: {listener.drained}")
    rep = finish_report(run)
    f = one_of_kind(rep, "time_wait", n)
    check(f.get("severity") == "info",
          f"time_wait severity is {f.get('severity')!r}, expected 'info'")
    check(f.get("peers") == [{"peer": "127.0.0.1", "count": n}],
          f"time_wait peers is {f.get('peers')!r}, expected "
          f"[{{'peer': '127.0.0.1', 'count': {n}}}]")
    if "close" in f["stacks"]:
        check_frame(f, "close", src, close_line, "talk_and_close")
    else:
        log(f"note: time_wait stacks are {sorted(f['stacks'])} (no 'close')")


# ---- live: status, snapshot, SIGUSR1 and /metrics while a run goes on ----

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_exposition(text):
    """Prometheus text format 0.0.4, strictly: {name: (type, [(labels,
    value)])}. Fails on anything the format does not allow."""
    check(text.endswith("\n"), "exposition does not end with a newline")
    families, helped = {}, set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line[7:].split(" ", 1)[0]
            check(name not in helped, f"second HELP for {name}")
            helped.add(name)
        elif line.startswith("# TYPE "):
            parts = line[7:].split(" ")
            check(len(parts) == 2 and parts[1] in
                  ("counter", "gauge", "histogram", "summary", "untyped"),
                  f"bad TYPE line {line!r}")
            check(parts[0] not in families, f"second TYPE for {parts[0]}")
            families[parts[0]] = (parts[1], [])
        else:
            check(not line.startswith("#"), f"stray comment {line!r}")
            m = SAMPLE_RE.match(line)
            check(m, f"not a sample line: {line!r}")
            name, body, value = m.groups()
            check(name in families, f"sample {name} before its TYPE line")
            labels, pos = {}, 0
            while body and pos < len(body):
                lm = LABEL_RE.match(body, pos)
                check(lm, f"bad labels in {line!r}")
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
            try:
                v = float(value)
            except ValueError:
                raise Failure(f"bad value in {line!r}")
            families[name][1].append((labels, v))
    for name, (kind, _) in families.items():
        check(kind != "counter" or name.endswith("_total"),
              f"counter {name} does not end in _total")
    return families


def metric(families, name, **labels):
    kind, samples = families.get(name, (None, []))
    found = [v for lab, v in samples
             if all(lab.get(k) == str(x) for k, x in labels.items())]
    check(len(found) == 1,
          f"expected one {name}{labels} sample, found {found} in {samples}")
    return found[0]


def http_get(port, path):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                    timeout=CLIENT_TIMEOUT) as resp:
            return resp.status, resp.headers.get("Content-Type"), \
                resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def closeaudit_cmd(opts, *args):
    return subprocess.run([os.path.abspath(opts.closeaudit)] + list(args),
                          capture_output=True, text=True, timeout=60)


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_live(opts, tmp):
    mport = free_tcp_port()
    port_file = os.path.join(tmp, "port")
    run = Run(opts, tmp, "leak_server", [port_file], grace="1s",
              extra=["--metrics-listen", f"127.0.0.1:{mport}"])
    port = run.wait_for_port(port_file)
    pid = None
    drive_clients(port, 3)
    time.sleep(1.6)  # past the grace period

    st = closeaudit_cmd(opts, "status", tmp, "--json")
    check(st.returncode == 0, f"status --json: {st.returncode} {st.stderr}")
    status = json.loads(st.stdout)
    log(f"status: {status}")
    procs = status["processes"]
    check(len(procs) == 1 and procs[0]["exe"].endswith("leak_server"),
          f"status processes {procs}")
    pid = procs[0]["pid"]
    check(procs[0]["close_wait"] == 3 and procs[0]["open_sockets"] == 4,
          f"status of the server: {procs[0]}, expected 4 open, 3 CLOSE_WAIT")
    # The kernel was swept (the first sweep comes with the command), and
    # the collector's turns are counted.
    sweeps = status["kernel_sweeps"]
    check(sweeps["count"] >= 1 and sweeps["cpu_ms"] >= sweeps["last_cpu_ms"] >= 0
          and sweeps["max_cpu_ms"] >= sweeps["last_cpu_ms"]
          and status["longest_turn_ms"] > 0, f"kernel sweeps {sweeps}, "
          f"longest turn {status['longest_turn_ms']}")
    check({"kind": "close_wait_leak", "severity": "error", "sockets": 3}
          in status["finding_sockets"], f"status findings {status}")
    # With more than one CPU the draining thread is eased (kept to one),
    # unless a slow turn has just had it raised back.
    drain = status["drain_priority"]
    check(isinstance(drain["lowered"], bool) and drain["raises"] >= 0 and
          (len(os.sched_getaffinity(0)) < 2 or drain["lowered"] or
           drain["raises"] > 0), f"drain_priority {drain}")
    table = closeaudit_cmd(opts, "status", tmp)
    check(table.returncode == 0 and re.search(
        rf"^ *{pid} +4 +3 +\S*leak_server$", table.stdout, re.M),
          f"status table has no row 'pid 4 3 leak_server':\n{table.stdout}")

    code, ctype, body = http_get(mport, "/metrics")
    check(code == 200 and ctype.startswith("text/plain; version=0.0.4"),
          f"/metrics answered {code} {ctype}")
    fam = parse_exposition(body)
    check(metric(fam, "closeaudit_close_wait_sockets", pid=pid) == 3 and
          metric(fam, "closeaudit_open_sockets", pid=pid) == 4,
          "per-process gauges are wrong")
    check(metric(fam, "closeaudit_finding_sockets_total",
                 kind="close_wait_leak", severity="error") == 3,
          "close_wait_leak counter is not 3")
    check(metric(fam, "closeaudit_events_received_total") > 0 and
          metric(fam, "closeaudit_events_dropped_total") == 0 and
          metric(fam, "closeaudit_processes") == 1, "event counters")
    check(metric(fam, "closeaudit_kernel_sweeps_total") >= 1 and
          fam["closeaudit_kernel_sweep_cpu_seconds_total"][0] == "counter",
          "kernel sweep counters")
    check(fam["closeaudit_drain_priority_raises_total"][0] == "counter" and
          metric(fam, "closeaudit_drain_priority_raises_total") >= 0,
          "drain priority counter")
    check(fam["closeaudit_open_sockets"][0] == "gauge" and
          fam["closeaudit_finding_sockets_total"][0] == "counter", "types")
    check(http_get(mport, "/other")[0] == 404, "/other is not a 404")
    # A client that never finishes its request holds nothing up.
    with socket.create_connection(("127.0.0.1", mport), CLIENT_TIMEOUT) as idle:
        idle.sendall(b"GET /metr")
        check(http_get(mport, "/metrics")[0] == 200,
              "/metrics stalled behind an idle client")
    with socket.create_connection(("127.0.0.1", mport), CLIENT_TIMEOUT) as bad:
        bad.sendall(b"NONSENSE\r\n\r\n")
        check(bad.recv(100).startswith(b"HTTP/1.1 400"), "no 400 for junk")

    snap = closeaudit_cmd(opts, "snapshot", tmp)
    check(snap.returncode == 0 and "reports written" in snap.stdout,
          f"snapshot: {snap.returncode} {snap.stdout} {snap.stderr}")
    with open(os.path.join(tmp, "report.json")) as f:
        rep = json.load(f)
    one_of_kind(rep, "close_wait_leak", 3)
    check(run.running(), "closeaudit stopped after a snapshot")

    os.unlink(os.path.join(tmp, "report.html"))
    os.kill(run.proc.pid, signal.SIGUSR1)
    run.wait_for_file(os.path.join(tmp, "report.html"), timeout=10)
    check(run.running(), "closeaudit stopped after SIGUSR1")

    drive_clients(port, 2)
    time.sleep(1.6)
    fam = parse_exposition(http_get(mport, "/metrics")[2])
    check(metric(fam, "closeaudit_finding_sockets_total",
                 kind="close_wait_leak", severity="error") == 5,
          "the counter did not grow to 5")

    run.sigterm()
    check_exit_signal(run.wait(EXIT_TIMEOUT))
    rep = finish_report(run)
    one_of_kind(rep, "close_wait_leak", 5)
    after = closeaudit_cmd(opts, "status", tmp)
    check(after.returncode != 0 and "has finished" in after.stderr,
          f"status after the run: {after.returncode} {after.stderr!r}")
    check("open sockets" not in run.stderr(),
          "the status line was printed although stderr is not a terminal")


def case_status_line(opts, tmp):
    """On a terminal, `closeaudit run` keeps one status line up to date."""
    import pty
    master, slave = pty.openpty()
    port_file = os.path.join(tmp, "port")
    try:
        run = Run(opts, tmp, "leak_server", [port_file], grace="1s",
                  stderr=slave)
    finally:
        os.close(slave)
    port = run.wait_for_port(port_file)
    drive_clients(port, 2)
    time.sleep(2.5)
    run.sigterm()
    check_exit_signal(run.wait(EXIT_TIMEOUT))
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    text = out.decode("utf-8", "replace")
    lines = [l for l in re.split(r"\r\x1b\[K", text) if "open sockets" in l]
    log(f"status lines: {lines[-2:]}")
    check(any("1 process · 3 open sockets · 2 in CLOSE_WAIT · 1 finding"
              in l for l in lines),
          f"no status line showing the two leaks on the terminal: {text!r}")


def case_merge(opts, tmp):
    """Two hosts' runs of one leaky server: one culprit, examples by host."""
    dirs = []
    for host, clients in (("web-1", 2), ("web-2", 3)):
        d = os.path.join(tmp, host)
        os.mkdir(d)
        port_file = os.path.join(d, "port")
        run = Run(opts, d, "leak_server", [port_file], grace="1s",
                  extra=["--host", host])
        drive_clients(run.wait_for_port(port_file), clients)
        time.sleep(1.6)
        run.sigterm()
        check_exit_signal(run.wait(EXIT_TIMEOUT))
        check(finish_report(run)["host"] == host, f"{host}: host not recorded")
        dirs.append(d)
    out = os.path.join(tmp, "merged")
    merged = closeaudit_cmd(opts, "merge", *dirs, "--out", out,
                            "--format", "json")
    check(merged.returncode == 0, f"merge: {merged.returncode} {merged.stderr}")
    rep = json.loads(merged.stdout)
    check_envelope(rep)
    check_findings_shape(rep)
    f = one_of_kind(rep, "close_wait_leak", 5)
    check("[all hosts: web-1 2, web-2 3]" in f["message"],
          f"merged message does not count by host: {f['message']!r}")
    hosts = sorted({e.get("host") for e in f["examples"]})
    check(hosts == ["web-1", "web-2"], f"example hosts {hosts}")
    check_frame(f, "eof_seen", "leak_server.c",
                find_marker_line(opts.srcdir, "leak_server.c"))
    check(rep["host"] == "web-1, web-2", f"merged host {rep['host']!r}")
    for name in ("report.txt", "report.json", "report.html", "report.folded"):
        check(os.path.exists(os.path.join(out, name)), f"merge wrote no {name}")
    bad = closeaudit_cmd(opts, "merge", dirs[0], os.path.join(tmp, "nope"),
                         "--out", out)
    check(bad.returncode != 0 and "nope" in bad.stderr,
          f"merging a missing directory: {bad.returncode} {bad.stderr!r}")


def case_signals_inherited(opts, tmp):
    """The command starts with the signal dispositions closeaudit started
    with: closeaudit's own handling (it ignores SIGPIPE) does not leak in."""
    script = "grep '^SigIgn' /proc/self/status"
    plain = subprocess.run(["/bin/sh", "-c", script], capture_output=True,
                           text=True, timeout=30).stdout
    run = closeaudit_cmd(opts, "run", "--out", os.path.join(tmp, "run"),
                         "--", "/bin/sh", "-c", script)
    check(run.returncode == 0, f"closeaudit run: {run.returncode} {run.stderr}")
    audited = [l for l in run.stdout.splitlines() if l.startswith("SigIgn")]
    check(len(audited) == 1, f"no SigIgn line from the command: {run.stdout!r}")

    def ignored(line):
        mask = int(line.split()[1], 16)
        # glibc's posix_spawn leaves its two internal signals (32, 33) at
        # SIG_IGN in every child; the program's own libc sets them up again.
        return {n for n in range(1, 65) if mask >> (n - 1) & 1} - {32, 33}

    want, got = ignored(plain.strip()), ignored(audited[0])
    check(got == want, f"the command ignores signals {sorted(got)}, "
          f"started directly it ignores {sorted(want)}")


# ---- call_paths (call_paths.c) ----

def case_call_paths(opts, tmp):
    """One helper reached along several paths: the stacks keep them apart."""
    src = "call_paths.c"
    line = {name: find_marker(opts.srcdir, src, name)
            for name in ("eof_recv", "path_a", "path_b", "path_c",
                         "descend_read", "descend_recurse")}
    run, rep = run_to_done(opts, tmp, "call_paths")
    fs = of_kind(rep, "close_wait_leak")

    def path_of(f):
        """(function, line) of each frame from read_eof out to main."""
        out = []
        for fr in frames(f, "eof_seen"):
            if os.path.basename(str(fr.get("file") or "")) == src:
                out.append((fr.get("function"), fr.get("line")))
        return tuple(out)

    eof = ("read_eof", line["eof_recv"])
    recurse = ("descend", line["descend_recurse"])
    bottom = ("descend", line["descend_read"])
    c = ("path_c", line["path_c"])
    expected = {
        (eof, ("path_a", line["path_a"])): 3,
        (eof, ("path_b", line["path_b"])): 5,
        (eof, bottom, c): 2,
        (eof, bottom, recurse, recurse, c): 2,
    }
    got = {}
    for f in fs:
        path = path_of(f)
        # main() is outside every path; drop it.
        if path and path[-1][0] == "main":
            path = path[:-1]
        got[path] = got.get(path, 0) + f.get("count", 0)
    check(got == expected,
          "close_wait_leak findings by eof_seen path (function, line) -> "
          f"count:\n  got      {got}\n  expected {expected}")


CASES.update({
    "dlopen_plugin": case_dlopen_plugin,
    "stripped": case_stripped,
    "jit": case_jit,
    "client_pool": case_client_pool,
    "dlopen_plugin_clean": case_dlopen_plugin_clean,
    "stripped_clean": case_stripped_clean,
    "live": case_live,
    "merge": case_merge,
    "signals_inherited": case_signals_inherited,
    "status_line": case_status_line,
    "call_paths": case_call_paths,
    "fork_held": case_fork_held,
    "fork_clean": case_fork_clean,
    "never_read": case_never_read,
    "fin_wait2": case_fin_wait2,
    "linger": case_linger,
    "double_close": case_double_close,
    "reused_fd": case_reused_fd,
    "close_sweep": case_close_sweep,
    "exec_fork": case_exec_fork,
    "exec_spawn": case_exec_spawn,
    "daemon": case_daemon,
    "master_worker": case_master_worker,
    "time_wait": case_time_wait,
})


def daemon_report(runtime, state, kind="close_wait_leak", wait_s=15):
    """The literal form's report: waits for the daemon the library started
    (its socket under runtime) to write one with a `kind` finding under
    state, then stops it. The report, or None."""
    report_path = os.path.join(state, "closeaudit", "latest", "report.json")
    sock_path = os.path.join(runtime, "closeaudit", "collector.sock")
    rep = None
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                with open(report_path) as fh:
                    rep = json.load(fh)
                if any(f.get("kind") == kind for f in rep["findings"]):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
    finally:
        subprocess.run(["pkill", "-f", sock_path], check=False)
    return rep


if __name__ == "__main__":
    sys.exit(main())
