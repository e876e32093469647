"""An Arista EOS peer: fake-switches' ``arista_generic`` model over HTTP(S) eAPI, extended
where vmfabric's tests need what it lacks. Run as a program (``python -m
support.peers.fakeswitches_eos --ports Ethernet1,Port-Channel10 ...``); it prints
``READY <port>`` once it listens on 127.0.0.1.

fake-switches keeps real VLAN and trunk state (``switchport trunk allowed vlan
add|remove|none|all``, ``vlan N``/``name``/``no vlan``, ``show interfaces switchport`` and
``show vlan`` as JSON). Extended here, by subclassing, because it lacks them:

- **configuration sessions** (``configure session NAME`` ... ``commit``/``abort``, and
  ``show configuration sessions``): a session edits a copy of the configuration, taken when
  the session is entered; ``commit`` makes the copy the running configuration, ``abort``
  drops it; a session left pending by a failed request stays until aborted, as on EOS.
- **strict commands**: a command no processor knows answers eAPI error 1002 ``Invalid
  input`` (fake-switches ignores it silently; EOS refuses it), and a command fake-switches
  cannot run answers 1000 instead of an HTTP 500.
- **interfaces**: ``description``/``no description`` and ``show interfaces description``;
  ``switchport mode access|trunk|dot1q-tunnel``, ``switchport access vlan N``, ``switchport
  trunk native vlan N``, shown in ``show interfaces switchport`` (fake-switches shows every
  port as access VLAN 1); exact interface names (fake-switches matches ``Ethernet1`` to
  ``Ethernet11``); ``Port-Channel`` names as EOS spells them; VLAN lists kept sorted and
  unique (fake-switches appends duplicates) and parsed numerically.
- **``end``** in configuration modes, and a minimal ``show version``.
- **HTTP basic authentication** (fake-switches' HTTP service checks none) answering 401 as
  eAPI does, and **HTTPS** with a given certificate (``--tls-cert``/``--tls-key``).
- **test controls** under ``/peer/`` (not part of EOS): ``state`` (every port and VLAN as
  JSON), ``stats`` (eAPI requests and configuration requests received), ``reset``,
  ``fail`` (the next configuration request is refused with ``Invalid input`` at its N-th
  ``interface`` command) and ``delay`` (answer every eAPI request that many seconds late).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import sys
from typing import Any

from fake_switches.arista.command_processor import (
    NameIsIncomplete,
    vlan_display_name,
)
from fake_switches.arista.command_processor.config import ConfigCommandProcessor
from fake_switches.arista.command_processor.config_interface import (
    ConfigInterfaceCommandProcessor,
)
from fake_switches.arista.command_processor.config_vlan import ConfigVlanCommandProcessor
from fake_switches.arista.command_processor.default import DefaultCommandProcessor
from fake_switches.arista.command_processor.enabled import EnabledCommandProcessor
from fake_switches.arista.eapi import (
    EAPI,
    CommandProcessorError,
    InvalidCommand,
    InvalidResult,
    JsonDriver,
)
from fake_switches.command_processing.piping_processor_base import NotPipingProcessor
from fake_switches.switch_configuration import Port, SwitchConfiguration, VlanPort
from twisted.internet import reactor, ssl, task
from twisted.web import resource, server

LOG = logging.getLogger("eos-peer")
MODES = {"access": "access", "trunk": "trunk", "dot1q-tunnel": "dot1qTunnel"}


class Peer:
    """The peer's state: the running configuration, pending sessions, counters, faults."""

    def __init__(self, name: str, ports: list[str]) -> None:
        self.name = name
        self.port_names = ports
        self.running = self.fresh()
        self.sessions: dict[str, SwitchConfiguration] = {}
        self.committed: set[str] = set()
        self.requests = 0
        self.config_requests = 0
        self.fail_at: int | None = None
        self.delay = 0.0

    def fresh(self) -> SwitchConfiguration:
        config = PeerConfiguration("127.0.0.1", name=self.name, ports=[
            Port(p) for p in self.port_names])  # fmt: skip
        config.add_vlan(config.new("Vlan", 1))
        return config

    def reset(self) -> None:
        self.running = self.fresh()
        self.sessions.clear()
        self.committed.clear()
        self.fail_at = None
        self.delay = 0.0

    def commit(self, name: str) -> None:
        staged = self.sessions.pop(name)
        self.running.vlans[:] = staged.vlans
        self.running.ports[:] = staged.ports
        for item in (*self.running.vlans, *self.running.ports):
            item.switch_configuration = self.running
        self.committed.add(name)


PEER: Peer


def _split(name: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z-]+?)\s*(\d[\d/.]*)", name.strip())
    return (match.group(1).lower(), match.group(2)) if match else (name.lower(), "")


class PeerConfiguration(SwitchConfiguration):  # type: ignore[misc]
    def get_port_by_partial_name(self, name: str) -> Any:
        """Exact numbers, abbreviated types (``Et1`` is Ethernet1, never Ethernet11)."""
        kind, number = _split(name)
        for port in self.ports:
            port_kind, port_number = _split(port.name)
            if port_number == number and port_kind.startswith(kind):
                return port
        return None


def _vlans(text: str) -> list[int]:
    out: set[int] = set()
    for item in text.split(","):
        lo, _, hi = item.partition("-")
        first, last = int(lo), int(hi or lo)
        if not 1 <= first <= last <= 4094:
            raise ValueError(item)
        out.update(range(first, last + 1))
    return sorted(out)


def _ranges(vlans: list[int]) -> str:
    if not vlans:
        return "NONE"
    parts, start, prev = [], vlans[0], vlans[0]
    for vlan in [*vlans[1:], None]:
        if vlan is not None and vlan == prev + 1:
            prev = vlan
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        if vlan is not None:
            start = prev = vlan
    return ",".join(parts)


def _switchport_json(port: Any) -> dict[str, Any]:
    mode = MODES.get(port.mode or "access", "access")
    return {
        "enabled": True,
        "switchportInfo": {
            "mode": mode,
            "accessVlanId": port.access_vlan or 1,
            "trunkAllowedVlans": "ALL" if port.trunk_vlans is None else _ranges(port.trunk_vlans),
            "trunkingNativeVlanId": port.trunk_native_vlan or 1,
            "macLearning": True,
            "tpid": "0x8100",
        },
    }


class ShowMixin:
    """``show`` commands fake-switches lacks or shows differently (see module docstring)."""

    switch_configuration: Any
    display: Any

    def do_show(self, *args: str) -> None:
        words = [w.lower() for w in args]
        if len(words) >= 2 and "interfaces".startswith(words[0]) and words[-1] == "description":
            self.display.show(
                self,
                {
                    "interfaceDescriptions": {
                        p.name: {
                            "description": p.description or "",
                            "interfaceStatus": "up",
                            "lineProtocolStatus": "up",
                        }
                        for p in self.switch_configuration.ports
                    }
                },
            )
        elif words and "interfaces".startswith(words[0]) and "switchport".startswith(words[-1]):
            self._switchports(args[1:-1])
        elif words[:2] == ["configuration", "sessions"]:
            self.display.show(
                self,
                {
                    "sessions": {n: {"state": "pending", "description": ""} for n in PEER.sessions},
                    "maxSavedSessions": 1,
                    "maxOpenSessions": 5,
                },
            )
        elif words == ["version"]:
            self.display.show(self, {"modelName": "vEOS-fake-switches", "version": "4.99.0F"})
        else:
            super().do_show(*args)  # type: ignore[misc]

    def _switchports(self, names: tuple[str, ...]) -> None:
        ports = [p for p in self.switch_configuration.ports if not isinstance(p, VlanPort)]
        if names:
            wanted = self.switch_configuration.get_port_by_partial_name("".join(names))
            if wanted is None:
                raise InvalidCommand("Interface does not exist", json_data=None)
            ports = [wanted]
        self.display.show(self, {"switchports": {p.name: _switchport_json(p) for p in ports}})


class PeerDefault(ShowMixin, DefaultCommandProcessor):  # type: ignore[misc]
    pass


class PeerEnabled(ShowMixin, EnabledCommandProcessor):  # type: ignore[misc]
    def do_configure(self, *args: str) -> None:
        if not args or "terminal".startswith(args[0]):
            self.move_to(self.config_processor)
            return
        if "session".startswith(args[0]) and len(args) == 2:
            self._session(args[1])
            return
        raise InvalidCommand("Invalid input", json_data=None)

    def _session(self, name: str) -> None:
        if name in PEER.committed:
            raise InvalidResult(f"Cannot enter session {name} (it was already committed)",
                                json_data=None)  # fmt: skip
        staged = PEER.sessions.get(name)
        if staged is None:
            staged = PEER.sessions[name] = copy.deepcopy(PEER.running)
        processor = SessionConfig(self.display, ConfigVlanCommandProcessor(self.display),
                                  PeerInterface(self.display))  # fmt: skip
        processor.session = name
        processor.init(staged, self.terminal_controller, self.logger, self.piping_processor)
        self.sub_processor = processor

    def do_end(self) -> None:
        pass


class PeerConfig(ConfigCommandProcessor):  # type: ignore[misc]
    def do_end(self) -> None:
        self.is_done = True

    def do_interface(self, *args: str) -> None:
        try:
            name = self.read_interface_name(args)
        except NameIsIncomplete:
            raise InvalidCommand("Incomplete command", json_data=None) from None
        if self.switch_configuration.get_port_by_partial_name(name) is None and not name.startswith(
            "Vlan"
        ):
            raise InvalidCommand("Invalid input (interface does not exist)", json_data=None)
        super().do_interface(*args)


class SessionConfig(PeerConfig):
    session = ""

    def get_prompt(self) -> str:
        return f"{self.switch_configuration.name}(config-s-{self.session[:6]})#"

    def do_commit(self) -> None:
        PEER.commit(self.session)
        self.is_done = True

    def do_abort(self) -> None:
        PEER.sessions.pop(self.session, None)
        self.is_done = True


class PeerInterface(ConfigInterfaceCommandProcessor):  # type: ignore[misc]
    def do_description(self, *words: str) -> None:
        if not words:
            raise InvalidCommand("Incomplete command", json_data=None)
        self.port.description = " ".join(words)

    def do_no_description(self, *_: str) -> None:
        self.port.description = None

    def do_switchport(self, *args: str) -> None:
        words = [w.lower() for w in args]
        if len(words) == 2 and "mode".startswith(words[0]):
            if words[1] not in MODES:
                raise InvalidCommand("Invalid input", json_data=None)
            self.port.mode = words[1]
        elif len(words) == 3 and words[:2] == ["access", "vlan"]:
            self.port.access_vlan = _vlans(words[2])[0]
        elif len(words) == 4 and words[:3] == ["trunk", "native", "vlan"]:
            self.port.trunk_native_vlan = _vlans(words[3])[0]
        elif words[:3] == ["trunk", "allowed", "vlan"]:
            self._allowed(words[3:])
        else:
            raise InvalidCommand("Incomplete command", json_data=None)

    def _allowed(self, words: list[str]) -> None:
        if not words:
            raise InvalidCommand("Incomplete command", json_data=None)
        current = self.port.trunk_vlans
        if words == ["all"]:
            self.port.trunk_vlans = None
        elif words == ["none"]:
            self.port.trunk_vlans = []
        elif words[0] in ("add", "remove") and len(words) == 2:
            vlans = set(_vlans(words[1]))
            base = set(range(1, 4095)) if current is None else set(current)
            result = base | vlans if words[0] == "add" else base - vlans
            self.port.trunk_vlans = (
                None if current is None and words[0] == "add" else sorted(result)
            )
        elif len(words) == 1:
            self.port.trunk_vlans = _vlans(words[0])
        else:
            raise InvalidCommand("Invalid input", json_data=None)


def processor_stack(display: Any) -> Any:
    """fake-switches' Arista processor stack with the extended processors."""
    common = (display,)
    config = PeerConfig(*common, config_vlan=ConfigVlanCommandProcessor(*common),
                        config_interface=PeerInterface(*common))  # fmt: skip
    return PeerDefault(*common, enabled=PeerEnabled(*common, config=config))


def _is_config(cmd: str) -> bool:
    return cmd.strip().startswith("configure")


class PeerEapi(EAPI):  # type: ignore[misc]
    """eAPI with authentication, strict commands, fault injection and delay."""

    def __init__(self, users: dict[str, str]) -> None:
        super().__init__(switch_configuration=None, processor_stack_factory=None, logger=LOG)
        self.users = users

    def render_POST(self, request: Any) -> Any:  # noqa: N802 - twisted's name
        user = request.getUser().decode()
        if self.users.get(user) != request.getPassword().decode() or not user:
            request.setResponseCode(401, b"Unauthorized")
            request.setHeader(b"WWW-Authenticate", b'Basic realm="eAPI"')
            return b"Unable to authenticate user: Bad username/password combination"
        content = json.loads(request.content.read().decode())
        PEER.requests += 1
        if not PEER.delay:
            return self.answer(content)
        later = task.deferLater(reactor, PEER.delay, self.answer, content)
        later.addCallback(lambda body: (request.write(body), request.finish()))
        later.addErrback(lambda failure: LOG.info("delayed answer lost: %s", failure.value))
        return server.NOT_DONE_YET

    def answer(self, content: dict[str, Any]) -> bytes:
        cmds = [c["cmd"] if isinstance(c, dict) else str(c) for c in content["params"]["cmds"]]
        fail_at = self._fault(cmds)
        display = JsonDriver.display_class()
        processor = processor_stack(display)
        processor.init(PEER.running, _Buffer(), LOG, NotPipingProcessor())
        results: list[dict[str, Any]] = []
        for index, cmd in enumerate(cmds):
            display.display_object = None
            try:
                if index == fail_at:
                    raise InvalidCommand("Invalid input", json_data=None)
                self._run(processor, cmd)
            except CommandProcessorError as exc:
                results.append({"errors": [str(exc)]})
                return self._error(content, cmds, index, exc, results)
            results.append(display.display_object or {})
        return json.dumps({"jsonrpc": "2.0", "id": content["id"], "result": results}).encode()

    @staticmethod
    def _fault(cmds: list[str]) -> int | None:
        """Index of the command to refuse: the N-th ``interface`` command of the next
        configuration request (``fail``), or None."""
        if not any(_is_config(c) for c in cmds):
            return None
        PEER.config_requests += 1
        nth, PEER.fail_at = PEER.fail_at, None
        if nth is None:
            return None
        interfaces = [i for i, c in enumerate(cmds) if c.startswith("interface ")]
        return interfaces[nth - 1] if len(interfaces) >= nth else None

    @staticmethod
    def _run(processor: Any, cmd: str) -> None:
        try:
            done = processor.process_command(cmd)
        except CommandProcessorError:
            raise
        except (NotImplementedError, ValueError, IndexError, KeyError, AttributeError):
            raise InvalidResult("could not run command", json_data=None) from None
        if not done:
            raise InvalidCommand("Invalid input", json_data=None)

    @staticmethod
    def _error(content: dict[str, Any], cmds: list[str], index: int, exc: Any,
               data: list[dict[str, Any]]) -> bytes:  # fmt: skip
        message = f"CLI command {index + 1} of {len(cmds)} {cmds[index]!r} failed: {exc.error}"
        error = {"code": exc.code, "message": message, "data": data}
        return json.dumps({"jsonrpc": "2.0", "id": content["id"], "error": error}).encode()


class _Buffer:
    def write(self, text: str) -> None:
        pass


class Control(resource.Resource):
    """``/peer/<what>``: test controls (see the module docstring)."""

    isLeaf = True  # noqa: N815 - twisted's name

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted's name
        what = request.postpath[0].decode() if request.postpath else ""
        if what == "state":
            return json.dumps(state()).encode()
        if what == "stats":
            return json.dumps({"requests": PEER.requests, "config_requests": PEER.config_requests,
                               "sessions": sorted(PEER.sessions)}).encode()  # fmt: skip
        request.setResponseCode(404)
        return b"{}"

    def render_POST(self, request: Any) -> bytes:  # noqa: N802 - twisted's name
        what = request.postpath[0].decode() if request.postpath else ""
        body = json.loads(request.content.read().decode() or "{}")
        if what == "reset":
            PEER.reset()
        elif what == "fail":
            PEER.fail_at = int(body["interface"])
        elif what == "delay":
            PEER.delay = float(body["seconds"])
        else:
            request.setResponseCode(404)
        return b"{}"


def state() -> dict[str, Any]:
    ports = {}
    for port in PEER.running.ports:
        ports[port.name] = {
            "mode": port.mode or "access",
            "trunk_vlans": port.trunk_vlans,
            "access_vlan": port.access_vlan,
            "native_vlan": port.trunk_native_vlan,
            "description": port.description,
            "load_interval": getattr(port, "load_interval", None),
            "svi": isinstance(port, VlanPort),
        }
    vlans = {str(v.number): vlan_display_name(v) for v in PEER.running.vlans}
    return {"ports": ports, "vlans": vlans, "sessions": sorted(PEER.sessions)}


def main(argv: list[str]) -> None:
    global PEER  # one peer per process
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="leaf1")
    parser.add_argument("--ports", required=True, help="comma-separated interface names")
    parser.add_argument("--users", default="admin:admin", help="user:password,...")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args(argv)
    PEER = Peer(args.name, args.ports.split(","))
    users = dict(u.split(":", 1) for u in args.users.split(","))
    root: Any = resource.Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"command-api", PeerEapi(users))
    root.putChild(b"peer", Control())  # type: ignore[no-untyped-call]
    site: Any = server.Site(root)  # type: ignore[no-untyped-call]
    loop: Any = reactor
    if args.tls_cert:
        factory = ssl.DefaultOpenSSLContextFactory(args.tls_key, args.tls_cert)  # type: ignore[no-untyped-call]
        listening = loop.listenSSL(args.port, site, factory, interface="127.0.0.1")
    else:
        listening = loop.listenTCP(args.port, site, interface="127.0.0.1")
    print(f"READY {listening.getHost().port}", flush=True)
    loop.run()


if __name__ == "__main__":
    main(sys.argv[1:])
