#!/usr/bin/env python3
"""End-to-end cases for what closeaudit's command line promises.

Usage: run_cli.py --closeaudit PATH --bindir DIR --srcdir tests/e2e CASE

The same driver as e2e.py (its Run, checks and main). versions: --version
prints meson's project version, and every form of every report names it
and the library's.
"""

import os
import re
import sys

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


CASES = {
    "versions": case_versions,
}


if __name__ == "__main__":
    e2e.CASES.clear()
    e2e.CASES.update(CASES)
    sys.exit(e2e.main())
