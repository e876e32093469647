"""The NX-OS peer for tests: ``support.peers.nxapi`` (written here from Cisco's published
NX-API shapes; not a real NX-OS) as a child process, a person's hands on it (plain NX-API
JSON-RPC requests as user ``admin``), and its test controls.

The peer has Ethernet1/1-1/3, Ethernet1/5-1/7 and port-channel10/20; Ethernet1/4 does not
exist. vmfabric connects as user ``vmfabric`` whose password is in ``$VMF_NXOS_PW``.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from support.peers.eos import Tls
from support.peers.process import PeerProcess
from vmfabric.core.vlans import format_vlans

PORTS = ["Ethernet1/1", "Ethernet1/2", "Ethernet1/3", "Ethernet1/5", "Ethernet1/6",
         "Ethernet1/7", "port-channel10", "port-channel20"]  # fmt: skip
PASSWORD_ENV = "VMF_NXOS_PW"
PASSWORD = "nx-s3cret"
ADMIN = ("admin", "admin-pw")


class NxosPeer:
    """One running NX-API peer (see the module docstring)."""

    def __init__(self, tls: Tls | None = None, port: int = 0) -> None:
        args = ["--ports", ",".join(PORTS), "--port", str(port),
                "--users", f"vmfabric:{PASSWORD},{ADMIN[0]}:{ADMIN[1]}"]  # fmt: skip
        if tls is not None:
            args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        self.tls = tls
        self.process = PeerProcess("support.peers.nxapi", args)

    def start(self) -> NxosPeer:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def options(self, **extra: Any) -> dict[str, Any]:
        """The nxos driver's connection options for this peer."""
        return {"host": "127.0.0.1", "port": self.port, "transport": self.scheme,
                "username": "vmfabric", "password": f"env:{PASSWORD_ENV}", "timeout": 5,
                **({"ca_file": str(self.tls.ca)} if self.tls else {}), **extra}  # fmt: skip

    # ---- a person at the switch ------------------------------------------------------------

    def run(self, commands: Sequence[str]) -> Any:
        """A person's NX-API request (JSON-RPC batch) as user admin."""
        body = json.dumps([{"jsonrpc": "2.0", "method": "cli", "params": {"cmd": c, "version": 1},
                            "id": i} for i, c in enumerate(commands, 1)]).encode()  # fmt: skip
        token = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
        request = urllib.request.Request(  # noqa: S310 - a peer on 127.0.0.1
            f"{self.scheme}://127.0.0.1:{self.port}/ins", data=body, method="POST",
            headers={"Content-Type": "application/json-rpc", "Authorization": f"Basic {token}"},
        )  # fmt: skip
        context = ssl._create_unverified_context() if self.tls else None  # noqa: S323
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:  # noqa: S310
            answer = json.loads(reply.read())
        errors = [a["error"] for a in answer if "error" in a]
        assert not errors, f"the peer refused a person's commands {commands}: {errors}"
        return answer

    def interface(self, port: str, *commands: str) -> None:
        self.run([f"interface {port}", *commands])

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        listed = format_vlans(vlans) or "none"
        self.interface(port, "switchport", "switchport mode trunk",
                       f"switchport trunk allowed vlan {listed}")  # fmt: skip

    def edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        commands = []
        if add:
            commands.append(f"switchport trunk allowed vlan add {format_vlans(add)}")
        if remove:
            commands.append(f"switchport trunk allowed vlan remove {format_vlans(remove)}")
        self.interface(port, *commands)

    # ---- test controls ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.process.control("state", scheme=self.scheme)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.process.control("stats", scheme=self.scheme)
        return result

    def reset(self) -> None:
        self.process.control("reset", {}, scheme=self.scheme)

    def fail_at_interface(self, nth: int) -> None:
        self.process.control("fail", {"interface": nth}, scheme=self.scheme)

    def delay(self, seconds: float) -> None:
        self.process.control("delay", {"seconds": seconds}, scheme=self.scheme)
