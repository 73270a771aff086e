"""Correct socketserver servers, threading and forking: every connection is
closed by the framework once its handler returns. No finding above info.

Usage: python3 socketserver_clean.py DONE_FILE threading|forking
"""
import socket
import socketserver
import sys
import threading


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


def main():
    done, mode = sys.argv[1], sys.argv[2]
    kind = {"threading": socketserver.ThreadingTCPServer,
            "forking": socketserver.ForkingTCPServer}[mode]
    with kind(("127.0.0.1", 0), Echo) as server:
        port = server.server_address[1]
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        for i in range(4):
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"line %d\n" % i)
                got = c.recv(100)
                assert got == b"line %d\n" % i, got
                c.shutdown(socket.SHUT_WR)
                while c.recv(100):
                    pass
        server.shutdown()
    with open(done, "w") as f:
        f.write("done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
