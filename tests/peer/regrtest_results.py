"""regrtest's results, test by test, from its --junit-xml file and its
verbose (-v) log.

Each test id maps to an Outcome: pass, fail, error, skip, xfail (expected
failure) or xpass (unexpected success), with the tail of what it printed.
Each test module maps to one more entry, "MODULE (module)", with regrtest's
verdict on it: passed, failed, env changed, timed out, crashed, skipped...
"""
import re
import xml.etree.ElementTree as ET

TAIL_LINES = 25
FROM_LOG = "(from regrtest's log: no XML for this test)"


class Outcome:
    def __init__(self, kind, detail=""):
        self.kind, self.detail = kind, detail


def abs_module(name):
    return name if name.startswith("test.") else "test." + name


# regrtest -v prints these at the end of a module, one per failed test or
# subtest: "FAIL: test_x (test.test_os.Cls.test_x) (i=1)". Subtest failures
# are only here: the XML then holds a nameless <testcase/>.
HEADER = re.compile(r"^(FAIL|ERROR): (\S+) \(([\w.]+)\)")
# "0:00:25 load avg: 2.48 [ 1/11] test_subprocess passed"
MODULE_LINE = re.compile(
    r"^(?:\d+:\d\d:\d\d )?(?:load avg: [\d.]+ )?\[\s*\d+/\d+(?:/\d+)?\] "
    r"(test[\w.]*)(?: (.*?))?(?: -- running: .*)?$")

# "test_x (test.test_os.Cls.test_x) ... ok", the verdict maybe a line later.
VERBOSE_NAME = re.compile(r"^(\w+) \(([\w.]+)\)(.*)$")
VERDICT = re.compile(r" \.\.\. (ok|FAIL|ERROR|skipped|expected failure|"
                     r"unexpected success)\b")
VERDICTS = {"ok": "pass", "FAIL": "fail", "ERROR": "error", "skipped": "skip",
            "expected failure": "xfail", "unexpected success": "xpass"}
TIMEOUT = re.compile(r"Timeout \(\d+:\d\d:\d\d\)!$")
FATAL = re.compile(r"Fatal Python error: ")
RUNNER_FRAME = re.compile(r'^  File "(.*/(unittest|libregrtest)/|<frozen runpy>)')


def parse_xml(xml_path, results):
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return
    for case in root.iter("testcase"):
        name = case.get("name")
        if not name:
            continue  # a test with failed subtests: see HEADER
        text = [(e.text or "") for e in case
                if e.tag in ("failure", "error", "system-out", "system-err")]
        if case.find("error") is not None:
            kind = "error"
        elif case.find("failure") is not None:
            kind = "fail"
        elif case.find("skipped") is not None:
            kind = "skip"
            text = [case.find("skipped").text or ""]
        elif case.find("output") is not None:
            kind = "xfail"
        elif case.find("outcome") is not None:
            kind = "xpass"
        else:
            kind = "pass"
        results[name] = Outcome(
            kind, "\n".join(without_unittest(t) for t in text if t.strip()))


def without_unittest(text):
    """A traceback without unittest's own frames, as unittest prints it."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("  File "):
            skipping = "/unittest/" in line
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


def verbose_outcomes(lines):
    """{test id: kind} from -v's "test_x (test.m.C.test_x) ... ok" lines,
    where a docstring's first line may come between the name and the
    verdict. The fallback for a module whose XML was lost (a timeout, a
    crash)."""
    out, pending, wait = {}, None, 0
    for line in lines:
        m = VERBOSE_NAME.match(line)
        if m:
            name, test_id, rest = m.groups()
            pending = test_id if test_id.endswith("." + name) else None
            wait = 2
        else:
            rest = line
        v = VERDICT.search(rest) if pending else None
        if v:
            out[pending] = VERDICTS[v.group(1)]
            pending = None
        wait -= 1
        if wait <= 0:
            pending = None
    return out


def parse_log(log_path, results, modules):
    """Failed subtests and each module's own outcome from the verbose log."""
    with open(log_path, errors="replace") as f:
        lines = f.read().splitlines()
    for test_id, kind in verbose_outcomes(lines).items():
        # Not the verbose output of a test's own child Python (test_eintr's).
        if module_of(test_id, modules):
            results.setdefault(test_id, Outcome(kind, FROM_LOG))
    sections = {}   # module -> its lines of output
    current = None
    for i, line in enumerate(lines):
        m = MODULE_LINE.match(line)
        if m and m.group(1) in modules:
            current = m.group(1)
            sections[current] = [line]
            results[f"{current} (module)"] = Outcome(
                module_kind(m.group(2) or "passed"), "")
            continue
        if line.startswith("== Tests result:"):
            current = None  # regrtest's own summary follows
        if current:
            sections[current].append(line)
        h = HEADER.match(line)
        if h:
            kind = "fail" if h.group(1) == "FAIL" else "error"
            name, where = h.group(2), h.group(3)
            test_id = where if where.endswith("." + name) else f"{name} ({where})"
            old = results.get(test_id)
            if old is None or old.detail == FROM_LOG or old.kind in (
                    "pass", "xfail", "xpass"):
                results[test_id] = Outcome(kind, failure_block(lines, i))
    for module, text in sections.items():
        outcome = results[f"{module} (module)"]
        if any(TIMEOUT.search(t) for t in text):
            outcome.kind = "timed out"
        outcome.detail = module_detail(outcome.kind, text)
    for module in modules:
        results.setdefault(f"{module} (module)",
                           Outcome("no result", "regrtest reported nothing"))


def module_detail(kind, text):
    """What to show of a module's output: nothing when it passed, the verdict
    when only its tests failed (they are shown one by one), else regrtest's
    warnings (env changed) and the tail (a timeout's traceback, a crash)."""
    if kind == "passed":
        return ""
    if kind == "failed":
        return "\n".join(t for t in text if re.match(r"^(FAILED|OK) \(", t))
    if kind == "env changed":
        return "\n".join(t[:300] for t in text if t.startswith("Warning -- "))
    # A timeout or a crash: faulthandler's dump says which test and where,
    # most recent call first.
    for i, line in enumerate(text):
        if TIMEOUT.search(line) or FATAL.search(line):
            frames = [t for t in text[i:] if not RUNNER_FRAME.search(t)]
            return "\n".join(text[max(0, i - 3):i] + frames[:TAIL_LINES])
    return "\n".join(text[-TAIL_LINES:])


def module_kind(status):
    for prefix, kind in (("passed", "passed"), ("failed (env changed)", "env changed"),
                         ("failed", "failed"), ("skipped", "skipped"),
                         ("timed out", "timed out"), ("crashed", "crashed"),
                         ("ran no tests", "ran no tests"),
                         ("interrupted", "interrupted")):
        if status.startswith(prefix):
            return kind
    return status


def failure_block(lines, i):
    out = []
    for line in lines[i + 2:]:
        if line.startswith(("=====", "-----")):
            break
        out.append(line)
    return "\n".join(out)


def collect(log_path, xml_path, modules):
    results = {}
    parse_xml(xml_path, results)
    parse_log(log_path, results, modules)
    return results


def module_of(test_id, modules):
    """The module of `modules` a test id belongs to, or None. Ids are
    "test.test_os.Cls.test_x", "setUpClass (test.test_os.Cls)", or without
    the "test." under regrtest --testdir."""
    if test_id.endswith(" (module)"):
        return test_id[:-len(" (module)")]
    dotted = test_id.rsplit("(", 1)[-1].rstrip(")")
    best = None
    for m in modules:
        for prefix in {abs_module(m) + ".", m + "."}:
            if dotted.startswith(prefix) and (best is None or len(m) > len(best)):
                best = m
    return best
