"""Bare baseline for the IPC benchmark and for `scripts/bench.sh ab`: a
length-prefixed echo over a Unix socket with asyncio, no JSON (the IPC the ML
worker speaks, without the worker). Usage: echo_server.py SOCKET_PATH."""

import asyncio
import struct
import sys


async def handle(reader, writer):
    try:
        while True:
            header = await reader.readexactly(4)
            (n,) = struct.unpack(">I", header)
            if n > 1 << 20:
                break
            body = await reader.readexactly(n)
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def main(path):
    server = await asyncio.start_unix_server(handle, path=path)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main(sys.argv[-1]))
