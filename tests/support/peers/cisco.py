"""A person at a Cisco IOS switch (fake-switches' ``cisco_generic``, extended), for the cli
driver's tests: the person's own SSH session (scrapli's IOS-XE core driver, not the platform
files under test) edits with ordinary IOS commands and reads ``show running-config``."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, cast

from scrapli.driver.core import IOSXEDriver

from support.peers.fakeswitches import FakeSwitchesPeer
from vmfabric.config import parse_switch
from vmfabric.core.model import PortMode
from vmfabric.core.vlans import format_vlans
from vmfabric.targets.switchport.cli import CliDriver, CliSwitch
from vmfabric.testing.conformance import (
    CountingDriver,
    PeerPort,
    SwitchHarness,
    edit_after_first_read,
)

EDGE = [f"GigabitEthernet0/{i}" for i in (1, 2, 3, 9, 5)]  # 0/9 does not exist
NON_EDGE = "GigabitEthernet0/6"
PASSWORD_ENV = "VMF_TEST_CLI_PW"
_ALLOWED = re.compile(r"^\s*switchport trunk allowed vlan (?:add )?(\S+)\s*$", re.MULTILINE)


class CiscoPerson:
    """A person's kept-open IOS session to one fake-switches peer."""

    def __init__(self, peer: FakeSwitchesPeer) -> None:
        self.peer = peer
        self._conn: IOSXEDriver | None = None

    def conn(self) -> IOSXEDriver:
        if self._conn is None or not self._conn.isalive():
            self._conn = IOSXEDriver(
                host="127.0.0.1", port=self.peer.port, auth_username=self.peer.username,
                auth_password=self.peer.password, auth_secondary=self.peer.password,
                auth_strict_key=False, transport="paramiko", timeout_ops=30,
            )  # fmt: skip
            self._conn.open()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def configure(self, *lines: str) -> None:
        answers = self.conn().send_configs(list(lines))
        assert not answers.failed, [a.result for a in answers]

    def running(self, port: str = "") -> str:
        command = f"show running-config interface {port}" if port else "show running-config"
        return self.conn().send_command(command).result

    # ---- a person's edits --------------------------------------------------------------

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        wanted = format_vlans(vlans) or "none"
        self.configure(f"default interface {port}", f"interface {port}", "switchport mode trunk",
                       f"switchport trunk allowed vlan {wanted}", "exit")  # fmt: skip

    def set_access(self, port: str, vlan: int) -> None:
        self.configure(f"default interface {port}", f"interface {port}", "switchport mode access",
                       f"switchport access vlan {vlan}", "exit")  # fmt: skip

    def set_open(self, port: str) -> None:
        self.configure(
            f"default interface {port}", f"interface {port}", "switchport mode trunk", "exit"
        )

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        lines = [f"interface {port}"]
        if set(add):
            lines.append(f"switchport trunk allowed vlan add {format_vlans(add)}")
        if set(remove):
            lines.append(f"switchport trunk allowed vlan remove {format_vlans(remove)}")
        self.configure(*lines, "exit")

    # ---- reads -------------------------------------------------------------------------

    def read(self, port: str) -> PeerPort:
        text = self.running(port)
        if "Invalid input" in text:
            return PeerPort(PortMode.MISSING)
        if "switchport mode trunk" not in text:
            access = re.search(r"switchport access vlan (\d+)", text)
            return PeerPort(PortMode.ACCESS, frozenset({int(access.group(1)) if access else 1}))
        lists = _ALLOWED.findall(text)
        if not lists:
            return PeerPort(PortMode.OPEN)
        vlans: set[int] = set()
        for item in ",".join(lists).split(","):
            lo, _, hi = item.partition("-")
            if lo.isdigit():
                vlans.update(range(int(lo), int(hi or lo) + 1))
        return PeerPort(PortMode.TRUNK, frozenset(vlans))

    def description(self, port: str) -> str | None:
        found = re.search(r"^\s*description (.*?)\s*$", self.running(port), flags=re.MULTILINE)
        return found.group(1) if found else None


class CiscoHarness(SwitchHarness):
    """The conformance suite's access to a fake-switches IOS peer (see CiscoPerson)."""

    edge_ports = EDGE
    non_edge_port = NON_EDGE

    def __init__(self, peer: FakeSwitchesPeer) -> None:
        self.peer = peer
        self.person = CiscoPerson(peer)

    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        return cast(CountingDriver, CliDriver(cli_config(self.peer, open_ports=open_ports)))

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
        self.person.configure(
            f"interface {port}", "description esx01 vmnic1",
            "switchport trunk encapsulation dot1q", "exit",
        )  # fmt: skip

    def unrelated(self, port: str) -> object:
        lines = self.person.running(port).splitlines()
        kept = [line.split(" [vmfabric:")[0] for line in lines if "allowed vlan" not in line]
        return [line for line in kept if not line.startswith("Current configuration")]

    def snapshot(self) -> object:
        return self.person.running()

    def peer_writes(self) -> int:
        return self.peer.writes()

    def concurrent_edit(
        self, driver: CountingDriver, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> AbstractContextManager[None]:
        """The person's commands land after the driver read the port and before it writes."""
        return edit_after_first_read(driver, lambda: self.manual_edit(port, add, remove))

    @contextlib.contextmanager
    def broken_mid_apply(self) -> Iterator[None]:
        """The peer refuses ``allowed vlan add 130`` (injected), after the plan's earlier
        commands were accepted: the driver must undo them."""
        self.peer.refuse(130)
        try:
            yield
        finally:
            self.peer.refuse()


def cli_config(peer: FakeSwitchesPeer, **over: Any) -> CliSwitch:
    os.environ[PASSWORD_ENV] = peer.password
    entry: dict[str, Any] = {
        "name": "leaf1", "driver": "cli", "platform": "cisco_ios", "host": "127.0.0.1",
        "port": peer.port, "username": peer.username, "password": f"env:{PASSWORD_ENV}",
        "hostkey_verify": False, "edge_ports": EDGE, "timeout": 20,
    }  # fmt: skip
    config = parse_switch({**entry, **over})
    assert isinstance(config, CliSwitch)
    return config
