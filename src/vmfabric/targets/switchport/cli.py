"""The generic SSH driver (``driver: cli``): edge-port trunk VLANs through a switch's CLI, with
all vendor knowledge in data (``vendors/<platform>.yaml``).

Why scrapli (1.x, its pure-Python line): it is typed (``py.typed``, so mypy --strict checks
our use of it), it models prompts as data (privilege levels: a pattern and the commands that
move between them) which is exactly what a platform file needs to say, it detects refused
commands from ``failed_when_contains`` per command, and its paramiko transport needs no
OpenSSH binary. netmiko, the other candidate, is untyped and per-vendor classes in code.

This module owns:

1. **Platforms as data** (``Platform``, ``load_platform``): for each platform its prompts,
   the commands run on login, the error patterns, how to read a port (a command and regexes
   for trunk mode, the allowed list, the access VLAN and the description), how its allowed
   list is written (ranges, ``none``, ``all``) and the command templates to add, remove,
   set, describe, create VLANs and save. Shipped: cisco_ios, cisco_nxos, arista_eos,
   dell_os10; ``platform_file`` points at a file of one's own.

2. **Reading and rendering, pure** (``parse_port``, ``render``): a port is a TRUNK when its
   configuration says ``switchport mode trunk``; its VLANs are the union of its allowed-list
   lines (IOS continues long lists with ``... allowed vlan add``); ``all`` (or no list, where
   the platform says so) is OPEN; anything else is ACCESS; MISSING when the switch answers
   that the interface does not exist. A plan renders as one configuration block: per port
   ``interface``, ``add``/``remove`` (or ``set`` to narrow an open port), the description,
   ``exit``; VLANs missing from the VLAN database are created first, named
   ``vmfabric-<id>``. Every command carries its inverse.

3. **The driver** (``CliDriver``): one SSH session per switch, opened once and kept (never a
   login per change; re-opened after a loss). An apply sends the block line by line; at the
   first refused command it stops and sends the inverses of what was already applied, in
   reverse order, then raises PermanentError with the switch's own message. That is not a
   transaction (``capabilities.atomic`` is false): a connection lost mid-block can leave
   part of a plan applied; the next read sees it and the next plan completes it.

**Origin record** (``origin: target``): a suffix ``[vmfabric:110,120]`` of the port's
description (``targets.switchport.trunkcli``, as eos and nxos keep it), on the switch.
vmfabric does not delete the VLANs it created (that needs every port's list; a person can
remove them).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from scrapli.driver import NetworkDriver
from scrapli.driver.network.base_driver import PrivilegeLevel
from scrapli.exceptions import (
    ScrapliAuthenticationFailed,
    ScrapliConnectionError,
    ScrapliConnectionNotOpened,
    ScrapliException,
    ScrapliTimeout,
)

from vmfabric.config import SecretRef, SwitchConfig, resolve_secret
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortMode, PortState
from vmfabric.core.vlans import VLAN_MAX, VLAN_MIN, format_vlans
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import DRIVERS, PortWrite, SwitchPortDriver
from vmfabric.targets.switchport.trunkcli import join_description, split_description

VENDORS = "vmfabric.targets.switchport.vendors"
# scrapli and paramiko log what they then raise (a refused login, a closed socket); the
# driver reports each as one error line, so their own log lines would only repeat it.
for _noisy in ("scrapli", "paramiko"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL + 1)

# ---- platforms as data --------------------------------------------------------------------


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prompt(_Data):
    pattern: str
    previous: str = ""
    escalate: str = ""
    deescalate: str = ""
    escalate_prompt: str = ""


class ReadSpec(_Data):
    command: str
    missing: list[str]
    trunk: str
    access_vlan: str
    allowed: str
    description: str
    allowed_absent: Literal["all", "none"]
    default_access_vlan: int = 1


class VlanList(_Data):
    all: list[str]
    none: list[str]


class Commands(_Data):
    interface: str
    exit_interface: str
    add: str
    remove: str
    set: str
    set_none: str
    set_all: str
    description: str
    no_description: str
    vlan_create: list[str]
    vlan_delete: list[str]
    save: str


class VlanDatabase(_Data):
    command: str
    line: str


class Platform(_Data):
    """One platform's file, validated (see any file in ``vendors/``)."""

    name: str
    description: str
    prompts: dict[str, Prompt]
    on_open: list[str]
    errors: list[str]
    read: ReadSpec
    vlan_list: VlanList
    commands: Commands
    vlan_database: VlanDatabase
    max_vlans_per_command: int = Field(100, ge=1)

    @field_validator("prompts")
    @classmethod
    def _has_config(cls, prompts: dict[str, Prompt]) -> dict[str, Prompt]:
        if {"privilege_exec", "configuration"} - set(prompts):
            raise ValueError("prompts need privilege_exec and configuration")
        return prompts

    def privilege_levels(self) -> dict[str, PrivilegeLevel]:
        return {
            name: PrivilegeLevel(
                pattern=p.pattern, name=name, previous_priv=p.previous, deescalate=p.deescalate,
                escalate=p.escalate, escalate_auth=bool(p.escalate_prompt),
                escalate_prompt=p.escalate_prompt,
            )
            for name, p in self.prompts.items()
        }  # fmt: skip


def shipped_platforms() -> list[str]:
    return sorted(
        f.name.removesuffix(".yaml")
        for f in resources.files(VENDORS).iterdir()
        if f.name.endswith(".yaml")
    )


@cache
def load_platform(name: str, path: Path | None = None) -> Platform:
    """The platform ``name`` (shipped), or the file ``path``. ConfigError, one line, if bad."""
    source = str(path) if path else f"vendors/{name}.yaml"
    try:
        text = path.read_text(encoding="utf-8") if path else (
            resources.files(VENDORS).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        )  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"platform file {source}: {exc.strerror or exc}") from None
    try:
        return Platform.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"platform file {source}: {' '.join(first[:3])}") from None


class CliSwitch(SwitchConfig):
    """A switch driven through its CLI over SSH, its vendor knowledge in a platform file."""

    driver: Literal["cli"]
    platform: str = Field(
        description="cisco_ios, cisco_nxos, arista_eos, dell_os10 (or see platform_file)."
    )
    platform_file: Path | None = Field(None, description="A platform file of one's own (YAML).")
    host: str = Field(min_length=1, description="Management address or name.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    username: str = Field(min_length=1)
    password: SecretRef = Field(description="env:NAME or file:PATH; never written anywhere.")
    enable_password: SecretRef | None = Field(None, description="For `enable`; default: password.")
    hostkey_verify: bool = Field(True, description="Refuse a host key not in known_hosts.")
    known_hosts: Path | None = Field(
        None, description="known_hosts file (default ~/.ssh/known_hosts)."
    )
    timeout: float = Field(
        30.0, gt=0, le=3600, allow_inf_nan=False, description="Seconds per command and to connect."
    )
    save: bool = Field(
        False, description="Save the configuration after each apply (slow on many switches)."
    )

    @field_validator("platform")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]+", value):
            raise ValueError(f"platform {value!r} is not a platform name")
        return value

    @model_validator(mode="after")
    def _known(self) -> CliSwitch:
        shipped = shipped_platforms()
        if self.platform_file is None and self.platform not in shipped:
            raise ValueError(
                f"platform {self.platform!r} has no file vendors/{self.platform}.yaml "
                f"(shipped: {', '.join(shipped)}; or give platform_file)"
            )
        return self

    def endpoint(self) -> str:
        return f"SSH {self.host}:{self.port}"


# ---- reading, pure ------------------------------------------------------------------------

ALL = frozenset(range(VLAN_MIN, VLAN_MAX + 1))


def parse_vlan_list(text: str, platform: Platform) -> frozenset[int]:
    """An allowed-VLAN list as the switch prints it: ``1-5,7``, ``none``, ``all`` (ALL).
    Overlaps and unsorted items are accepted: this is the switch's output, not ours."""
    text = text.strip()
    if text in platform.vlan_list.none:
        return frozenset()
    if text in platform.vlan_list.all:
        return ALL
    vlans: set[int] = set()
    for item in filter(None, text.split(",")):
        lo, _, hi = item.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"{item!r} in allowed list {text!r} is not a VLAN range")
        vlans.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(vlans)


@dataclass(frozen=True, slots=True)
class CliPort:
    """What the running configuration says of one port."""

    mode: PortMode
    vlans: frozenset[int] = frozenset()
    description: str | None = None


def _matches(pattern: str, text: str) -> list[str]:
    return re.findall(pattern, text, flags=re.MULTILINE)


def parse_port(output: str, platform: Platform) -> CliPort:
    """A port from the output of the platform's read command."""
    spec = platform.read
    if any(marker in output for marker in spec.missing):
        return CliPort(PortMode.MISSING)
    found = _matches(spec.description, output)
    text = found[0] if found else None
    if not re.search(spec.trunk, output, flags=re.MULTILINE):
        access = _matches(spec.access_vlan, output)
        vlan = int(access[0]) if access else spec.default_access_vlan
        return CliPort(PortMode.ACCESS, frozenset({vlan}), text)
    lists = _matches(spec.allowed, output)
    if not lists and spec.allowed_absent == "all":
        return CliPort(PortMode.OPEN, description=text)
    vlans = frozenset().union(*(parse_vlan_list(item, platform) for item in lists))
    mode = PortMode.OPEN if vlans >= ALL else PortMode.TRUNK
    return CliPort(mode, frozenset() if mode is PortMode.OPEN else vlans, text)


def cli_state(switch: str, name: str, port: CliPort) -> PortState:
    _, record = split_description(port.description or "")
    dynamic = record & port.vlans if port.mode is PortMode.TRUNK else frozenset()
    return PortState(switch, name, port.mode, port.vlans, dynamic)


def parse_vlan_database(output: str, platform: Platform) -> dict[int, str]:
    """VLAN id -> name from the platform's VLAN database listing."""
    found: dict[int, str] = {}
    for match in re.finditer(platform.vlan_database.line, output, flags=re.MULTILINE):
        found[int(match.group(1))] = (
            match.group(2) if match.lastindex and match.lastindex > 1 else ""
        )
    return found


# ---- rendering, pure ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One configuration line, the interface it belongs to, and the line that undoes it."""

    text: str
    context: str = ""  # the ``interface ...`` line it needs, "" at the top level
    undo: tuple[str, ...] = ()


@dataclass
class Block:
    lines: list[Line] = field(default_factory=list)

    def add(self, text: str, context: str = "", undo: Sequence[str] = ()) -> None:
        if text:
            self.lines.append(Line(text, context, tuple(u for u in undo if u)))

    def texts(self) -> list[str]:
        return [line.text for line in self.lines]


def _chunks(vlans: frozenset[int], size: int) -> list[str]:
    ordered = sorted(vlans)
    return [format_vlans(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def _port_lines(block: Block, write: PortWrite, before: CliPort, platform: Platform) -> None:
    cmd = platform.commands
    context = cmd.interface.format(port=write.port)
    block.add(context, undo=())
    if write.narrow:
        text = cmd.set.format(vlans=format_vlans(write.add)) if write.add else cmd.set_none
        block.add(text, context, [cmd.set_all])
    else:
        for part in _chunks(write.add, platform.max_vlans_per_command):
            block.add(cmd.add.format(vlans=part), context, [cmd.remove.format(vlans=part)])
    for part in _chunks(write.remove, platform.max_vlans_per_command):
        block.add(cmd.remove.format(vlans=part), context, [cmd.add.format(vlans=part)])
    if write.record is not None:
        text, _ = split_description(before.description or "")
        new = join_description(text, write.record)
        old = before.description
        undo = cmd.description.format(text=old) if old else cmd.no_description
        block.add(cmd.description.format(text=new) if new else cmd.no_description, context, [undo])
    block.add(cmd.exit_interface, context)


def render(
    writes: Sequence[PortWrite],
    before: Mapping[str, CliPort],
    known_vlans: Mapping[int, str],
    platform: Platform,
) -> Block:
    """One configuration block applying ``writes``; VLANs not in ``known_vlans`` created first."""
    block = Block()
    cmd = platform.commands
    wanted = sorted({v for w in writes for v in w.add} - set(known_vlans))
    for vlan in wanted:
        undo = [c.format(vlan=vlan) for c in cmd.vlan_delete]
        first, *rest = [c.format(vlan=vlan, name=f"vmfabric-{vlan}") for c in cmd.vlan_create]
        block.add(first, undo=undo)
        for text in rest:  # inside the VLAN's own mode
            block.add(text, context=first)
    for write in writes:
        _port_lines(block, write, before[write.port], platform)
    return block


def undo_lines(applied: Sequence[Line], platform: Platform, current: str = "") -> list[str]:
    """The lines undoing ``applied`` (in reverse), each in its interface context; ``current``
    is the context the switch is in now (the refused line's)."""
    out: list[str] = []
    context = current
    for line in reversed(applied):
        if not line.undo:
            continue
        if line.context != context:
            if context:
                out.append(platform.commands.exit_interface)
            if line.context:
                out.append(line.context)
            context = line.context
        out.extend(line.undo)
    if context:
        out.append(platform.commands.exit_interface)
    return out


# ---- the driver ---------------------------------------------------------------------------


@DRIVERS.register("cli")
class CliDriver(SwitchPortDriver):
    """One switch over one kept-open SSH session, driven by its platform file.

    ``logins`` counts SSH logins and ``round_trips`` commands sent (each waits for a prompt)."""

    Options = CliSwitch
    capabilities = Capabilities(
        atomic=False,
        origin="target",
        notes="commands apply one by one; a refused command makes vmfabric undo the ones "
        "already applied; a connection lost mid-plan can leave part of it applied (the next "
        "read sees it, the next plan completes it)",
    )

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, CliSwitch):
            raise ConfigError(f"switch {config.name}: not a cli switch entry")
        super().__init__(config)
        self.options = config
        self.platform = load_platform(config.platform, config.platform_file)
        self.logins = 0
        self.round_trips = 0
        self._conn: NetworkDriver | None = None
        self._ports: dict[str, CliPort] = {}

    def _where(self) -> str:
        return f"switch {self.name}: SSH {self.options.host}:{self.options.port}"

    # ---- session -----------------------------------------------------------------------

    def connect(self) -> None:
        if self._conn is not None and self._conn.isalive():
            return
        self.close()
        opts = self.options
        password = resolve_secret(opts.password).get_secret_value()
        enable = (
            resolve_secret(opts.enable_password).get_secret_value()
            if opts.enable_password
            else password
        )
        known = str(opts.known_hosts) if opts.known_hosts else ""
        conn = NetworkDriver(
            host=opts.host, port=opts.port, auth_username=opts.username, auth_password=password,
            auth_secondary=enable, auth_strict_key=opts.hostkey_verify,
            ssh_known_hosts_file=(known or True) if opts.hostkey_verify else False,
            transport="paramiko", timeout_socket=opts.timeout, timeout_transport=opts.timeout,
            timeout_ops=opts.timeout, privilege_levels=self.platform.privilege_levels(),
            default_desired_privilege_level="privilege_exec",
            failed_when_contains=self.platform.errors, on_open=self._on_open,
        )  # fmt: skip
        try:
            conn.open()
        except Exception as exc:
            self._shut(conn)
            raise self._error(exc, "log in") from None
        self._conn = conn
        self.logins += 1

    def _on_open(self, conn: NetworkDriver) -> None:
        conn.acquire_priv(conn.default_desired_privilege_level)
        for command in self.platform.on_open:
            conn.send_command(command)

    @staticmethod
    def _shut(conn: NetworkDriver) -> None:
        with contextlib.suppress(Exception):  # closing a session that already failed
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._shut(conn)

    def _error(self, exc: BaseException, what: str) -> Exception:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, ScrapliAuthenticationFailed):
            if "known_hosts" in text:
                return PermanentError(
                    f"{self._where()}: host key not trusted ({text}); add it to known_hosts"
                )
            return PermanentError(f"{self._where()}: login as {self.options.username!r} refused")
        self.close()
        if isinstance(exc, ScrapliTimeout | TimeoutError):
            return TransientError(
                f"{self._where()}: no answer to {what} within {self.options.timeout:g}s"
            )
        if isinstance(
            exc,
            ScrapliConnectionError
            | ScrapliConnectionNotOpened
            | ScrapliException
            | OSError
            | EOFError,
        ):
            return TransientError(f"{self._where()}: cannot {what}: {text}")
        raise exc

    def _command(self, command: str) -> str:
        self.connect()
        assert self._conn is not None
        self.round_trips += 1
        try:
            return self._conn.send_command(command, failed_when_contains=[]).result
        except Exception as exc:
            raise self._error(exc, command) from None

    # ---- reads and writes ------------------------------------------------------------

    def read_raw(self, ports: Sequence[str]) -> dict[str, PortState]:
        read = self.platform.read.command
        for port in ports:
            try:
                self._ports[port] = parse_port(self._command(read.format(port=port)), self.platform)
            except ValueError as exc:
                raise PermanentError(f"{self._where()}: port {port}: cannot read: {exc}") from None
        return {p: cli_state(self.name, p, self._ports[p]) for p in ports}

    def write(self, writes: Sequence[PortWrite], before: Mapping[str, PortState]) -> None:
        known: dict[int, str] = {}
        if any(w.add for w in writes):
            known = parse_vlan_database(
                self._command(self.platform.vlan_database.command), self.platform
            )
        block = render(writes, self._ports, known, self.platform)
        applied, refused = self._send(block.lines)
        if refused is not None:
            failed = block.lines[len(applied)]
            self._undo(applied, failed.context)
            raise PermanentError(f"{self._where()}: {refused}")
        if self.options.save:
            self._command(self.platform.commands.save)

    def _send(self, lines: Sequence[Line]) -> tuple[list[Line], str | None]:
        """Send ``lines`` in configuration mode, stopping at the first refused one: the lines
        applied before it, and the refusal (None if every line was accepted)."""
        self.connect()
        assert self._conn is not None
        self.round_trips += len(lines) + 2  # + entering and leaving configuration mode
        try:
            answers = self._conn.send_configs([line.text for line in lines], stop_on_failed=True)
        except Exception as exc:
            raise self._error(exc, "configure") from None
        for index, answer in enumerate(answers):
            if answer.failed:
                said = " ".join(answer.result.split()) or "refused"
                return list(lines[:index]), f"{answer.channel_input!r} refused: {said}"
        return list(lines), None

    def _undo(self, applied: Sequence[Line], current: str) -> None:
        lines = undo_lines(applied, self.platform, current)
        if lines:
            _, refused = self._send([Line(text) for text in lines])
            if refused is not None:
                raise PermanentError(f"{self._where()}: undoing a refused plan failed: {refused}")
