"""Run a peer program as a child process on 127.0.0.1 and stop it by PID.

``PeerProcess.start`` runs ``python -m <module> <args>`` with the tests folder on the
path, waits (up to a generous deadline) for its ``READY <port>`` line, and keeps its PID;
``stop`` sends SIGTERM, then SIGKILL, to that PID only. ``pause``/``resume`` (SIGSTOP,
SIGCONT) make a switch that stops answering mid-apply.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[2]


@dataclass
class PeerProcess:
    module: str
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[str] | None = None

    def start(self, deadline: float = 60.0) -> PeerProcess:
        env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            self.port = self._ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self, deadline: float) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if not selector.select(timeout=0.5):
                if self.proc.poll() is not None:
                    break
                continue
            line = self.proc.stdout.readline()
            if line.startswith("READY "):
                return int(line.split()[1])
            if not line and self.proc.poll() is not None:
                break
        err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
        raise RuntimeError(f"peer {self.module} did not start: {err.strip()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), SIGKILL after 10 s; by PID only."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def control(self, what: str, body: dict[str, Any] | None = None, scheme: str = "http") -> Any:
        """GET (no body) or POST a test control (``/peer/<what>``) of a peer that has them."""
        url = f"{scheme}://127.0.0.1:{self.port}/peer/{what}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")  # noqa: S310
        context = None
        if scheme == "https":
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:  # noqa: S310
            return json.loads(reply.read() or b"{}")
