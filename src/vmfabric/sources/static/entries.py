"""The inventory file's entries: their schema, and model objects built from them.

Two ways to one result. The schema (pydantic models ``HostEntry``, ``PortGroupEntry``,
``VmEntry``) validates whatever the YAML loader read and names the first problem. The
``fast_*`` builders take an item ``flow`` read and build the model object directly, for
the entries that are plainly valid: anything else (a wrong type, a value the flow reader
left marked, an unknown key) raises ``SlowError`` and the entry goes through the YAML
loader and the schema, so errors always come from the schema. ``check_references`` then
finds duplicate names and dangling references over all entries.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from vmfabric.config import VlanRange
from vmfabric.core.model import Host, Nic, PortGroup, Power, Vm
from vmfabric.core.vlans import parse_vlans
from vmfabric.sources.addresses import (
    normalize_attributes,
    normalize_ips,
    normalize_tags,
    parse_ip,
    parse_mac,
)
from vmfabric.sources.static.flow import (
    HOST,
    PORTGROUPS,
    POWER,
    SLOW,
    SPECIAL_FIRST,
    Row,
    SlowError,
    reading,
)

T = TypeVar("T")
_POWER = {
    True: Power.ON, "on": Power.ON, "poweredon": Power.ON,
    False: Power.OFF, "off": Power.OFF, "poweredoff": Power.OFF,
    "suspended": Power.SUSPENDED,
}  # fmt: skip


def power_of(value: Any) -> Power:
    key = value.lower() if isinstance(value, str) else value
    if not isinstance(key, str | bool) or key not in _POWER:  # lists, dicts: unhashable
        raise ValueError(f"power {value!r} is not one of on, off, suspended")
    return _POWER[key]


def _ip(text: str) -> str:
    parse_ip(text)
    return text


def _mac(text: str) -> str:
    parse_mac(text)
    return text


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostEntry(Entry):
    name: str = Field(min_length=1)
    nics: list[str] = Field(default_factory=list)


class PortGroupEntry(Entry):
    name: str = Field(min_length=1)
    vlan: VlanRange
    vswitch: str = ""


class VmEntry(Entry):
    name: str = Field(min_length=1)
    host: str
    power: Annotated[Power, BeforeValidator(power_of)] = Power.ON
    portgroups: list[str] = Field(default_factory=list)
    ips: list[Annotated[str, AfterValidator(_ip)]] = Field(
        default_factory=list, description="IPv4 and IPv6 addresses"
    )
    macs: list[Annotated[str, AfterValidator(_mac)]] = Field(
        default_factory=list, description="MAC addresses, aa:bb:cc:dd:ee:ff"
    )
    tags: list[str] = Field(default_factory=list, description='"category:name" or a name')
    attributes: dict[str, str] = Field(default_factory=dict, description="custom attributes")
    guest_os: str = ""
    folder: str = ""
    cluster: str = ""


class InventoryFile(Entry):
    """The whole file."""

    hosts: list[HostEntry] = Field(default_factory=list)
    portgroups: list[PortGroupEntry] = Field(default_factory=list)
    vms: list[VmEntry] = Field(default_factory=list)


ENTRIES: dict[str, type[Entry]] = {
    "hosts": HostEntry,
    "portgroups": PortGroupEntry,
    "vms": VmEntry,
}


# ---- entries -> model objects ---------------------------------------------------------------


def host_of(session: str, entry: HostEntry) -> Host:
    return Host(session, entry.name, tuple(Nic(n) for n in entry.nics))


def portgroup_of(session: str, entry: PortGroupEntry) -> PortGroup:
    return PortGroup(session, entry.name, entry.vlan, entry.vswitch)


def vm_of(session: str, e: VmEntry) -> Vm:
    return Vm(
        session, e.name, e.name, e.host, e.power, tuple(e.portgroups),
        ips=normalize_ips(parse_ip(i) for i in e.ips) if e.ips else (),
        macs=tuple(sorted({parse_mac(m) for m in e.macs})) if e.macs else (),
        tags=normalize_tags(e.tags) if e.tags else (),
        attributes=normalize_attributes(e.attributes) if e.attributes else (),
        guest_os=e.guest_os, folder=e.folder, cluster=e.cluster,
    )  # fmt: skip


def model_of(session: str, entry: Entry) -> Host | PortGroup | Vm:
    if isinstance(entry, VmEntry):
        return vm_of(session, entry)
    if isinstance(entry, HostEntry):
        return host_of(session, entry)
    assert isinstance(entry, PortGroupEntry)
    return portgroup_of(session, entry)


# ---- flow values -> model objects, for plainly valid entries ---------------------------------
#
# A flow value's strings may have been quoted or plain in the file (JSON does not say), and
# YAML reads a plain ``on`` as True, ``110`` as 110. A string field takes a value only when
# both readings are that string; power and vlan take it when both readings give the same
# result. Anything else raises SlowError: the YAML loader and the schema decide.


def _fields(value: Any, allowed: frozenset[str], required: tuple[str, ...]) -> dict[str, Any]:
    if value.__class__ is not dict or not allowed.issuperset(value):
        raise SlowError("not a mapping of known keys")
    for name in required:
        if name not in value:
            raise SlowError("a required key is missing")
    return value


def _str(value: Any, empty: bool = True) -> str:
    if value.__class__ is not str or (not empty and not value):
        raise SlowError("not a string")
    if value[:1] in SPECIAL_FIRST and reading(value) != value:
        raise SlowError("plain, this is not a string")
    return value


def _strs(value: Any) -> list[str]:
    if value.__class__ is not list:
        raise SlowError("not a list")
    return [_str(v) for v in value]


_BOTH: dict[tuple[str, Callable[[Any], Any]], Any] = {}  # few distinct powers and VLANs


def _both(value: Any, parse: Callable[[Any], T]) -> T:
    """``parse`` of a string that was quoted or plain: the same either way, or SlowError."""
    if value.__class__ is not str:
        raise SlowError("not a string")
    key = (value, parse)
    found = _BOTH.get(key)
    if found is None:
        found = _BOTH[key] = _both_readings(value, parse)
        if len(_BOTH) > 10_000:
            _BOTH.clear()
    if found is SLOW:
        raise SlowError("readings differ or are not valid")
    return found  # type: ignore[no-any-return]


def _both_readings(value: str, parse: Callable[[Any], T]) -> T | Any:
    try:
        result = parse(value)
        if value[:1] in SPECIAL_FIRST:
            other = reading(value)
            if other is SLOW or parse(other) != result:
                return SLOW
    except ValueError:
        return SLOW
    return result


_HOST_KEYS = frozenset(HostEntry.model_fields)
_PG_KEYS = frozenset(PortGroupEntry.model_fields)
_VM_KEYS = frozenset(VmEntry.model_fields)


def _vlans(value: Any) -> frozenset[int]:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("vlan")
    return parse_vlans(value)


def fast_host(session: str, value: Any) -> Host:
    f = _fields(value, _HOST_KEYS, ("name",))
    nics = _strs(f["nics"]) if "nics" in f else ()
    return Host(session, _str(f["name"], empty=False), tuple(Nic(n) for n in nics))


def fast_portgroup(session: str, value: Any) -> PortGroup:
    f = _fields(value, _PG_KEYS, ("name", "vlan"))
    vswitch = _str(f["vswitch"]) if "vswitch" in f else ""
    return PortGroup(session, _str(f["name"], empty=False), _both(f["vlan"], _vlans), vswitch)


def _attributes(value: Any) -> tuple[tuple[str, str], ...]:
    if value.__class__ is not dict:
        raise SlowError("attributes")
    return normalize_attributes({_str(k): _str(v) for k, v in value.items()})


def _checked(values: list[str], parse: Callable[[str], Any]) -> list[Any]:
    try:
        return [parse(v) for v in values]
    except ValueError:
        raise SlowError("address") from None


_SHARED: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(names: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple per list of port groups, as the shared inventory keeps them: it then
    holds this source's VMs as they are, not copies (100,000 VMs: about 18 MB)."""
    if len(_SHARED) > 100_000:
        _SHARED.clear()
    return _SHARED.setdefault(names, names)


def fast_vm(session: str, value: Any) -> Vm:
    f = _fields(value, _VM_KEYS, ("name", "host"))
    name = _str(f["name"], empty=False)
    if len(f) == 4 and "power" in f and "portgroups" in f:  # the common shape, quickly
        return Vm(session, name, name, sys.intern(_str(f["host"])), _both(f["power"], power_of),
                  _shared(tuple(_strs(f["portgroups"]))))  # fmt: skip
    get = f.get
    return Vm(
        session, name, name, _str(f["host"]),
        _both(f["power"], power_of) if "power" in f else Power.ON,
        tuple(_strs(f["portgroups"])) if "portgroups" in f else (),
        ips=normalize_ips(_checked(_strs(get("ips")), parse_ip)) if "ips" in f else (),
        macs=tuple(sorted(set(_checked(_strs(get("macs")), parse_mac)))) if "macs" in f else (),
        tags=normalize_tags(_strs(get("tags"))) if "tags" in f else (),
        attributes=_attributes(get("attributes")) if "attributes" in f else (),
        guest_os=_str(get("guest_os", "")), folder=_str(get("folder", "")),
        cluster=_str(get("cluster", "")),
    )  # fmt: skip


def _plain(text: str) -> bool:
    """Whether YAML reads plain ``text`` as this string."""
    return text[:1] not in SPECIAL_FIRST or reading(text) == text


def _powers(texts: set[str]) -> dict[str, Power]:
    out = {"": Power.ON}  # no power key
    for text in texts - {""}:
        with suppress(SlowError):  # the YAML loader and the schema decide
            out[text] = _both(text, power_of)
    return out


def _portgroups(texts: set[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {"": ()}  # no port groups, or []
    for text in texts - {""}:
        names = text.split(", ")
        if all(map(_plain, names)):
            out[text] = _shared(tuple(names))
    return out


def fast_vms(session: str, rows: Sequence[Row]) -> list[Vm | None]:
    """The Vm of each row of the VM shape (``flow.LINE``) whose values are plainly valid,
    else None (the caller reads that item one by one). Each distinct host, power and list
    of port groups is checked once; a VM's own work is a few dict look-ups."""
    hosts = {h: sys.intern(h) for h in {row[HOST] for row in rows} if h and _plain(h)}
    powers = _powers({row[POWER] for row in rows})
    groups = _portgroups({row[PORTGROUPS] for row in rows})
    return [
        Vm(session, name, name, hosts[host], powers[power], groups[pgs])
        if host in hosts
        and power in powers
        and pgs in groups
        and (name[:1] not in SPECIAL_FIRST or reading(name) == name)
        else None
        for _, _, name, host, power, pgs, _, _ in rows
    ]


_SHAPE_KEYS = frozenset(("name", "host", "power", "portgroups"))
_NO_ROW: Row = ("",) * 8


def _vm_row(value: Any) -> Row:
    """A JSON-read VM as a row of the VM shape (``flow.LINE``'s fields) when it has only
    the shape's keys and its values are non-empty strings (port groups: a list of them);
    else a row of no VM."""
    if value.__class__ is not dict or not _SHAPE_KEYS.issuperset(value):
        return _NO_ROW
    name, host, power = value.get("name", ""), value.get("host", ""), value.get("power", "")
    groups = value.get("portgroups", [])
    if not (name.__class__ is host.__class__ is power.__class__ is str and name and host):
        return _NO_ROW
    if (not power and "power" in value) or groups.__class__ is not list or "" in groups:
        return _NO_ROW
    try:
        return ("", "", name, host, power, ", ".join(groups), "", "")
    except TypeError:
        return _NO_ROW  # port groups that are not all strings


def vms_of_values(session: str, values: Sequence[Any]) -> list[Vm | None]:
    """``fast_vms`` of JSON-read VMs (None for each that is not of the VM shape's keys)."""
    return fast_vms(session, list(map(_vm_row, values)))


Built = Sequence[Host | PortGroup | Vm | None]
FAST_ROWS: dict[str, Callable[[str, Sequence[Row]], Built]] = {"vms": fast_vms}
FAST_VALUES: dict[str, Callable[[str, Sequence[Any]], Built]] = {"vms": vms_of_values}

FAST: dict[str, Callable[[str, Any], Host | PortGroup | Vm]] = {
    "hosts": fast_host,
    "portgroups": fast_portgroup,
    "vms": fast_vm,
}


# ---- references -------------------------------------------------------------------------------


def _first_duplicate(names: list[str]) -> tuple[int, str] | None:
    if len(set(names)) == len(names):
        return None
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            return i, name
        seen.add(name)
    return None


def check_references(
    hosts: list[Host], portgroups: list[PortGroup], vms: list[Vm]
) -> tuple[tuple[str, int], str] | None:
    """The first duplicate name or dangling reference: ((section, index), "key: message").
    Whole-list set operations first (the common, valid case); the first culprit only then."""
    for kind, objects in (("hosts", hosts), ("portgroups", portgroups), ("vms", vms)):
        dup = _first_duplicate(list(map(_NAME, objects)))
        if dup is not None:
            return (kind, dup[0]), f"name: {dup[1]!r} is used twice"
    host_names = set(map(_NAME, hosts))
    pg_names = set(map(_NAME, portgroups))
    if host_names.issuperset(map(_HOST, vms)) and pg_names.issuperset(
        chain.from_iterable(set(map(_NETWORKS, vms)))
    ):
        return None
    for i, vm in enumerate(vms):
        if vm.host not in host_names:
            return ("vms", i), f"host: host {vm.host!r} is not in hosts"
        for pg in vm.networks:
            if pg not in pg_names:
                return ("vms", i), f"portgroups: port group {pg!r} is not in portgroups"
    return None


_NAME, _HOST, _NETWORKS = attrgetter("name"), attrgetter("host"), attrgetter("networks")


def by_name(objects: Iterable[T], name: Callable[[T], str]) -> Mapping[str, T]:
    return {name(o): o for o in objects}
