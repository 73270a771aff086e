#!/usr/bin/env python3
"""E2E test server that never reads (seed 003): the kernel-confirmed variant
of close_wait_leak.

Usage: never_read_server.py PORT_FILE N

Listens on 127.0.0.1:<ephemeral> and publishes the port like common.h does
(PORT_FILE.sock with $CLOSEAUDIT_SOCKET if set, then PORT_FILE, each written
atomically). Accepts N connections, keeping every accepted socket referenced
so that none is closed, and never reads from any of them: when a client
closes, its FIN arrives but the EOF is never read, so the socket sits in
CLOSE_WAIT. After each accept it rewrites PORT_FILE.accepted with the number
accepted so far. Then sleeps until killed (SIGTERM, default action).
"""
import os
import socket
import sys
import time


def write_atomic(path, content):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(content)
    os.rename(tmp, path)


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        print(f"usage: {sys.argv[0]} PORT_FILE N", file=sys.stderr)
        return 2
    port_file, n = sys.argv[1], int(sys.argv[2])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    port = lsock.getsockname()[1]
    sock = os.environ.get("CLOSEAUDIT_SOCKET")
    if sock is not None:
        write_atomic(port_file + ".sock", sock)
    write_atomic(port_file, f"{port}\n")

    kept = []  # BUG (deliberate): held forever, never read, never closed
    while len(kept) < n:
        conn, _ = lsock.accept()  # E2E:accept
        kept.append(conn)
        write_atomic(port_file + ".accepted", f"{len(kept)}\n")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
