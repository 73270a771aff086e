#!/usr/bin/env python3
"""End-to-end cases for Java programs: the report names the Java line.

Usage: java_frames.py --closeaudit PATH --bindir DIR --srcdir tests/e2e CASE

The same driver as e2e.py (its Run, checks and main). Each case runs its
program (tests/e2e/java/, one source file, started with `java File.java`)
under the image's OpenJDK; it is skipped, saying so, where there is none.
"""

import os
import shutil
import subprocess
import sys

import e2e
from e2e import check, find_marker, fmt_stack, frames

SKIP = 77


def java():
    path = shutil.which("java")
    if path is None:
        print("SKIP: no java on PATH (openjdk-17-jdk-headless)", flush=True)
        sys.exit(SKIP)
    out = subprocess.run([path, "-version"], capture_output=True, text=True,
                         timeout=60)
    e2e.log(f"java: {path}: {(out.stderr or out.stdout).splitlines()[0]}")
    return path


def source(opts, name):
    return os.path.join(os.path.abspath(opts.srcdir), "java", name)


def run_java(opts, tmp, src, args=()):
    """Runs java/SRC DONE_FILE ARGS under closeaudit run to its end; returns
    the report and report.txt."""
    os.makedirs(tmp, exist_ok=True)
    done = os.path.join(tmp, "done")
    run = e2e.CmdRun(opts, tmp, [java(), source(opts, src), done] + list(args),
                     grace="1s")
    e2e.check_client_exit(run)
    check(os.path.exists(done), f"{src} did not finish its run")
    rep = e2e.finish_report(run)
    return rep, e2e._read_text(os.path.join(tmp, "report.txt"))


def java_frame(finding, which, file, line, function):
    return e2e.check_app_frame(finding, which, file, line, function, "java")


def java_leak(opts, tmp, src, args, marker, which, function):
    """Runs java/SRC; its one close_wait_leak of three sockets has the
    program's Java frame `function` at SRC's `marker` line in stacks.which,
    and the message and report.txt name it. Returns (report, text,
    finding, line)."""
    rep, text = run_java(opts, tmp, src, args)
    line = find_marker(opts.srcdir, "java/" + src, marker)
    f = e2e.one_of_kind(rep, "close_wait_leak", 3)
    java_frame(f, which, src, line, function)
    named(f, text, f"{function} ({src}:{line})")
    return rep, text, f, line


def named(finding, text, place):
    """The finding's message and report.txt both name place
    ("ThreadServer.readSome (ThreadServer.java:30)")."""
    check(place in finding.get("message", ""),
          f"the message does not name {place}: {finding.get('message')}")
    check(place in text, f"report.txt does not name {place}:\n{text[:3000]}")


def no_jvm_culprit(rep):
    for f in rep["findings"]:
        msg = f.get("message", "")
        for bad in ("libjvm", "libnio", "Java_sun_", "start_thread", "JavaMain",
                    "code in "):
            check(bad not in msg, f"the message names {bad!r}: {msg}")


def jdk_frames_not_in_app(finding, which):
    for fr in frames(finding, which):
        if fr.get("language") != "java":
            continue
        jdk = str(fr.get("function", "")).startswith(
            ("java.", "javax.", "jdk.", "sun.", "com.sun."))
        check(fr.get("in_app") is not jdk,
              f"in_app is {fr.get('in_app')} for {fr.get('function')}:\n" +
              fmt_stack(frames(finding, which)))


def check_thread_server(opts, rep, text, src):
    read = find_marker(opts.srcdir, "java/" + src, "java_read")
    handle = find_marker(opts.srcdir, "java/" + src, "java_handle")
    accept = find_marker(opts.srcdir, "java/" + src, "java_accept")
    f = e2e.one_of_kind(rep, "close_wait_leak", 3)
    java_frame(f, "eof_seen", src, read, "ThreadServer.readSome")
    java_frame(f, "eof_seen", src, handle, "ThreadServer.handle")
    java_frame(f, "created", src, accept, "ThreadServer.serve")
    jdk_frames_not_in_app(f, "eof_seen")
    # A class in a package: its file is under the package's directory.
    accepts = [fr for fr in frames(f, "created")
               if fr.get("function") == "java.net.ServerSocket.accept"]
    check(accepts and accepts[0].get("file") == "java/net/ServerSocket.java"
          and accepts[0].get("line", 0) > 0,
          "no java.net.ServerSocket.accept (java/net/ServerSocket.java:N) in "
          "stacks.created:\n" + fmt_stack(frames(f, "created")))
    named(f, text, f"ThreadServer.readSome ({src}:{read})")
    check("read() returned -1" in f.get("message", ""),
          f"the message does not say it in Java's terms: {f.get('message')}")
    check("try-with-resources" in f.get("advice", ""),
          f"the advice is not Java's: {f.get('advice')}")
    check("$$Lambda" not in text, "report.txt shows a lambda's hidden class")
    # The client's closes (try-with-resources): the JDK shuts the output and
    # then closes, and the TIME_WAIT they leave is the line of the close.
    closes = find_marker(opts.srcdir, "java/" + src, "java_client_close")
    waits = [w for w in rep["findings"] if w["kind"] == "time_wait"]
    check(len(waits) == 1 and waits[0].get("count") == 3,
          f"not one time_wait of the client's three closes:\n{text[:3000]}")
    java_frame(waits[0], "close", src, closes, "ThreadServer.main")
    no_jvm_culprit(rep)


def case_java_thread_server(opts, tmp):
    """A thread-per-connection java.net.Socket server that returns on
    read() == -1 without close(): the finding names the line of the read,
    the handler that called it and the accept, with Java's fix."""
    src = "ThreadServer.java"
    rep, text = run_java(opts, tmp, src)
    check_thread_server(opts, rep, text, src)
    e2e.check_regenerated(opts, tmp, rep)


def case_java_nio_server(opts, tmp):
    """An NIO selector server whose EOF branch cancels the key but never
    closes the channel: the finding names the line of the read and the
    accept, with NIO's fix."""
    src = "NioServer.java"
    rep, text, f, _ = java_leak(opts, tmp, src, [], "java_nio_read", "eof_seen",
                                "NioServer.onReadable")
    accept = find_marker(opts.srcdir, "java/" + src, "java_nio_accept")
    java_frame(f, "created", src, accept, "NioServer.main")
    jdk_frames_not_in_app(f, "created")
    check("channel.close()" in f.get("advice", ""),
          f"the advice is not NIO's: {f.get('advice')}")
    no_jvm_culprit(rep)
    e2e.check_regenerated(opts, tmp, rep)


def case_java_literal(opts, tmp):
    """The literal form, LD_PRELOAD=libcloseaudit.so java ..., with the
    daemon the library starts by itself: the same Java frames, with nothing
    passed to the JVM (it would print "Picked up JAVA_TOOL_OPTIONS")."""
    env, runtime, state = e2e.literal_env(opts, tmp)
    done = os.path.join(tmp, "done")
    src = "ThreadServer.java"
    # The daemon judges with its default grace, 5 s: hold the sockets 6.
    r = subprocess.run([java(), source(opts, src), done, "6"], env=env,
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0 and os.path.exists(done),
          f"{src} failed under LD_PRELOAD: {r.returncode}\n{r.stderr}")
    check("Picked up" not in r.stderr and r.stdout == "",
          f"the JVM said something of ours:\n{r.stdout}\n{r.stderr}")
    rep = e2e.daemon_report(runtime, state)
    check(rep is not None, "no report from the daemon")
    text = e2e._read_text(os.path.join(state, "closeaudit", "latest",
                                       "report.txt"))
    check_thread_server(opts, rep, text, src)


def case_java_spawn_clean(opts, tmp):
    """A server that runs a ProcessBuilder child for each connection it
    holds, then closes it: the child inherits no socket, and nothing is
    above info."""
    rep, text = run_java(opts, tmp, "SpawnServer.java")
    e2e.nothing_above_info(rep, text)
    # The JVM and its three children (each the JDK's spawn helper exec'ing
    # /bin/echo) were all audited.
    processes = rep.get("summary", {}).get("processes", 0)
    check(processes >= 4, f"{processes} processes audited, not the JVM and "
          f"its three children:\n{text[:2000]}")


def case_java_url_unread(opts, tmp):
    """An HttpURLConnection client that reads only getResponseCode(): its
    connections stay out of the JDK's keep-alive cache and in CLOSE_WAIT;
    the finding names the line that made the request, with
    HttpURLConnection's fix."""
    rep, text, f, _ = java_leak(opts, tmp, "UrlClient.java", ["unread", "3"],
                                "java_url_request", "created", "UrlClient.fetch")
    check(f.get("severity") == "error", f"not an error: {f.get('severity')}")
    check("disconnect()" in f.get("advice", "") and
          "getInputStream()" in f.get("advice", ""),
          f"the advice is not HttpURLConnection's: {f.get('advice')}")
    no_jvm_culprit(rep)


def case_java_url_read_clean(opts, tmp):
    """The same client reading each body to its end: the JDK's keep-alive
    cache holds the last connection after the server closed it, and closes
    it after its own timeout. That is the pool working: info at most."""
    src = "UrlClient.java"
    # The cache's timer closes a connection 5 to 10 s after it went idle.
    rep, text = run_java(opts, tmp, src, ["read", "14"])
    e2e.nothing_above_info(rep, text)
    pooled = [f for f in rep["findings"] if f["kind"] == "pool_idle"]
    check(len(pooled) == 1 and
          "idle in the JDK's keep-alive cache" in pooled[0].get("message", ""),
          "no pool_idle finding says the JDK's keep-alive cache held and "
          f"closed the connection:\n{text[:3000]}")
    f = pooled[0]
    line = find_marker(opts.srcdir, "java/" + src, "java_url_request")
    java_frame(f, "created", src, line, "UrlClient.fetch")
    check(any(fr.get("function", "").startswith("sun.net.www.http.KeepAliveCache")
              for fr in frames(f, "close")),
          "the close stack is not the keep-alive cache's:\n" +
          fmt_stack(frames(f, "close")))


def case_java_url_read_exit(opts, tmp):
    """The reading client exiting 4 s after its last request, before the
    cache's timer closed the connection the server closed after 1 s: it
    was idle in the cache, nothing left unread, so info, not a leak."""
    src = "UrlClient.java"
    rep, text = run_java(opts, tmp, src, ["read", "4"])
    e2e.nothing_above_info(rep, text)
    pooled = [f for f in rep["findings"] if f["kind"] == "pool_idle"]
    check(len(pooled) == 1 and "when the run ended" in pooled[0].get("message", "")
          and "keep-alive cache" in pooled[0].get("message", ""),
          "no pool_idle finding says the connection may have been idle in "
          f"the JDK's keep-alive cache at the end:\n{text[:3000]}")
    line = find_marker(opts.srcdir, "java/" + src, "java_url_request")
    java_frame(pooled[0], "created", src, line, "UrlClient.fetch")


def case_java_httpclient(opts, tmp):
    """A java.net.http.HttpClient client that never reads or closes the
    InputStream bodies it asked for: a leak at the line of send(), with
    HttpClient's fix."""
    rep, text, f, _ = java_leak(opts, tmp, "UrlClient.java", ["httpclient", "3"],
                                "java_httpclient_send", "created",
                                "UrlClient.send")
    check("BodyHandlers.discarding()" in f.get("advice", ""),
          f"the advice is not HttpClient's: {f.get('advice')}")
    no_jvm_culprit(rep)


def case_java_gc_closed(opts, tmp):
    """The thread server's handler drops its socket at the EOF without
    closing it; the garbage collector's Cleaner closes it seconds later:
    the finding says the sockets were closed late by garbage collection,
    at the line of the read."""
    rep, text, f, _ = java_leak(opts, tmp, "ThreadServer.java", ["2", "gc"],
                                "java_read", "eof_seen", "ThreadServer.readSome")
    check("closed late by garbage collection" in f.get("message", ""),
          f"the message does not say the collector closed them: "
          f"{f.get('message')}")
    check(any(fr.get("language") == "java" for fr in frames(f, "closed")),
          "stacks.closed has no Java frame:\n" + fmt_stack(frames(f, "closed")))


CASES = {
    "java_thread_server": case_java_thread_server,
    "java_nio_server": case_java_nio_server,
    "java_literal": case_java_literal,
    "java_spawn_clean": case_java_spawn_clean,
    "java_url_unread": case_java_url_unread,
    "java_url_read_clean": case_java_url_read_clean,
    "java_url_read_exit": case_java_url_read_exit,
    "java_httpclient": case_java_httpclient,
    "java_gc_closed": case_java_gc_closed,
}


if __name__ == "__main__":
    sys.exit(e2e.main_with(CASES, 300))
