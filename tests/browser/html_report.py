#!/usr/bin/env python3
"""The HTML report in a real headless browser (Debian's chromium, driven
through chromedriver's WebDriver protocol; stdlib only).

Usage:
  html_report.py --closeaudit PATH/closeaudit --screenshot OUT.png [--dir DIR]

Runs `closeaudit demo` (a real server under the real library, with leaks),
opens its report.html from disk and checks, in the browser:
  - the page loaded no resource from anywhere (self-contained);
  - one culprit row per finding in report.json, with its kind and count;
  - clicking a row opens its stacks, which name the demo's source lines;
  - sorting by count orders the rows by count;
  - each process has a timeline SVG with the open-socket and CLOSE_WAIT
    curves, and a marker for every finding that began in it;
  - the kind explanations are embedded.
Then it saves a screenshot of the opened report to OUT.png. With --dir, it
checks the reports already in DIR instead of running the demo.
Prints "PASS html_report" and exits 0, or the reason and exits 1.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
STARTUP_TIMEOUT = 20  # seconds for chromedriver to answer


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def log(msg):
    print(f"browser: {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """The few WebDriver commands this test needs."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                reply = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise Failure(f"WebDriver {method} {path}: {e.code} "
                          f"{e.read()[:500]!r}")
        return reply.get("value")

    def wait_ready(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/status").get("ready"):
                    return
            except (OSError, Failure):
                pass
            time.sleep(0.2)
        raise Failure("chromedriver did not become ready")

    def start(self):
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1800",
                         "--user-data-dir=" + tempfile.mkdtemp(
                             prefix="closeaudit-chromium-")]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def s(self, path):
        return f"/session/{self.session}{path}"

    def get(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def js(self, script, *args):
        return self.call("POST", self.s("/execute/sync"),
                         {"script": script, "args": list(args)})

    def click(self, css):
        elem = self.call("POST", self.s("/element"),
                         {"using": "css selector", "value": css})
        check(elem, f"no element {css}")
        key = next(iter(elem))
        self.call("POST", self.s(f"/element/{elem[key]}/click"), {})

    def screenshot(self, path):
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        with open(path, "wb") as f:
            f.write(png)

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", self.s(""))
            except (OSError, Failure):
                pass


def run_demo(closeaudit, out):
    proc = subprocess.run([closeaudit, "demo", "--out", out],
                          capture_output=True, text=True, timeout=120)
    check(proc.returncode in (0, 1),
          f"closeaudit demo exited {proc.returncode}:\n{proc.stderr}")
    for name in ("report.json", "report.html"):
        check(os.path.exists(os.path.join(out, name)),
              f"closeaudit demo wrote no {name} in {out}")
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def test(opts, tmp, driver):
    if opts.dir:
        out = opts.dir
        with open(os.path.join(out, "report.json")) as f:
            rep = json.load(f)
    else:
        out = os.path.join(tmp, "demo")
        rep = run_demo(opts.closeaudit, out)
    findings = rep["findings"]
    check(findings, "the demo report has no findings to show")
    log(f"demo findings: {[(f['kind'], f['count']) for f in findings]}")

    driver.get("file://" + os.path.abspath(os.path.join(out, "report.html")))
    fetched = driver.js(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    check(fetched == [], f"the page fetched resources: {fetched}")

    rows = driver.js("""
      return Array.from(document.querySelectorAll('#culprits > tbody')).map(
        b => ({kind: b.dataset.kind, count: +b.dataset.count,
               shown: b.querySelector(':scope > tr.row').offsetHeight > 0,
               open: b.querySelector(':scope > tr.detail').offsetHeight > 0}));""")
    check(len(rows) == len(findings),
          f"{len(rows)} culprit rows for {len(findings)} findings")
    for row, f in zip(rows, findings):
        check(row["kind"] == f["kind"] and row["count"] == f["count"],
              f"row {row} does not match finding {f['kind']} x{f['count']}")
        check(row["shown"] and not row["open"],
              f"row {row}: expected shown and closed at first")

    # Open the first culprit: its stacks name the demo's source lines.
    driver.click("#culprits > tbody > tr.row")
    detail = driver.js("""
      var d = document.querySelector('#culprits > tbody > tr.detail');
      return {open: d.offsetHeight > 0,
              frames: Array.from(d.querySelectorAll('td.loc')).map(
                t => t.textContent),
              sources: Array.from(d.querySelectorAll('td.src code')).map(
                t => t.textContent)};""")
    check(detail["open"], "clicking the first culprit did not open it")
    check(any(":" in loc for loc in detail["frames"]),
          f"the opened culprit shows no file:line frames: {detail['frames']}")
    check(any(s.strip() for s in detail["sources"]),
          "the opened culprit shows no source lines (the demo's source is "
          "on disk)")

    # Sort by count, both ways.
    for _ in range(2):
        driver.click("#culprits th[data-key=count]")
        counts = driver.js("""return Array.from(
          document.querySelectorAll('#culprits > tbody')).map(
            b => +b.dataset.count);""")
        check(counts in (sorted(counts), sorted(counts, reverse=True)),
              f"after sorting by count the rows read {counts}")

    svgs = driver.js("""
      return Array.from(document.querySelectorAll('figure.timeline')).map(
        f => ({pid: +f.dataset.pid,
               open: (f.querySelector('path.open') || {}).getAttribute ?
                     f.querySelector('path.open').getAttribute('d') : '',
               cw: (f.querySelector('path.cw') || {}).getAttribute ?
                   f.querySelector('path.cw').getAttribute('d') : '',
               markers: f.querySelectorAll('line.marker').length,
               width: f.querySelector('svg').getBoundingClientRect().width}));""")
    pids = {p["pid"] for p in rep["processes"]}
    check(svgs and {s["pid"] for s in svgs} <= pids,
          f"timelines {svgs} do not match the processes {sorted(pids)}")
    for s in svgs:
        check(s["open"].startswith("M") and s["width"] > 300,
              f"timeline of pid {s['pid']} has no drawn open-socket curve: {s}")
    check(any(s["cw"].count("V") >= 1 for s in svgs),
          f"no timeline shows CLOSE_WAIT sockets rising: {svgs}")
    began = [f for f in findings if f.get("began_ms") is not None]
    check(sum(s["markers"] for s in svgs) == len(began),
          f"{sum(s['markers'] for s in svgs)} finding markers for "
          f"{len(began)} findings with a start time")

    docs = driver.js("""return Array.from(
      document.querySelectorAll('section.docs details[open]')).map(d => d.id);""")
    for kind in {f["kind"] for f in findings}:
        check(f"doc-{kind}" in docs,
              f"the explanation of {kind} is not embedded and open: {docs}")

    driver.js("window.scrollTo(0, 0);")
    driver.screenshot(opts.screenshot)
    log(f"screenshot: {opts.screenshot}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--closeaudit", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--dir", help="a run directory to check instead of a "
                    "fresh demo run")
    opts = ap.parse_args()
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            print(f"FAIL html_report: {tool} is missing (scripts/deps "
                  "installs chromium and chromium-driver)", flush=True)
            return 1
    tmp = tempfile.mkdtemp(prefix="closeaudit-browser-")
    port = free_port()
    drv = subprocess.Popen([CHROMEDRIVER, f"--port={port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = WebDriver(port)
    try:
        driver.wait_ready()
        driver.start()
        test(opts, tmp, driver)
    except (Failure, subprocess.TimeoutExpired) as e:
        print(f"FAIL html_report: {e}", flush=True)
        return 1
    finally:
        driver.quit()
        drv.kill()
        drv.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS html_report", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
