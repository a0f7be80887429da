"""A worker that passes health checks, then misbehaves on real requests.

Usage: hostile_worker.py MODE SOCKET_PATH. Modes:
  garbage    reply with a frame of random non-JSON bytes
  oversize   announce a 2 GiB frame and send nothing more
  bigframe   send a real frame one byte over the 1 KiB limit the tests set
  zero       reply with a zero-length frame
  mismatch   reply with another request_id
  partial    announce 100 bytes, send 10, then stall
  notobject  reply with a JSON array
  noresult   reply with a request_id but neither result nor error
  exit       exit abruptly mid-request
  silent     never answer a real request
  nothealthy answer health checks with "busy" (never becomes ready)
  nobind     never create the socket
  crashstart exit with status 3 at once
"""

import asyncio
import json
import os
import struct
import sys

MODE, PATH = sys.argv[-2], sys.argv[-1]


def frame(obj):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


async def handle(reader, writer):
    try:
        while True:
            (n,) = struct.unpack(">I", await reader.readexactly(4))
            req = json.loads(await reader.readexactly(n))
            rid = req["request_id"]
            if req.get("data") == "health_check":
                writer.write(frame({"result": "busy" if MODE == "nothealthy" else "ok", "request_id": rid}))
                await writer.drain()
                continue
            if req.get("data") == "list_models":  # like a foreign worker without the extension
                writer.write(frame({"result": "", "request_id": rid, "error": "unsupported"}))
                await writer.drain()
                continue
            if MODE == "garbage":
                writer.write(frame(os.urandom(64).replace(b"{", b"x")))
            elif MODE == "oversize":
                writer.write(struct.pack(">I", 0x7FFFFFFF))
            elif MODE == "bigframe":
                writer.write(frame(b"x" * 1025))
            elif MODE == "zero":
                writer.write(struct.pack(">I", 0))
            elif MODE == "mismatch":
                writer.write(frame({"result": "{}", "request_id": rid + "-other"}))
            elif MODE == "partial":
                writer.write(struct.pack(">I", 100) + b"x" * 10)
            elif MODE == "notobject":
                writer.write(frame(b"[1,2,3]"))
            elif MODE == "noresult":
                writer.write(frame({"request_id": rid}))
            elif MODE == "exit":
                os._exit(1)
            elif MODE == "silent":
                pass
            else:
                writer.write(frame({"result": "{}", "request_id": rid}))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, KeyError):
        pass
    await asyncio.sleep(3600)  # keep the connection open: the Go side must not wait for it


async def main():
    if MODE == "crashstart":
        print("crashing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    if MODE == "nobind":
        await asyncio.sleep(3600)
    os.umask(0o177)
    server = await asyncio.start_unix_server(handle, path=PATH)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
