#!/usr/bin/env python3
"""The plain form, `LD_PRELOAD=libcloseaudit.so ./server`, with nothing else set
up: the library must start a per-user collector daemon by itself, and the
daemon must write the report where the README says, once the server exits.

Usage: literal.py --lib PATH/libcloseaudit.so --bindir DIR --srcdir DIR
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def fail(msg):
    print(f"FAIL literal: {msg}", flush=True)
    sys.exit(1)


def daemons_on(sock_path):
    """Pids of `closeaudit daemon` processes serving sock_path."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"daemon" in args and sock_path.encode() in args:
            pids.append(int(name))
    return pids


def marker_line(path, marker):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if marker in line:
                return n
    fail(f"marker {marker} not in {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--srcdir", required=True)
    opts = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="closeaudit-literal-")
    runtime = os.path.join(tmp, "run")
    os.mkdir(runtime, 0o700)
    state = os.path.join(tmp, "state")
    sock_path = os.path.join(runtime, "closeaudit", "collector.sock")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CLOSEAUDIT_") and k != "LD_PRELOAD"}
    env.update(XDG_RUNTIME_DIR=runtime, XDG_STATE_HOME=state,
               LD_PRELOAD=os.path.abspath(opts.lib))
    port_file = os.path.join(tmp, "port")
    server = subprocess.Popen(
        [os.path.join(os.path.abspath(opts.bindir), "leak_server"), port_file],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or server.poll() is not None:
                fail(f"leak_server did not start (exit {server.poll()})")
            time.sleep(0.05)
        port = int(open(port_file).read())
        if not daemons_on(sock_path):
            fail(f"no closeaudit daemon is serving {sock_path}")
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"hello\n")
                c.recv(100)
        # The daemon judges with the default 5 s grace period.
        time.sleep(6)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        stderr = server.stderr.read().decode(errors="replace")
        if "closeaudit" in stderr:
            fail(f"the library complained on the server's stderr: {stderr}")

        report_path = os.path.join(state, "closeaudit", "latest", "report.json")
        deadline = time.monotonic() + 10
        report = None
        while time.monotonic() < deadline:
            try:
                with open(report_path) as f:
                    report = json.load(f)
                if report["summary"]["processes"] >= 1:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        if report is None:
            fail(f"the daemon wrote no report at {report_path}")
        leaks = [f for f in report["findings"] if f["kind"] == "close_wait_leak"]
        if len(leaks) != 1 or leaks[0]["count"] != 3:
            fail(f"expected one close_wait_leak x3, got "
                 f"{[(f['kind'], f['count']) for f in report['findings']]}")
        line = marker_line(os.path.join(opts.srcdir, "leak_server.c"),
                           "E2E:eof_recv")
        top = [fr for fr in leaks[0]["stacks"]["eof_seen"]
               if fr["function"] == "handle_client"]
        if not top or top[0]["line"] != line:
            fail(f"eof_seen does not name handle_client at line {line}: "
                 f"{leaks[0]['stacks']['eof_seen'][:3]}")
        print("PASS literal", flush=True)
    finally:
        if server.poll() is None:
            server.kill()
        for pid in daemons_on(sock_path):
            os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
