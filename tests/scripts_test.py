#!/usr/bin/env python3
"""What the entry points in scripts/ install and set up.

Usage: scripts_test.py --root SOURCE_ROOT

scripts/deps lists its packages with --print. scripts/closeaudit (the demo
and your own server) must install only what building and running closeaudit
needs, and set build/ up without the tests; scripts/test must install the
test tools too. Both are run from a copy of scripts/ whose deps and meson
only write down how they were called. Prints "PASS" and exits 0, or the
reason and exits 1.
"""

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile

TEST_ONLY = {"libgtest-dev", "libgmock-dev", "chromium", "chromium-driver",
             "fonts-dejavu-core", "libpython3.11-testsuite"}
BUILD = {"meson", "ninja-build", "g++", "pkg-config", "python3",
         "libunwind-dev", "libabsl-dev", "libdw-dev", "libelf-dev",
         "libzstd-dev"}


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def listed(root, *args):
    r = subprocess.run([os.path.join(root, "scripts", "deps"), "--print"]
                       + list(args), capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0, f"scripts/deps --print {args}: {r.stderr}")
    return set(r.stdout.split())


def check_deps(root):
    everything = listed(root)
    check(BUILD | TEST_ONLY <= everything,
          f"scripts/deps lacks {sorted((BUILD | TEST_ONLY) - everything)}")
    demo = listed(root, "--no-tests")
    check(BUILD <= demo, f"--no-tests lacks {sorted(BUILD - demo)}")
    check(not demo & TEST_ONLY,
          f"--no-tests installs test tools: {sorted(demo & TEST_ONLY)}")
    check({"clang", "llvm"} <= listed(root, "clang", "llvm") and
          "clang" in listed(root, "--no-tests", "clang"),
          "scripts/deps EXTRA... does not add EXTRA")


def write_script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def calls(root, tmp, script, *args):
    """Runs a copy of scripts/SCRIPT whose deps and meson record their
    arguments (deps succeeds, meson fails, which stops the script):
    (deps calls, meson calls)."""
    fake = os.path.join(tmp, script + "-root")
    os.makedirs(os.path.join(fake, "scripts"))
    os.makedirs(os.path.join(fake, "bin"))
    shutil.copy(os.path.join(root, "scripts", script),
                os.path.join(fake, "scripts", script))
    log = os.path.join(fake, "calls")
    write_script(os.path.join(fake, "scripts", "deps"),
                 f'echo "deps $*" >> {log}\n')
    write_script(os.path.join(fake, "bin", "meson"),
                 f'echo "meson $*" >> {log}\nexit 1\n')
    env = dict(os.environ, PATH=os.path.join(fake, "bin") + ":" +
               os.environ.get("PATH", ""))
    subprocess.run([os.path.join(fake, "scripts", script)] + list(args),
                   env=env, cwd=fake, capture_output=True, timeout=30)
    with open(log) as f:
        lines = f.read().splitlines()
    return ([l.split()[1:] for l in lines if l.startswith("deps")],
            [l.split()[1:] for l in lines if l.startswith("meson")])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    root = os.path.abspath(ap.parse_args().root)
    tmp = tempfile.mkdtemp(prefix="closeaudit-scripts-")
    try:
        check_deps(root)
        deps, meson = calls(root, tmp, "closeaudit", "demo")
        check(deps == [["--no-tests"]],
              f"scripts/closeaudit called deps as {deps}, expected --no-tests")
        check(meson and meson[0][0] == "setup" and "-Dtests=false" in meson[0],
              f"scripts/closeaudit set build/ up as {meson}, expected "
              "meson setup ... -Dtests=false")
        deps, _ = calls(root, tmp, "test", "--quick")
        check(deps == [[]], f"scripts/test called deps as {deps}, expected "
              "no arguments (everything, the test tools too)")
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
