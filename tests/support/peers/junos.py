"""A person at a Junos switch (a fake-switches peer), for the junos driver's tests.

``JunosPeer`` edits the peer's configuration over its own NETCONF session (lock, edit-config,
commit, unlock), as an operator's tool would, and reads it back with its own small parser:
nothing here goes through the driver under test. ``JunosHarness`` is the conformance suite's
view of it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

from lxml import etree
from ncclient import manager

from support.peers.fakeswitches import FakeSwitchesPeer
from vmfabric.config import parse_switch
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.junos import JunosDriver
from vmfabric.testing.conformance import (
    CountingDriver,
    PeerPort,
    SwitchHarness,
    edit_after_first_read,
)

EDGE = ["ge-0/0/1", "ge-0/0/2", "ge-0/0/3", "ge-0/0/9", "ge-0/0/5"]  # ge-0/0/9 does not exist
NON_EDGE = "ge-0/0/6"
PASSWORD_ENV = "VMF_TEST_JUNOS_PW"
CLOSED_NAME = "vmfabric-closed"


def _strip(tree: Any) -> Any:
    for element in tree.iter():
        if isinstance(element.tag, str):
            element.tag = etree.QName(element).localname
    return tree


class JunosPeer:
    """The person's side of one fake-switches Junos switch."""

    def __init__(self, peer: FakeSwitchesPeer) -> None:
        self.peer = peer
        self.els = peer.model == "junos"
        self.mode_tag = "interface-mode" if self.els else "port-mode"
        self._session: Any = None

    def session(self) -> Any:
        """The person's NETCONF session, kept open (re-opened after the peer restarted)."""
        if self._session is None or not self._session.connected:
            self._session = manager.connect(
                host="127.0.0.1", port=self.peer.port, username=self.peer.username,
                password=self.peer.password, hostkey_verify=False, allow_agent=False,
                look_for_keys=False, timeout=30,
            )  # fmt: skip
        return self._session

    def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                self._session.close_session()
            self._session = None

    def commit(self, config: str) -> None:
        """One locked edit-config + commit of ``<configuration>`` content."""
        m = self.session()
        m.lock("candidate")
        try:
            m.edit_config(
                target="candidate",
                config=f"<config><configuration>{config}</configuration></config>",
            )
            m.commit()
        finally:
            m.unlock("candidate")

    def configuration(self) -> Any:
        reply = self.session().get_config("running")
        root = _strip(etree.fromstring(reply.data_xml.encode()))
        found = root.find("configuration")
        return found if found is not None else etree.Element("configuration")

    def vlan_ids(self) -> dict[str, int]:
        conf = self.configuration()
        return {v.findtext("name"): int(v.findtext("vlan-id")) for v in conf.findall("vlans/vlan")}

    # ---- edits a person makes ----------------------------------------------------------

    @staticmethod
    def _vlans_xml(vlans: Iterable[int]) -> str:
        items = "".join(f"<vlan><name>v{v}</name><vlan-id>{v}</vlan-id></vlan>" for v in vlans)
        return f"<vlans>{items}</vlans>"

    def set_port(self, port: str, mode: str, members: Iterable[str], extra: str = "") -> None:
        """Replace ``port``'s whole configuration (unit 0 ethernet-switching)."""
        members_xml = "".join(f"<members>{m}</members>" for m in members)
        vlan = f"<vlan>{members_xml}</vlan>" if members_xml else ""
        self.commit(
            f'<interfaces><interface operation="replace"><name>{port}</name>{extra}'
            "<unit><name>0</name>"
            f"<family><ethernet-switching><{self.mode_tag}>{mode}</{self.mode_tag}>{vlan}"
            "</ethernet-switching></family></unit></interface></interfaces>"
        )

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        wanted = sorted(set(vlans))
        if wanted:
            self.commit(self._vlans_xml(wanted))
        members = [str(v) for v in wanted]
        if not members and self.els:  # ELS refuses a trunk with no members: vmfabric's way
            self.commit(
                f"<vlans><vlan><name>{CLOSED_NAME}</name><vlan-id>4094</vlan-id></vlan></vlans>"
            )
            members = [CLOSED_NAME]
        self.set_port(port, "trunk", members)

    def set_access(self, port: str, vlan: int) -> None:
        self.commit(self._vlans_xml([vlan]))
        self.set_port(port, "access", [str(vlan)])

    def set_open(self, port: str) -> None:
        self.set_port(port, "trunk", ["all"])

    def members(self, port: str) -> list[str]:
        for interface in self.configuration().findall("interfaces/interface"):
            if interface.findtext("name") == port:
                return [
                    m.text or ""
                    for m in interface.findall("unit/family/ethernet-switching/vlan/members")
                ]
        return []

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        add, remove = sorted(set(add)), sorted(set(remove))
        if add:
            self.commit(self._vlans_xml(add))
        current = self.members(port)
        ops = [
            f'<members operation="delete">{m}</members>'
            for m in current
            if m in {str(v) for v in remove}
        ]
        ops += [f"<members>{v}</members>" for v in add]
        self.commit(
            f"<interfaces><interface><name>{port}</name><unit><name>0</name><family>"
            f"<ethernet-switching><vlan>{''.join(ops)}</vlan></ethernet-switching></family>"
            "</unit></interface></interfaces>"
        )

    def set_description(self, port: str, text: str) -> None:
        self.commit(
            f"<interfaces><interface><name>{port}</name><description>{text}</description></interface></interfaces>"
        )

    # ---- reads -------------------------------------------------------------------------

    def interface(self, port: str) -> Any:
        for interface in self.configuration().findall("interfaces/interface"):
            if interface.findtext("name") == port:
                return interface
        return None

    def read(self, port: str) -> PeerPort:
        conf = self.configuration()
        ids = {
            v.findtext("name"): int(v.findtext("vlan-id") or 0) for v in conf.findall("vlans/vlan")
        }
        interface = self.interface(port)
        if interface is None:
            known = {f"ge-0/0/{i}" for i in range(1, self.peer.ports + 1)} | {"ae1"}
            return PeerPort(PortMode.ACCESS if port in known else PortMode.MISSING)
        switching = interface.find("unit/family/ethernet-switching")
        mode = switching.findtext(self.mode_tag) if switching is not None else None
        members = [
            m.text or "" for m in interface.findall("unit/family/ethernet-switching/vlan/members")
        ]
        if mode == "trunk" and "all" in members:
            return PeerPort(PortMode.OPEN)
        vlans: set[int] = set()
        for member in (m for m in members if m != CLOSED_NAME):
            lo, _, hi = member.partition("-")
            if not lo.isdigit():
                vlans.add(ids.get(member, 0))
            else:
                vlans.update(range(int(lo), int(hi or lo) + 1))
        return PeerPort(PortMode.TRUNK if mode == "trunk" else PortMode.ACCESS, frozenset(vlans))


class JunosHarness(SwitchHarness):
    """The conformance suite's access to a fake-switches Junos peer (see JunosPeer)."""

    edge_ports = EDGE
    non_edge_port = NON_EDGE

    def __init__(self, peer: FakeSwitchesPeer) -> None:
        self.peer = peer
        self.person = JunosPeer(peer)
        os.environ[PASSWORD_ENV] = peer.password

    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        return cast(CountingDriver, JunosDriver(junos_config(self.peer, open_ports=open_ports)))

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
        self.person.set_description(port, "uplink to esx01 vmnic1")

    def unrelated(self, port: str) -> object:
        interface = self.person.interface(port)
        return None if interface is None else interface.findtext("description")

    def snapshot(self) -> object:
        return etree.tostring(self.person.configuration())

    def peer_writes(self) -> int:
        return self.peer.writes()

    def concurrent_edit(
        self, driver: CountingDriver, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> AbstractContextManager[None]:
        """The edit lands after the driver's plan on the running configuration and before it
        locks the candidate (then it plans again, under the lock)."""
        return edit_after_first_read(driver, lambda: self.manual_edit(port, add, remove))

    @contextlib.contextmanager
    def broken_mid_apply(self) -> Iterator[None]:
        """The peer refuses the commit (VLAN 130 is refused: an injected refusal)."""
        self.peer.refuse(130)
        try:
            yield
        finally:
            self.peer.refuse()


def junos_config(peer: FakeSwitchesPeer, **over: Any) -> Any:
    """The switch entry pointing the junos driver at ``peer``."""
    os.environ[PASSWORD_ENV] = peer.password
    entry = {
        "name": "leaf1", "driver": "junos", "host": "127.0.0.1", "port": peer.port,
        "username": peer.username, "password": f"env:{PASSWORD_ENV}", "hostkey_verify": False,
        "edge_ports": EDGE, "syntax": "els" if peer.model == "junos" else "non-els",
        "timeout": 20,
    }  # fmt: skip
    return parse_switch({**entry, **over})


def start_peer(model: str, workdir: Path, **kw: Any) -> FakeSwitchesPeer:
    return FakeSwitchesPeer(model, workdir, ports=6, **kw).start()
