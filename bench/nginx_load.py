"""nginx (one worker) and wrk, as the benchmarks and the soak drive them.

The worker runs on the second core and wrk on the first, when there are two,
so that the two never take turns on one core.
"""
import ctypes
import fcntl
import os
import re
import socket
import struct
import subprocess
import time

CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "hello\\n"; }}
    location = /status {{ stub_status; }}
  }}
}}
"""


def pin(core):
    """A prefix that runs a command on one core, when there are two."""
    return ["taskset", "-c", str(core)] if (os.cpu_count() or 1) >= 2 else []


_CLONE_NEWNET = 0x40000000
_SIOCSIFFLAGS = 0x8914
_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40


def fresh_netns():
    """Moves this process, and what it starts from now on, into a network
    namespace of its own with only loopback, up. Connection: close runs leave
    tens of thousands of TIME_WAIT sockets for a minute, which slow the next
    run's connects and the collector's walks of the socket table: in a new
    namespace each run starts from none, bare and audited alike. Returns
    False, and changes nothing, where namespaces cannot be made (no root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", b"lo", _IFF_UP | _IFF_LOOPBACK | _IFF_RUNNING)
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, ifr)
    return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(directory, port):
    """nginx.conf in `directory`, nginx's prefix; returns its path."""
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(CONF.format(tmp=directory, port=port))
    return conf


def nginx_argv(directory, port):
    """The command that runs nginx on its core, from write_conf's file."""
    return pin(1) + ["nginx", "-c", write_conf(directory, port),
                     "-p", directory]


def wait_listening(port, proc, seconds=10):
    """Until nginx takes connections; raises if it exits or takes too long.
    Each try is one connection, closed without a request."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)


def stop_nginx(directory, proc, timeout=60):
    """A graceful stop (SIGQUIT to the master, from its pid file); the
    master's exit status."""
    with open(os.path.join(directory, "nginx.pid")) as f:
        os.kill(int(f.read()), 3)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError("nginx did not stop on SIGQUIT")


def _micros(value):
    unit = re.match(r"[0-9.]+(\D*)$", value).group(1)
    scale = {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[unit]
    return float(value[: len(value) - len(unit)]) * scale


def wrk(port, seconds, close, connections=32):
    """wrk for `seconds` on the first core: {"rps", "p99_us", "requests",
    "errors" (socket errors of every kind and non-2xx/3xx answers)}."""
    cmd = pin(0) + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                    "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": None, "p99_us": None, "requests": None, "errors": 0}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif parts and parts[0] == "99%":
            result["p99_us"] = _micros(parts[1])
        elif "requests in" in line:
            result["requests"] = int(parts[0])
        elif line.strip().startswith("Socket errors:"):
            result["errors"] += sum(int(n) for n in re.findall(r"\d+", line))
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result["errors"] += int(parts[-1])
    if result["rps"] is None or result["requests"] is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    return result


def stub_status(port):
    """nginx's own counts: {"accepts", "handled", "requests"}, this
    request's connection and request included."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    m = re.search(rb"\n\s*(\d+) (\d+) (\d+)\s*\n", data)
    if not m:
        raise RuntimeError(f"no counts in nginx's stub_status: {data!r}")
    return dict(zip(("accepts", "handled", "requests"), map(int, m.groups())))
