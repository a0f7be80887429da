"""Stand-in for the seed's scripts/inference_worker.py: a protocol-only worker.

An asyncio Unix-socket server taking the socket path as its LAST argument.
It knows nothing of Unhidra's SDK: it answers health checks with "ok" and
"runs inference" on anything else by waiting 500 ms and echoing the data.
It exists to prove that such a worker works with the supervisor unmodified.
"""

import asyncio
import json
import os
import signal
import struct
import sys

MAX_FRAME = 10 * 1024 * 1024


async def handle(reader, writer):
    try:
        while True:
            header = await reader.readexactly(4)
            (n,) = struct.unpack(">I", header)
            if n == 0 or n > MAX_FRAME:
                break
            req = json.loads(await reader.readexactly(n))
            if req.get("data") == "health_check":
                resp = {"result": "ok", "request_id": req["request_id"]}
            else:
                await asyncio.sleep(0.5)  # simulated inference
                resp = {"result": "processed: " + req.get("data", ""), "request_id": req["request_id"],
                        "processing_time_ms": 500}
            body = json.dumps(resp).encode()
            writer.write(struct.pack(">I", len(body)) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(path):
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, path=path)
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"mock inference worker listening on {path}", flush=True)
    await stop.wait()
    server.close()
    os.unlink(path)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[-1]))
