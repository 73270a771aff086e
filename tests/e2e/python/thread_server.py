"""A thread-per-connection server whose handler returns when recv() gives
b'' without closing the socket, which it keeps in a dict: each connection
its clients close stays in CLOSE_WAIT.

Usage: python3 thread_server.py DONE_FILE [DEPTH [HOLD]]

Its own client: connects three times, sends a line, reads the echo and
closes; waits until the server saw the three EOFs, holds the sockets HOLD
seconds more (2 by default: past the audit's grace), writes DONE_FILE and
exits 0. With DEPTH, the handler's recv() is made DEPTH frames deeper
(nested calls).
"""
import socket
import sys
import threading
import time

connections = {}  # BUG (deliberate): kept, and never closed
eofs = threading.Semaphore(0)


def read_line(conn, depth):
    if depth > 0:
        return read_line(conn, depth - 1)
    return conn.recv(4096)  # E2E:py_recv


def handle(conn, addr, depth):
    connections[addr] = conn
    while True:
        data = read_line(conn, depth)  # E2E:py_handle
        if not data:
            eofs.release()
            return  # the peer closed: but conn is never closed
        conn.sendall(data)


def serve(listener, depth):
    while True:
        conn, addr = listener.accept()  # E2E:py_accept
        threading.Thread(target=handle, args=(conn, addr, depth),
                         daemon=True).start()


def main():
    done = sys.argv[1]
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    hold = float(sys.argv[3]) if len(sys.argv) > 3 else 2
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    threading.Thread(target=serve, args=(listener, depth), daemon=True).start()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"hello\n")
            c.recv(100)
    for _ in range(3):
        if not eofs.acquire(timeout=10):
            print("the server did not see three EOFs", file=sys.stderr)
            return 1
    time.sleep(hold)
    with open(done, "w") as f:
        f.write("done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
