"""Real frames between lab VMs: pings, a TCP transfer, and counted broadcasts.

What tests and the demo use to prove the data plane, not just the configuration:

- ``ping(state, vm, address, within)`` retries until the address answers (the first
  packet to a fresh port or tunnel may be lost while it is learned);
- ``tcp_transfer`` sends bytes over TCP from one VM to another and returns how many the
  receiver counted (TCP fails over userspace tunnels when checksums are left to an
  offload that never happens, while ping still works);
- ``Broadcasts`` counts, in each VM, the copies of one UDP broadcast sent by another: an
  nftables counter in every VM namespace (table ``inet vmfabric_probe``) matches only
  the probe's port, so IPv6 and ARP chatter never count. Its ``send`` waits until every
  VM expected to hear the broadcast has (conditions, not sleeps), then reads the others.

Only VM namespaces the lab made are touched; nothing is left behind once the VM is gone.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Collection, Iterable

from vmfabric.core.errors import PermanentError
from vmfabric.lab import netns as nsx
from vmfabric.lab.builder import LabState

PROBE_PORT = 9  # UDP discard: nothing listens, the kernel drops it after the counter
_TABLE = "vmfabric_probe"


def ping(state: LabState, vm: str, address: str, within: float = 10.0) -> bool:
    """True once ``address`` answers a ping from VM ``vm`` within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if nsx.ping(state.vms[vm].netns, address, count=1, wait=1):
            return True
        if time.monotonic() >= deadline:
            return False


def address_of(state: LabState, vm: str) -> str:
    return str(ipaddress.IPv4Interface(state.vms[vm].ip).ip)


_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(20); n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    n += len(d)
c.sendall(str(n).encode()); c.close()
"""
_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(b"x" * int(sys.argv[3])); c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode())
"""


def tcp_transfer(state: LabState, client: str, server: str, size: int = 1_000_000) -> int:
    """Send ``size`` bytes over TCP from VM ``client`` to VM ``server``; bytes received."""
    host, port = address_of(state, server), "5001"
    argv = nsx.in_netns(state.vms[server].netns, [sys.executable, "-c", _SERVER, host, port])
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise PermanentError(f"TCP server in {server} did not start")
            done = nsx.run(
                [sys.executable, "-c", _CLIENT, host, port, str(size)],
                state.vms[client].netns,
                timeout=30,
            )
            return int(done.stdout.strip() or 0)
        finally:
            proc.kill()


class Broadcasts:
    """Counts copies of a probe broadcast in each VM. See the module docstring."""

    def __init__(self, state: LabState, vms: Iterable[str]) -> None:
        self.state = state
        self.vms = list(vms)

        for vm in self.vms:
            ns, mac = state.vms[vm].netns, state.vms[vm].mac
            nsx.run(["nft", "delete", "table", "inet", _TABLE], ns, check=False)
            _nft_json(ns, _ruleset(mac))

    def counts(self) -> dict[str, int]:
        return {vm: _counter(self.state.vms[vm].netns) for vm in self.vms}

    def send(self, source: str, expect: Collection[str], within: float = 10.0) -> dict[str, int]:
        """Send one probe broadcast from ``source`` into its subnet; wait until every VM of
        ``expect`` counted a copy; return the copies each VM counted for this probe."""
        before = self.counts()
        net = ipaddress.IPv4Interface(self.state.vms[source].ip).network
        code = (
            "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); "
            "s.sendto(b'vmfabric-probe', (sys.argv[1], int(sys.argv[2])))"
        )
        argv = [sys.executable, "-c", code, str(net.broadcast_address), str(PROBE_PORT)]
        nsx.run(argv, self.state.vms[source].netns)
        deadline = time.monotonic() + within
        while True:
            now = {vm: n - before[vm] for vm, n in self.counts().items()}
            if all(now[vm] >= 1 for vm in expect) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        for vm in expect:  # a unicast round trip behind the broadcast: later copies land first
            ping(self.state, source, address_of(self.state, vm), within=within)
        return {vm: n - before[vm] for vm, n in self.counts().items()}


def _ruleset(own_mac: str) -> dict[str, object]:
    return {
        "nftables": [
            {"add": {"table": {"family": "inet", "name": _TABLE}}},
            {"add": {"chain": {"family": "inet", "table": _TABLE, "name": "input",
                               "type": "filter", "hook": "input", "prio": 0}}},
            {"add": {"rule": {"family": "inet", "table": _TABLE, "chain": "input",
                              "expr": [*_matches(own_mac), {"counter": None}]}}},
        ]
    }  # fmt: skip


def _matches(own_mac: str) -> list[dict[str, object]]:
    """Copies to the probe port from another VM (the sender's own copy is looped back to
    it with its own source MAC)."""
    return [
        {
            "match": {
                "op": "!=",
                "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                "right": own_mac,
            }
        },
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "udp", "field": "dport"}},
                "right": PROBE_PORT,
            }
        },
    ]


def _nft_json(netns: str, ruleset: dict[str, object]) -> None:
    argv = nsx.in_netns(netns, ["nft", "-j", "-f", "-"])
    done = subprocess.run(
        argv, input=json.dumps(ruleset), capture_output=True, text=True, timeout=15, check=False
    )
    if done.returncode != 0:
        raise PermanentError(f"nft in {netns}: {done.stderr.strip() or 'failed'}")


def _counter(netns: str) -> int:
    out = nsx.run(["nft", "-j", "list", "table", "inet", _TABLE], netns).stdout
    for item in json.loads(out).get("nftables", []):
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    return 0
