#!/usr/bin/env python3
"""A restarted collector gets a resync snapshot of the open sockets.

Usage: restart.py --closeaudit PATH --lib PATH --bin PATH/restart_probe

A daemon collector audits restart_probe, which holds three sockets. The test
kills the daemon with SIGKILL and starts another on the same socket. When the
probe next makes a socket (more than 3 s later, so the shim sees that nobody
drains its ring), it must hand the new daemon a new ring with a snapshot of
the three sockets it already held, plus the five it makes now: the second
daemon's report tracks all eight sockets of that one process.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


def fail(msg):
    print(f"FAIL restart: {msg}", flush=True)
    sys.exit(1)


def wait_for(pred, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--bin", required=True)
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="closeaudit-restart-")
    sock = os.path.join(tmp, "run", "collector.sock")
    ready, go = os.path.join(tmp, "ready"), os.path.join(tmp, "go")
    procs = []

    def daemon(out):
        p = subprocess.Popen([os.path.abspath(opts.closeaudit), "daemon",
                              "--foreground", "--socket", sock, "--out", out,
                              "--idle", "60s"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(out + ".log", "w"))
        procs.append(p)
        wait_for(lambda: os.path.exists(sock), "the daemon's socket")
        return p

    try:
        first = daemon(os.path.join(tmp, "first"))
        env = dict(os.environ, LD_PRELOAD=os.path.abspath(opts.lib),
                   CLOSEAUDIT_SOCKET=sock)
        probe = subprocess.Popen([os.path.abspath(opts.bin), ready, go],
                                 env=env, stdin=subprocess.DEVNULL)
        procs.append(probe)
        wait_for(lambda: os.path.exists(ready), "the probe's first sockets")
        time.sleep(0.3)  # let the first daemon drain them
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        os.unlink(sock)  # a killed daemon leaves its socket file behind
        second = daemon(os.path.join(tmp, "second"))
        time.sleep(3.5)  # the shim takes a collector silent for 3 s as gone
        os.unlink(ready)
        open(go, "w").close()
        wait_for(lambda: os.path.exists(ready), "the probe's last sockets")
        time.sleep(0.5)
        probe.send_signal(signal.SIGTERM)
        probe.wait(timeout=10)
        report = os.path.join(tmp, "second", "report.json")
        wait_for(lambda: os.path.exists(report), "the second daemon's report")
        rep = json.load(open(report))
        pids = [p["pid"] for p in rep["processes"]]
        if probe.pid not in pids:
            fail(f"the second daemon never heard from the probe: {pids}")
        tracked = rep["summary"]["sockets_tracked"]
        if tracked != 8:
            fail(f"the second daemon tracks {tracked} sockets, expected 8 "
                 "(3 from the snapshot, 5 made after the restart)")
        print("PASS restart", flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
