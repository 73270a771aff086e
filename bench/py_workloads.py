"""Python workloads for bench/run_bench.py (stdlib only).

  py_workloads.py lifecycle N DEPTH
      N rounds of socket() + close() made DEPTH Python frames deep; prints
      the nanoseconds per round (two lifecycle events, each with a stack).
  py_workloads.py echo-server PORT_FILE
      a threaded echo server (socketserver) on 127.0.0.1; writes its port.
  py_workloads.py echo-client PORT SECONDS CONNECTIONS [keep-alive]
      CONNECTIONS threads that each connect, send 16 bytes, read them back
      and close, for SECONDS; prints requests per second. With keep-alive,
      each thread keeps one connection and echoes over it.
  py_workloads.py hold SOCKETS
      SOCKETS / 2 loopback connections (both ends open); prints "ready"
      once they are all made, then holds them until SIGTERM (the
      collector's kernel sweeps over a large table). SOCKETS must fit in
      RLIMIT_NOFILE's hard limit.
"""
import os
import resource
import signal
import socket
import socketserver
import sys
import threading
import time


def lifecycle(n, depth):
    def nested(d):
        if d > 0:
            return nested(d - 1)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            s = socket.socket()
            s.close()
        return time.perf_counter_ns() - t0

    nested(depth)  # warm up: code objects copied, call sites known
    print(nested(depth) / n)


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def echo_server(port_file):
    with Server(("127.0.0.1", 0), Echo) as server:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(tmp, port_file)
        server.serve_forever()


def echo_client(port, seconds, connections, keep_alive):
    deadline = time.monotonic() + seconds
    counts = [0] * connections

    def echo(c, payload):
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = c.recv(64)
            if not data:
                break
            got += data

    def worker(i):
        payload = b"0123456789abcdef"
        if keep_alive:
            with socket.create_connection(("127.0.0.1", port)) as c:
                while time.monotonic() < deadline:
                    echo(c, payload)
                    counts[i] += 1
            return
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port)) as c:
                echo(c, payload)
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(counts) / seconds)


def hold(sockets):
    pairs = sockets // 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < sockets + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, sockets + 64), hard))
    # 20,000 connections a listener: well inside the ephemeral ports one
    # destination can take.
    listeners = []
    for _ in range((pairs + 19999) // 20000):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4096)
        listeners.append(srv)
    held = []
    for i in range(pairs):
        srv = listeners[i // 20000]
        c = socket.create_connection(srv.getsockname())
        a, _ = srv.accept()
        held += (c, a)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "lifecycle":
        lifecycle(int(sys.argv[2]), int(sys.argv[3]))
    elif what == "echo-server":
        echo_server(sys.argv[2])
    elif what == "hold":
        hold(int(sys.argv[2]))
    else:
        echo_client(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]),
                    len(sys.argv) > 5 and sys.argv[5] == "keep-alive")
