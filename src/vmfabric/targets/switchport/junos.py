"""The Junos driver: edge-port trunk VLANs over NETCONF (ncclient), one commit per plan.

This module owns two things:

1. **Junos configuration semantics, pure** (``parse_config``, ``JunosConfig.state``,
   ``render_edit``). A port's VLANs follow from ``interfaces <port> unit 0 family
   ethernet-switching``:

   - TRUNK: ``interface-mode trunk`` (ELS) or ``port-mode trunk`` (non-ELS; both are read
     whatever ``syntax`` says). Its VLANs are its ``vlan members``: numbers, ranges
     (``100-110``) or VLAN names resolved through ``vlans <name> vlan-id``.
   - OPEN: a trunk with ``vlan members all``; left alone unless ``open_ports: close``.
   - ACCESS: any other port the switch has (access mode, no ethernet-switching family, an
     aggregated-ethernet member). Never written.
   - MISSING: neither configured nor listed by ``get-interface-information``.

   vmfabric adds VLANs as numeric members and removes exactly the members that carry a VLAN
   (a range it splits, a name it deletes); nothing else of the interface is touched. A VLAN
   that no VLAN of the switch carries yet is created as ``vmfabric-<id>`` (with ``vlan-id``
   and a description naming vmfabric), and such a VLAN is deleted again once no interface
   names it and nobody added anything to it (an ``l3-interface``, say).

   **Closed ports.** ELS refuses to commit a trunk without members. A trunk whose last VLAN
   vmfabric removes is kept *closed* on the placeholder VLAN ``vmfabric-closed``
   (``vlan-id`` = option ``closed_vlan``, default 4094, a VLAN no other port carries); the
   placeholder is never reported and is dropped when a VLAN arrives. With ``syntax:
   non-els`` an empty trunk is valid and carries nothing, so no placeholder is used.

   **Origin record** (capabilities: ``origin: target``): on the interface itself, as
   ``apply-macro vmfabric { dynamic "110,120-122"; }``: Junos keeps apply-macro data with the
   configuration, so the record survives a lost store and travels with config backups.

2. **The driver** (``JunosDriver``, registered as ``junos``): one NETCONF session per switch,
   opened once and reused (re-opened after a loss). An apply plans on the running
   configuration; a plan with nothing to change sends nothing more. Otherwise: lock the
   candidate, plan again on it (a person's edit made meanwhile is kept), one ``edit-config``
   with every port's change, ``commit``, unlock. Any error discards the
   candidate and unlocks; a lost session makes Junos discard the uncommitted change itself
   (documented for ``<lock>``). Nothing is half applied. Device errors are PermanentErrors
   carrying the switch's own message.

Options (model ``JunosSwitch``): ``host``, ``port`` (830), ``username``, ``password`` (a
reference: ``env:NAME`` or ``file:PATH``, read at connect and never logged),
``hostkey_verify`` (true: the host key must be in ``known_hosts``, default
``~/.ssh/known_hosts``), ``timeout`` (seconds, per RPC and for connecting), ``syntax``
(``els`` | ``non-els``), ``closed_vlan``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from lxml import etree
from ncclient import manager as nc_manager
from ncclient import operations as nc_operations
from ncclient import transport as nc_transport
from ncclient.operations.errors import TimeoutExpiredError
from ncclient.operations.rpc import RPCError
from ncclient.transport import session as nc_session
from ncclient.transport.errors import AuthenticationError, SSHUnknownHostError, TransportError
from pydantic import Field

from vmfabric.config import SecretRef, SwitchConfig, resolve_secret
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortChange, PortMode, PortState
from vmfabric.core.vlans import format_vlans, parse_vlans
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import (
    DRIVERS,
    PortWrite,
    SwitchPortDriver,
    check_changes,
    plan_write,
)

LOG = logging.getLogger(__name__)
T = TypeVar("T")

MACRO = "vmfabric"  # apply-macro name holding the origin record
MACRO_KEY = "dynamic"
VLAN_PREFIX = "vmfabric-"  # VLANs vmfabric creates: vmfabric-<id>
CLOSED_NAME = "vmfabric-closed"
CREATED_BY = "created by vmfabric; deleted by it when unused"
CLOSE_TIMEOUT = 5.0  # seconds close-session may take when a session is dropped
_OWN_VLAN_CHILDREN = {"name", "vlan-id", "description"}


class JunosSwitch(SwitchConfig):
    """A Junos switch (EX, QFX) reached over NETCONF/SSH."""

    driver: Literal["junos"]
    host: str = Field(min_length=1, description="Management address or name.")
    port: int = Field(830, ge=1, le=65535, description="NETCONF over SSH port.")
    username: str = Field(
        min_length=1, description="Login (a class allowed to edit interfaces and vlans)."
    )
    password: SecretRef = Field(description="env:NAME or file:PATH; never written anywhere.")
    hostkey_verify: bool = Field(True, description="Refuse a host key not in known_hosts.")
    known_hosts: Path | None = Field(
        None, description="known_hosts file (default ~/.ssh/known_hosts)."
    )
    timeout: float = Field(
        30.0, gt=0, le=3600, allow_inf_nan=False, description="Seconds per RPC and to connect."
    )
    syntax: Literal["els", "non-els"] = Field(
        "els", description="els: interface-mode (EX2300/3400/4300, QFX); non-els: port-mode."
    )
    closed_vlan: int = Field(
        4094,
        ge=1,
        le=4094,
        description="ELS: VLAN id of the placeholder keeping an emptied trunk closed.",
    )

    def endpoint(self) -> str:
        return f"NETCONF {self.host}:{self.port}"


# ---- Junos configuration, pure ----------------------------------------------------------


def _local(tree: Any) -> Any:
    """``tree`` with namespaces dropped from every tag (Junos replies mix several)."""
    for element in tree.iter():
        if isinstance(element.tag, str):
            element.tag = etree.QName(element).localname
    return tree


def _text(element: Any, path: str) -> str:
    return str(element.findtext(path) or "").strip()


@dataclass(frozen=True, slots=True)
class JunosVlan:
    name: str
    vids: frozenset[int]  # its vlan-id, or its vlan-id-list
    own: bool  # created by vmfabric and holding nothing else: vmfabric may delete it


@dataclass(frozen=True, slots=True)
class JunosPort:
    """An interface's VLAN-relevant configuration (unit 0, family ethernet-switching)."""

    name: str
    switching: bool = False
    trunk: bool = False
    members: tuple[str, ...] = ()
    record: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class JunosConfig:
    """The ``interfaces`` and ``vlans`` of a configuration, plus the physical interfaces."""

    ports: Mapping[str, JunosPort]
    vlans: Mapping[str, JunosVlan]
    physical: frozenset[str] = frozenset()

    def vid_names(self) -> dict[int, str]:
        """Each VLAN id some VLAN of the switch carries, with that VLAN's name."""
        return {vid: v.name for v in self.vlans.values() for vid in v.vids}

    def member_ids(self, text: str) -> frozenset[int] | None:
        """VLAN ids a ``members`` entry stands for; None for ``all`` (every VLAN)."""
        if text == "all":
            return None
        if text[:1].isdigit():
            try:
                return parse_vlans(text)
            except ValueError:
                return frozenset()
        vlan = self.vlans.get(text)
        return vlan.vids if vlan is not None else frozenset()

    def placeholder(self) -> frozenset[int]:
        vlan = self.vlans.get(CLOSED_NAME)
        return vlan.vids if vlan is not None else frozenset()

    def state(self, switch: str, name: str) -> PortState:
        port = self.ports.get(name)
        if port is None:
            mode = PortMode.ACCESS if name in self.physical else PortMode.MISSING
            return PortState(switch, name, mode)
        vlans: set[int] = set()
        for text in port.members:
            ids = self.member_ids(text)
            if ids is None:
                return PortState(switch, name, PortMode.OPEN if port.trunk else PortMode.ACCESS)
            vlans |= ids
        if not port.trunk:
            return PortState(switch, name, PortMode.ACCESS, frozenset(vlans))
        carried = frozenset(vlans) - self.placeholder()
        return PortState(switch, name, PortMode.TRUNK, carried, port.record & carried)


def _record(interface: Any) -> frozenset[int]:
    for macro in interface.findall("apply-macro"):
        if _text(macro, "name") != MACRO:
            continue
        for data in macro.findall("data"):
            if _text(data, "name") == MACRO_KEY:
                try:
                    return parse_vlans(_text(data, "value").strip('"'))
                except ValueError:
                    LOG.warning("ignoring unreadable apply-macro %s record", MACRO)
    return frozenset()


def _port(interface: Any) -> JunosPort:
    name = _text(interface, "name")
    record = _record(interface)
    for unit in interface.findall("unit"):
        switching = unit.find("family/ethernet-switching")
        if _text(unit, "name") != "0" or switching is None:
            continue
        mode = _text(switching, "interface-mode") or _text(switching, "port-mode")
        members = tuple(str(m.text or "").strip() for m in switching.findall("vlan/members"))
        return JunosPort(name, True, mode == "trunk", members, record)
    return JunosPort(name, record=record)


def _vlan(element: Any) -> JunosVlan:
    name = _text(element, "name")
    vids: set[int] = set()
    for text in [_text(element, "vlan-id")] + [
        str(e.text) for e in element.findall("vlan-id-list")
    ]:
        try:
            vids |= parse_vlans(text.strip()) if text.strip() else set()
        except ValueError:
            LOG.warning("ignoring VLAN %s's unreadable id %r", name, text)
    children = {child.tag for child in element if isinstance(child.tag, str)}
    own = name.startswith(VLAN_PREFIX) and children <= _OWN_VLAN_CHILDREN
    return JunosVlan(name, frozenset(vids), own)


def parse_config(configuration: Any, physical: Iterable[str] = ()) -> JunosConfig:
    """A ``<configuration>`` element (namespaces dropped) as a JunosConfig."""
    ports = {p.name: p for p in map(_port, configuration.findall("interfaces/interface"))}
    vlans = {v.name: v for v in map(_vlan, configuration.findall("vlans/vlan"))}
    return JunosConfig(ports, vlans, frozenset(physical))


def parse_physical(reply: Any) -> frozenset[str]:
    """Interface names in a ``get-interface-information`` reply (namespaces dropped)."""
    return frozenset(_text(p, "name") for p in reply.iter("physical-interface"))


# ---- rendering one plan as one edit-config -------------------------------------------------


@dataclass
class _PortEdit:
    """Member operations for one port, and its member list afterwards."""

    name: str
    after: list[str]
    delete: list[str] = field(default_factory=list)
    add: list[str] = field(default_factory=list)
    record: frozenset[int] | None = None

    def remove(self, text: str) -> None:
        if text in self.after:
            self.after.remove(text)
            self.delete.append(text)

    def insert(self, text: str) -> None:
        if text not in self.after:
            self.after.append(text)
            self.add.append(text)


def _plan_members(cfg: JunosConfig, write: PortWrite, closed: bool) -> _PortEdit:
    """The member operations of one write; ``closed``: an emptied trunk keeps the
    placeholder (ELS)."""
    port = cfg.ports[write.port]
    edit = _PortEdit(write.port, list(port.members), record=write.record)
    if write.narrow:
        edit.remove("all")
    for text in list(edit.after):
        ids = cfg.member_ids(text)
        if ids is None or not ids & write.remove:
            continue
        if not text[:1].isdigit() and ids - write.remove:
            raise PermanentError(
                f"port {write.port}: VLAN {sorted(ids & write.remove)[0]} comes from VLAN "
                f"{text!r}, which carries others too; vmfabric will not edit it"
            )
        edit.remove(text)
        for part in filter(None, format_vlans(ids - write.remove).split(",")):
            edit.insert(part)
    for vlan in sorted(write.add):
        edit.insert(str(vlan))
    carried = {t for t in edit.after if t != CLOSED_NAME and cfg.member_ids(t) != frozenset()}
    if closed and not carried:
        edit.insert(CLOSED_NAME)
    elif carried:
        edit.remove(CLOSED_NAME)
    return edit


def _e(tag: str, text: str | None = None, **attrib: str) -> Any:
    element = etree.Element(tag, attrib)
    element.text = text
    return element


def _interface_xml(edit: _PortEdit) -> Any:
    interface = _e("interface")
    interface.append(_e("name", edit.name))
    if edit.record is not None:
        macro = _e("apply-macro", **({} if edit.record else {"operation": "delete"}))
        macro.append(_e("name", MACRO))
        if edit.record:
            data = etree.SubElement(macro, "data")
            data.append(_e("name", MACRO_KEY))
            data.append(_e("value", format_vlans(edit.record)))
        interface.append(macro)
    if edit.delete or edit.add:
        unit = etree.SubElement(interface, "unit")
        unit.append(_e("name", "0"))
        vlan = etree.SubElement(
            etree.SubElement(etree.SubElement(unit, "family"), "ethernet-switching"), "vlan"
        )
        for text in edit.delete:
            vlan.append(_e("members", text, operation="delete"))
        for text in edit.add:
            vlan.append(_e("members", text))
    return interface


def _vlan_xml(name: str, vid: int | None, delete: bool = False) -> Any:
    vlan = _e("vlan", **({"operation": "delete"} if delete else {}))
    vlan.append(_e("name", name))
    if not delete:
        vlan.append(_e("description", CREATED_BY))
        vlan.append(_e("vlan-id", str(vid)))
    return vlan


def _vlan_changes(
    cfg: JunosConfig, edits: Sequence[_PortEdit], closed_vlan: int
) -> tuple[list[tuple[str, int]], list[str]]:
    """VLANs to create (name, id) and vmfabric's own VLANs to delete after these edits."""
    members = {p.name: list(p.members) for p in cfg.ports.values()}
    members.update({e.name: e.after for e in edits})
    used_names = {t for texts in members.values() for t in texts}
    used_ids: set[int] = set()
    for text in used_names:
        used_ids |= cfg.member_ids(text) or set()
    known = cfg.vid_names()
    create = [
        (f"{VLAN_PREFIX}{v}", v)
        for e in edits
        for t in e.add
        if t.isdigit() and (v := int(t)) not in known
    ]
    if CLOSED_NAME in used_names and CLOSED_NAME not in cfg.vlans:
        if closed_vlan in known:
            raise PermanentError(
                f"closed_vlan {closed_vlan} is VLAN {known[closed_vlan]!r} on the switch; set "
                "closed_vlan to an unused VLAN id"
            )
        create.append((CLOSED_NAME, closed_vlan))
    delete = [
        v.name for v in cfg.vlans.values()
        if v.own and v.name not in used_names and (not v.vids & used_ids or v.name == CLOSED_NAME)
    ]  # fmt: skip
    return sorted(set(create)), sorted(delete)


def render_edit(
    cfg: JunosConfig, writes: Sequence[PortWrite], *, closed: bool, closed_vlan: int
) -> Any:
    """The ``<config>`` of one edit-config applying ``writes`` to a switch in ``cfg``.

    Only the named members, the origin record and vmfabric's own VLANs are touched."""
    edits = [_plan_members(cfg, w, closed) for w in writes]
    create, delete = _vlan_changes(cfg, edits, closed_vlan)
    configuration = _e("configuration")
    interfaces = etree.SubElement(configuration, "interfaces")
    for edit in edits:
        interfaces.append(_interface_xml(edit))
    if create or delete:
        vlans = etree.SubElement(configuration, "vlans")
        for name, vid in create:
            vlans.append(_vlan_xml(name, vid))
        for name in delete:
            vlans.append(_vlan_xml(name, None, delete=True))
    config = _e("config")
    config.append(configuration)
    return config


# ---- the driver ---------------------------------------------------------------------------

_FILTER = "<configuration><interfaces/><vlans/></configuration>"
# ncclient's reader thread sends a queued RPC only when its select() times out (TICK, 0.1 s),
# so every RPC of an idle session waited up to 100 ms: 0.5 s per apply. A 5 ms tick costs a
# sleeping thread 200 wake-ups a second per session and brings an RPC to the peer's own time.
NCCLIENT_TICK = 0.005
nc_session.TICK = min(nc_session.TICK, NCCLIENT_TICK)


@DRIVERS.register("junos")
class JunosDriver(SwitchPortDriver):
    """One Junos switch over one kept-open NETCONF session. See the module docstring.

    ``requests`` counts RPCs and ``logins`` SSH logins (benchmarks and tests read them)."""

    Options = JunosSwitch
    capabilities = Capabilities(
        atomic=True,
        origin="target",
        notes="one locked candidate, one commit per plan; discarded on any error",
    )

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, JunosSwitch):
            raise ConfigError(f"switch {config.name}: not a junos switch entry")
        super().__init__(config)
        self.options = config
        self.requests = 0
        self.logins = 0
        self._mgr: Any = None

    # ---- session -----------------------------------------------------------------------

    def _where(self) -> str:
        return f"switch {self.name}: NETCONF {self.options.host}:{self.options.port}"

    def connect(self) -> None:
        if self._mgr is not None and self._mgr.connected:
            return
        self.close()
        opts = self.options
        password = resolve_secret(opts.password)  # ConfigError if the reference is unusable
        handler = nc_manager.make_device_handler({"name": "default"})
        session = nc_transport.SSHSession(handler)
        if opts.hostkey_verify and opts.known_hosts is not None:
            try:
                session.load_known_hosts(str(opts.known_hosts))
            except OSError as exc:
                raise ConfigError(
                    f"switch {self.name}: known_hosts {opts.known_hosts}: {exc.strerror}"
                ) from None
        try:
            session.connect(
                host=opts.host, port=opts.port, timeout=opts.timeout, username=opts.username,
                password=password.get_secret_value(), hostkey_verify=opts.hostkey_verify,
                allow_agent=False, look_for_keys=False,
            )  # fmt: skip
        except Exception as exc:
            with contextlib.suppress(Exception):
                session.close()
            raise self._error(exc, "connect") from None
        self.logins += 1
        self._mgr = nc_manager.Manager(
            session, handler, timeout=opts.timeout, raise_mode=nc_operations.RaiseMode.ERRORS
        )

    def close(self) -> None:
        mgr, self._mgr = self._mgr, None
        if mgr is not None:
            # a peer that let an RPC time out, or died, will not answer close-session
            # either: waiting ``timeout`` for it again would double the stall
            mgr.timeout = min(self.options.timeout, CLOSE_TIMEOUT)
            with contextlib.suppress(Exception):
                mgr.close_session()
            with contextlib.suppress(Exception):
                mgr._session.close()

    def _error(self, exc: BaseException, what: str) -> Exception:
        """An ncclient/socket error as the vmfabric error the runtime acts on."""
        opts = self.options
        if isinstance(exc, AuthenticationError):
            return PermanentError(
                f"{self._where()}: login as {opts.username!r} refused (check username and password)"
            )
        if isinstance(exc, SSHUnknownHostError):
            return PermanentError(
                f"{self._where()}: host key {exc.fingerprint} is not in known_hosts; refusing to "
                "connect (add the key, or set hostkey_verify: false in a lab)"
            )
        if isinstance(exc, RPCError):
            message = " ".join(str(exc.message or exc).split())
            return PermanentError(f"{self._where()}: {what} refused: {message}")
        if isinstance(exc, TimeoutExpiredError | socket.timeout | TimeoutError):
            self.close()
            return TransientError(f"{self._where()}: no answer to {what} within {opts.timeout:g}s")
        if isinstance(exc, TransportError | OSError | EOFError):
            self.close()
            reason = " ".join(str(exc).split()) or type(exc).__name__
            return TransientError(f"{self._where()}: cannot {what}: {reason}")
        raise exc

    def _rpc(self, what: str, call: Callable[[Any], T]) -> T:
        self.connect()
        self.requests += 1
        try:
            return call(self._mgr)
        except Exception as exc:
            raise self._error(exc, what) from None

    def _config(self, source: str, ports: Sequence[str]) -> JunosConfig:
        reply = self._rpc("get-config", lambda m: m.get_config(source, filter=("subtree", _FILTER)))
        data = _local(reply.data_ele)
        configuration = data.find("configuration")
        if configuration is None:
            configuration = _e("configuration")
        cfg = parse_config(configuration)
        if all(p in cfg.ports for p in ports):
            return cfg
        terse = etree.fromstring(b"<get-interface-information><terse/></get-interface-information>")
        info = self._rpc("get-interface-information", lambda m: m.dispatch(terse))
        physical = parse_physical(_local(etree.fromstring(info.xml.encode())))
        return JunosConfig(cfg.ports, cfg.vlans, physical)

    # ---- reads and writes ------------------------------------------------------------

    def read_raw(self, ports: Sequence[str]) -> dict[str, PortState]:
        cfg = self._config("running", ports)
        return {p: cfg.state(self.name, p) for p in ports}

    def _plan(self, cfg: JunosConfig, changes: Sequence[PortChange]) -> list[PortWrite]:
        states = {c.port: cfg.state(self.name, c.port) for c in changes}
        return [w for c in changes if (w := plan_write(states[c.port], c, self.open_ports))]

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        """Plan on the running configuration; when something is to change, lock, plan again
        on the candidate (a person's edit since then is kept), edit, commit, unlock."""
        check_changes(self.config, changes)
        ports = list(dict.fromkeys(c.port for c in changes))
        cfg = self._config("running", ports)
        if not self._plan(cfg, changes):
            return {p: cfg.state(self.name, p) for p in ports}
        self.write_changes(changes)
        return self.read_raw(ports)

    def write(self, writes: Sequence[PortWrite], before: Mapping[str, PortState]) -> None:
        raise NotImplementedError("JunosDriver plans under the candidate lock: see apply()")

    def write_changes(self, changes: Sequence[PortChange]) -> None:
        """One locked transaction: nothing is committed unless every change is in it."""
        try:
            self._rpc("lock the candidate", lambda m: m.lock("candidate"))
        except PermanentError as exc:  # another session holds it: try again later
            raise TransientError(str(exc)) from None
        try:
            cfg = self._config("candidate", [c.port for c in changes])
            writes = self._plan(cfg, changes)
            if writes:
                closed = self.options.syntax == "els"
                edit = render_edit(cfg, writes, closed=closed, closed_vlan=self.options.closed_vlan)
                self._rpc("edit-config", lambda m: m.edit_config(target="candidate", config=edit))
                self._rpc("commit", lambda m: m.commit())
                self.transactions += 1
                self.writes += sum(w.memberships for w in writes)
        except BaseException:
            self._discard()
            raise
        finally:
            self._unlock()

    def _discard(self) -> None:
        if self._mgr is not None:
            with contextlib.suppress(Exception):
                self._rpc("discard-changes", lambda m: m.discard_changes())

    def _unlock(self) -> None:
        if self._mgr is not None:
            with contextlib.suppress(Exception):
                self._rpc("unlock", lambda m: m.unlock("candidate"))
