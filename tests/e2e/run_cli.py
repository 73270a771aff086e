#!/usr/bin/env python3
"""End-to-end cases for what closeaudit's command line promises.

Usage: run_cli.py --closeaudit PATH --bindir DIR --srcdir tests/e2e CASE

The same driver as e2e.py (its Run, checks and main). versions: --version
prints meson's project version, and every form of every report names it
and the library's. error_exitcode: `run --error-exitcode N` exits N when the
report keeps a finding, else with the command's own status. app_rules:
--not-app and --app-path decide which frames are the program's own, and
the run keeps them for `closeaudit report`. old_trace: a trace written by
closeaudit 0.1.0 still makes the same finding.
"""

import json
import os
import re
import shutil
import sys
import time

import e2e
from e2e import check, finish_report


def project_version(srcdir):
    """The version in the top-level meson.build's project()."""
    path = os.path.join(srcdir, "..", "..", "meson.build")
    with open(path, encoding="utf-8") as f:
        m = re.search(r"^\s*version\s*:\s*'([^']+)'", f.read(), re.M)
    check(m is not None, f"no version in {path}")
    return m.group(1)


# ---- versions ----

def case_versions(opts, tmp):
    version = project_version(opts.srcdir)
    for args in (["--version"], ["version"]):
        r = e2e.closeaudit_cmd(opts, *args)
        check(r.returncode == 0 and r.stdout == f"closeaudit {version}\n",
              f"closeaudit {' '.join(args)}: {r.returncode} {r.stdout!r} "
              f"{r.stderr!r}, expected 'closeaudit {version}'")
    run = e2e.Run(opts, tmp, "bad_close", [os.path.join(tmp, "info"), "double"])
    e2e.check_client_exit(run)
    rep = finish_report(run)
    check(rep.get("closeaudit_version") == version and
          rep.get("library_versions") == [version],
          f"the JSON report names closeaudit {rep.get('closeaudit_version')!r} "
          f"and libraries {rep.get('library_versions')!r}, expected {version}")
    header = f"closeaudit {version} (library {version}): "
    with open(os.path.join(tmp, "report.txt"), encoding="utf-8") as f:
        text = f.read()
    check(text.startswith(header),
          f"report.txt does not start with {header!r}: {text[:200]!r}")
    with open(os.path.join(tmp, "report.html"), encoding="utf-8") as f:
        html = f.read()
    for want in (f"closeaudit <b>{version}</b>", f"library <b>{version}</b>"):
        check(want in html, f"report.html lacks {want!r}")
    again = e2e.closeaudit_cmd(opts, "report", tmp)
    check(again.returncode == 0 and again.stdout.startswith(header),
          f"`closeaudit report` does not name the versions: {again.stdout!r}")


# ---- error_exitcode ----

def served_status(opts, tmp, name, program, extra):
    """closeaudit's exit status for PROGRAM (a server) given two clients and
    a SIGTERM past the grace period."""
    d = os.path.join(tmp, name)
    os.mkdir(d)
    port_file = os.path.join(d, "port")
    run = e2e.Run(opts, d, program, [port_file], grace="1s", extra=extra)
    e2e.drive_clients(run.wait_for_port(port_file), 2)
    time.sleep(1.6)
    run.sigterm()
    rc = run.wait(e2e.EXIT_TIMEOUT)
    return rc, finish_report(run), run


def exited_status(opts, tmp, name, extra):
    """closeaudit's exit status for bad_close's double close (exits 0)."""
    d = os.path.join(tmp, name)
    os.mkdir(d)
    run = e2e.Run(opts, d, "bad_close", [os.path.join(d, "info"), "double"],
                  grace="1s", extra=extra)
    return run.wait(e2e.CLIENT_RUN_TIMEOUT), finish_report(run)


def case_error_exitcode(opts, tmp):
    flag = ["--error-exitcode", "3"]
    rc, rep, run = served_status(opts, tmp, "leak", "leak_server", flag)
    check(rep["findings"], "leak_server's report has no findings")
    check(rc == 3, f"leak_server with --error-exitcode 3: exit {rc}, "
          "expected 3")
    check("--error-exitcode" in run.stderr(),
          f"closeaudit did not say why it exits 3: {run.stderr()!r}")
    rc, rep, _ = served_status(opts, tmp, "good", "good_server", flag)
    check(rep["findings"] == [], f"good_server has findings {rep['findings']}")
    check(rc == e2e.SIGTERM_EXIT,
          f"good_server with --error-exitcode 3: exit {rc}, expected its own "
          f"status {e2e.SIGTERM_EXIT} (killed by the forwarded SIGTERM)")
    # Only the findings the filters keep count.
    rc, rep = exited_status(opts, tmp, "kept", flag + ["--min-severity", "error"])
    check(rc == 3 and len(rep["findings"]) == 1,
          f"a double close at --min-severity error: exit {rc}, findings "
          f"{e2e.kinds(rep)}, expected 3 and one bad_close")
    rc, rep = exited_status(opts, tmp, "hidden", flag + ["--kind", "time_wait"])
    check(rc == 0 and rep["findings"] == [],
          f"a double close with --kind time_wait: exit {rc}, findings "
          f"{e2e.kinds(rep)}, expected the program's own 0 and none")
    bad = e2e.closeaudit_cmd(opts, "run", "--error-exitcode", "300",
                             "--out", os.path.join(tmp, "bad"), "--", "true")
    check(bad.returncode == 2 and "--error-exitcode" in bad.stderr,
          f"--error-exitcode 300: exit {bad.returncode} {bad.stderr!r}")


# ---- app_rules ----

def eof_frames(rep):
    leaks = [f for f in rep["findings"] if f.get("kind") == "close_wait_leak"]
    check(len(leaks) == 1, f"expected one close_wait_leak, got {e2e.kinds(rep)}")
    return e2e.frames(leaks[0], "eof_seen"), leaks[0]


def case_app_rules(opts, tmp):
    """--not-app and --app-path decide which frames are the program's own;
    the run keeps them, so `closeaudit report` of it applies them again."""
    src = "leak_server.c"
    # The default: the server's frames are its own, libc's are not.
    _, rep, _ = served_status(opts, tmp, "default", "leak_server", [])
    st, f = eof_frames(rep)
    ours = [fr for fr in st if str(fr.get("file", "")).endswith(src)]
    check(ours and all(fr.get("in_app") is True for fr in ours),
          "leak_server's own frames are not in_app:\n" + e2e.fmt_stack(st))
    # --not-app disowns them (given twice: both count): no frame of the
    # program's own is left, and the sentence names the code, not a
    # function in it.
    extra = ["--not-app", "no-such-thing", "--not-app=leak_server"]
    _, rep, run = served_status(opts, tmp, "disowned", "leak_server", extra)
    st, f = eof_frames(rep)
    check(not any(fr.get("in_app") for fr in st),
          "--not-app leak_server left frames in_app:\n" + e2e.fmt_stack(st))
    check("code in leak_server" in f.get("message", ""),
          f"the message names a function of disowned code: {f.get('message')}")
    again = e2e.closeaudit_cmd(opts, "report", run.tmp, "--format", "json")
    check(again.returncode == 0, f"closeaudit report: {again.stderr}")
    st2, _ = eof_frames(json.loads(again.stdout))
    check(not any(fr.get("in_app") for fr in st2),
          "`closeaudit report` of the run forgot its --not-app")
    # --app-path claims them back, given to the report.
    bindir = os.path.abspath(opts.bindir)
    srcdir = os.path.abspath(opts.srcdir)
    claimed = e2e.closeaudit_cmd(opts, "report", run.tmp, "--format", "json",
                                 "--app-path", srcdir, "--app-path", bindir)
    check(claimed.returncode == 0, f"closeaudit report: {claimed.stderr}")
    st3, _ = eof_frames(json.loads(claimed.stdout))
    check(any(fr.get("in_app") for fr in st3),
          "--app-path did not claim the frames under it:\n" + e2e.fmt_stack(st3))
    bad = e2e.closeaudit_cmd(opts, "report", run.tmp, "--not-app=")
    check(bad.returncode != 0 and "--not-app" in bad.stderr,
          f"an empty --not-app: exit {bad.returncode} {bad.stderr!r}")
    bad = e2e.closeaudit_cmd(opts, "report", run.tmp, "--app-path")
    check(bad.returncode == 2 and "--app-path" in bad.stderr,
          f"--app-path without a value: exit {bad.returncode} {bad.stderr!r}")


# ---- old_trace ----

def case_old_trace(opts, tmp):
    """A trace written by closeaudit 0.1.0 (tests/data/trace-0.1.0: a
    leak_server run with three leaked connections, and the report 0.1.0
    made of it) still reads: `closeaudit report` makes a report of the
    current format with the same finding, examples and frames."""
    data = os.path.join(opts.srcdir, "..", "data", "trace-0.1.0")
    run_dir = os.path.join(tmp, "run")
    os.mkdir(run_dir)
    shutil.copy(os.path.join(data, "trace.catrace"), run_dir)
    with open(os.path.join(data, "report-0.1.0.json"), encoding="utf-8") as f:
        old = json.load(f)
    r = e2e.closeaudit_cmd(opts, "report", run_dir, "--format", "json")
    check(r.returncode == 0, f"closeaudit report of a 0.1.0 trace: "
          f"{r.returncode} {r.stderr}")
    new = json.loads(r.stdout)
    check(new.get("format_version") == 3 and new.get("host") == "fixture" and
          new.get("library_versions") == ["0.1.0"],
          f"format {new.get('format_version')}, host {new.get('host')!r}, "
          f"libraries {new.get('library_versions')}")
    check(len(new["findings"]) == 1, f"findings {e2e.kinds(new)}")
    was, now = old["findings"][0], new["findings"][0]
    for key in ("kind", "count", "confirmed_by_kernel", "examples"):
        check(now.get(key) == was.get(key),
              f"{key}: {now.get(key)!r} now, {was.get(key)!r} in 0.1.0")
    # Frame by frame the same places (the binary is gone, so no names now).
    offsets = lambda st: [fr.get("offset") for fr in st]  # noqa: E731
    for name in ("eof_seen", "created"):
        check(offsets(now["stacks"][name]) == offsets(was["stacks"][name]),
              f"stacks.{name} offsets changed: {offsets(now['stacks'][name])} "
              f"vs {offsets(was['stacks'][name])}")
        check(all(isinstance(fr.get("in_app"), bool) for fr in now["stacks"][name]),
              f"stacks.{name} frames lack in_app")


CASES = {
    "app_rules": case_app_rules,
    "old_trace": case_old_trace,
    "error_exitcode": case_error_exitcode,
    "versions": case_versions,
}


if __name__ == "__main__":
    sys.exit(e2e.main_with(CASES))
