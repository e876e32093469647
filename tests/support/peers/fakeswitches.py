"""fake-switches (PyPI, Internap) as a subprocess peer: Junos over NETCONF, Cisco IOS over SSH.

fake-switches keeps real VLAN and trunk state behind real protocols (Twisted SSH, NETCONF
framing, a Cisco-like shell). This module runs one switch per process on 127.0.0.1 (port 0:
the kernel picks a free one, the child prints it) and is stopped by PID. The child is
``support.peers.fakeswitches_server``; ``FakeSwitchesPeer`` starts and stops it.

Where fake-switches lacks what a real device does, it is extended here by subclassing, and
each extension says so (``EXTENDED:``):

- Junos (``juniper_qfx_copper_generic``, the ELS syntax, and ``juniper_generic``, non-ELS):
  VLAN ``members`` may be VLAN names, ranges (``100-110``) or ``all`` as on a real switch
  (fake-switches only takes numbers and crashes on a deleted range); adding a present member
  is a no-op; ``apply-macro`` under an interface is kept (fake-switches ignores it); a
  session that ends or unlocks without committing discards the candidate and drops its lock,
  as Junos documents for ``<lock>`` (fake-switches keeps both forever); a committed
  configuration can be kept in a state file and loaded on start, so that a peer killed
  mid-apply can be restarted and inspected.
- Both: ``--stall-on RPC_OR_COMMAND`` makes the peer stop answering when it receives that
  RPC (``commit``) or CLI command (a prefix), after touching ``STATE.stalled``: a test then
  kills it mid-apply or watches a driver's timeout; ``--refuse-vlan N`` makes a commit (Junos)
  or a ``switchport trunk allowed vlan add`` (Cisco) naming VLAN N fail with the device's
  own kind of error: an injected refusal, named as such in the tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# ---- the test side -----------------------------------------------------------------------


@dataclass
class FakeSwitchesPeer:
    """One fake-switches process. ``start()`` waits for it to listen; ``stop()`` kills it by
    PID (also when it stalled). The password goes through the environment, never argv."""

    model: str
    workdir: Path
    password: str = "vmf-peer-pw"
    username: str = "admin"
    ports: int = 6
    refuse_vlans: tuple[int, ...] = ()
    stall_on: str = ""
    port: int = 0
    process: subprocess.Popen[str] | None = None
    log: IO[str] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.workdir / f"{self.model}-state.xml"

    @property
    def stalled_marker(self) -> Path:
        return self.state.with_name(self.state.name + ".stalled")

    def start(self, timeout: float = 60.0) -> FakeSwitchesPeer:
        argv = [sys.executable, "-m", "support.peers.fakeswitches_server", self.model,
                "--username", self.username, "--ports", str(self.ports),
                "--state", str(self.state)]  # fmt: skip
        argv += [a for v in self.refuse_vlans for a in ("--refuse-vlan", str(v))]
        argv += ["--stall-on", self.stall_on] if self.stall_on else []
        self.stalled_marker.unlink(missing_ok=True)
        env = {**os.environ, "PEER_PASSWORD": self.password}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])
        self.log = open(self.workdir / f"{self.model}.log", "a", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv + self.extra, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        self.port = _read_ready(self.process, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def _control(self, suffix: str) -> Path:
        return self.state.with_name(self.state.name + suffix)

    def refuse(self, *vlans: int) -> None:
        """From now on, refuse changes naming these VLANs (none: refuse nothing)."""
        self._control(".refuse").write_text("\n".join(map(str, vlans)), encoding="utf-8")

    def stall_at(self, operation: str) -> None:
        """From now on, stop answering at this RPC or command prefix ("": never)."""
        self.stalled_marker.unlink(missing_ok=True)
        self._control(".stall").write_text(operation, encoding="utf-8")

    def writes(self) -> int:
        """Configuration requests received (Junos edit-config, IOS configure terminal)."""
        path = self._control(".writes")
        return int(path.read_text(encoding="utf-8")) if path.exists() else 0

    def logins(self) -> int:
        """Shell sessions opened (IOS)."""
        path = self._control(".logins")
        return int(path.read_text(encoding="utf-8")) if path.exists() else 0

    def wait_stalled(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.stalled_marker.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"peer {self.model} did not reach {self.stall_on!r}")
            time.sleep(0.02)


def _read_ready(process: subprocess.Popen[str], timeout: float) -> int:
    """The port from the child's ``READY <port>`` line (it prints nothing else)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(process.stdout.fileno(), False)
    buffer = ""
    while time.monotonic() < deadline:
        chunk = process.stdout.readline()
        buffer += chunk or ""
        match = re.search(r"READY (\d+)", buffer)
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"fake-switches peer exited with {process.returncode}")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    raise RuntimeError(f"fake-switches peer not ready in {timeout}s")


@contextlib.contextmanager
def running(peer: FakeSwitchesPeer) -> Iterator[FakeSwitchesPeer]:
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


def host_key_line(host: str, port: int) -> str:
    """A known_hosts line for fake-switches' fixed host key at ``host:port``."""
    from fake_switches.transports.ssh_service import getRSAKeys

    public, _ = getRSAKeys()
    key_type, blob = public.split()[:2]
    return f"[{host}]:{port} {key_type} {blob}\n"
