"""A person at a Cumulus switch (the NVUE peer of support.peers.nvue), for the cumulus
driver's tests: edits go through the person's own NVUE revisions (urllib), reads come from
the peer's applied configuration file; nothing here uses the driver under test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

from support.peers.nvue import NvuePeer, PersonClient, Tree
from vmfabric.config import parse_switch
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.cumulus import CumulusDriver, CumulusSwitch
from vmfabric.testing.conformance import (
    CountingDriver,
    PeerPort,
    SwitchHarness,
    edit_after_first_read,
)

EDGE = ["swp1", "swp2", "swp3", "swp9", "swp5"]  # swp9 does not exist
NON_EDGE = "swp6"
BRIDGE = "br_default"
CLOSED = 4094
PASSWORD_ENV = "VMF_TEST_NVUE_PW"


def _ids(keys: Iterable[str]) -> set[int]:
    ids: set[int] = set()
    for key in keys:
        lo, _, hi = key.partition("-")
        if lo.isdigit():
            ids.update(range(int(lo), int(hi or lo) + 1))
    return ids


class CumulusPerson:
    """A person's edits and reads of one NVUE peer."""

    def __init__(self, peer: NvuePeer) -> None:
        self.peer = peer
        self.client = PersonClient(peer)

    def _port(self, port: str, domain: Tree, vlans: Iterable[int] = ()) -> None:
        bridge_vlans: Tree = {str(v): {} for v in vlans}
        self.client.change(
            {"interface": {port: None}},
            {"interface": {port: {"bridge": {"domain": {BRIDGE: domain}}}},
             "bridge": {"domain": {BRIDGE: {"vlan": bridge_vlans}}}},
        )  # fmt: skip

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        wanted = set(vlans) or {CLOSED}  # NVUE's only way to list no VLAN: the placeholder
        self._port(port, {"vlan": {str(v): {} for v in sorted(wanted)}}, wanted)

    def set_access(self, port: str, vlan: int) -> None:
        self._port(port, {"access": vlan}, {vlan})

    def set_open(self, port: str) -> None:
        self._port(port, {})

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        ops: Tree = {str(v): None for v in remove}
        ops.update({str(v): {} for v in add})
        self.client.change(
            {"interface": {port: {"bridge": {"domain": {BRIDGE: {"vlan": ops}}}}},
             "bridge": {"domain": {BRIDGE: {"vlan": {str(v): {} for v in add}}}}},
        )  # fmt: skip

    def interface(self, port: str) -> Tree | None:
        found = self.peer.applied().get("interface", {}).get(port)
        return cast(Tree, found) if isinstance(found, dict) else None

    def read(self, port: str) -> PeerPort:
        interface = self.interface(port)
        if interface is None:
            exists = port in {f"swp{i}" for i in range(1, self.peer.ports + 1)}
            return PeerPort(PortMode.ACCESS if exists else PortMode.MISSING)
        domain = interface.get("bridge", {}).get("domain", {}).get(BRIDGE)
        if domain is None:
            return PeerPort(PortMode.ACCESS)
        if "access" in domain:
            return PeerPort(PortMode.ACCESS, frozenset({int(domain["access"])}))
        keys = domain.get("vlan") or {}
        if not keys or "all" in keys:
            return PeerPort(PortMode.OPEN)
        return PeerPort(PortMode.TRUNK, frozenset(_ids(keys) - {CLOSED}))


class CumulusHarness(SwitchHarness):
    """The conformance suite's access to the NVUE peer (see CumulusPerson)."""

    edge_ports = EDGE
    non_edge_port = NON_EDGE

    def __init__(self, peer: NvuePeer) -> None:
        self.peer = peer
        self.person = CumulusPerson(peer)

    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        return cast(CountingDriver, CumulusDriver(cumulus_config(self.peer, open_ports=open_ports)))

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        self.person.set_trunk(port, vlans)

    def set_access(self, port: str, vlan: int) -> None:
        self.person.set_access(port, vlan)

    def set_open(self, port: str) -> None:
        self.person.set_open(port)

    def read(self, port: str) -> PeerPort:
        return self.person.read(port)

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        self.person.manual_edit(port, add, remove)

    def set_unrelated(self, port: str) -> None:
        self.person.client.change(
            {"interface": {port: {"link": {"mtu": 9000}, "description": "esx01 vmnic1"}}}
        )

    def unrelated(self, port: str) -> object:
        interface = dict(self.person.interface(port) or {})
        interface.pop("bridge", None)
        text = str(interface.get("description", ""))
        interface["description"] = text.split(" [vmfabric:", maxsplit=1)[0]
        return interface

    def snapshot(self) -> object:
        return self.peer.applied()

    def peer_writes(self) -> int:
        return self.peer.writes()

    def concurrent_edit(
        self, driver: CountingDriver, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> AbstractContextManager[None]:
        """The person's revision is applied after the driver read the applied configuration
        and before it creates its own revision."""
        return edit_after_first_read(driver, lambda: self.manual_edit(port, add, remove))

    @contextlib.contextmanager
    def broken_mid_apply(self) -> Iterator[None]:
        """The peer refuses the apply (VLAN 130, injected): the revision ends ``invalid``."""
        self.peer.refuse(130)
        try:
            yield
        finally:
            self.peer.refuse()


def cumulus_config(peer: NvuePeer, **over: Any) -> CumulusSwitch:
    os.environ[PASSWORD_ENV] = peer.password
    entry: dict[str, Any] = {
        "name": "leaf1", "driver": "cumulus", "host": "127.0.0.1", "port": peer.port,
        "transport": "https" if peer.tls else "http", "username": peer.username,
        "password": f"env:{PASSWORD_ENV}", "edge_ports": EDGE, "timeout": 20,
    }  # fmt: skip
    if peer.tls:
        entry["ca_file"] = str(peer.tls[0])
    config = parse_switch({**entry, **over})
    assert isinstance(config, CumulusSwitch)
    return config


def make_tls(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), written to ``workdir``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nvue-peer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "nvue-cert.pem", workdir / "nvue-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
