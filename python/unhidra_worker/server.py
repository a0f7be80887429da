"""The asyncio Unix-socket server that answers the supervisor."""

import asyncio
import concurrent.futures.process
import json
import os
import signal
import stat
import time
import traceback

from . import log, procpool, protocol, registry

# Linux prctl option: signal to deliver when the parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Process-pool initializer: die when the worker dies, even by SIGKILL.

    SIGTERM is ignored so a group-wide SIGTERM lets the worker drain its
    in-flight calls; the pool is shut down by the worker itself.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the worker's shutdown still stops the pool
    if os.getppid() == 1:
        os._exit(0)  # the worker died before prctl took effect


class Worker:
    """Serves registered models on a Unix socket until stopped."""

    def __init__(self, socket_path, *, max_frame=protocol.DEFAULT_MAX_FRAME,
                 processes=1, watch_stdin=False, grace=5.0):
        self.socket_path = socket_path
        self.max_frame = max_frame
        self.processes = max(1, processes)
        self.watch_stdin = watch_stdin
        self.grace = grace
        self._pool = None
        self._writers = set()
        self._busy = 0
        self.cancelled = 0  # calls stopped because the supervisor gave up on them
        self._idle = None
        self._stop = None
        self._ppid = os.getppid()

    # Lifecycle ------------------------------------------------------------

    def stop(self, reason="stop requested"):
        if self._stop is not None and not self._stop.is_set():
            log.info("worker stopping", reason=reason)
            self._stop.set()

    async def run(self):
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, self.stop, name)
        self._remove_stale_socket()
        # The socket is created by bind() with mode 0666 & ~umask: 0o177 makes
        # it 0600 from its first instant, with no chmod race. The supervisor's
        # private 0700 directory already keeps others out; this is the second
        # wall for operators running the worker by hand.
        os.umask(0o177)
        server = await asyncio.start_unix_server(self._serve_conn, path=self.socket_path)
        watchers = [asyncio.ensure_future(self._watch_parent())]
        if self.watch_stdin:
            self._watch_stdin(loop)
        log.info("worker listening", socket=self.socket_path, pid=os.getpid(),
                 models=[m.name for m in registry.models()])
        try:
            await self._stop.wait()
        finally:
            server.close()
            for w in watchers:
                w.cancel()
            if self.watch_stdin:
                try:
                    loop.remove_reader(0)
                except (ValueError, OSError):
                    pass
            try:
                await asyncio.wait_for(self._idle.wait(), self.grace)
            except asyncio.TimeoutError:
                log.warn("in-flight requests abandoned at shutdown", busy=self._busy)
            for w in list(self._writers):
                w.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            if self._pool is not None:
                self._pool.shutdown()
            log.info("worker stopped")

    def _remove_stale_socket(self):
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.socket_path} exists and is not a socket")
        os.unlink(self.socket_path)

    async def _watch_parent(self):
        # Belt and braces next to the supervisor's Pdeathsig: a reparented
        # worker notices within a second that its parent is gone.
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != self._ppid:
                self.stop("parent process changed")
                return

    def _watch_stdin(self, loop):
        # The supervisor holds the write end of our stdin and never writes:
        # end of file means it exited, however it died.
        def readable():
            try:
                chunk = os.read(0, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(0)
                self.stop("stdin closed: parent gone")

        os.set_blocking(0, False)
        loop.add_reader(0, readable)

    # Connections ----------------------------------------------------------

    async def _serve_conn(self, reader, writer):
        self._writers.add(writer)
        _small_reads(writer)
        nxt = None  # a task reading the frame after the one being handled
        try:
            while not self._stop.is_set():
                try:
                    body = await (nxt if nxt is not None else protocol.read_frame(reader, self.max_frame))
                except protocol.FrameError as e:
                    log.warn("closing connection: bad frame", error=str(e))
                    return
                finally:
                    nxt = None
                if body is None:
                    return
                cur = {}
                reply, job = self._answer_now(body, cur)
                if job is not None:
                    # The model waits (thread, process pool, coroutine): run
                    # it as a task and read on, so that a cancel frame or the
                    # peer closing the connection can stop it.
                    self._begin()
                    try:
                        call = asyncio.ensure_future(self._run(*job))
                        nxt = asyncio.ensure_future(protocol.read_frame(reader, self.max_frame))
                        if await self._cancelled_by_peer(call, nxt, cur):
                            return
                        reply = call.result()
                    finally:
                        self._end()
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the supervisor dropped the connection (e.g. a timeout)
        finally:
            if nxt is not None:
                nxt.cancel()
            self._writers.discard(writer)
            writer.close()

    async def _cancelled_by_peer(self, call, nxt, cur):
        """Wait for call; cancel it if the peer gives up on it first.

        The supervisor gives up on a request (its caller left or timed out) by
        sending a cancel frame {"request_id": id, "cancel": true} or by closing
        the connection. Either stops the computation: an async model is
        cancelled, a process-pool model's child is killed. Returns True when
        the call was cancelled and the connection must be closed.
        """
        while True:
            done, _ = await asyncio.wait({call, nxt}, return_when=asyncio.FIRST_COMPLETED)
            if call in done:
                return False
            try:
                body = nxt.result()
            except protocol.FrameError:
                body = None
            if body is not None and not protocol.is_cancel(body, cur.get("rid")):
                # A pipelined request: keep it for later, wait for this call.
                await asyncio.wait({call})
                return False
            call.cancel()
            try:
                await call
            except asyncio.CancelledError:
                pass
            except Exception:
                pass  # it finished with an error as it was cancelled: nobody listens
            self.cancelled += 1
            log.info("call cancelled by the supervisor", request_id=cur.get("rid", ""),
                     model=cur.get("model", ""), cancelled_total=self.cancelled)
            return True

    def _begin(self):
        self._busy += 1
        self._idle.clear()

    def _end(self):
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    def _answer_now(self, body, cur):
        """Answer a request that needs no waiting, on the event loop.

        Returns (reply, None), with reply None to close the connection, or
        (None, job) for a model that must run as a task: await
        self._run(*job). Control requests, unknown models and inline models
        are answered here without any task or extra turn of the event loop:
        a trivial call then costs one wake-up of this process, like a bare
        echo. cur receives the request id and model name once they are known.
        """
        start = time.perf_counter()
        try:
            rid, data, model_id = protocol.parse_request(body)
            cur["rid"], cur["model"] = rid, model_id
        except protocol.FrameError as e:
            log.warn("closing connection: bad request", error=str(e))
            return None, None
        except ValueError as e:
            return self._reply(e.args[1], "", str(e.args[0]), start), None
        if data == protocol.HEALTH_CHECK:
            return self._reply(rid, "ok", None, start), None
        if not model_id and data == protocol.LIST_MODELS:
            listing = {"models": [m.info() for m in registry.models()]}
            return self._reply(rid, json.dumps(listing), None, start), None
        m = registry.get(model_id)
        if m is None:
            return self._reply(rid, "", f"unknown model {model_id!r}" if model_id
                               else "model_id is required", start), None
        if m.executor != "inline":
            return None, (m, data, rid, start)
        try:
            result = self._output(m, m.fn(self._input(m, data)))
        except Exception as e:
            return self._failed(m, rid, e, start), None
        return self._reply(rid, result, None, start), None

    async def _run(self, m, data, rid, start):
        """Run a model that waits and return the encoded reply."""
        try:
            arg = self._input(m, data)
            if m.executor == "async":
                out = await m.fn(arg)
            elif m.executor == "thread":
                out = await asyncio.get_running_loop().run_in_executor(None, m.fn, arg)
            else:
                out = await self._process_pool().run(m.fn, arg)
            result = self._output(m, out)
        except Exception as e:
            return self._failed(m, rid, e, start)
        return self._reply(rid, result, None, start)

    def _failed(self, m, rid, e, start):
        """The reply to a model call that raised e."""
        if isinstance(e, (registry.ModelError, ValueError, TypeError)):
            return self._reply(rid, "", str(e) or type(e).__name__, start)
        if isinstance(e, concurrent.futures.process.BrokenProcessPool):
            log.error("model process died; a new one starts for the next call", model=m.name)
            return self._reply(rid, "", "model process crashed", start)
        # A bug in the model: log it, tell the caller little.
        log.error("model failed", model=m.name, error=repr(e),
                  trace="".join(traceback.format_exception(e)))
        return self._reply(rid, "", f"internal error in model {m.name}: {type(e).__name__}", start)

    @staticmethod
    def _input(m, data):
        if m.raw:
            return data
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise registry.ModelError("data is not valid JSON") from None

    @staticmethod
    def _output(m, out):
        if m.raw:
            if not isinstance(out, str):
                raise TypeError(f"raw model {m.name} returned {type(out).__name__}, not str")
            return out
        try:
            return json.dumps(out, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise registry.ModelError(f"model output is not JSON-serialisable: {e}") from None

    def _process_pool(self):
        if self._pool is None:
            # spawn, not fork: a forked child would inherit the listening
            # socket and every client connection, keeping them open after a
            # crash of this process.
            self._pool = procpool.CancellablePool(self.processes, initializer=_die_with_parent)
        return self._pool

    def _reply(self, rid, result, err, start):
        msg = {"result": result, "request_id": rid,
               "processing_time_ms": int((time.perf_counter() - start) * 1000)}
        if err is not None:
            msg["error"] = err
        try:
            return protocol.encode_frame(msg, self.max_frame)
        except (protocol.FrameError, UnicodeEncodeError) as e:
            msg = {"result": "", "request_id": rid, "error": f"result not sendable: {e}"[:500]}
            return protocol.encode_frame(msg, self.max_frame)


# Bytes asked of the kernel per read of a connection. asyncio's default
# (256 KiB) makes every read allocate, and the C library map and unmap, a
# 256 KiB buffer: three system calls per request for a small frame. Below
# the allocator's mmap threshold (128 KiB) the buffer comes from the heap.
_READ_SIZE = 64 * 1024


def _small_reads(writer):
    transport = writer.transport
    if isinstance(getattr(transport, "max_size", None), int):  # selector transports (Unix)
        transport.max_size = _READ_SIZE


def serve(socket_path, **kwargs):
    """Run a Worker on socket_path until SIGTERM, SIGINT or parent exit."""
    asyncio.run(Worker(socket_path, **kwargs).run())
