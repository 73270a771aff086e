#!/usr/bin/env python3
"""Programs LD_PRELOAD cannot reach must be named as such, never reported clean.

Usage: unauditable.py --closeaudit PATH --bindir DIR CASE
CASE: static (a statically linked server), setuid (a setuid-nobody copy of a
dynamic server, run by root), go (a binary carrying Go's build-info section).
Each runs under `closeaudit run`, and must finish (no hang), warn on stderr,
and write a report with "audited": false and a warning that says why.
"""
import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile


def fail(case, msg):
    print(f"FAIL {case}: {msg}", flush=True)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("case", choices=["static", "setuid", "go"])
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix=f"closeaudit-unauditable-{opts.case}-")
    os.chmod(tmp, 0o755)
    bindir = os.path.abspath(opts.bindir)
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
        # The detection reads the sections the Go toolchain always writes.
        note = os.path.join(tmp, "buildinfo")
        with open(note, "wb") as f:
            f.write(b"\xff Go buildinf:" + b"\0" * 18)
        subprocess.run(["objcopy", "--add-section", f".go.buildinfo={note}",
                        os.path.join(bindir, "probe"), prog], check=True)
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
