"""A forking server whose child handles the connection, returns from its
handler on b'' without closing, and lives on: each connection stays in
CLOSE_WAIT, held by the child (the parent closed its copy at once, as it
should). The finding must name the child's Python line.

Usage: python3 fork_server.py DONE_FILE
"""
import os
import socket
import sys
import time


def handle(conn):
    while True:
        data = conn.recv(4096)  # E2E:py_fork_recv
        if not data:
            return  # BUG (deliberate): conn is not closed
        conn.sendall(data)


def main():
    done = sys.argv[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    clients = []
    children = []
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        pid = os.fork()
        if pid == 0:
            listener.close()
            for other in clients:
                other.close()
            c.close()
            handle(conn)
            time.sleep(3)  # past the grace, the socket still held
            os._exit(0)
        conn.close()
        children.append(pid)
        c.sendall(b"hi")
        c.recv(10)
        c.close()
    for pid in children:
        os.waitpid(pid, 0)
    with open(done, "w") as f:
        f.write("done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
