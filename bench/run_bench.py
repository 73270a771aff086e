#!/usr/bin/env python3
"""closeaudit's benchmarks: what the audit costs a program, and what the
collector can take. Called by scripts/bench, which builds build-bench/.

Every comparison runs with and without the library in the same run, in
alternating pairs, and reports medians and spreads: these machines are shared
and noisy. Prints one table and writes it, with the machine, date and commit,
to bench/results.md.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import nginx_load
from nginx_load import free_port, pin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def median_spread(values):
    values = sorted(values)
    return statistics.median(values), values[0], values[-1]


def cpu_seconds(pid):
    """The user and system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """A collector (closeaudit daemon) on a private socket."""

    def __init__(self, closeaudit, tmp, name):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(tmp, name + "-run", "collector.sock")
        self.proc = subprocess.Popen(
            [closeaudit, "daemon", "--foreground", "--socket", self.sock,
             "--out", self.dir, "--idle", "3600s"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir + ".log", "w"))
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline:
                raise RuntimeError("the collector did not start")
            time.sleep(0.02)

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def rss_kib(self, key="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_env(opts, tmp, mode, name):
    """The environment for one run: plain, or ("shim") under the library with
    a collector of its own draining. Returns (env, daemon or None); the
    caller stops the daemon."""
    env = dict(os.environ)
    if mode != "shim":
        return env, None
    daemon = Daemon(opts.closeaudit, tmp, name)
    env["LD_PRELOAD"] = opts.lib
    env["CLOSEAUDIT_SOCKET"] = daemon.sock
    return env, daemon


MICRO_REPETITIONS = 5


def micro(opts, tmp, results):
    """Google Benchmark cases, plain and preloaded, alternating."""
    exe = os.path.join(opts.build, "bench", "micro_bench")
    runs = {"plain": [], "shim": []}
    for pair in range(opts.pairs):
        for mode in ("plain", "shim"):
            env, daemon = run_env(opts, tmp, mode, f"micro-{pair}")
            out = subprocess.run(
                [exe, "--benchmark_format=json",
                 f"--benchmark_min_time={opts.min_time}",
                 f"--benchmark_repetitions={MICRO_REPETITIONS}"],
                env=env, capture_output=True, text=True, check=True)
            if daemon:
                daemon.stop()
            data = json.loads(out.stdout)
            # Each run's figure for a case is its fastest repetition: on a
            # shared machine noise only ever adds time.
            fastest = {}
            for b in data["benchmarks"]:
                if b.get("run_type", "iteration") != "iteration":
                    continue
                name = b.get("run_name", b["name"])
                fastest[name] = min(fastest.get(name, b["real_time"]),
                                    b["real_time"])
            runs[mode].append(fastest)
    memory = {}
    for mode in ("plain", "shim"):
        env, daemon = run_env(opts, tmp, mode, "fd-memory")
        out = subprocess.run([os.path.join(opts.build, "bench", "fd_memory")],
                             env=env, capture_output=True, text=True, check=True)
        if daemon:
            daemon.stop()
        memory[mode] = json.loads(out.stdout)
    n = memory["shim"]["sockets"]
    results["micro"]["fd_memory"] = {
        "sockets": n,
        "bytes_per_fd": (memory["shim"]["private_growth_bytes"] -
                         memory["plain"]["private_growth_bytes"]) / n,
        "ring_bytes": (memory["shim"]["shared_growth_bytes"] -
                       memory["plain"]["shared_growth_bytes"])}
    log(f"fd memory: {results['micro']['fd_memory']}")
    names = list(runs["plain"][0])
    for name in names:
        plain = median_spread([r[name] for r in runs["plain"]])
        shim = median_spread([r[name] for r in runs["shim"]])
        added = [s[name] - p[name] for p, s in zip(runs["plain"], runs["shim"])]
        results["micro"][name] = {
            "plain_ns": plain[0], "shim_ns": shim[0],
            "added_ns": statistics.median(added),
            "added_min": min(added), "added_max": max(added)}
        log(f"{name}: plain {plain[0]:.0f} ns, shim {shim[0]:.0f} ns, "
            f"added {statistics.median(added):.0f} ns")


def wrk(port, seconds, close):
    """(requests per second, p99 in us)."""
    r = nginx_load.wrk(port, seconds, close)
    return r["rps"], r["p99_us"]


def nginx(opts, tmp, results):
    netns = True
    for workload, close in (("keep-alive", False), ("connection-close", True)):
        samples = {"plain": [], "shim": []}
        for pair in range(opts.pairs):
            for mode in ("plain", "shim"):
                # Each run in a network namespace of its own: none starts
                # with the last one's TIME_WAIT sockets.
                if netns and not nginx_load.fresh_netns():
                    netns = False
                    log("nginx: no network namespace of its own (not root?): "
                        "each run sees the TIME_WAIT sockets of the ones before")
                port = free_port()
                d = tempfile.mkdtemp(dir=tmp)
                env, daemon = run_env(opts, tmp, mode,
                                      f"nginx-{workload}-{pair}")
                proc = subprocess.Popen(nginx_load.nginx_argv(d, port),
                                        env=env,
                                        stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                nginx_load.wait_listening(port, proc)
                rps, p99 = wrk(port, opts.seconds, close)
                nginx_load.stop_nginx(d, proc)
                if daemon:
                    daemon.stop()
                samples[mode].append((rps, p99))
                log(f"nginx {workload} pair {pair} {mode}: {rps:.0f} req/s, "
                    f"p99 {p99:.0f} us")
        ratios = [s[0] / p[0] for p, s in zip(samples["plain"], samples["shim"])]
        p99s = [s[1] / p[1] for p, s in zip(samples["plain"], samples["shim"])]
        results["nginx"][workload] = {
            "plain_rps": statistics.median(r for r, _ in samples["plain"]),
            "shim_rps": statistics.median(r for r, _ in samples["shim"]),
            "ratio": median_spread(ratios), "p99_ratio": median_spread(p99s)}


def ingest(opts, tmp, results):
    producer = os.path.join(opts.build, "bench", "ingest_producer")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    rates = []
    for run in range(3):
        daemon = Daemon(opts.closeaudit, tmp, f"ingest-{run}")
        env["CLOSEAUDIT_SOCKET"] = daemon.sock
        before = daemon.cpu_seconds()
        subprocess.run([producer, "events", str(opts.events)], env=env,
                       check=True, capture_output=True)
        # Until the collector has drained everything (the ring is then
        # empty and its CPU stops moving).
        last, still = daemon.cpu_seconds(), 0
        while still < 5:
            time.sleep(0.1)
            now = daemon.cpu_seconds()
            still = still + 1 if now == last else 0
            last = now
        cpu = last - before
        rates.append(opts.events / cpu)
        log(f"ingest run {run}: {opts.events} events in {cpu:.2f} s of "
            f"collector CPU = {opts.events / cpu / 1e6:.2f} M events/s")
        daemon.stop()
    results["ingest"]["events_per_cpu_second"] = median_spread(rates)

    daemon = Daemon(opts.closeaudit, tmp, "live")
    base = daemon.rss_kib()
    env["CLOSEAUDIT_SOCKET"] = daemon.sock
    live = subprocess.Popen([producer, "live", str(opts.live)], env=env,
                            stdout=subprocess.PIPE, text=True)
    live.stdout.readline()
    time.sleep(2)
    peak = daemon.rss_kib("VmHWM")
    now = daemon.rss_kib()
    live.send_signal(signal.SIGTERM)
    live.wait()
    daemon.stop()
    results["ingest"]["peak_rss_kib"] = peak
    results["ingest"]["bytes_per_live_socket"] = (now - base) * 1024 / opts.live
    log(f"collector RSS {base} KiB -> {now} KiB (peak {peak}) with "
        f"{opts.live} live sockets")


# bash starting /bin/true N times, timed by bash itself so that neither
# bash's nor the collector's start and end count.
EXEC_LOOP = ('s=$EPOCHREALTIME; for ((i = 0; i < {n}; i++)); do /bin/true; '
             'done; e=$EPOCHREALTIME; echo "loop_us=$(( ${{e/./}} - ${{s/./}} ))"')


def loop_us(text):
    """The fastest of the loop times the text reports."""
    times = [int(line.split("=", 1)[1]) for line in text.splitlines()
             if line.startswith("loop_us=")]
    if not times:
        raise RuntimeError(f"the exec loop printed no time: {text[-500:]!r}")
    return min(times)


def exec_loop(opts, tmp, results):
    """Process start: the exec loop bare, with the library preloaded (a
    daemon collecting) and under `closeaudit run`, interleaved."""
    script = EXEC_LOOP.format(n=opts.execs)
    # "empty": a preloaded library that does nothing, what any LD_PRELOAD
    # costs on this machine.
    runs = {"bare": [], "empty": [], "preload": [], "run": []}
    empty_lib = os.path.join(opts.build, "bench", "libempty_preload.so")
    for pair in range(opts.exec_pairs):
        # Every other round in the opposite order: whatever the machine
        # drifts by within a round falls on each way alike.
        for mode in (list(runs) if pair % 2 == 0 else list(runs)[::-1]):
            # Each way's figure in a pair is its fastest of three loops, as
            # for the micro cases: on a shared machine noise only adds time.
            if mode == "run":
                out_dir = os.path.join(tmp, f"exec-run-{pair}")
                out = subprocess.run(
                    [opts.closeaudit, "run", "--out", out_dir, "--", "bash",
                     "-c", f"{script}; {script}; {script}"],
                    capture_output=True, text=True, check=True).stdout
            else:
                env, daemon = run_env(opts, tmp,
                                      "shim" if mode == "preload" else "plain",
                                      f"exec-{pair}")
                if mode == "empty":
                    env["LD_PRELOAD"] = empty_lib
                out = subprocess.run(
                    ["bash", "-c", f"{script}; {script}; {script}"], env=env,
                    capture_output=True, text=True, check=True).stdout
                if daemon:
                    daemon.stop()
            runs[mode].append(loop_us(out))
    bare = runs["bare"]
    r = results["process"]
    r["execs"] = opts.execs
    r["bare_us_per_exec"] = statistics.median(bare) / opts.execs
    for mode in ("empty", "preload", "run"):
        r[mode] = median_spread([m / b for m, b in zip(runs[mode], bare)])
        r[mode + "_us_per_exec"] = statistics.median(runs[mode]) / opts.execs
        log(f"exec loop, {mode}/bare: {r[mode][0]:.3f} "
            f"({r[mode][1]:.3f}..{r[mode][2]:.3f})")


def start_parts(opts, tmp, results):
    """A process start, part by part: start_bench runs a program that exits
    at once (or makes one socket) under variants that each add one part."""
    b = os.path.join(opts.build, "bench")
    daemon = Daemon(opts.closeaudit, tmp, "start")
    try:
        preload = f"LD_PRELOAD={opts.lib},CLOSEAUDIT_SOCKET={daemon.sock}"
        variants = [
            "bare=bare",
            f"any_preload=LD_PRELOAD={os.path.join(b, 'libempty_preload.so')}",
            f"dormant={preload}",
            f"started={preload},CLOSEAUDIT_RUN_PID={{PID}}",
        ]
        out = {}
        for program in ("exit", "socket"):
            args = [os.path.join(b, "start_probe")]
            if program == "socket":
                args.append("socket")
                variants_here = ["bare=bare", f"socket={preload}"]
            else:
                variants_here = variants
            run = subprocess.run(
                [os.path.join(b, "start_bench"), str(opts.starts)] + args +
                ["--"] + variants_here, capture_output=True, text=True,
                check=True)
            for name, v in json.loads(run.stdout).items():
                out[f"{program}:{name}"] = v["median_us"]
    finally:
        daemon.stop()
    r = results["process"]
    med = out
    r["parts_us"] = {
        "any LD_PRELOAD (the loader maps one more object)":
            med["exit:any_preload"] - med["exit:bare"],
        "libcloseaudit.so loaded and its constructor (hooks); the image "
        "stays dormant":
            med["exit:dormant"] - med["exit:any_preload"],
        "the image's start: ring, module maps, hello":
            med["exit:started"] - med["exit:dormant"],
        "a first socket: start, libunwind loaded, first two stacks":
            (med["socket:socket"] - med["socket:bare"]) -
            (med["exit:dormant"] - med["exit:bare"]),
    }
    r["start_bare_us"] = med["exit:bare"]
    for part, us in r["parts_us"].items():
        log(f"start: {part}: {us:.0f} us")


PYTHON = "/usr/bin/python3"
PY_WORKLOADS = os.path.join(ROOT, "bench", "py_workloads.py")


def python(opts, tmp, results):
    """A Python program's lifecycle events (socket + close, 10 frames deep),
    and a threaded Python echo server under connection-per-request load,
    plain and preloaded, alternating."""
    if not os.access(PYTHON, os.X_OK):
        log(f"python: {PYTHON} missing, skipped")
        return
    rounds = {"plain": [], "shim": []}
    for pair in range(opts.pairs):
        for mode in ("plain", "shim"):
            env, daemon = run_env(opts, tmp, mode, f"py-life-{pair}")
            out = subprocess.run([PYTHON, PY_WORKLOADS, "lifecycle", "20000",
                                  "10"], env=env, capture_output=True,
                                 text=True, check=True)
            if daemon:
                daemon.stop()
            rounds[mode].append(float(out.stdout))
    # Two events per round.
    added = [(s - p) / 2 for p, s in zip(rounds["plain"], rounds["shim"])]
    results["python"]["lifecycle"] = {
        "plain_ns": statistics.median(rounds["plain"]) / 2,
        "shim_ns": statistics.median(rounds["shim"]) / 2,
        "added": median_spread(added)}
    log(f"python lifecycle event: added {statistics.median(added):.0f} ns")
    for workload in ("keep-alive", "connection-per-request"):
        py_echo(opts, tmp, results, workload)


def start_server(argv, env, port_file, what):
    """Starts a server on the second core that writes its port to
    port_file; (process, port)."""
    server = subprocess.Popen(pin(1) + argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if time.monotonic() > deadline:
            raise RuntimeError(what + " did not start")
        time.sleep(0.02)
    with open(port_file) as f:
        return server, int(f.read().strip())


def py_echo(opts, tmp, results, workload):
    samples = {"plain": [], "shim": []}
    for pair in range(opts.pairs):
        for mode in ("plain", "shim"):
            env, daemon = run_env(opts, tmp, mode, f"py-echo-{workload}-{pair}")
            port_file = os.path.join(tmp, f"py-echo-{workload}-{pair}-{mode}.port")
            server, port = start_server(
                [PYTHON, PY_WORKLOADS, "echo-server", port_file], env,
                port_file, "the Python echo server")
            out = subprocess.run(
                pin(0) + [PYTHON, PY_WORKLOADS, "echo-client", str(port),
                          str(opts.seconds), "8"] +
                (["keep-alive"] if workload == "keep-alive" else []),
                capture_output=True, text=True, check=True)
            server.terminate()
            server.wait(timeout=20)
            if daemon:
                daemon.stop()
            samples[mode].append(float(out.stdout))
            log(f"python echo {workload} pair {pair} {mode}: "
                f"{samples[mode][-1]:.0f} req/s")
    ratios = [s / p for p, s in zip(samples["plain"], samples["shim"])]
    results["python"]["echo " + workload] = {
        "plain_rps": statistics.median(samples["plain"]),
        "shim_rps": statistics.median(samples["shim"]),
        "ratio": median_spread(ratios)}


NODE = shutil.which("node") or "/usr/bin/node"
NODE_SERVER = os.path.join(ROOT, "bench", "node_server.js")
NODE_V8_FLAGS = "--perf-basic-prof-only-functions --interpreted-frames-native-stack"


NODE_MODES = ("plain", "flags", "shim")


def node(opts, tmp, results):
    """Node.js's http server under wrk, keep-alive and Connection: close:
    bare; with only V8's perf-map flags (what they cost alone); and preloaded
    (the library sets those flags and the agent itself), with its collector.

    The three run at once, all on the second core, each driven by a wrk of
    its own on the first core, for opts.pairs rounds after one to warm up;
    the collector runs where the kernel puts it, as it does in use (and as
    in the nginx suite). Whatever else the machine does then slows all three
    alike: run one after another, two bare servers differed by up to 40%
    from one run to the next; at once, by 2%. Per round: each server's req/s
    over bare's (the core is shared evenly, so this is what its own work per
    request costs), and its requests per CPU second over bare's, with the
    collector's CPU counted against the audited one. Also the perf map's
    size on disk at the end.

    Pinned to the servers' core instead, it took about 0.6% more of the
    audited server's Connection: close throughput (docs/performance.md)."""
    if not os.access(NODE, os.X_OK):
        log(f"node: {NODE} missing, skipped")
        return
    for workload, close in (("keep-alive", False), ("connection-close", True)):
        servers = {}
        try:
            for mode in NODE_MODES:
                env, daemon = run_env(opts, tmp, "shim" if mode == "shim" else "plain",
                                      f"node-{workload}-{mode}")
                env.pop("NODE_OPTIONS", None)
                if mode == "flags":
                    env["NODE_OPTIONS"] = NODE_V8_FLAGS
                port_file = os.path.join(tmp, f"node-{workload}-{mode}.port")
                server, port = start_server([NODE, NODE_SERVER, port_file], env,
                                            port_file, "the Node.js server")
                servers[mode] = (server, port, daemon)
            rps, per_cpu, collector_us = at_once(opts, servers, close,
                                                 f"node {workload}")
            maps = []
            for mode in ("flags", "shim"):
                perf_map = f"/tmp/perf-{servers[mode][0].pid}.map"
                if os.path.exists(perf_map):
                    maps.append(os.path.getsize(perf_map))
        finally:
            for server, _, daemon in servers.values():
                server.terminate()
                server.wait(timeout=20)
                perf_map = f"/tmp/perf-{server.pid}.map"
                if os.path.exists(perf_map):
                    os.unlink(perf_map)
                if daemon:
                    daemon.stop()
        v = at_once_ratios(rps, per_cpu, collector_us)
        v["perf_map_bytes"] = max(maps) if maps else 0
        results["node"][workload] = v


def at_once(opts, servers, close, what):
    """Rounds of wrk against every server of `servers` (mode -> (process,
    port, daemon or None)) at once, each with a wrk of its own, for
    opts.pairs rounds after one to warm up (a JIT compiles the hot paths).
    Returns, per mode, the req/s and the requests per CPU second (its
    collector's CPU counted) of each round, and the audited ("shim")
    server's collector CPU per request in microseconds."""
    modes = list(servers)

    def used(mode):
        server, _, daemon = servers[mode]
        return cpu_seconds(server.pid) + (daemon.cpu_seconds() if daemon else 0)

    def drive(mode, out):
        out[mode] = wrk(servers[mode][1], opts.seconds, close)[0]

    rps = {mode: [] for mode in modes}
    per_cpu = {mode: [] for mode in modes}
    collector_us = []
    for round_ in range(opts.pairs + 1):
        before = {mode: used(mode) for mode in modes}
        collector_before = servers["shim"][2].cpu_seconds()
        out = {}
        threads = [threading.Thread(target=drive, args=(mode, out))
                   for mode in modes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if round_ == 0:
            continue
        requests = {mode: out[mode] * opts.seconds for mode in modes}
        for mode in modes:
            rps[mode].append(out[mode])
            per_cpu[mode].append(requests[mode] / (used(mode) - before[mode]))
        collector_us.append((servers["shim"][2].cpu_seconds() - collector_before)
                            / requests["shim"] * 1e6)
        log(f"{what} round {round_}: " + ", ".join(
            f"{mode} {out[mode]:.0f} req/s" for mode in modes))
    return rps, per_cpu, collector_us


def at_once_ratios(rps, per_cpu, collector_us):
    """at_once()'s rounds as medians: each mode's req/s, and each mode's
    ratios to "plain" (req/s, and requests per CPU second)."""
    v = {mode: statistics.median(rps[mode]) for mode in rps}
    for mode in rps:
        if mode == "plain":
            continue
        v[mode + "_ratio"] = median_spread(
            [s / p for p, s in zip(rps["plain"], rps[mode])])
        v[mode + "_cpu_ratio"] = median_spread(
            [s / p for p, s in zip(per_cpu["plain"], per_cpu[mode])])
    v["collector_us_per_request"] = statistics.median(collector_us)
    return v


JAVA = shutil.which("java")
JAVA_SERVER = os.path.join(ROOT, "bench", "JavaServer.java")
JAVA_STARTS = 15


def java(opts, tmp, results):
    """Java servers (bench/JavaServer.java: a thread per connection, and
    one NIO selector) under wrk, keep-alive and Connection: close, bare and
    preloaded with a collector, the two at once on the second core as in
    node(). And the JVM's start-up: `java -cp DIR JavaServer hello`, bare
    and preloaded, interleaved, JAVA_STARTS times each; the median of each
    way's wall time."""
    if JAVA is None or shutil.which("javac") is None:
        log("java: no java or javac on PATH, skipped")
        return
    classes = os.path.join(tmp, "java-classes")
    subprocess.run(["javac", "-d", classes, JAVA_SERVER], check=True)
    starts = {"plain": [], "shim": []}
    for i in range(JAVA_STARTS):
        for mode in ("plain", "shim"):
            env, daemon = run_env(opts, tmp, mode, f"java-start-{i}")
            begin = time.monotonic()
            subprocess.run([JAVA, "-cp", classes, "JavaServer", "hello"], env=env,
                           check=True, stdout=subprocess.DEVNULL)
            starts[mode].append(time.monotonic() - begin)
            if daemon:
                daemon.stop()
    results["java"]["start"] = {
        "plain_ms": statistics.median(starts["plain"]) * 1000,
        "shim_ms": statistics.median(starts["shim"]) * 1000,
        "added_ms": median_spread([(s - p) * 1000 for p, s in
                                   zip(starts["plain"], starts["shim"])])}
    for kind in ("thread", "nio"):
        for workload, close in (("keep-alive", False), ("connection-close", True)):
            servers = {}
            try:
                for mode in ("plain", "shim"):
                    env, daemon = run_env(opts, tmp, mode,
                                          f"java-{kind}-{workload}-{mode}")
                    port_file = os.path.join(tmp, f"java-{kind}-{workload}-{mode}.port")
                    server, port = start_server(
                        [JAVA, "-cp", classes, "JavaServer", kind, port_file], env,
                        port_file, "the Java server")
                    servers[mode] = (server, port, daemon)
                rps, per_cpu, collector_us = at_once(
                    opts, servers, close, f"java {kind} {workload}")
            finally:
                for server, _, daemon in servers.values():
                    server.terminate()
                    server.wait(timeout=20)
                    if daemon:
                        daemon.stop()
            results["java"][f"{kind} {workload}"] = at_once_ratios(
                rps, per_cpu, collector_us)


# What the collector kept per connection before it folded closed sockets
# (docs/performance.md): the slope a soak's growth is judged against.
UNFOLDED_BYTES_PER_CONNECTION = 265


def soak(opts, tmp, results):
    """nginx under closeaudit run for opts.soak_seconds, a connection per
    request (bench/soak.py): the collector's RSS and trace over time, and
    the report's counts against nginx's."""
    out = os.path.join(tmp, "soak.json")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "soak.py"),
         "--closeaudit", opts.closeaudit, "--seconds", str(opts.soak_seconds),
         "--settle", str(min(60, opts.soak_seconds // 3)),
         "--trace-limit", opts.soak_trace_limit, "--json", out],
        capture_output=True, text=True)
    if proc.returncode == 77:
        log(f"soak: {proc.stdout.strip()}")
        return
    sys.stderr.write(proc.stderr)
    if not os.path.exists(out):
        raise RuntimeError("the soak did not finish")
    with open(out) as f:
        v = json.load(f)
    results["soak"] = v
    log(f"soak: {v['wrk']['requests']} connections in {v['seconds']} s; "
        f"collector RSS {v['rss_first_kib'] / 1024:.0f} -> peak "
        f"{v['rss_peak_kib'] / 1024:.0f} MiB, last {v['rss_last_kib'] / 1024:.0f} "
        f"MiB; growth {v['growth_bytes_per_connection']:.2f} B per connection "
        f"after the first minute; trace {v['trace_bytes'] / 2**20:.0f} MiB; "
        f"{'; '.join(v['failures']) or 'counts exact'}")


def sweep(opts, tmp, results):
    """The collector's sweeps of the kernel's socket table (sock_diag)
    while audited Python processes hold opts.sweep_sockets sockets
    (loopback connections, both ends open; as many processes as the
    descriptor limit asks for): the CPU time of each sweep, the
    kernel's walk of every TCP socket included, as the collector counts it
    (`closeaudit status --json`, kernel_sweeps). The sweeps run on a thread
    of the collector's own, never the one that drains the rings."""
    if not os.access(PYTHON, os.X_OK):
        log(f"sweep: {PYTHON} missing, skipped")
        return
    # As many processes as the descriptor limit asks for.
    per_process = min(opts.sweep_sockets,
                      (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100)
                      // 2 * 2)
    daemon = Daemon(opts.closeaudit, tmp, "sweep")
    env = dict(os.environ, LD_PRELOAD=opts.lib, CLOSEAUDIT_SOCKET=daemon.sock)
    holders = []
    try:
        left = opts.sweep_sockets
        while left > 0:
            n = min(left, per_process)
            left -= n
            holders.append(subprocess.Popen(
                [PYTHON, PY_WORKLOADS, "hold", str(n)], env=env,
                stdout=subprocess.PIPE, text=True))
        for h in holders:
            if h.stdout.readline().strip() != "ready":
                raise RuntimeError("a holder of the sockets did not start")

        def status():
            out = subprocess.run([opts.closeaudit, "status", "--json",
                                  daemon.dir], capture_output=True, text=True,
                                 check=True).stdout
            return json.loads(out)

        # From the first sweep that saw them all: what the rings still held
        # when the holders said "ready" is drained within a sweep or two.
        time.sleep(2)
        first = status()
        time.sleep(opts.sweep_seconds)
        last = status()
        with open("/proc/net/sockstat") as f:
            tcp = next((l.strip() for l in f if l.startswith("TCP:")), "")
    finally:
        for h in holders:
            h.send_signal(signal.SIGTERM)
        for h in holders:
            h.wait(timeout=60)
        daemon.stop()
    turn = {"before": first["longest_turn_ms"], "after": last["longest_turn_ms"]}
    first, last = first["kernel_sweeps"], last["kernel_sweeps"]
    sweeps = last["count"] - first["count"]
    v = {"sockets": opts.sweep_sockets, "sweeps": sweeps,
         "cpu_ms_per_sweep": (last["cpu_ms"] - first["cpu_ms"]) / sweeps
         if sweeps else None,
         "max_cpu_ms": last["max_cpu_ms"], "sockstat": tcp,
         # The collector's longest turn of work between two waits on its
         # rings: before the first `status` (the holders' 100,000 creations
         # drained, sweeps beside them), and after (that status too).
         "longest_turn_ms": turn}
    results["sweep"] = v
    log(f"sweep: {sweeps} sweeps in {opts.sweep_seconds} s over "
        f"{opts.sweep_sockets} held sockets, "
        f"{v['cpu_ms_per_sweep'] or 0:.1f} ms of CPU each "
        f"(the costliest {v['max_cpu_ms']:.1f} ms); the longest turn between "
        f"drains {turn['before']:.1f} ms, {turn['after']:.1f} ms with a "
        f"status; {tcp}")


def fmt_row(what, target, measured, ok):
    """ok: True, False, or None for a row that is only a reference."""
    verdict = "" if ok is None else "met" if ok else "MISSED"
    return f"| {what} | {target} | {measured} | {verdict} |"


def table(results, opts):
    m = results["micro"]
    n = results["nginx"]
    i = results["ingest"]
    rows = ["| what | target | measured (median; min..max) | |",
            "|---|---|---|---|"]
    for workload in ("keep-alive", "connection-close"):
        r = n[workload]["ratio"]
        p = n[workload]["p99_ratio"]
        rows.append(fmt_row(f"nginx {workload} throughput, shim/bare", ">= 0.97",
                            f"{r[0]:.3f} ({r[1]:.3f}..{r[2]:.3f}); p99 latency "
                            f"ratio {p[0]:.2f} ({p[1]:.2f}..{p[2]:.2f})",
                            r[0] >= 0.97))
    rd = m["BM_RecvData"]
    rows.append(fmt_row("added cost of a recv that returns data", "<= 25 ns",
                        f"{rd['added_ns']:.0f} ns ({rd['added_min']:.0f}.."
                        f"{rd['added_max']:.0f}); {rd['plain_ns']:.0f} -> "
                        f"{rd['shim_ns']:.0f} ns", rd["added_ns"] <= 25))
    lc = m["BM_ServerLifecycle"]
    rows.append(fmt_row("added cost of accept -> EOF -> close (3 stacks)",
                        "<= 1.5 us",
                        f"{lc['added_ns'] / 1000:.2f} us ({lc['added_min'] / 1000:.2f}.."
                        f"{lc['added_max'] / 1000:.2f})", lc["added_ns"] <= 1500))
    ev = i["events_per_cpu_second"]
    rows.append(fmt_row("collector ingest, one core", ">= 2 M events/s",
                        f"{ev[0] / 1e6:.2f} M/s ({ev[1] / 1e6:.2f}..{ev[2] / 1e6:.2f})",
                        ev[0] >= 2e6))
    pr = results["process"]
    if "empty" in pr:
        v = pr["empty"]
        rows.append(fmt_row(f"bash running /bin/true {pr['execs']} times, "
                            f"an LD_PRELOAD library that does nothing "
                            f"(what any preload costs), /bare", "(reference)",
                            f"{v[0]:.3f} ({v[1]:.3f}..{v[2]:.3f}); "
                            f"{pr['bare_us_per_exec']:.0f} -> "
                            f"{pr['empty_us_per_exec']:.0f} us per exec", None))
    for mode, label in (("preload", "LD_PRELOAD, a daemon collecting"),
                        ("run", "under closeaudit run")):
        v = pr[mode]
        rows.append(fmt_row(f"bash running /bin/true {pr['execs']} times, "
                            f"{label}, /bare", "<= 1.15",
                            f"{v[0]:.3f} ({v[1]:.3f}..{v[2]:.3f}); "
                            f"{pr['bare_us_per_exec']:.0f} -> "
                            f"{pr[mode + '_us_per_exec']:.0f} us per exec",
                            v[0] <= 1.15))
    other_start = [f"| {part} | {us:+.0f} us |"
                   for part, us in pr.get("parts_us", {}).items()]
    fk = next(v for k, v in m.items() if k.startswith("BM_ForkWith1000Sockets"))
    rows.append(fmt_row("added cost of fork() with 1,000 sockets open", "(none set)",
                        f"{fk['added_ns'] / 1e6:.2f} ms ({fk['added_min'] / 1e6:.2f}.."
                        f"{fk['added_max'] / 1e6:.2f}); {fk['plain_ns'] / 1e6:.2f} -> "
                        f"{fk['shim_ns'] / 1e6:.2f} ms", True))
    fm = m["fd_memory"]
    rows.append(fmt_row("shim memory per tracked fd", "<= 64 B",
                        f"{fm['bytes_per_fd']:.0f} B (private memory over "
                        f"{fm['sockets']} sockets; the event ring it shares with "
                        f"the collector grew {fm['ring_bytes'] / 2**20:.1f} MiB)",
                        fm["bytes_per_fd"] <= 64))
    py = results.get("python", {})
    if "lifecycle" in py:
        # What one C lifecycle event adds, from the server's three.
        c_event = lc["added_ns"] / 3
        a = py["lifecycle"]["added"]
        over_c = a[0] - c_event
        rows.append(fmt_row("added cost of a lifecycle event in Python "
                            "(socket/close 10 frames deep), beyond C's",
                            "<= 3 us",
                            f"{over_c / 1000:.2f} us (Python adds "
                            f"{a[0] / 1000:.2f} us, {a[1] / 1000:.2f}.."
                            f"{a[2] / 1000:.2f}; C {c_event / 1000:.2f} us)",
                            over_c <= 3000))
    # The target is the echo server's: clients that keep their connections.
    # A connection per request is all lifecycle events, whose cost has its
    # own target above: a reference.
    for workload, target in (("keep-alive", ">= 0.95"),
                             ("connection-per-request", "(reference)")):
        v = py.get("echo " + workload)
        if v is None:
            continue
        r = v["ratio"]
        rows.append(fmt_row(f"Python echo server (threaded, 8 clients), "
                            f"{workload}, shim/bare", target,
                            f"{r[0]:.3f} ({r[1]:.3f}..{r[2]:.3f}); "
                            f"{v['plain_rps']:.0f} -> {v['shim_rps']:.0f} req/s",
                            r[0] >= 0.95 if workload == "keep-alive" else None))
    nd = results.get("node", {})
    for workload in ("keep-alive", "connection-close"):
        v = nd.get(workload)
        if v is None:
            continue
        r, c, fl = v["shim_ratio"], v["shim_cpu_ratio"], v["flags_ratio"]
        rows.append(fmt_row(f"Node.js http server, {workload}, throughput with "
                            f"the audit, V8's perf-map flags and the agent, /bare "
                            f"(three servers at once on one core)",
                            ">= 0.95",
                            f"{r[0]:.3f} ({r[1]:.3f}..{r[2]:.3f}); {v['plain']:.0f} -> "
                            f"{v['shim']:.0f} req/s; the flags alone {fl[0]:.3f}; "
                            f"perf map {v['perf_map_bytes'] / 1024:.0f} KiB after "
                            f"{opts.pairs + 1} rounds of {opts.seconds} s",
                            r[0] >= 0.95))
        rows.append(fmt_row(f"Node.js http server, {workload}, requests per CPU "
                            f"second with the collector's CPU counted, /bare",
                            "reference",
                            f"{c[0]:.3f} ({c[1]:.3f}..{c[2]:.3f}); collector "
                            f"{v['collector_us_per_request']:.1f} us per request",
                            None))
    jv = results.get("java", {})
    for name, v in jv.items():
        if name == "start":
            a = v["added_ms"]
            rows.append(fmt_row("JVM start-up (java -cp DIR JavaServer hello), "
                                "added with the library", "<= 100 ms",
                                f"{a[0]:.0f} ms ({a[1]:.0f}..{a[2]:.0f}); "
                                f"{v['plain_ms']:.0f} -> {v['shim_ms']:.0f} ms",
                                a[0] <= 100))
            continue
        r, c = v["shim_ratio"], v["shim_cpu_ratio"]
        rows.append(fmt_row(f"Java server ({name}), throughput with the audit, "
                            f"/bare (two at once on one core)", ">= 0.95",
                            f"{r[0]:.3f} ({r[1]:.3f}..{r[2]:.3f}); "
                            f"{v['plain']:.0f} -> {v['shim']:.0f} req/s; per CPU "
                            f"second, the collector's counted, {c[0]:.3f}; "
                            f"collector {v['collector_us_per_request']:.1f} us "
                            f"per request", r[0] >= 0.95))
    bps = i["bytes_per_live_socket"]
    rows.append(fmt_row("collector memory per live socket (without stacks)",
                        "<= 1 KiB", f"{bps:.0f} B (peak RSS {i['peak_rss_kib'] / 1024:.0f} "
                        f"MiB at {opts.live} sockets)", bps <= 1024))
    so = results.get("soak")
    if so:
        g = so["growth_bytes_per_connection"]
        limit = UNFOLDED_BYTES_PER_CONNECTION / 100
        rows.append(fmt_row(
            f"collector RSS, {so['seconds']} s of nginx Connection: close "
            f"({so['wrk']['requests'] / 1e6:.1f} M connections)",
            "< 256 MiB; growth after the first minute < 1% of keeping every "
            f"socket ({limit:.2f} B per connection)",
            f"peak {so['rss_peak_kib'] / 1024:.0f} MiB, last "
            f"{so['rss_last_kib'] / 1024:.0f} MiB; growth {g:.2f} B per "
            f"connection; counts {'exact' if not so['failures'] else 'WRONG'}",
            so["rss_peak_kib"] < 256 * 1024 and g < limit and not so["failures"]))
        rows.append(fmt_row(f"trace size, same soak, --trace-limit "
                            f"{opts.soak_trace_limit}",
                            "bounded; the report made again the same",
                            f"at most {so['trace_bytes_max'] / 2**20:.0f} MiB, "
                            f"{so['trace_bytes'] / 2**20:.0f} MiB at the end",
                            not so["failures"]))
    sw = results.get("sweep", {})
    if sw.get("cpu_ms_per_sweep") is not None:
        rows.append(fmt_row(f"a kernel sweep with {sw['sockets']} sockets held "
                            "(collector CPU, off the draining thread)", "",
                            f"{sw['cpu_ms_per_sweep']:.1f} ms (costliest "
                            f"{sw['max_cpu_ms']:.1f} ms; {sw['sweeps']} sweeps)",
                            None))
    other = ["", "| micro case | plain | with closeaudit | added (median; min..max) |",
             "|---|---|---|---|"]
    for name, v in m.items():
        if name == "fd_memory":
            continue
        other.append(f"| {name} | {v['plain_ns']:.0f} ns | {v['shim_ns']:.0f} ns | "
                     f"{v['added_ns']:.0f} ns ({v['added_min']:.0f}..{v['added_max']:.0f}) |")
    for workload in ("keep-alive", "connection-close"):
        v = n[workload]
        other.append(f"| nginx {workload} | {v['plain_rps']:.0f} req/s | "
                     f"{v['shim_rps']:.0f} req/s | |")
    if other_start:
        other += ["", f"| a process start, part by part (bare: "
                  f"{pr['start_bare_us']:.0f} us from spawn to reaped) | "
                  "added (median) |", "|---|---|"] + other_start
    return "\n".join(rows + other)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--min-time", default="0.3")
    ap.add_argument("--events", type=int, default=2000000)
    ap.add_argument("--live", type=int, default=100000)
    ap.add_argument("--sweep-sockets", type=int, default=100000,
                    help="sockets held open while the kernel sweeps are timed")
    # Once their first 200 ms are spent, sweeps this costly come some 15 s
    # apart (docs/performance.md).
    ap.add_argument("--sweep-seconds", type=int, default=40)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"))
    ap.add_argument("--execs", type=int, default=300,
                    help="execs in one run of the exec loop")
    ap.add_argument("--exec-pairs", type=int, default=25,
                    help="interleaved runs of the exec loop, each way")
    ap.add_argument("--starts", type=int, default=400,
                    help="process starts per variant, part by part")
    ap.add_argument("--soak-seconds", type=int, default=600,
                    help="how long the soak's load lasts")
    # Below what 10 minutes at full rate write (about 450 MiB), so that the
    # soak shows the trace compacted and bounded.
    ap.add_argument("--soak-trace-limit", default="256M",
                    help="the soak's --trace-limit")
    ap.add_argument("--only", choices=["micro", "nginx", "ingest", "process",
                                       "python", "node", "java", "sweep",
                                       "soak"],
                    help="run one suite and print its log (no table)")
    opts = ap.parse_args()
    opts.build = os.path.abspath(opts.build)
    opts.closeaudit = os.path.join(opts.build, "collector", "closeaudit")
    opts.lib = os.path.join(opts.build, "shim", "libcloseaudit.so")
    results = {"micro": {}, "nginx": {}, "ingest": {}, "process": {},
               "python": {}, "node": {}, "java": {}, "sweep": {}}
    tmp = tempfile.mkdtemp(prefix="closeaudit-bench-")
    try:
        if opts.only:
            {"micro": micro, "nginx": nginx, "ingest": ingest, "python": python,
             "node": node, "java": java, "sweep": sweep, "soak": soak,
             "process": lambda *a: (exec_loop(*a), start_parts(*a))}[
                 opts.only](opts, tmp, results)
            print(json.dumps(results, indent=1))
            return
        micro(opts, tmp, results)
        exec_loop(opts, tmp, results)
        start_parts(opts, tmp, results)
        nginx(opts, tmp, results)
        python(opts, tmp, results)
        node(opts, tmp, results)
        java(opts, tmp, results)
        ingest(opts, tmp, results)
        sweep(opts, tmp, results)
        soak(opts, tmp, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    head = (f"closeaudit benchmarks, commit {commit or 'unknown'}, "
            f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
            f"{platform.machine()} {os.cpu_count()} cores, "
            f"Linux {platform.release()}; {opts.pairs} interleaved pairs")
    body = table(results, opts)
    print(head)
    print(body)
    with open(opts.out, "w") as f:
        f.write(f"# Benchmark results\n\n{head}.\n\n{body}\n")
    log(f"written to {opts.out}")


if __name__ == "__main__":
    main()
