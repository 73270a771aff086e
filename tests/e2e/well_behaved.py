#!/usr/bin/env python3
"""End-to-end cases for "well-behaved programs get no error findings".

Usage: well_behaved.py --closeaudit PATH --bindir DIR --srcdir tests/e2e CASE

The same driver as e2e.py (its Run, checks and main), with the cases that
run programs which do everything right, or hand sockets on on purpose, and
must come out without error or warning findings; and the one where a bug
that many processes make from one place must stay one finding.
"""

import json
import os
import re
import socket
import struct
import subprocess
import sys

import e2e
from e2e import (check, check_frame, find_marker, finish_report, log,
                 no_errors, one_of_kind)


def no_errors_or_warnings(rep):
    bad = [(f.get("kind"), f.get("severity"), f.get("count"), f.get("message"))
           for f in rep["findings"]
           if f.get("severity") in ("error", "warning")]
    check(not bad, f"expected no error or warning findings, got {bad}")


def read_report_text(run):
    path = os.path.join(run.tmp, "report.txt")
    check(os.path.exists(path), f"no report.txt in {run.tmp}")
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


# ---- bash_pipeline: bash closes pipe ends it already closed, on purpose ----

BASH_SCRIPT = "echo a | cat | wc -l; for i in 1 2 3; do echo $i | tr 1 x; done"


def case_bash_pipeline(opts, tmp):
    bash = "/bin/bash"
    check(os.access(bash, os.X_OK), f"{bash} is missing")
    run = e2e.CmdRun(opts, tmp, [bash, "-c", BASH_SCRIPT], grace="1s")
    e2e.check_client_exit(run)
    out = run.stdout()
    check(out.startswith("1\nx\n2\n3\n"),
          f"the pipeline's output did not come through: {out[:200]!r}")
    rep = finish_report(run)
    check(rep.get("audited") is True, f"audited is {rep.get('audited')!r}")
    # The shell itself makes the closes that fail with EBADF (its children
    # register only if they make a socket).
    shells = [p for p in rep["processes"]
              if os.path.basename(str(p.get("exe"))) == "bash"]
    check(shells and rep["summary"]["events"] > 0,
          f"the shell did not report: processes "
          f"{[(p.get('pid'), p.get('exe')) for p in rep['processes']]}, "
          f"{rep['summary']['events']} events")
    no_errors_or_warnings(rep)
    text = read_report_text(run)
    check("bad_close" not in text, f"report.txt names bad_close:\n{text}")


# ---- inetd / activation: sockets handed to an exec'd program on purpose ----

def hello_client(port):
    """Connect, read until the EOF, expect the service's greeting."""
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=e2e.CLIENT_TIMEOUT) as s:
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    check(got == b"hello\n", f"the service answered {got!r}, expected hello")


def handoff_run(opts, tmp, mode):
    run, _, port = e2e.server_run(opts, tmp, "inetd_server", [mode])
    for _ in range(2):
        hello_client(port)
    e2e.check_client_exit(run)
    rep = finish_report(run)
    return rep, e2e.procs_by_pid(rep)


def case_inetd(opts, tmp):
    rep, procs = handoff_run(opts, tmp, "inetd")
    services = [p for p in procs.values()
                if os.path.basename(str(p.get("exe"))) == "echo"]
    check(len(services) == 2,
          "expected both /bin/echo images to report (the socket they found "
          f"on stdin and stdout starts their audit), got {sorted(procs)}")
    e2e.none_of_kind(rep, "exec_inherited")
    no_errors_or_warnings(rep)


def case_activation(opts, tmp):
    rep, procs = handoff_run(opts, tmp, "activation")
    labels = {}  # "handed" / "stray" -> the service's pid
    for pid, p in procs.items():
        argv = p.get("argv") or []
        if len(argv) == 3 and argv[1] == "service":
            labels[argv[2]] = pid
    check(set(labels) == {"handed", "stray"},
          f"expected the services 'handed' and 'stray' in processes, got "
          f"{labels}")
    # LISTEN_FDS with LISTEN_PID = its pid: the service's own socket. With
    # LISTEN_PID naming another process: a leak into the new program.
    f = one_of_kind(rep, "exec_inherited", 1)
    e = e2e.one_example(f)
    check(e.get("pid") == labels["stray"] and e.get("fd") == 3,
          f"exec_inherited example {e!r}, expected fd 3 of the 'stray' "
          f"service, pid {labels['stray']}")
    check_frame(f, "created", "inetd_server.c",
                find_marker(opts.srcdir, "inetd_server.c", "accept"),
                "accept_one")
    no_errors(rep)


# ---- pie_procs: one bug in many processes of a PIE is one finding ----

PIE_PROCS = 5
LEAK_AT_RE = re.compile(r"^pie_procs: pid (\d+) has leak_one at (0x[0-9a-f]+)$",
                        re.M)


def check_pie(path):
    with open(path, "rb") as f:
        header = f.read(18)
    check(header[:4] == b"\x7fELF" and struct.unpack("<H", header[16:18])[0] == 3,
          f"{path} is not a position-independent executable (ET_DYN)")


def pie_run(opts, tmp, prog, name):
    """One `closeaudit run` of PROG N in tmp/name: (run, report)."""
    d = os.path.join(tmp, name)
    os.mkdir(d)
    run = e2e.CmdRun(opts, d, [prog, str(PIE_PROCS)], grace="1s")
    e2e.check_client_exit(run)
    rep = finish_report(run)
    where = dict(LEAK_AT_RE.findall(run.stderr()))
    check(len(where) == PIE_PROCS,
          f"expected {PIE_PROCS} children to say where their code is, got "
          f"{where}")
    randomized = open("/proc/sys/kernel/randomize_va_space").read().strip()
    if randomized != "0":
        check(len(set(where.values())) > 1,
              f"every child had its code at the same address {where}: "
              "the case needs ASLR")
    else:
        log("note: ASLR is off here, every child has the same addresses")
    return run, rep, set(int(p) for p in where)


def check_one_site(rep, children):
    """Every finding of the run is one per kind, covering every child."""
    leak = one_of_kind(rep, "close_wait_leak", PIE_PROCS)
    for f in rep["findings"]:
        one_of_kind(rep, f["kind"], PIE_PROCS)
    pids = {e.get("pid") for e in leak["examples"]}
    check(pids == children,
          f"close_wait_leak examples are from pids {sorted(pids)}, expected "
          f"the children {sorted(children)}")
    return leak


def folded_lines(run):
    with open(os.path.join(run.tmp, "report.folded")) as f:
        return sorted(f.read().splitlines())


def case_pie_procs(opts, tmp):
    src = "pie_procs.c"
    prog = os.path.join(os.path.abspath(opts.bindir), "pie_procs")
    check_pie(prog)
    run, rep, children = pie_run(opts, tmp, prog, "symbols")
    leak = check_one_site(rep, children)
    check_frame(leak, "eof_seen", src, find_marker(opts.srcdir, src, "eof_recv"),
                "read_until_eof")
    check_frame(leak, "created", src, find_marker(opts.srcdir, src, "accept"),
                "accept_one")
    want = f"read_until_eof ({src}:{find_marker(opts.srcdir, src, 'eof_recv')})"
    text = read_report_text(run)
    check(want in text and "x" + str(PIE_PROCS) in text,
          f"report.txt does not name {want!r} once for all the processes:\n"
          f"{text[:3000]}")

    # Without symbols, frames are module + offset: the same in every
    # process and every run, never the address one process had.
    stripped = os.path.join(tmp, "pie_procs_stripped")
    subprocess.run(["objcopy", "--strip-all", prog, stripped], check=True)
    runs = []
    for name in ("stripped-1", "stripped-2"):
        run, rep, children = pie_run(opts, tmp, stripped, name)
        leak = check_one_site(rep, children)
        ours = [fr for fr in e2e.frames(leak, "eof_seen")
                if str(fr.get("module")).endswith("/pie_procs_stripped")]
        check(ours and all(fr.get("function") == "" and fr.get("offset")
                           for fr in ours),
              "expected unsymbolized frames with an offset in the stripped "
              "binary:\n" + e2e.fmt_stack(e2e.frames(leak, "eof_seen")))
        text = read_report_text(run)
        for fr in ours:
            check(f"pie_procs_stripped+{fr['offset']}" in text,
                  f"report.txt does not name pie_procs_stripped+"
                  f"{fr['offset']}:\n{text}")
            check(fr["address"] not in text,
                  f"report.txt shows the runtime address {fr['address']}:\n"
                  f"{text}")
        runs.append(run)
    first, second = (folded_lines(r) for r in runs)
    check(first == second,
          "report.folded differs between two runs of the same binary:\n"
          + "\n".join(first) + "\n----\n" + "\n".join(second))
    merged = e2e.closeaudit_cmd(opts, "merge", runs[0].tmp, runs[1].tmp,
                                "--out", os.path.join(tmp, "merged"),
                                "--format", "json")
    check(merged.returncode == 0, f"merge: {merged.returncode} {merged.stderr}")
    one_of_kind(json.loads(merged.stdout), "close_wait_leak", 2 * PIE_PROCS)


def case_pie_procs_clean(opts, tmp):
    """The correct twin of pie_procs: every copy closes at the EOF."""
    prog = os.path.join(os.path.abspath(opts.bindir), "pie_procs")
    run = e2e.CmdRun(opts, tmp, [prog, str(PIE_PROCS), "good"], grace="1s")
    e2e.check_client_exit(run)
    rep = finish_report(run)
    check(len(rep["processes"]) == PIE_PROCS + 1,
          f"expected {PIE_PROCS + 1} processes, got {len(rep['processes'])}")
    no_errors_or_warnings(rep)


CASES = {
    "activation": case_activation,
    "bash_pipeline": case_bash_pipeline,
    "inetd": case_inetd,
    "pie_procs": case_pie_procs,
    "pie_procs_clean": case_pie_procs_clean,
}


if __name__ == "__main__":
    sys.exit(e2e.main_with(CASES))
