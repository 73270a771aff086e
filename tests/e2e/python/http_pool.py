"""An http.client connection kept after its response, while the server
closes idle connections: the client never reads again, so each socket sits
in CLOSE_WAIT. The finding names the line that made the request.

Usage: python3 http_pool.py DONE_FILE
"""
import http.client
import socket
import sys
import threading
import time

pool = []  # BUG (deliberate): kept, never closed


def idle_closing_server(listener, served):
    """HTTP/1.1 with keep-alive that closes a connection idle for 0.2 s."""
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                         b"Connection: keep-alive\r\n\r\nok")
            conn.settimeout(0.2)
            try:
                conn.recv(65536)
            except socket.timeout:
                pass
        served.release()


def fetch(port):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/")  # E2E:py_request
    body = conn.getresponse().read()
    pool.append(conn)
    return body


def main():
    done = sys.argv[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    served = threading.Semaphore(0)
    threading.Thread(target=idle_closing_server, args=(listener, served),
                     daemon=True).start()
    port = listener.getsockname()[1]
    for _ in range(2):
        assert fetch(port) == b"ok"
    for _ in range(2):
        served.acquire(timeout=10)
    time.sleep(2)
    with open(done, "w") as f:
        f.write("done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
