"""An asyncio server whose handler returns without writer.close() when the
peer closes: each connection stays in CLOSE_WAIT. And a Protocol-based
server on a second port that does the same (eof_received returns True and
nothing closes the transport).

Usage: python3 asyncio_server.py DONE_FILE [good]

Its own client. With `good`, both close properly: no finding above info.
"""
import asyncio
import sys

GOOD = len(sys.argv) > 2 and sys.argv[2] == "good"
eofs = 0


async def handle(reader, writer):  # E2E:py_handler
    global eofs
    while True:
        line = await reader.readline()
        if not line:
            eofs += 1
            if GOOD:
                writer.close()
                await writer.wait_closed()
            return
        writer.write(line)
        await writer.drain()


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):  # E2E:py_protocol
        global eofs
        eofs += 1
        if GOOD:
            self.transport.close()
        return True


async def client(port, n):
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping %d\n" % i)
        await writer.drain()
        await reader.readline()
        writer.close()
        await writer.wait_closed()


async def main():
    streams = await asyncio.start_server(handle, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    protocol = await loop.create_server(Echo, "127.0.0.1", 0)
    await client(streams.sockets[0].getsockname()[1], 3)
    await client(protocol.sockets[0].getsockname()[1], 2)
    for _ in range(200):
        if eofs == 5:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)
    with open(sys.argv[1], "w") as f:
        f.write("done\n")


if __name__ == "__main__":
    asyncio.run(main())
