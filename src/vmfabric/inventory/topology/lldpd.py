"""LLDP/CDP neighbours as lldpd sees them: run ``lldpcli -f json show neighbors`` and parse it.

lldpd's JSON changes shape between versions and output formats, and this module accepts
each shape it has seen (recorded samples live in ``tests/data/lldpd/``):

- ``-f json`` with one neighbour: ``{"lldp": {"interface": {"eth0": {...}}}}``;
- ``-f json`` with several: ``{"lldp": {"interface": [{"eth0": {...}}, {"eth1": {...}}]}}``;
- ``-f json0`` (every value a list): ``{"lldp": [{"interface": [{"name": "eth0", ...}]}]}``;
- no neighbour at all: ``{"lldp": {}}`` or an empty ``interface`` list.

Inside a neighbour, the chassis is keyed by its system name (``{"leaf1": {"id": ...}}``),
or unnamed (``{"id": ...}``), or a json0 list. Anything else is refused with one
``LldpdOutputError`` line naming the problem. lldpd not running, a missing command or a
timeout is a ``TransientError``: the caller retries later.

``read_neighbors`` is the hypervisor's view (local NIC -> the switch port it hears);
``switch_side_neighbors`` is the same parse from a switch (switch port -> the host and NIC
it hears). A neighbour heard over CDP has protocol ``"cdp"``; LLDP and lldpd's other
protocols (EDP, FDP, SONMP) report ``"lldp"``. When one interface hears the same link over
several protocols, the LLDP neighbour wins.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmfabric.core.errors import ConfigError, TransientError, VmfabricError
from vmfabric.core.model import Neighbor

DEFAULT_TIMEOUT = 10.0
_CHASSIS_FIELDS = frozenset({"id", "name", "descr", "mgmt-ip", "mgmt-iface", "capability"})


class LldpdOutputError(VmfabricError, ValueError):
    """lldpcli answered with something this parser does not understand."""


@dataclass(frozen=True, slots=True)
class SeenHost:
    """What a switch port hears: the host's name, the NIC it sends from, the raw neighbour.

    ``nic`` is the port id when it is an interface name, else the port description (Linux
    lldpd sends the MAC as port id and the interface name as description)."""

    host: str
    nic: str
    neighbor: Neighbor


@dataclass(frozen=True, slots=True)
class _Entry:
    interface: str
    neighbor: Neighbor
    port_id_type: str


# ---- running lldpcli --------------------------------------------------------------------


def lldpcli_argv(
    *,
    command: str | None = None,
    host: str | None = None,
    netns: str | None = None,
    socket: str | None = None,
    fmt: str = "json",
) -> list[str]:
    """The argv that prints neighbours as JSON (``fmt`` ``json0`` is lldpd's stabler form).

    ``command`` (``"ssh {host} lldpcli -f json show neighbors"``) is split like a shell
    would and ``{host}`` replaced in each word; without it, local ``lldpcli`` (with ``-u
    socket`` when given). ``netns`` runs it through ``ip netns exec NETNS``.
    """
    if command is not None:
        argv = [_fill_host(word, host, command) for word in shlex.split(command)]
        if not argv:
            raise ConfigError("lldp command is empty")
    else:
        argv = ["lldpcli", *(["-u", socket] if socket else []), "-f", fmt, "show", "neighbors"]
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def _fill_host(word: str, host: str | None, command: str) -> str:
    if "{host}" not in word:
        return word
    if host is None:
        raise ConfigError(f"lldp command {command!r} names {{host}} but no host was given")
    return word.replace("{host}", host)


def run_lldpcli(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run ``argv`` and return its standard output; failures are one-line TransientErrors."""
    shown = shlex.join(argv)
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise TransientError(f"{shown}: command {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise TransientError(f"{shown}: no answer within {timeout:g}s") from None
    except OSError as exc:
        raise TransientError(f"{shown}: cannot run: {exc.strerror}") from None
    if done.returncode != 0:
        raise TransientError(f"{shown}: exit {done.returncode}: {_last_line(done.stderr)}")
    return done.stdout.decode("utf-8", errors="replace")


def _last_line(raw: bytes) -> str:
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no error message (is lldpd running?)"


def read_neighbors(
    *,
    command: str | None = None,
    host: str | None = None,
    netns: str | None = None,
    socket: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Neighbor]:
    """Local interface -> the neighbour it hears, read from a running lldpd."""
    argv = lldpcli_argv(command=command, host=host, netns=netns, socket=socket)
    return parse_neighbors(run_lldpcli(argv, timeout), where=shlex.join(argv))


def switch_side_neighbors(
    *,
    command: str | None = None,
    host: str | None = None,
    netns: str | None = None,
    socket: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, SeenHost]:
    """Switch port -> the host (and its NIC) it hears, read from lldpd on the switch."""
    argv = lldpcli_argv(command=command, host=host, netns=netns, socket=socket)
    return parse_switch_side(run_lldpcli(argv, timeout), where=shlex.join(argv))


# ---- parsing ----------------------------------------------------------------------------


def parse_neighbors(text: str | bytes, where: str = "lldpcli") -> dict[str, Neighbor]:
    """Parse ``lldpcli -f json|json0 show neighbors`` into local interface -> neighbour."""
    return {name: entry.neighbor for name, entry in _best_entries(text, where).items()}


def parse_switch_side(text: str | bytes, where: str = "lldpcli") -> dict[str, SeenHost]:
    """Parse a switch's neighbours into switch port -> the host and NIC heard there."""
    return {name: _seen_host(entry) for name, entry in _best_entries(text, where).items()}


def _seen_host(entry: _Entry) -> SeenHost:
    neighbor = entry.neighbor
    by_name = entry.port_id_type in ("ifname", "local") or not neighbor.port_descr
    nic = neighbor.port_id if by_name else neighbor.port_descr
    return SeenHost(host=neighbor.system_name, nic=nic, neighbor=neighbor)


def _best_entries(text: str | bytes, where: str) -> dict[str, _Entry]:
    best: dict[str, _Entry] = {}
    for interface, body in _interfaces(_load(text, where), where):
        entry = _entry(interface, body, f"{where}: interface {interface}")
        if _better(entry, best.get(interface)):
            best[interface] = entry
    return best


def _better(entry: _Entry, known: _Entry | None) -> bool:
    """The first neighbour of an interface wins, except that LLDP beats CDP."""
    if known is None:
        return True
    return known.neighbor.protocol != "lldp" and entry.neighbor.protocol == "lldp"


def _load(text: str | bytes, where: str) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not text.strip():
        raise LldpdOutputError(f"{where}: empty output (expected lldpcli JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LldpdOutputError(
            f"{where}: not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None


def _interfaces(data: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not isinstance(data, dict) or "lldp" not in data:
        raise LldpdOutputError(f"{where}: no top-level 'lldp' object")
    lldp = data["lldp"]
    blocks = lldp if isinstance(lldp, list) else [lldp]
    for block in blocks:
        if not isinstance(block, dict):
            raise LldpdOutputError(f"{where}: 'lldp' holds a {_kind(block)}, expected an object")
        yield from _interface_items(block.get("interface", []), where)


def _interface_items(node: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    items = node if isinstance(node, list) else [node]
    for item in items:
        if not isinstance(item, dict):
            raise LldpdOutputError(f"{where}: an interface is a {_kind(item)}, expected an object")
        if isinstance(item.get("name"), str) and ("chassis" in item or "port" in item):
            yield item["name"], item  # json0: {"name": "eth0", "chassis": [...], ...}
            continue
        for name, body in item.items():
            for one in body if isinstance(body, list) else [body]:
                if not isinstance(one, dict):
                    raise LldpdOutputError(
                        f"{where}: interface {name} holds a {_kind(one)}, expected an object"
                    )
                yield name, one


def _entry(interface: str, body: Mapping[str, Any], where: str) -> _Entry:
    system_name, chassis = _chassis(body.get("chassis"), where)
    port = _one_object(body.get("port"), "port", where)
    port_id_type, port_id = _typed_value(port.get("id"))
    chassis_id = _typed_value(chassis.get("id"))[1]
    port_descr = _text(port.get("descr"))
    if not port_id:
        raise LldpdOutputError(f"{where}: neighbour has no port id")
    if not (system_name or chassis_id):
        raise LldpdOutputError(f"{where}: neighbour has neither a system name nor a chassis id")
    neighbor = Neighbor(
        protocol="cdp" if _text(body.get("via")).upper().startswith("CDP") else "lldp",
        system_name=system_name,
        port_id=port_id,
        chassis_id=chassis_id,
        mgmt_addr=_mgmt_addr(chassis.get("mgmt-ip")),
        port_descr=port_descr,
    )
    return _Entry(interface=interface, neighbor=neighbor, port_id_type=port_id_type)


def _chassis(node: Any, where: str) -> tuple[str, Mapping[str, Any]]:
    chassis = _one_object(node, "chassis", where)
    if len(chassis) == 1:
        ((key, value),) = chassis.items()
        if key not in _CHASSIS_FIELDS and isinstance(value, dict):
            return key, value  # json: {"leaf1": {"id": ...}}
    return _text(chassis.get("name")), chassis


def _one_object(node: Any, what: str, where: str) -> Mapping[str, Any]:
    if isinstance(node, list) and node:
        node = node[0]
    if not isinstance(node, dict):
        raise LldpdOutputError(f"{where}: neighbour has no {what} object (got {_kind(node)})")
    return node


def _typed_value(node: Any) -> tuple[str, str]:
    """``{"type": "mac", "value": "..."}`` (or a json0 list of it) -> (type, value)."""
    if isinstance(node, list):
        node = node[0] if node else None
    if isinstance(node, dict):
        return str(node.get("type", "")), _text(node.get("value"))
    return "", _text(node)


def _text(node: Any) -> str:
    """A scalar as text; json0 wraps scalars as ``[{"value": x}]``."""
    if isinstance(node, list):
        return next((t for t in map(_text, node) if t), "")
    if isinstance(node, dict):
        return _text(node.get("value"))
    if node is None or isinstance(node, bool):
        return ""
    return str(node)


def _mgmt_addr(node: Any) -> str:
    """The first IPv4 management address, else the first address of any kind."""
    items = node if isinstance(node, list) else [node]
    addrs = [t for t in map(_text, items) if t]
    for addr in addrs:
        try:
            if ipaddress.ip_address(addr).version == 4:
                return addr
        except ValueError:
            continue
    return addrs[0] if addrs else ""


def _kind(node: Any) -> str:
    return "nothing" if node is None else type(node).__name__
