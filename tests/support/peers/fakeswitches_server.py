"""The child-process side of ``support.peers.fakeswitches``: fake-switches, extended.

Run as ``python -m support.peers.fakeswitches_server MODEL [options]``; it prints
``READY <port>`` once it listens on 127.0.0.1 (port chosen by the kernel). Every extension of
fake-switches is marked ``EXTENDED:`` and listed in ``support.peers.fakeswitches``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
from pathlib import Path
from typing import Any, cast

from fake_switches.cisco import cisco_core
from fake_switches.cisco.command_processor.config import ConfigCommandProcessor
from fake_switches.cisco.command_processor.config_interface import ConfigInterfaceCommandProcessor
from fake_switches.cisco.command_processor.config_vlan import ConfigVlanCommandProcessor
from fake_switches.cisco.command_processor.config_vrf import ConfigVRFCommandProcessor
from fake_switches.cisco.command_processor.enabled import EnabledCommandProcessor
from fake_switches.juniper import juniper_netconf_datastore as jds
from fake_switches.juniper.juniper_core import BaseJuniperSwitchCore
from fake_switches.juniper_qfx_copper.juniper_qfx_copper_netconf_datastore import (
    JuniperQfxCopperNetconfDatastore,
)
from fake_switches.netconf import CANDIDATE, RUNNING, NetconfError, UnknownVlan
from fake_switches.netconf.netconf_protocol import NetconfProtocol
from fake_switches.switch_configuration import AggregatedPort, Port, SwitchConfiguration
from fake_switches.transports.ssh_service import SwitchSshService
from lxml import etree
from twisted.internet import reactor

JUNOS_MODELS = ("junos", "junos-non-els")


class Injected:
    """What the test asks this peer to do beyond a real switch: from argv at start, and from
    control files next to the state file while it runs (``STATE.refuse``: VLAN ids, one per
    line; ``STATE.stall``: an RPC or command prefix). ``STATE.writes`` counts configuration
    requests received (Junos edit-config, IOS ``configure terminal``), ``STATE.logins`` IOS
    shell sessions opened."""

    refuse: frozenset[int] = frozenset()
    stall_on: str = ""
    state: Path | None = None
    writes: int = 0
    logins: int = 0

    @classmethod
    def _control(cls, suffix: str) -> str:
        if cls.state is None:
            return ""
        path = cls.state.with_name(cls.state.name + suffix)
        return path.read_text(encoding="utf-8").strip() if path.exists() else ""

    @classmethod
    def refused(cls) -> frozenset[int]:
        extra = {int(v) for v in cls._control(".refuse").split()}
        return cls.refuse | extra

    @classmethod
    def stalls(cls, name: str) -> bool:
        stall = cls._control(".stall") or cls.stall_on
        return bool(stall) and name.startswith(stall)

    @classmethod
    def stall(cls) -> None:
        """Mark the stall (the test waits for the file); the caller then answers nothing."""
        if cls.state is not None:
            cls.state.with_name(cls.state.name + ".stalled").touch()

    @classmethod
    def count_write(cls) -> None:
        cls.writes += 1
        cls._save_count(".writes", cls.writes)

    @classmethod
    def count_login(cls) -> None:
        cls.logins += 1
        cls._save_count(".logins", cls.logins)

    @classmethod
    def _save_count(cls, suffix: str, value: int) -> None:
        if cls.state is not None:
            path = cls.state.with_name(cls.state.name + suffix)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(value), encoding="utf-8")
            os.replace(tmp, path)


def member_ids(conf: Any, text: str) -> list[int] | None:
    """VLAN ids a Junos member text stands for; None if it names no VLAN."""
    if text == "all":
        return [v.number for v in conf.vlans if v.number is not None]
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if match:
        lo = int(match.group(1))
        return list(range(lo, int(match.group(2) or lo) + 1))
    vlan = conf.get_vlan_by_name(text)
    return [vlan.number] if vlan is not None and vlan.number is not None else None


class JunosMixin:
    """EXTENDED: member texts as Junos keeps them (names, ranges, ``all``; a present member
    added again is a no-op), ``apply-macro`` under interfaces, locks bound to the session
    (its end or an unlock without commit discards the candidate, as Junos documents), the
    committed configuration saved to ``Injected.state``, and injected refusals."""

    configurations: dict[str, Any]
    lock_owner: object = None
    current_session: object = None

    def parse_vlan_members(self, port: Any, port_attributes: Any) -> None:
        for member in port_attributes.xpath("vlan/members"):
            text = (member.text or "").strip()
            delete = jds.resolve_operation(member) == "delete"
            if jds.port_is_in_access_mode(port):
                port.access_vlan = None if delete else text
                continue
            members = port.trunk_vlans if port.trunk_vlans is not None else []
            if delete and text not in members:
                raise jds.NotFound(text)
            if delete:
                members.remove(text)
            elif text not in members:
                members.append(text)
            port.trunk_vlans = members or None

    def validate_vlan_config(self, port: Any, vlan_list: list[int]) -> None:
        texts = list(port.trunk_vlans or [])
        if port.access_vlan is not None:
            texts.append(str(port.access_vlan))
        for text in texts:
            ids = member_ids(self.configurations[CANDIDATE], text)
            if ids is None or any(i not in vlan_list for i in ids):
                raise UnknownVlan(text, port.name, 0)
            refused = sorted(Injected.refused() & set(ids))
            if refused:
                raise NetconfError(
                    f"vlan-id {refused[0]} is reserved on this switch (injected by the test peer)",
                    path=f"[edit interfaces {port.name} unit 0 family ethernet-switching]",
                )

    def apply_interface_data(self, interface_node: Any, port: Any) -> None:
        super().apply_interface_data(interface_node, port)  # type: ignore[misc]
        macros = port.vendor_specific.setdefault("apply-macro", {})
        for node in interface_node.xpath("apply-macro"):
            name = jds.val(node, "name")
            if jds.resolve_operation(node) == "delete":
                macros.pop(name, None)
                continue
            data = macros.setdefault(name, {})
            for item in node.xpath("data"):
                data[jds.val(item, "name")] = (item.findtext("value") or "").strip()

    def interface_to_etree(self, port: Any) -> Any:
        data = super().interface_to_etree(port)  # type: ignore[misc]
        macros = port.vendor_specific.get("apply-macro") or {}
        if macros:
            data = data or [{"name": port.name}]
        for name, values in sorted(macros.items()):
            items: list[Any] = [{"name": name}]
            items += [{"data": [{"name": k}, {"value": v}]} for k, v in sorted(values.items())]
            data.insert(1, {"apply-macro": items})
        return data

    def commit_candidate(self) -> None:
        super().commit_candidate()  # type: ignore[misc]
        for port in self.configurations[RUNNING].ports:  # fake-switches shares this dict
            port.vendor_specific = copy.deepcopy(port.vendor_specific)
        if Injected.state is not None:
            xml = etree.tostring(self.to_etree(RUNNING)[0])
            tmp = Injected.state.with_suffix(".tmp")
            tmp.write_bytes(xml)
            os.replace(tmp, Injected.state)

    def to_etree(self, source: str) -> Any:
        return super().to_etree(source)  # type: ignore[misc]

    def lock(self, target: str) -> None:
        super().lock(target)  # type: ignore[misc]
        self.lock_owner = self.current_session

    def unlock(self, target: str) -> None:
        if self.lock_owner is self.current_session:
            self.end_lock()

    def end_lock(self) -> None:
        self.reset()  # type: ignore[attr-defined]
        self.configurations[CANDIDATE].locked = False
        self.configurations[RUNNING].locked = False
        self.lock_owner = None

    def load(self, path: Path) -> None:
        """Start from the configuration a previous run committed."""
        config = etree.fromstring(path.read_bytes())
        for element in config.iter():
            element.tag = etree.QName(element).localname
        etree.cleanup_namespaces(config)
        self.edit(CANDIDATE, config)  # type: ignore[attr-defined]
        self.commit_candidate()


class ElsDatastore(JunosMixin, JuniperQfxCopperNetconfDatastore):  # type: ignore[misc]
    """An ELS switch (``interface-mode``; a trunk must have members), extended."""


class NonElsDatastore(JunosMixin, jds.JuniperNetconfDatastore):  # type: ignore[misc]
    """A non-ELS switch (``port-mode``), extended."""


class Protocol(NetconfProtocol):  # type: ignore[misc]
    """EXTENDED: a session's end releases its lock and discards its changes; --stall-on."""

    def process(self, data: str) -> None:
        match = (
            re.search(r"<(?:\w+:)?rpc\b[^>]*>\s*<(?:\w+:)?([\w-]+)", data)
            if self.been_greeted
            else None
        )
        operation = match.group(1) if match else ""
        if operation and Injected.stalls(operation):
            Injected.stall()
            return
        if operation == "edit-config":
            Injected.count_write()
        self.datastore.current_session = self
        super().process(data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 (Twisted's name)
        if self.datastore.lock_owner is self:
            self.datastore.end_lock()


class JunosCore(BaseJuniperSwitchCore):  # type: ignore[misc]
    datastore_class: type = ElsDatastore

    def __init__(self, switch_configuration: Any) -> None:
        super().__init__(switch_configuration, datastore_class=self.datastore_class)

    def get_netconf_protocol(self) -> Any:
        self.last_connection_id += 1
        return Protocol(
            datastore=self.datastore,
            capabilities=self.capabilities(),
            additionnal_namespaces={"junos": jds.NS_JUNOS},
        )


class NonElsJunosCore(JunosCore):
    datastore_class = NonElsDatastore


class EndMixin:
    """EXTENDED: IOS's ``end`` leaves configuration mode from any sub-mode (fake-switches
    only knows ``exit``)."""

    is_done: bool
    ending: bool = False

    def do_end(self) -> None:
        self.is_done = True
        self.ending = True


class CiscoConfig(EndMixin, ConfigCommandProcessor):  # type: ignore[misc]
    sub_processor: Any

    def delegate_to_sub_processor(self, line: str) -> bool:
        processed: bool = self.sub_processor.process_command(line)
        if self.sub_processor.is_done:
            ended = getattr(self.sub_processor, "ending", False)
            self.sub_processor = None
            if ended:
                self.is_done = True
                return processed
            self.show_prompt()
        return processed


class CiscoVlan(EndMixin, ConfigVlanCommandProcessor):  # type: ignore[misc]
    pass


class CiscoInterface(EndMixin, ConfigInterfaceCommandProcessor):  # type: ignore[misc]
    """EXTENDED: an allowed-VLAN addition naming an injected VLAN is refused IOS-style."""

    def do_switchport(self, *args: str) -> None:
        if args[0:4] == ("trunk", "allowed", "vlan", "add") and len(args) > 4:
            asked = {int(v) for v in re.findall(r"\d+", args[4])}
            refused = sorted(Injected.refused() & asked)
            if refused:
                why = "is reserved (injected by the test peer)"
                self.write_line(f"% Invalid input detected: VLAN {refused[0]} {why}")
                return
        super().do_switchport(*args)


class CiscoCore(cisco_core.Cisco2960SwitchCore):  # type: ignore[misc]
    """EXTENDED: the interface processor above, and --stall-on a command prefix."""

    def new_command_processor(self) -> Any:
        return EnabledCommandProcessor(
            config=CiscoConfig(
                config_vlan=CiscoVlan(),
                config_vrf=ConfigVRFCommandProcessor(),
                config_interface=CiscoInterface(),
            )
        )

    def launch(self, protocol: Any, terminal_controller: Any) -> Any:
        Injected.count_login()
        session = super().launch(protocol, terminal_controller)
        receive = session.receive

        def stalling(line: str) -> bool:
            if Injected.stalls(line.strip()):
                Injected.stall()
                return True
            if line.strip().startswith("conf"):
                Injected.count_write()
            result: bool = receive(line)
            return result

        session.receive = stalling
        terminal = session.command_processor.terminal_controller

        def unknown(line: str) -> None:  # EXTENDED: IOS's words for an unknown command
            terminal.write("% Invalid input detected at '^' marker.\n")

        session.handle_unknown_command = unknown
        return session


def _ports(model: str, count: int) -> list[Any]:
    if model in JUNOS_MODELS:
        return [Port(f"ge-0/0/{i}") for i in range(1, count + 1)] + [AggregatedPort("ae1")]
    return [Port(f"GigabitEthernet0/{i}") for i in range(1, count + 1)]


def serve(args: argparse.Namespace) -> None:
    """Run one switch until killed; print ``READY <port>`` once it listens."""
    Injected.refuse = frozenset(int(v) for v in args.refuse_vlan)
    Injected.stall_on = args.stall_on
    Injected.state = Path(args.state) if args.state else None
    cores = {"junos": JunosCore, "junos-non-els": NonElsJunosCore, "cisco": CiscoCore}
    conf = SwitchConfiguration(
        "127.0.0.1",
        name=args.name,
        privileged_passwords=[args.enable_password],
        ports=_ports(args.model, args.ports),
    )
    core = cores[args.model](conf)
    if Injected.state is not None and Injected.state.exists() and args.model in JUNOS_MODELS:
        core.datastore.load(Injected.state)
    users = {args.username: args.password.encode()}
    service = SwitchSshService("127.0.0.1", port=0, switch_core=core, users=users)
    listening = service.hook_to_reactor(reactor)
    print(f"READY {listening.getHost().port}", flush=True)
    cast(Any, reactor).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=[*JUNOS_MODELS, "cisco"])
    parser.add_argument("--name", default="leaf1")
    parser.add_argument("--ports", type=int, default=6, help="physical ports (ge-0/0/1..N)")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--enable-password", default="")
    parser.add_argument("--state", default="", help="file keeping the committed config")
    parser.add_argument("--stall-on", default="", help="RPC or command that stalls the peer")
    parser.add_argument("--refuse-vlan", action="append", default=[], help="injected refusal")
    args = parser.parse_args(argv)
    args.password = os.environ.get("PEER_PASSWORD", "")
    args.enable_password = args.enable_password or args.password
    serve(args)


if __name__ == "__main__":
    main()
