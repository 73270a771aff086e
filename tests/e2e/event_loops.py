#!/usr/bin/env python3
"""End-to-end cases for servers built on event loops: libevent, libuv and
boost.asio.

Usage: event_loops.py --closeaudit PATH --bindir DIR --srcdir tests/e2e CASE

The same driver as e2e.py (its Run, checks and main). In these programs the
EOF is read inside the library, under its loop; the report must still name
the owner's line: the callback the library delivered the EOF to (libevent,
libuv), or the program's own frame under the library's (asio), with advice
in the library's terms. Each bad program has a correct twin that must get
no finding above info. A case whose program was not built (its library is
not installed) is skipped, with the package to install.
"""

import os
import subprocess
import sys

import e2e
from e2e import (check, check_frame, find_marker, fmt_stack, frames,
                 nothing_above_info, of_kind)

SKIP = 77

PACKAGES = {"libevent_server": "libevent-dev", "uv_server": "libuv1-dev",
            "asio_server": "libboost-dev"}


def run_program(opts, tmp, program, mode):
    if not os.path.exists(os.path.join(opts.bindir, program)):
        print(f"SKIP {opts.case}: {program} was not built (install "
              f"{PACKAGES[program]} and reconfigure)", flush=True)
        sys.exit(SKIP)
    run, rep = e2e.run_to_done(opts, tmp, program, [mode])
    check(os.path.exists(os.path.join(tmp, "done")),
          f"{program} did not finish its run")
    text = e2e._read_text(os.path.join(tmp, "report.txt"))
    return rep, text


def named(text, function, src, line):
    want = f"{function} ({src}:{line})"
    check(want in text, f"report.txt does not name {want!r}:\n{text[:4000]}")


def handler_of(finding):
    st = frames(finding, "handler")
    check(len(st) == 1 and st[0].get("in_app") is True,
          "stacks.handler is not one frame of the program's own:\n" +
          fmt_stack(st))
    return st[0]


def no_library_culprit(rep):
    """No sentence puts a library's or runtime's function in the culprit's
    place."""
    for f in rep["findings"]:
        msg = f.get("message", "")
        for lib_fn in ("evbuffer_read", "bufferevent_readcb", "uv__",
                       "socket_ops", "start_thread", "code in "):
            check(lib_fn not in msg,
                  f"the message names {lib_fn!r} as the culprit: {msg}")


# ---- libevent: two bugs, identical EOF stacks, two findings ----

def case_libevent(opts, tmp):
    src = "libevent_server.c"
    line = {m: find_marker(opts.srcdir, src, m)
            for m in ("handler_a", "handler_b", "freed_b", "bev_new_b",
                      "setcb_a", "loop")}
    rep, text = run_program(opts, tmp, "libevent_server", "bad")
    leaks = of_kind(rep, "close_wait_leak")
    check(len(leaks) == 2,
          f"expected 2 close_wait_leak findings (one per bug), got "
          f"{[(f.get('count'), f.get('message')) for f in leaks]}\n{text}")
    by_handler = {handler_of(f).get("function"): f for f in leaks}
    check(set(by_handler) == {"on_event_keep", "on_event_free"},
          f"the handlers are {sorted(by_handler)}, expected on_event_keep "
          "and on_event_free")
    keep, freed = by_handler["on_event_keep"], by_handler["on_event_free"]
    check(keep.get("count") == 3 and freed.get("count") == 2,
          f"counts {keep.get('count')} (A) and {freed.get('count')} (B), "
          "expected 3 and 2")
    check_frame(keep, "handler", src, line["handler_a"], "on_event_keep")
    check_frame(keep, "registered", src, line["setcb_a"])
    check_frame(freed, "handler", src, line["handler_b"], "on_event_free")
    check_frame(freed, "freed", src, line["freed_b"])
    check_frame(freed, "bufferevent", src, line["bev_new_b"])
    for f in leaks:
        check_frame(f, "eof_seen", src, line["loop"], "main")
    check("BEV_OPT_CLOSE_ON_FREE" in freed.get("message", "") and
          "BEV_OPT_CLOSE_ON_FREE" in freed.get("advice", ""),
          f"the freed-without-close finding does not say why: "
          f"{freed.get('message')} / {freed.get('advice')}")
    check("bufferevent_free" in keep.get("advice", ""),
          f"the never-freed finding's advice: {keep.get('advice')}")
    no_library_culprit(rep)
    named(text, "on_event_keep", src, line["handler_a"])
    named(text, "on_event_free", src, line["handler_b"])
    check("BEV_EVENT_EOF" in text, "report.txt does not say BEV_EVENT_EOF")
    e2e.check_regenerated(opts, tmp, rep)


def case_libevent_clean(opts, tmp):
    rep, text = run_program(opts, tmp, "libevent_server", "good")
    nothing_above_info(rep, text)


# ---- libuv: the read callback that got UV_EOF ----

def case_libuv(opts, tmp):
    src = "uv_server.c"
    handler_line = find_marker(opts.srcdir, src, "uv_handler")
    rep, text = run_program(opts, tmp, "uv_server", "bad")
    leaks = of_kind(rep, "close_wait_leak")
    check(len(leaks) == 1 and leaks[0].get("count") == 3,
          f"expected one close_wait_leak of 3, got "
          f"{[(f.get('count'), f.get('message')) for f in leaks]}\n{text}")
    f = leaks[0]
    check_frame(f, "handler", src, handler_line, "on_read")
    check_frame(f, "registered", src, find_marker(opts.srcdir, src, "read_start"))
    check("UV_EOF" in f.get("message", "") and
          "uv_close" in f.get("advice", ""),
          f"message / advice not in libuv's terms: {f.get('message')} / "
          f"{f.get('advice')}")
    no_library_culprit(rep)
    named(text, "on_read", src, handler_line)
    e2e.check_regenerated(opts, tmp, rep)


def case_libuv_clean(opts, tmp):
    rep, text = run_program(opts, tmp, "uv_server", "good")
    nothing_above_info(rep, text)


# ---- asio: the program's frames under 20 of asio's, one finding ----

def case_asio(opts, tmp):
    src = "asio_server.cc"
    read_line = find_marker(opts.srcdir, src, "async_read")
    rep, text = run_program(opts, tmp, "asio_server", "bad")
    leaks = of_kind(rep, "close_wait_leak")
    check(len(leaks) == 1 and leaks[0].get("count") == 4,
          "expected one close_wait_leak of 4 (the speculative and the "
          "reactor reads are one bug), got "
          f"{[(f.get('count'), f.get('message')) for f in leaks]}\n{text}")
    f = leaks[0]
    st = frames(f, "eof_seen")
    first_own = next((i for i, fr in enumerate(st) if fr.get("in_app")), None)
    library = sum(1 for fr in st if not fr.get("in_app"))
    check(first_own is not None and library >= 20,
          f"eof_seen has {library} library frames around the program's, "
          "expected at least 20:\n" + fmt_stack(st))
    check(st[first_own].get("line") == read_line and
          str(st[first_own].get("file", "")).endswith(src),
          f"the program's first frame is not the async_read_some call "
          f"({src}:{read_line}):\n" + fmt_stack(st))
    check("asio::error::eof" in f.get("advice", ""),
          f"the advice is not in asio's terms: {f.get('advice')}")
    no_library_culprit(rep)
    named(text, "Session::DoRead", src, read_line)
    check("frames in boost/asio" in text,
          f"report.txt does not sum asio's frames up:\n{text[:4000]}")
    e2e.check_regenerated(opts, tmp, rep)


def case_asio_clean(opts, tmp):
    rep, text = run_program(opts, tmp, "asio_server", "good")
    nothing_above_info(rep, text)


# ---- a private copy of the libraries' names ----

def case_private_copy(opts, tmp):
    """A library with its own copy of libuv's and libevent's names, loaded
    RTLD_LOCAL (uvloop in Python): its calls to its own copy reach the
    audit library's definitions too, which must pass them to that copy, not
    fail for want of a global one."""
    host = os.path.join(os.path.abspath(opts.bindir), "private_copy")
    lib = os.path.join(os.path.abspath(opts.bindir), "libprivate_copy.so")
    plain = subprocess.run([host, lib], capture_output=True, text=True,
                           timeout=30)
    check(plain.returncode == 0 and plain.stdout == "run_copy: 44\n",
          f"without the audit: {plain.returncode} {plain.stdout!r} "
          f"{plain.stderr!r}")
    run = e2e.CmdRun(opts, tmp, [host, lib], grace="1s")
    e2e.check_client_exit(run)
    check(run.stdout().startswith(plain.stdout),
          f"under the audit the program printed {run.stdout()[:200]!r}, "
          f"without it {plain.stdout!r}")
    # The literal form, with the library named by a relative path.
    shim = os.path.join(os.path.dirname(os.path.abspath(opts.closeaudit)),
                        "..", "shim", "libcloseaudit.so")
    env = dict(os.environ, LD_PRELOAD=os.path.abspath(shim),
               CLOSEAUDIT_SOCKET=os.path.join(tmp, "no-collector.sock"),
               CLOSEAUDIT_BIN=os.path.join(tmp, "no-closeaudit"))
    rel = os.path.relpath(lib, tmp)
    literal = subprocess.run([host, rel], capture_output=True, text=True,
                             timeout=30, cwd=tmp, env=env)
    check(literal.stdout == plain.stdout,
          f"with LD_PRELOAD the program printed {literal.stdout!r} "
          f"{literal.stderr!r}, without it {plain.stdout!r}")


CASES = {
    "private_copy": case_private_copy,
    "asio": case_asio,
    "asio_clean": case_asio_clean,
    "libevent": case_libevent,
    "libevent_clean": case_libevent_clean,
    "libuv": case_libuv,
    "libuv_clean": case_libuv_clean,
}


if __name__ == "__main__":
    sys.exit(e2e.main_with(CASES))
