"""The EOS peer for tests: ``fakeswitches_eos`` (fake-switches' arista_generic, extended)
as a child process, a person's hands on it (plain pyeapi, as user ``admin``), its test
controls, and TLS material for an HTTPS peer (a private CA and a server certificate for
127.0.0.1, made with ``cryptography``).

The peer has Ethernet1-3, Ethernet5-7 and Port-Channel10/20; Ethernet4 does not exist.
vmfabric connects as user ``vmfabric`` whose password is in ``$VMF_EOS_PW``.
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyeapi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.peers.process import PeerProcess
from vmfabric.core.vlans import format_vlans

PORTS = ["Ethernet1", "Ethernet2", "Ethernet3", "Ethernet5", "Ethernet6", "Ethernet7",
         "Port-Channel10", "Port-Channel20"]  # fmt: skip
PASSWORD_ENV = "VMF_EOS_PW"
PASSWORD = "s3cret-vmf"
ADMIN = ("admin", "admin-pw")


def require_fakeswitches() -> None:
    if (
        importlib.util.find_spec("fake_switches") is None
        or importlib.util.find_spec("twisted") is None
    ):
        pytest.skip("fake-switches is not installed (make venv installs it)")


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> Tls:
    """A private CA and a certificate for 127.0.0.1 signed by it (files in ``folder``)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmfabric test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    files = Tls(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))  # fmt: skip
    files.key.chmod(0o600)
    return files


class EosPeer:
    """One running EOS peer (see the module docstring)."""

    def __init__(self, tls: Tls | None = None, name: str = "leaf1", port: int = 0) -> None:
        args = ["--name", name, "--ports", ",".join(PORTS), "--port", str(port),
                "--users", f"vmfabric:{PASSWORD},{ADMIN[0]}:{ADMIN[1]}"]  # fmt: skip
        if tls is not None:
            args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        self.tls = tls
        self.process = PeerProcess("support.peers.fakeswitches_eos", args)
        self._node: Any = None

    def start(self) -> EosPeer:
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
        """The eos driver's connection options for this peer."""
        return {"host": "127.0.0.1", "port": self.port, "transport": self.scheme,
                "username": "vmfabric", "password": f"env:{PASSWORD_ENV}", "timeout": 5,
                **({"ca_file": str(self.tls.ca)} if self.tls else {}), **extra}  # fmt: skip

    # ---- a person at the switch ------------------------------------------------------------

    def node(self) -> Any:
        if self._node is None:
            self._node = pyeapi.connect(
                transport=self.scheme, host="127.0.0.1", port=self.port, username=ADMIN[0],
                password=ADMIN[1], return_node=True, timeout=30,
            )  # fmt: skip
        return self._node

    def configure(self, commands: Sequence[str]) -> None:
        """A person's configuration commands (plain configure mode)."""
        self.node().run_commands(["configure", *commands, "end"])

    def interface(self, port: str, *commands: str) -> None:
        self.configure([f"interface {port}", *commands])

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        listed = format_vlans(vlans) or "none"
        self.interface(port, "switchport mode trunk", f"switchport trunk allowed vlan {listed}")

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
        """Refuse the next configuration request at its ``nth`` interface command."""
        self.process.control("fail", {"interface": nth}, scheme=self.scheme)

    def delay(self, seconds: float) -> None:
        self.process.control("delay", {"seconds": seconds}, scheme=self.scheme)
