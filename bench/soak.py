#!/usr/bin/env python3
"""A soak: nginx (one worker) under `closeaudit run`, wrk making one
connection per request (Connection: close) for --seconds at full rate.

Every --every seconds it samples the collector's RSS (and the peak of the
process it compacts the trace in, while one runs), the size of its
trace and how long `closeaudit status` takes; once, early on, it has the
collector write a snapshot of its reports. At the end it stops nginx gracefully and compares the report with
nginx's own counts (stub_status):
  - time_wait's count must lie between the answers wrk read and the
    requests nginx answered: nginx closes first after each answer, so each
    one leaves a socket of nginx's in TIME_WAIT (but for those wrk, at its
    end, closed first, and a few per million, below);
  - sockets_tracked must equal nginx's accepted connections plus nginx's own
    sockets that are not connections (its listener, its channels);
  - no event may be lost, wrk must see no error, and no finding may be
    above info;
  - `closeaudit report` must make the same counts again from the trace
    (compacted on the way, with --trace-limit).
Growth is the least-squares slope of RSS over the samples after --settle
seconds, per connection made.

Prints one JSON object. The limits (--max-rss-mib, --max-growth) make it a
test: it exits 1 naming what did not hold. scripts/bench --only soak runs it
for 10 minutes; the test suite for one, with generous limits.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_load  # noqa: E402


def median(values):
    """statistics.median, or None for no values."""
    values = list(values)
    return statistics.median(values) if values else None


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # it has exited
        pass
    return 0


def compactor_kib(pid):
    """The peak RSS (VmHWM) of the collector's compacting process, if one
    runs: the collector compacts the trace in a process of its own."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = f.read().split()
        except OSError:
            continue
        for child in children:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[1] == b"internal-compact":
                total += rss_kib(child, "VmHWM")
    return total


def slope(points):
    """The least-squares slope of y over x; None with fewer than 2 points."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def soak(opts, tmp):
    d = os.path.join(tmp, "nginx")
    out = os.path.join(tmp, "out")
    os.makedirs(d)
    port = nginx_load.free_port()
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    # `run` is the collector; nginx (under taskset) its command.
    limit = ["--trace-limit", opts.trace_limit] if opts.trace_limit else []
    run = subprocess.Popen(
        [opts.closeaudit, "run", "--out", out, "--format", "json"] + limit
        + ["--"] + nginx_load.nginx_argv(d, port),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tmp, "run.log"), "w"))
    nginx_load.wait_listening(port, run)
    samples = []
    trace = os.path.join(out, "trace.catrace")
    start = time.monotonic()
    load = {}
    driver = threading.Thread(daemon=True, target=lambda: load.update(
        nginx_load.wrk(port, opts.seconds, close=True)))
    driver.start()
    snapshot_s = None
    while driver.is_alive():
        t = time.monotonic() - start
        size = os.path.getsize(trace) if os.path.exists(trace) else 0
        sample = {"s": round(t, 1), "rss_kib": rss_kib(run.pid),
                  "trace_bytes": size}
        compacting = compactor_kib(run.pid)
        if compacting:
            sample["compactor_kib"] = compacting
        try:
            sample["status_ms"] = timed(
                [opts.closeaudit, "status", "--json", out]) * 1000
        except RuntimeError as e:
            sample["status_error"] = str(e)
        samples.append(sample)
        # A snapshot, made while draining goes on; before growth is
        # measured, since its first symbolizes (and maps) the program's
        # objects once for the run.
        if snapshot_s is None and t >= min(opts.seconds, opts.settle) / 2:
            snapshot_s = timed([opts.closeaudit, "snapshot", out])
        driver.join(opts.every)
    if not load:
        raise RuntimeError("wrk failed")
    counts = nginx_load.stub_status(port)
    # `run` exits once nginx has, with the report written.
    status = nginx_load.stop_nginx(d, run, timeout=600)
    if status != 0:
        raise RuntimeError(f"closeaudit run exited with {status}")
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    # The same report again from the trace, as `closeaudit report` makes it.
    again = subprocess.run([opts.closeaudit, "report", out, "--format", "json"],
                           capture_output=True, text=True, check=True)
    report["regenerated"] = json.loads(again.stdout)
    report["trace_bytes_end"] = os.path.getsize(trace)
    return samples, load, counts, report, snapshot_s


def timed(argv):
    """Runs a closeaudit request; the seconds it took. Raises if it failed."""
    began = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} failed ({done.returncode}): "
                           f"{done.stderr.strip()}")
    return time.monotonic() - began


def judge(opts, samples, load, counts, report, snapshot_s):
    summary = report["summary"]
    findings = report.get("findings", [])
    time_wait = sum(f["count"] for f in findings if f["kind"] == "time_wait")
    connections = counts["accepts"]
    settled = [(s["s"], s["rss_kib"] * 1024) for s in samples
               if s["s"] >= opts.settle]
    per_second = slope(settled)
    rate = load["requests"] / opts.seconds
    result = {
        "seconds": opts.seconds,
        "wrk": load,
        "nginx": counts,
        "report": {k: summary.get(k) for k in
                   ("sockets_tracked", "events", "events_dropped")},
        "time_wait": time_wait,
        "findings": sorted({f"{f['kind']}:{f['severity']}" for f in findings}),
        "rss_first_kib": samples[0]["rss_kib"] if samples else None,
        "rss_peak_kib": max((s["rss_kib"] for s in samples), default=None),
        "rss_last_kib": samples[-1]["rss_kib"] if samples else None,
        # The compacting process's peak, and with the collector's at the time.
        "compactor_peak_kib": max((s.get("compactor_kib", 0) for s in samples),
                                  default=None),
        "rss_with_compactor_peak_kib":
            max((s["rss_kib"] + s.get("compactor_kib", 0) for s in samples),
                default=None),
        "growth_bytes_per_connection":
            per_second / rate if per_second is not None and rate else None,
        "snapshot_s": snapshot_s,
        # `closeaudit status` over the first and the last fifth of the run:
        # it must not slow down as the run ages.
        "status_ms_first": median(s["status_ms"] for s in samples
                                  if s["s"] <= opts.seconds / 5 and "status_ms" in s),
        "status_ms_last": median(s["status_ms"] for s in samples
                                 if s["s"] >= opts.seconds * 4 / 5 and "status_ms" in s),
        # A status the collector did not answer (it said why).
        "status_errors": [f"{s['s']} s: {s['status_error']}" for s in samples
                          if "status_error" in s],
        "trace_bytes": samples[-1]["trace_bytes"] if samples else None,
        "trace_bytes_per_connection":
            samples[-1]["trace_bytes"] / connections if samples else None,
        "samples": samples,
    }
    failures = []
    if load["errors"]:
        failures.append(f"wrk saw {load['errors']} errors")
    if summary.get("events_dropped"):
        failures.append(f"{summary['events_dropped']} events were dropped")
    # Every answer wrk read left a socket in TIME_WAIT; so did the requests
    # nginx answered after wrk, stopping, had closed its end, unless nginx
    # read that end's EOF before its own close. But for a few per million:
    # when nginx is held up between its answer and its close(), wrk has read
    # the answer and closed first, and nginx's close comes after wrk's FIN.
    # That socket ends in LAST_ACK, not TIME_WAIT, and when a sweep caught it
    # in CLOSE_WAIT meanwhile, the report rightly leaves it out.
    slack = connections // 100_000
    if not load["requests"] - slack <= time_wait <= counts["requests"]:
        failures.append(f"time_wait counts {time_wait} sockets, not between "
                        f"the {load['requests']} answers wrk read (less "
                        f"{slack}) and the {counts['requests']} requests "
                        f"nginx answered")
    own = summary["sockets_tracked"] - connections
    if not 1 <= own <= opts.own_sockets:
        failures.append(f"sockets_tracked {summary['sockets_tracked']} is not "
                        f"nginx's {connections} connections plus 1 to "
                        f"{opts.own_sockets} sockets of its own")
    def counts_of(r):
        return ({k: r["summary"].get(k) for k in ("sockets_tracked", "events")},
                sorted((f["kind"], f["severity"], f["count"])
                       for f in r.get("findings", [])))
    if counts_of(report["regenerated"]) != counts_of(report):
        failures.append(f"the report made again from the trace differs: "
                        f"{counts_of(report['regenerated'])} against "
                        f"{counts_of(report)}")
    result["trace_bytes_max"] = max(
        [s["trace_bytes"] for s in samples] + [report["trace_bytes_end"]])
    # What the collector holds, and the trace between two compactions,
    # follow the last seconds' connections: above --limits-at-rps, the
    # limits grow with wrk's rate.
    scale = 1.0
    if opts.limits_at_rps and load["rps"] > opts.limits_at_rps:
        scale = load["rps"] / opts.limits_at_rps
    result["limit_scale"] = scale
    max_trace_mib = opts.max_trace_mib and opts.max_trace_mib * scale
    max_rss_mib = opts.max_rss_mib and opts.max_rss_mib * scale
    if max_trace_mib and result["trace_bytes_max"] > max_trace_mib * 2**20:
        failures.append(f"the trace reached {result['trace_bytes_max'] / 2**20:.0f} "
                        f"MiB (limit {max_trace_mib:.0f} MiB at "
                        f"{load['rps']:.0f} connections/s)")
    above = [f for f in result["findings"] if not f.endswith(":info")]
    if above:
        failures.append(f"findings above info: {', '.join(above)}")
    peak = result["rss_with_compactor_peak_kib"]
    if max_rss_mib and peak > max_rss_mib * 1024:
        failures.append(f"the collector's RSS (its compacting process's "
                        f"included) reached {peak / 1024:.0f} MiB "
                        f"(limit {max_rss_mib:.0f} MiB at {load['rps']:.0f} "
                        f"connections/s)")
    g = result["growth_bytes_per_connection"]
    if opts.max_growth is not None and (g is None or g > opts.max_growth):
        failures.append(f"after {opts.settle} s the collector grew "
                        f"{'?' if g is None else f'{g:.2f}'} B per connection "
                        f"(limit {opts.max_growth})")
    result["failures"] = failures
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--every", type=float, default=5)
    ap.add_argument("--settle", type=float, default=60,
                    help="growth is measured after this many seconds")
    ap.add_argument("--own-sockets", type=int, default=16,
                    help="the most sockets nginx makes that are not "
                         "connections")
    ap.add_argument("--max-rss-mib", type=float)
    ap.add_argument("--max-growth", type=float,
                    help="bytes of RSS per connection after --settle")
    ap.add_argument("--trace-limit", help="closeaudit run's --trace-limit")
    ap.add_argument("--max-trace-mib", type=float,
                    help="the most the trace may take at any sample")
    ap.add_argument("--limits-at-rps", type=float,
                    help="the rate --max-rss-mib and --max-trace-mib hold "
                         "at; above it they grow in proportion")
    ap.add_argument("--json", help="also write the result here")
    opts = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"soak: skipped, {tool} is not installed "
                  f"(apt-get install nginx-light wrk)")
            sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="closeaudit-soak-")
    try:
        result = judge(opts, *soak(opts, tmp))
    except Exception:
        for name in ("run.log", "nginx/nginx-error.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                with open(path) as f:
                    sys.stderr.write(f"--- {name}\n{f.read()[-4000:]}")
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(result, indent=1)
    if opts.json:
        with open(opts.json, "w") as f:
            f.write(text + "\n")
    brief = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(brief, indent=1))
    for failure in result["failures"]:
        print(f"soak: FAILED: {failure}", file=sys.stderr)
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
