#!/usr/bin/env python3
"""Programs LD_PRELOAD cannot reach must be named as such, never reported clean.

Usage: unauditable.py --closeaudit PATH --bindir DIR CASE
CASE: static (a statically linked server), setuid (a setuid-nobody copy of a
dynamic server, run by root), go (a binary carrying Go's build-info section).
Each runs under `closeaudit run`, and must finish (no hang), warn on stderr,
and write a report with "audited": false and a warning that says why.

static_leak and go_leak run a server that leaks every connection in
CLOSE_WAIT and makes its sockets with raw system calls (raw_leak_server.c),
statically linked or marked as Go. Their reports must have no findings, and
show what the kernel showed of the server's sockets as just that: a kernel
observation, with no stacks and no advice.
"""
import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import e2e


def fail(case, msg):
    print(f"FAIL {case}: {msg}", flush=True)
    sys.exit(1)


def mark_as_go(src, dst, tmp):
    """dst: a copy of src with the section the Go toolchain always writes,
    which is what the detection reads."""
    note = os.path.join(tmp, "buildinfo")
    with open(note, "wb") as f:
        f.write(b"\xff Go buildinf:" + b"\0" * 18)
    subprocess.run(["objcopy", "--add-section", f".go.buildinfo={note}", src,
                    dst], check=True)


LEAK_CLIENTS = 3


def leak_case(opts, tmp, prog, why):
    """The leaking server under `closeaudit run`: no findings, the kernel's
    view of its CLOSE_WAIT sockets, the same in every form."""
    case = opts.case
    opts.current_run = None
    port_file = os.path.join(tmp, "port")
    try:
        run = e2e.CmdRun(opts, tmp, [prog, port_file], grace="1s")
        port = run.wait_for_port(port_file)
        with open(port_file + ".pid") as f:
            pid = int(f.read())
        clients = e2e.drive_clients(port, LEAK_CLIENTS)
        time.sleep(2.5)  # the grace period, and kernel samples past it
        run.sigterm()
        e2e.check_exit_signal(run.wait(e2e.EXIT_TIMEOUT))
        rep = run.report()
        e2e.check_envelope(rep)
        e2e.check(rep.get("audited") is False,
                  f"report says audited={rep.get('audited')!r}")
        e2e.check(any(why in w for w in rep["warnings"]),
                  f"no warning names the reason: {rep['warnings']}")
        e2e.check(rep["findings"] == [],
                  "an unaudited report lists findings: "
                  f"{[(f['kind'], f['message']) for f in rep['findings']]}")
        seen = rep.get("kernel_observations")
        e2e.check(isinstance(seen, list) and len(seen) == 1,
                  f"expected one kernel observation, got {seen!r}")
        o = seen[0]
        e2e.check(o.get("pid") == pid and o.get("tcp_state") == "CLOSE_WAIT"
                  and o.get("count") == LEAK_CLIENTS
                  and o.get("longest_ms", 0) > 1000,
                  f"kernel observation {o!r}, expected pid {pid} with "
                  f"{LEAK_CLIENTS} sockets in CLOSE_WAIT for over 1 s")
        e2e.check("stacks" not in o and "advice" not in o,
                  f"a kernel observation carries stacks or advice: {o!r}")
        e2e.check_peer_ports(o["sockets"], port, clients)
        text = run.stdout()
        for want in ("NOTHING WAS AUDITED",
                     f"pid {pid}", f"{LEAK_CLIENTS} sockets in CLOSE_WAIT"):
            e2e.check(want in text, f"the text report lacks {want!r}:\n{text}")
        for unwanted in ("fix:", "close_wait_leak", "read from every"):
            e2e.check(unwanted not in text,
                      f"the text report has {unwanted!r}:\n{text}")
        with open(os.path.join(tmp, "report.html"), encoding="utf-8") as f:
            html = f.read()
        e2e.check("What the kernel showed" in html and "<tr class=row>"
                  not in html, "report.html has no kernel view, or culprits")
        again = e2e.closeaudit_cmd(opts, "report", tmp, "--format", "json")
        e2e.check(again.returncode == 0 and json.loads(again.stdout).get(
            "kernel_observations") == seen,
                  f"`closeaudit report` does not rebuild the kernel view: "
                  f"{again.stdout[:600]}")
    except e2e.Failure as e:
        if opts.current_run is not None:
            opts.current_run.dump()
        fail(case, str(e))
    finally:
        if opts.current_run is not None:
            opts.current_run.kill_all()
    print(f"PASS {case}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("case", choices=["static", "setuid", "go", "static_leak",
                                     "go_leak"])
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix=f"closeaudit-unauditable-{opts.case}-")
    os.chmod(tmp, 0o755)
    bindir = os.path.abspath(opts.bindir)
    if opts.case == "static_leak":
        leak_case(opts, tmp, os.path.join(bindir, "static_raw_leak_server"),
                  "statically linked")
        return
    if opts.case == "go_leak":
        prog = os.path.join(tmp, "go_leak_server")
        mark_as_go(os.path.join(bindir, "raw_leak_server"), prog, tmp)
        leak_case(opts, tmp, prog, "Go program")
        return
    if opts.case == "static":
        prog, why = os.path.join(bindir, "static_probe"), "statically linked"
    elif opts.case == "setuid":
        if os.geteuid() != 0:
            print("SKIP setuid: needs root to make a setuid-nobody copy")
            return
        prog = os.path.join(tmp, "setuid_probe")
        shutil.copy(os.path.join(bindir, "probe"), prog)
        nobody = pwd.getpwnam("nobody")
        os.chown(prog, nobody.pw_uid, nobody.pw_gid)
        os.chmod(prog, 0o4755)
        why = "setuid"
    else:
        prog = os.path.join(tmp, "go_probe")
        mark_as_go(os.path.join(bindir, "probe"), prog, tmp)
        why = "Go program"
    report = os.path.join(tmp, "report.json")
    try:
        r = subprocess.run([os.path.abspath(opts.closeaudit), "run", "--json",
                            report, "--out", tmp, "--", prog],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        fail(opts.case, "closeaudit run hung")
    if r.returncode != 0:
        fail(opts.case, f"exit {r.returncode} (the probe exits 0): {r.stderr}")
    if why not in r.stderr:
        fail(opts.case, f"stderr does not say '{why}': {r.stderr!r}")
    rep = json.load(open(report))
    if rep.get("audited") is not False:
        fail(opts.case, f"report says audited={rep.get('audited')!r}")
    if not any(why in w for w in rep["warnings"]):
        fail(opts.case, f"no warning names the reason: {rep['warnings']}")
    if "NOTHING WAS AUDITED" not in r.stdout:
        fail(opts.case, f"the text report does not say so: {r.stdout!r}")
    # The trace remembers it: a report rebuilt later says the same.
    again = subprocess.run([os.path.abspath(opts.closeaudit), "report", tmp],
                           capture_output=True, text=True, timeout=60)
    if "NOTHING WAS AUDITED" not in again.stdout or why not in again.stdout:
        fail(opts.case, f"`closeaudit report` forgot it: {again.stdout!r}")
    print(f"PASS {opts.case}", flush=True)


if __name__ == "__main__":
    main()
