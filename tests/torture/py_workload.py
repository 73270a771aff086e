"""Python workloads for the torture matrix (tests/torture/py_torture.py).

Usage: python3 py_workload.py MODE TRANSCRIPT

Writes to TRANSCRIPT only what does not depend on timing, so that a plain
run and an audited run must write the same bytes, and exits with a status
of its own (also compared). Modes:

  threads       16 threads, 40 connect/send/recv/close rounds each, against
                an echo server of 4 threads in the same process
  fork          os.fork() children that use sockets the parent made and
                their own; a multiprocessing pool (fork); a subprocess child
  signals       a recv() that SIGALRM interrupts every millisecond while a
                thread sends slowly (PEP 475 retries it), a Python handler
                that makes and closes sockets, and a signal that arrives
                while another thread is in accept()
  exit_in_recv  8 daemon threads inside recv() while the main thread exits
                with status 3, data arriving for them as it does
  subinterp     sockets made, used and closed in a subinterpreter (where
                the version has them) while the main interpreter's threads
                do the same
"""
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def echo_server(n_threads):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        break
                    conn.sendall(data)

    for _ in range(n_threads):
        threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def exchange(port, payload):
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            data = c.recv(4096)
            if not data:
                return got
            got += data


def mode_threads(out):
    _, port = echo_server(4)
    totals = [0] * 16

    def worker(i):
        for r in range(40):
            payload = b"%d-%d;" % (i, r)
            if exchange(port, payload) == payload:
                totals[i] += len(payload)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.write(f"threads: {sum(totals)} bytes echoed by 16 threads\n")
    return 0


def pool_task(i):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x" * i)
        return len(b.recv(100))


def mode_fork(out):
    _, port = echo_server(4)
    shared = socket.socket()
    children = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:
            ok = exchange(port, b"child %d" % i) == b"child %d" % i
            shared.close()
            os._exit(10 + i if ok else 1)
        children.append(pid)
    shared.close()
    codes = sorted(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1])
                   if hasattr(os, "waitstatus_to_exitcode")
                   else os.waitpid(p, 0)[1] >> 8 for p in children)
    out.write(f"fork: children exited {codes}\n")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        out.write(f"pool: {pool.map(pool_task, range(1, 9))}\n")
    code = ("import socket\n"
            "s = socket.create_connection(('127.0.0.1', %d))\n"
            "s.sendall(b'sub'); s.shutdown(socket.SHUT_WR)\n"
            "print(s.recv(10).decode()); s.close()\n" % port)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=60)
    out.write(f"subprocess: {r.returncode} {r.stdout.strip()}\n")
    return 0


def mode_signals(out):
    made = []

    def on_alarm(signum, frame):
        s = socket.socket()
        made.append(s.fileno() >= 0)
        s.close()

    signal.signal(signal.SIGALRM, on_alarm)
    a, b = socket.socketpair()

    def slow_sender():
        for i in range(50):
            b.sendall(b"%02d" % i)
            time.sleep(0.004)
        b.close()

    t = threading.Thread(target=slow_sender)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    t.start()
    got = b""
    while True:
        data = a.recv(7)
        if not data:
            break
        got += data
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    t.join()
    a.close()
    out.write(f"signals: received {len(got)} bytes, in order: "
              f"{got == b''.join(b'%02d' % i for i in range(50))}, "
              f"handler sockets all valid: {all(made)}\n")
    # A signal for the main thread while another thread is inside accept().
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    th = threading.Thread(target=lambda: accepted.append(listener.accept()))
    th.start()
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    time.sleep(0.05)
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    c = socket.create_connection(listener.getsockname())
    th.join()
    accepted[0][0].close()
    c.close()
    listener.close()
    out.write(f"accept under signals: {len(accepted)} connection\n")
    return 0


def mode_exit_in_recv(out):
    pairs = [socket.socketpair() for _ in range(8)]
    inside = threading.Barrier(9)

    def reader(sock):
        inside.wait()
        while sock.recv(10):
            pass

    for a, _ in pairs:
        threading.Thread(target=reader, args=(a,), daemon=True).start()
    inside.wait()
    time.sleep(0.05)

    def feeder():
        while True:
            for _, b in pairs:
                try:
                    b.send(b"z")
                except OSError:
                    return

    threading.Thread(target=feeder, daemon=True).start()
    out.write("exit_in_recv: exiting with 8 threads in recv\n")
    out.flush()
    return 3


SUBINTERP_CODE = """
import socket
a, b = socket.socketpair()
a.sendall(b"from the subinterpreter")
assert b.recv(100) == b"from the subinterpreter"
a.close()
b.close()
"""


def mode_subinterp(out):
    try:
        import _interpreters as interpreters  # 3.13
    except ImportError:
        try:
            import _xxsubinterpreters as interpreters  # 3.8 - 3.12
        except ImportError:
            interpreters = None
    _, port = echo_server(2)
    if interpreters is None:
        out.write("subinterp: no subinterpreters in this build\n")
        return 0
    stop = threading.Event()
    done = [0]

    def main_side():
        while not stop.is_set():
            if exchange(port, b"main") == b"main":
                done[0] += 1

    t = threading.Thread(target=main_side)
    t.start()
    ok = 0
    for _ in range(5):
        interp = interpreters.create()
        try:
            interpreters.run_string(interp, SUBINTERP_CODE)
            ok += 1
        finally:
            interpreters.destroy(interp)
    stop.set()
    t.join()
    out.write(f"subinterp: {ok} subinterpreters ran their sockets, "
              f"main side exchanged: {done[0] > 0}\n")
    return 0


def main():
    mode, transcript = sys.argv[1], sys.argv[2]
    with open(transcript, "w") as out:
        code = globals()["mode_" + mode](out)
    return code


if __name__ == "__main__":
    sys.exit(main())
