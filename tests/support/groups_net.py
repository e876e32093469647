"""A routed namespace network for security-group tests: one router namespace (the
firewall) and leaf namespaces (the VMs), each in a subnet of its own, with TCP listeners
and a probe that says whether a connection opened, was refused or timed out.

Everything is created under a unique prefix and removed by name and PID in ``close``,
also when a test fails (use it as a context manager)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from types import TracebackType

from vmfabric.lab import netns as nsx

LISTENER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.sendall(b"ok"); conn.close()
"""
PROBE = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print("open" if c.recv(2) == b"ok" else "closed")
except ConnectionRefusedError:
    print("refused")
except (TimeoutError, socket.timeout):
    print("timeout")
except OSError as exc:
    print("error", exc)
"""


def listen(netns: str, *ports: int) -> subprocess.Popen[str]:
    """A TCP listener in ``netns`` answering "ok" on each port; kill it by its PID."""
    argv = nsx.in_netns(netns, [sys.executable, "-c", LISTENER, *map(str, ports)])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def probe(netns: str, address: str, port: int, timeout: float = 1.0) -> str:
    """open | refused | timeout for a TCP connection from ``netns`` to ``address``."""
    argv = [sys.executable, "-c", PROBE, address, str(port), str(timeout)]
    return nsx.exec_in(netns, *argv, timeout=timeout + 10, check=False).strip()


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


class RoutedNet:
    def __init__(self, tag: str = "n") -> None:
        self.prefix = f"vfg{tag}{uuid.uuid4().hex[:5]}"
        self.router = nsx.add_netns(f"{self.prefix}-fw")
        nsx.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], self.router)
        nsx.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"], self.router)
        self.leaves: dict[str, str] = {}  # name -> netns
        self.addresses: dict[str, str] = {}
        self._procs: list[subprocess.Popen[str]] = []

    def add_leaf(self, name: str, index: int) -> str:
        """A leaf namespace in 10.<index>.0.0/24 (10.<index>.0.2; the router is .1) and
        fd00:<index>::/64; returns its IPv4 address."""
        ns = nsx.add_netns(f"{self.prefix}-{name}")
        inside, outside = f"{self.prefix[-5:]}{index}i", f"{self.prefix[-5:]}{index}o"
        nsx.add_veth(outside, inside, self.router, ns)
        nsx.add_address(outside, f"10.{index}.0.1/24", self.router)
        nsx.add_address(inside, f"10.{index}.0.2/24", ns)
        nsx.add_address(outside, f"fd00:{index}::1/64", self.router)
        nsx.add_address(inside, f"fd00:{index}::2/64", ns)
        nsx.set_up(outside, self.router)
        nsx.set_up(inside, ns)
        nsx.run(["ip", "route", "add", "default", "via", f"10.{index}.0.1"], ns)
        nsx.run(["ip", "-6", "route", "add", "default", "via", f"fd00:{index}::1"], ns)
        self.leaves[name] = ns
        self.addresses[name] = f"10.{index}.0.2"
        return self.addresses[name]

    def listen(self, name: str, *ports: int) -> None:
        self._procs.append(listen(self.leaves[name], *ports))

    def probe(self, src: str, dst: str, port: int, timeout: float = 1.0) -> str:
        """open | refused | timeout for a TCP connection from leaf ``src`` to ``dst``."""
        return probe(self.leaves[src], self.addresses[dst], port, timeout)

    def close(self) -> None:
        for proc in self._procs:
            kill(proc)
        for ns in [*self.leaves.values(), self.router]:
            nsx.delete_netns(ns)

    def __enter__(self) -> RoutedNet:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
