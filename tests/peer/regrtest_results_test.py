#!/usr/bin/env python3
"""regrtest_results against regrtest itself: small test modules that pass,
fail in a subtest, error, skip, fail on purpose, fail in setUpClass, are
excluded, hang, crash and leave a thread behind, run by the real
`python3 -m test --testdir`, must read back as exactly those outcomes; and
a module that hangs in one way only must be a difference.

Exits 77 (a meson skip) without /usr/bin/python3.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpython_suite  # noqa: E402
from regrtest_results import Outcome, collect  # noqa: E402

PYTHON = cpython_suite.PYTHON

MODULES = {
    "test_pk_mix": '''
import unittest
class T(unittest.TestCase):
    def test_pass(self): pass
    def test_sub(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 1)
    def test_err(self):
        print("some output")
        raise OSError("boom")
    @unittest.skip("not here")
    def test_skip(self): pass
    @unittest.expectedFailure
    def test_xfail(self): self.fail("expected")
    @unittest.expectedFailure
    def test_xpass(self): pass
    def test_excluded(self): self.fail("excluded, so never run")
class U(unittest.TestCase):
    @classmethod
    def setUpClass(cls): raise RuntimeError("class set-up")
    def test_never(self): pass
''',
    "test_pk_hang": '''
import time, unittest
class T(unittest.TestCase):
    def test_first(self): pass
    def test_hang(self): time.sleep(600)
''',
    "test_pk_crash": '''
import os, unittest
class T(unittest.TestCase):
    def test_crash(self): os.abort()
''',
    "test_pk_env": '''
import threading, time, unittest
class T(unittest.TestCase):
    def test_thread(self):
        threading.Thread(target=time.sleep, args=(2,)).start()
''',
}

EXPECTED = {
    "test_pk_mix.T.test_pass": "pass",
    "test_pk_mix.T.test_sub": "fail",
    "test_pk_mix.T.test_err": "error",
    "test_pk_mix.T.test_skip": "skip",
    "test_pk_mix.T.test_xfail": "xfail",
    "test_pk_mix.T.test_xpass": "xpass",
    "setUpClass (test_pk_mix.U)": "error",
    "test_pk_mix (module)": "failed",
    "test_pk_hang.T.test_first": "pass",  # from the log: the XML is lost
    "test_pk_hang (module)": "timed out",
    "test_pk_crash (module)": "crashed",
    "test_pk_env.T.test_thread": "pass",
    "test_pk_env (module)": "env changed",
}
DETAILS = {
    "test_pk_mix.T.test_sub": ["AssertionError: 1 == 1"],
    "test_pk_mix.T.test_err": ["some output", "OSError: boom"],
    "test_pk_mix.T.test_skip": ["not here"],
    "setUpClass (test_pk_mix.U)": ["class set-up"],
    "test_pk_hang (module)": ["Timeout (", "in test_hang"],
    "test_pk_crash (module)": ["Fatal Python error", "in test_crash"],
    "test_pk_env (module)": ["Warning -- threading"],
}


def main():
    if not os.access(PYTHON, os.X_OK):
        print(f"SKIP: {PYTHON} is missing")
        return 77
    tmp = tempfile.mkdtemp(prefix="regrtest-results-")
    for name, text in MODULES.items():
        with open(os.path.join(tmp, name + ".py"), "w") as f:
            f.write(text)
    ignore = os.path.join(tmp, "ignore.txt")
    with open(ignore, "w") as f:
        f.write("test_pk_mix.T.test_excluded\n")
    xml, log = os.path.join(tmp, "junit.xml"), os.path.join(tmp, "log.txt")
    with open(log, "w") as out:
        subprocess.run([PYTHON, "-m", "test", "--testdir", tmp, "-v", "-j2",
                        "--timeout", "5", "--junit-xml", xml,
                        "--ignorefile", ignore] + list(MODULES),
                       stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
                       env=cpython_suite.clean_env({"TMPDIR": tmp}), timeout=120)
    results = collect(log, xml, list(MODULES))
    errors = []
    for test_id, kind in EXPECTED.items():
        got = results.get(test_id)
        if got is None or got.kind != kind:
            errors.append(f"{test_id}: {got.kind if got else 'missing'}, "
                          f"expected {kind}")
            continue
        for text in DETAILS.get(test_id, []):
            if text not in got.detail:
                errors.append(f"{test_id}: {text!r} not in {got.detail!r}")
    for test_id in ("test_pk_mix.T.test_excluded", "test_pk_hang.T.test_hang",
                    "test_pk_mix.U.test_never"):
        if test_id in results:
            errors.append(f"{test_id} should not have reported")

    # The same results but for a hang in one way only: a difference, and
    # the hanging test is among the tests that did not report.
    plain = dict(results)
    plain["test_pk_hang (module)"] = Outcome("passed")
    plain["test_pk_hang.T.test_hang"] = Outcome("pass")
    diffs = dict(cpython_suite.compare({"plain": plain, "literal": results},
                                       list(MODULES)))
    if set(diffs) != {"test_pk_hang (module)", "test_pk_hang.T.test_hang"}:
        errors.append(f"differences: {sorted(diffs)}")
    if errors:
        print("FAIL regrtest_results:\n  " + "\n  ".join(errors))
        print(f"(regrtest's log: {log})")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("PASS regrtest_results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
