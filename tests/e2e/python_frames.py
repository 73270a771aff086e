#!/usr/bin/env python3
"""End-to-end cases for Python programs: the report names the Python line.

Usage: python_frames.py --closeaudit PATH --bindir DIR --srcdir tests/e2e CASE

The same driver as e2e.py (its Run, checks and main). Each case runs its
program (tests/e2e/python/) under every CPython 3.8-3.13 installed here:
Debian's /usr/bin/python3 and pyenv's ~/.pyenv/versions/3.X.*, and says
which versions it did not find. A case fails if any interpreter it ran
fails; it is skipped only if none is installed.
"""

import glob
import json
import os
import subprocess
import sys
import time

import e2e
from e2e import check, check_frame, find_marker, fmt_stack, frames, of_kind

SKIP = 77


def interpreters():
    """[(label, path)] of the CPython 3.8-3.13 release builds installed."""
    found = []
    if os.access("/usr/bin/python3", os.X_OK):
        found.append(("debian", "/usr/bin/python3"))
    home = os.path.expanduser("~")
    missing = []
    for minor in range(8, 14):
        paths = sorted(glob.glob(
            f"{home}/.pyenv/versions/3.{minor}.*/bin/python3.{minor}"))
        paths = [p for p in paths if not os.path.basename(
            os.path.dirname(os.path.dirname(p))).endswith("t")]
        if paths:
            found.append((f"3.{minor}", paths[-1]))
        else:
            missing.append(f"3.{minor}")
    if missing:
        e2e.log("not installed under pyenv (skipped): " + ", ".join(missing))
    if not found:
        print(f"SKIP: no CPython installed", flush=True)
        sys.exit(SKIP)
    return found


def minor_of(python):
    out = subprocess.run([python, "-c", "import sys; print(sys.version_info[1])"],
                         capture_output=True, text=True, timeout=30).stdout
    return int(out.strip() or 0)


def script(opts, name):
    return os.path.join(os.path.abspath(opts.srcdir), "python", name)


def run_script(opts, tmp, python, name, args=()):
    """Runs python/NAME DONE_FILE ARGS under closeaudit run to its end."""
    os.makedirs(tmp, exist_ok=True)
    done = os.path.join(tmp, "done")
    run = e2e.CmdRun(opts, tmp, [python, script(opts, name), done] + list(args),
                     grace="1s")
    e2e.check_client_exit(run)
    check(os.path.exists(done), f"{name} did not finish its run")
    rep = e2e.finish_report(run)
    text = e2e._read_text(os.path.join(tmp, "report.txt"))
    return rep, text


def each_python(opts, tmp, body):
    failures = []
    for label, python in interpreters():
        e2e.log(f"--- {label}: {python}")
        try:
            body(python, os.path.join(tmp, label))
        except e2e.Failure as err:
            failures.append(f"[{label} {python}] {err}")
    check(not failures, "\n\n".join(failures))


def python_frame(finding, which, file, line, function):
    return e2e.check_app_frame(finding, which, file, line, function, "python")


def named(finding, text, place, what):
    """The finding's message and report.txt both name place
    ("fetch (http_pool.py:34)")."""
    check(place in finding.get("message", ""),
          f"the message does not name {what} {place}: "
          f"{finding.get('message')}")
    check(place in text,
          f"report.txt does not name {what} {place}:\n{text[:3000]}")


def no_interpreter_culprit(rep):
    for f in rep["findings"]:
        msg = f.get("message", "")
        for bad in ("PyObject_", "_PyEval", "method_vectorcall", "sock_recv",
                    "code in "):
            check(bad not in msg, f"the message names {bad!r}: {msg}")


def leak_case(opts, tmp, depth):
    src = "thread_server.py"
    recv = find_marker(opts.srcdir, "python/" + src, "py_recv")
    accept = find_marker(opts.srcdir, "python/" + src, "py_accept")

    def body(python, where):
        args = [str(depth)] if depth else []
        rep, text = run_script(opts, where, python, src, args)
        f = e2e.one_of_kind(rep, "close_wait_leak", 3)
        python_frame(f, "eof_seen", src, recv, "read_line")
        check_frame(f, "eof_seen", src, find_marker(
            opts.srcdir, "python/" + src, "py_handle"), "handle")
        python_frame(f, "created", src, accept, "serve")
        named(f, text, f"read_line ({src}:{recv})", "the recv's line")
        check("sock.close()" in f.get("advice", ""),
              f"the advice is not Python's: {f.get('advice')}")
        no_interpreter_culprit(rep)
        check(f"handle ({src}:" in text,
              f"report.txt does not show the Python frames:\n{text[:3000]}")
        e2e.check_regenerated(opts, where, rep)

    each_python(opts, tmp, body)


def case_py_thread_server(opts, tmp):
    """A thread-per-connection server that returns on b'' and keeps the
    socket in a dict: the finding names the line of the recv()."""
    leak_case(opts, tmp, 0)


def case_py_deep(opts, tmp):
    """The same recv() 40 Python frames deep: past the native stack's 64
    frames in 3.8-3.10, the Python frames are all still there."""
    leak_case(opts, tmp, 40)


def case_py_socketserver_clean(opts, tmp):
    """socketserver's threading and forking servers, which close every
    connection: nothing above info."""
    def body(python, where):
        for mode in ("threading", "forking"):
            rep, text = run_script(opts, os.path.join(where, mode), python,
                                   "socketserver_clean.py", [mode])
            e2e.nothing_above_info(rep, text)
    each_python(opts, tmp, body)


def case_py_http_pool(opts, tmp):
    """An http.client connection kept after the server closed it: the
    finding names the line that made the request, with http.client's fix."""
    src = "http_pool.py"
    line = find_marker(opts.srcdir, "python/" + src, "py_request")

    def body(python, where):
        rep, text = run_script(opts, where, python, src)
        f = e2e.one_of_kind(rep, "close_wait_leak", 2)
        python_frame(f, "created", src, line, "fetch")
        named(f, text, f"fetch ({src}:{line})", "the request's line")
        check("conn.close()" in f.get("advice", ""),
              f"the advice is not http.client's: {f.get('advice')}")
        no_interpreter_culprit(rep)
        e2e.check_regenerated(opts, where, rep)

    each_python(opts, tmp, body)


def case_py_asyncio(opts, tmp):
    """asyncio servers whose code forgets to close: the EOF is read by the
    loop, and the findings name the handler that owned each connection,
    start_server's callback and the Protocol's method, with asyncio's fix;
    the sockets the loop's transports closed when freed are said to have
    been closed by the garbage collector."""
    src = "asyncio_server.py"
    handler = find_marker(opts.srcdir, "python/" + src, "py_handler")
    protocol = find_marker(opts.srcdir, "python/" + src, "py_protocol")

    def body(python, where):
        rep, text = run_script(opts, where, python, src)
        leaks = of_kind(rep, "close_wait_leak")
        by = {}
        for f in leaks:
            st = frames(f, "handler")
            check(len(st) == 1, "stacks.handler is not one frame:\n" +
                  fmt_stack(st))
            by[st[0].get("function")] = f
        # From 3.13 a StreamWriter freed with its handler closes its
        # transport: the streams handler's connections close in time.
        writer_closes = minor_of(python) >= 13
        want = {"Echo.eof_received"} | (set() if writer_closes else {"handle"})
        check(set(by) == want,
              f"the handlers are {sorted(by)}, expected {sorted(want)}"
              f"\n{text[:3000]}")
        proto = by["Echo.eof_received"]
        check(proto.get("count") == 2,
              f"the protocol's count is {proto.get('count')}, expected 2")
        python_frame(proto, "handler", src, protocol, "Echo.eof_received")
        check("transport.close()" in proto.get("advice", ""),
              f"the protocol's advice: {proto.get('advice')}")
        for f in leaks:
            check("garbage collector" in f["message"],
                  f"the close by the transports' __del__ is not called the "
                  f"garbage collector's: {f['message']}")
        no_interpreter_culprit(rep)
        e2e.check_regenerated(opts, where, rep)
        if writer_closes:
            return
        streams = by["handle"]
        check(streams.get("count") == 3,
              f"the handler's count is {streams.get('count')}, expected 3")
        python_frame(streams, "handler", src, handler, "handle")
        python_frame(proto, "handler", src, protocol, "Echo.eof_received")
        check(f"handler handle ({src}:{handler})" in streams["message"],
              f"the message does not name the handler: {streams['message']}")
        check("writer.close()" in streams.get("advice", "") and
              "wait_closed" in streams.get("advice", ""),
              f"the advice is not asyncio's: {streams.get('advice')}")
        check(f"handle ({src}:{handler})" in text,
              f"report.txt does not name the handler:\n{text[:3000]}")

    each_python(opts, tmp, body)


def case_py_asyncio_clean(opts, tmp):
    """The same servers closing properly: nothing above info."""
    def body(python, where):
        rep, text = run_script(opts, where, python, "asyncio_server.py",
                               ["good"])
        e2e.nothing_above_info(rep, text)
    each_python(opts, tmp, body)


def case_py_fork_child(opts, tmp):
    """A forked child that handles the connection and leaks it: the child's
    stacks carry its Python frames too."""
    src = "fork_server.py"
    line = find_marker(opts.srcdir, "python/" + src, "py_fork_recv")

    def body(python, where):
        rep, text = run_script(opts, where, python, src)
        f = e2e.one_of_kind(rep, "close_wait_leak", 3)
        python_frame(f, "eof_seen", src, line, "handle")
        named(f, text, f"handle ({src}:{line})", "the child's line")
        no_interpreter_culprit(rep)

    each_python(opts, tmp, body)


def case_py_literal(opts, tmp):
    """The literal form, LD_PRELOAD=libcloseaudit.so python3 ..., with the
    daemon the library starts by itself: the same Python frames."""
    lib = os.path.join(os.path.dirname(os.path.abspath(opts.closeaudit)),
                       "..", "shim", "libcloseaudit.so")
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        print("SKIP py_literal: no /usr/bin/python3", flush=True)
        sys.exit(SKIP)
    env, runtime, state = e2e.literal_env(
        opts, tmp, {"LD_PRELOAD": os.path.abspath(lib)})
    env.pop("PYTHONPATH", None)
    done = os.path.join(tmp, "done")
    src = "thread_server.py"
    # The daemon judges with its default grace, 5 s: hold the sockets 6.
    r = subprocess.run([python, script(opts, src), done, "0", "6"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and os.path.exists(done),
          f"{src} failed under LD_PRELOAD: {r.returncode}\n{r.stderr}")
    report_path = os.path.join(state, "closeaudit", "latest", "report.json")
    rep = e2e.daemon_report(runtime, state)
    check(rep is not None, f"the daemon wrote no report at {report_path}")
    f = e2e.one_of_kind(rep, "close_wait_leak", 3)
    python_frame(f, "eof_seen", src,
                 find_marker(opts.srcdir, "python/" + src, "py_recv"),
                 "read_line")


def case_py_debug_build(opts, tmp):
    """Debian's debug build (python3.11-dbg), whose objects have another
    layout: not walked, said once, and the leak still reported."""
    python = "/usr/bin/python3.11-dbg"
    if not os.access(python, os.X_OK):
        print("SKIP py_debug_build: install python3.11-dbg", flush=True)
        sys.exit(SKIP)
    rep, text = run_script(opts, tmp, python, "thread_server.py")
    f = e2e.one_of_kind(rep, "close_wait_leak", 3)
    want = "Python frames unavailable for 3.11 debug build: native frames only"
    warnings = rep.get("warnings", [])
    check(warnings.count(want) == 1,
          f"the warnings do not say {want!r} once: {warnings}")
    check(want in text, f"report.txt does not say {want!r}")
    py = [fr for fr in frames(f, "eof_seen") if fr.get("language") == "python"]
    check(not py, "a debug build's stack has Python frames:\n" +
          fmt_stack(frames(f, "eof_seen")))


CASES = {
    "py_thread_server": case_py_thread_server,
    "py_deep": case_py_deep,
    "py_socketserver_clean": case_py_socketserver_clean,
    "py_http_pool": case_py_http_pool,
    "py_debug_build": case_py_debug_build,
    "py_asyncio": case_py_asyncio,
    "py_asyncio_clean": case_py_asyncio_clean,
    "py_fork_child": case_py_fork_child,
    "py_literal": case_py_literal,
}


if __name__ == "__main__":
    sys.exit(e2e.main_with(CASES, 400))
