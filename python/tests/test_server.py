import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import unittest

PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame(obj):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_reply(s):
    h = recv_exact(s, 4)
    if h is None:
        return None
    (n,) = struct.unpack(">I", h)
    return json.loads(recv_exact(s, n))


class WorkerProcessTest(unittest.TestCase):
    """Runs the worker as the supervisor does and speaks the protocol to it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="uw-")
        self.sock = os.path.join(self.dir, "w.sock")
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": PY_DIR, "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "unhidra_worker", "--watch-stdin", "--max-frame", "4096",
             "--processes", "1", *self.extra_args(), self.sock],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=self.dir)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.fail("worker did not start: " + self.proc.stderr.read().decode())
            time.sleep(0.01)

    def extra_args(self):
        return []

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stderr.close()
        for f in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, f))
        os.rmdir(self.dir)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(self.sock)
        self.addCleanup(s.close)
        return s

    def call(self, s, req):
        s.sendall(frame(req))
        return read_reply(s)

    def test_socket_is_private(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.sock).st_mode), 0o600)

    def test_health_list_and_model(self):
        s = self.connect()
        r = self.call(s, {"data": "health_check", "request_id": "h1"})
        self.assertEqual((r["request_id"], r["result"]), ("h1", "ok"))
        r = self.call(s, {"data": "list_models", "request_id": "l1"})
        names = [m["name"] for m in json.loads(r["result"])["models"]]
        self.assertEqual(names, ["heap-trend", "summarize", "telemetry-anomaly"])
        series = [[h * 3600, 1000 - 100 * h] for h in range(8)]
        r = self.call(s, {"data": json.dumps({"series": series, "min_points": 8}), "request_id": "m1", "model_id": "heap-trend"})
        self.assertNotIn("error", r)
        self.assertEqual(json.loads(r["result"])["slope_bytes_per_hour"], -100.0)
        self.assertIsInstance(r["processing_time_ms"], int)

    def test_errors_keep_the_connection(self):
        s = self.connect()
        r = self.call(s, {"data": "{}", "request_id": "a", "model_id": "nope"})
        self.assertIn("unknown model", r["error"])
        r = self.call(s, {"data": "not json", "request_id": "b", "model_id": "heap-trend"})
        self.assertIn("not valid JSON", r["error"])
        r = self.call(s, {"data": "{}", "request_id": "c", "model_id": "heap-trend"})
        self.assertIn("series", r["error"])
        r = self.call(s, {"data": 5, "request_id": "d"})
        self.assertEqual(r["request_id"], "d")
        self.assertIn("data", r["error"])
        self.assertEqual(self.call(s, {"data": "health_check", "request_id": "e"})["result"], "ok")

    def test_hostile_frames_close_only_that_connection(self):
        hostile = [
            struct.pack(">I", 0),                      # zero length
            struct.pack(">I", 4097) + b"x" * 10,       # over the limit
            struct.pack(">I", 0xFFFFFFFF),             # absurd length
            frame(b"\xff\xfe garbage"),                # not UTF-8 JSON
            frame(b"[1,2,3]"),                         # not an object
            frame({"data": "health_check"}),           # no request_id
            frame(b"[" * 3000 + b"]" * 3000),           # deep nesting
        ]
        for h in hostile:
            with self.subTest(frame=h[:16]):
                s = self.connect()
                s.sendall(h)
                self.assertIsNone(read_reply(s), "worker should close the connection")
        s = self.connect()
        self.assertEqual(self.call(s, {"data": "health_check", "request_id": "x"})["result"], "ok")

    def test_sigterm_removes_socket(self):
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=20), 0)
        self.assertFalse(os.path.exists(self.sock))

    def test_exits_when_stdin_closes(self):
        self.proc.stdin.close()
        self.assertEqual(self.proc.wait(timeout=20), 0)
        logs = self.proc.stderr.read().decode()
        self.assertIn("stdin closed", logs)
        for line in logs.splitlines():
            json.loads(line)  # every log line is JSON


SPIN_MODULE = '''
import os, time
from unhidra_worker import model

def spin(inp):
    with open(inp["pidfile"], "w") as f:
        f.write(str(os.getpid()))
    end = time.monotonic() + 60
    while time.monotonic() < end:
        pass
    return {"done": True}

model("spin", executor="process")(spin)
'''


class CancelFrameTest(unittest.TestCase):
    """A cancel frame stops a process-pool call: its child dies, the slot frees."""

    setUp = WorkerProcessTest.setUp
    connect = WorkerProcessTest.connect
    call = WorkerProcessTest.call

    def extra_args(self):
        path = os.path.join(self.dir, "spinmodel.py")
        with open(path, "w") as f:
            f.write(SPIN_MODULE)
        return ["--module", path]

    def tearDown(self):
        p = os.path.join(self.dir, "__pycache__")
        if os.path.isdir(p):
            for g in os.listdir(p):
                os.unlink(os.path.join(p, g))
            os.rmdir(p)
        WorkerProcessTest.tearDown(self)

    def test_cancel_frame_stops_the_call(self):
        pidfile = os.path.join(self.dir, "pid")
        s = self.connect()
        s.sendall(frame({"request_id": "long", "model_id": "spin", "data": json.dumps({"pidfile": pidfile})}))
        deadline = time.monotonic() + 20
        while not (os.path.exists(pidfile) and open(pidfile).read()):
            self.assertLess(time.monotonic(), deadline, "the call never started")
            time.sleep(0.01)
        pid = int(open(pidfile).read())
        s.sendall(frame({"request_id": "long", "cancel": True}))
        self.assertIsNone(read_reply(s), "a cancelled call must get no reply, and the connection closes")
        while os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split(")")[-1][:3]:
            self.assertLess(time.monotonic(), deadline, "the computing child was not stopped")
            time.sleep(0.01)
        # The only pool slot is free: another call runs (and would spin again).
        s2 = self.connect()
        self.assertEqual(self.call(s2, {"request_id": "h", "data": "health_check"})["result"], "ok")
        s2.sendall(frame({"request_id": "again", "model_id": "spin", "data": json.dumps({"pidfile": pidfile + "2"})}))
        while not os.path.exists(pidfile + "2"):
            self.assertLess(time.monotonic(), deadline + 20, "the pool slot was not freed")
            time.sleep(0.01)
        os.unlink(pidfile + "2")


if __name__ == "__main__":
    unittest.main()
