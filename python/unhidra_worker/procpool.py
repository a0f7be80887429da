"""A small process pool whose calls can be cancelled.

concurrent.futures.ProcessPoolExecutor cannot stop a call once a process runs
it, so a cancelled request would keep a CPU busy until it finished. Here each
call borrows one child process (started with spawn) for its whole duration;
cancelling the call kills that child, which frees the slot at once. A new
child is started for the next call.
"""

import asyncio
import concurrent.futures.process
import multiprocessing


def _child_main(conn, initializer):
    if initializer is not None:
        initializer()
    while True:
        try:
            fn, arg = conn.recv()
        except (EOFError, OSError):
            return
        try:
            out = ("ok", fn(arg))
        except BaseException as e:  # sent back to the worker, which classifies it
            out = ("err", e)
        try:
            conn.send(out)
        except Exception as e:  # unpicklable result or exception
            conn.send(("err", TypeError(f"model result not transferable: {type(e).__name__}: {e}")))


class _Child:
    def __init__(self, ctx, initializer):
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(child_end, initializer), daemon=True)
        self.proc.start()
        child_end.close()

    def exchange(self, fn, arg):
        """Blocking: run fn(arg) in the child (called in a thread)."""
        self.conn.send((fn, arg))
        return self.conn.recv()

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class CancellablePool:
    """Runs at most `processes` calls at once, each in its own child."""

    def __init__(self, processes, initializer=None):
        self._ctx = multiprocessing.get_context("spawn")
        self._initializer = initializer
        self._slots = asyncio.Semaphore(max(1, processes))
        self._idle = []
        self._busy = set()
        self.killed = 0  # children killed because their call was cancelled

    async def run(self, fn, arg):
        """Return fn(arg); raise what it raised; BrokenProcessPool if the child died."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            child = self._idle.pop() if self._idle else _Child(self._ctx, self._initializer)
            self._busy.add(child)
            reusable = False
            try:
                kind, val = await loop.run_in_executor(None, child.exchange, fn, arg)
                reusable = True
            except asyncio.CancelledError:
                self.killed += 1
                raise
            except (EOFError, OSError) as e:
                raise concurrent.futures.process.BrokenProcessPool(f"model process died: {e!r}") from None
            finally:
                self._busy.discard(child)
                if reusable:
                    self._idle.append(child)
                else:
                    # Killing the child also ends the thread blocked in recv().
                    child.kill()
            if kind == "err":
                raise val
            return val

    def shutdown(self):
        for child in self._idle + list(self._busy):
            child.kill()
        self._idle.clear()
        self._busy.clear()
