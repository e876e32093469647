"""What switches with a Cisco-style CLI share (Arista EOS, Cisco NX-OS), without any I/O.

This module owns the parts the ``eos`` and ``nxos`` drivers have in common, so neither
copies them:

- **The switch as read** (``SwitchView``): every switchport's mode, allowed VLAN list,
  access and native VLAN; every interface's description; the VLAN database (id -> name).
- **Port semantics**: a trunk whose allowed list is every VLAN (``ALL`` on EOS, ``1-4094``
  on NX-OS) is *open*; a trunk allowing ``NONE`` carries no VLAN (closed, no placeholder
  needed: these switches never read an empty list as "all"); access, dot1q-tunnel and
  other modes are never edited; an interface that exists but is no switchport (routed)
  reads as an access port carrying nothing, so it is never written either.
- **The origin record**, kept in the interface description as a tag at its end:
  ``"esx01 vmnic0 [vmfabric:110,120-122]"``. A person sees it in ``show interfaces
  description``; the text before the tag is the person's and is kept as it is. A
  description without the tag records nothing (every VLAN on the port is static), and an
  unreadable tag counts as no record: the safe direction, since vmfabric then removes
  nothing it cannot prove it added.
- **Rendering one plan as commands**: per port ``switchport trunk allowed vlan add|remove``
  only (the full list is never sent, so a person's concurrent edit of other VLANs
  survives), then the description when the record changed; before them, ``vlan N`` +
  ``name`` for added VLANs missing from the VLAN database; after them, ``no vlan N`` for
  removed VLANs that vmfabric created (their name is still vmfabric's) and that no port
  uses any more (an access VLAN, a native VLAN, an explicit allowed list, or an SVI).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from vmfabric.core.model import PortMode, PortState
from vmfabric.core.vlans import ALL_VLANS, format_vlans, parse_vlans
from vmfabric.targets.switchport.base import PortWrite

RECORD_TAG = "vmfabric"
_RECORD = re.compile(r"\s*\[" + RECORD_TAG + r":([0-9,\-]*)\]\s*$")
DEFAULT_VLAN_NAME = "vmfabric-{vlan}"
SwitchportMode = Literal["trunk", "access", "other"]


@dataclass(frozen=True, slots=True)
class RawSwitchport:
    """One switchport as the switch reports it. ``allowed`` is None when the trunk allows
    every VLAN."""

    mode: SwitchportMode
    allowed: frozenset[int] | None = frozenset()
    access_vlan: int | None = None
    native_vlan: int | None = None


@dataclass(frozen=True, slots=True)
class SwitchView:
    """What one read of the switch returned (see the module docstring)."""

    switchports: Mapping[str, RawSwitchport] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)
    vlans: Mapping[int, str] = field(default_factory=dict)

    def record(self, port: str) -> frozenset[int]:
        return split_description(self.descriptions.get(port, ""))[1]

    def state(self, switch: str, port: str) -> PortState:
        raw = self.switchports.get(port)
        if raw is None:
            known = port in self.descriptions
            mode = PortMode.ACCESS if known else PortMode.MISSING
            return PortState(switch, port, mode)
        if raw.mode != "trunk":
            vlans = frozenset({raw.access_vlan}) if raw.mode == "access" and raw.access_vlan else ()
            return PortState(switch, port, PortMode.ACCESS, frozenset(vlans))
        if raw.allowed is None:
            return PortState(switch, port, PortMode.OPEN)
        return PortState(switch, port, PortMode.TRUNK, raw.allowed, self.record(port) & raw.allowed)


def parse_allowed(text: str) -> frozenset[int] | None:
    """An allowed-VLAN list as switches print it: ``ALL``/``1-4094`` -> None (every VLAN),
    ``NONE``/``none``/empty -> no VLAN, else a range list in any order (``30,40-50,220``).
    ValueError for anything else."""
    cleaned = text.strip().replace(" ", "")
    if cleaned.upper() == "ALL" or cleaned == "1-4094":  # the common case, without a set
        return None
    if cleaned.upper() in ("NONE", ""):
        return frozenset()
    vlans: set[int] = set()
    for item in cleaned.split(","):
        vlans |= parse_vlans(item)
    return None if vlans >= ALL_VLANS else frozenset(vlans)


def split_description(text: str) -> tuple[str, frozenset[int]]:
    """A description as (the person's text, vmfabric's origin record)."""
    match = _RECORD.search(text)
    if match is None:
        return text, frozenset()
    person = text[: match.start()]
    try:
        record = parse_vlans(match.group(1)) if match.group(1) else frozenset()
    except ValueError:
        record = frozenset()
    return person, record


def join_description(person: str, record: Iterable[int]) -> str:
    """The description carrying ``record`` after the person's text (none: no tag)."""
    vlans = frozenset(record)
    if not vlans:
        return person.rstrip()
    tag = f"[{RECORD_TAG}:{format_vlans(vlans)}]"
    return f"{person.rstrip()} {tag}" if person.strip() else tag


def vlan_name(template: str, vlan: int) -> str:
    return template.format(vlan=vlan)


def _vlan_list(vlans: Iterable[int]) -> str:
    return format_vlans(vlans)


def port_commands(port: str, write: PortWrite, description: str | None) -> list[str]:
    """The commands of one port's write; ``description`` None: the record is unchanged."""
    out = [f"interface {port}"]
    if write.narrow:
        out.append("switchport trunk allowed vlan none")
    if write.add:
        out.append(f"switchport trunk allowed vlan add {_vlan_list(write.add)}")
    if write.remove and not write.narrow:
        out.append(f"switchport trunk allowed vlan remove {_vlan_list(write.remove)}")
    if description is not None:
        out.append(f"description {description}" if description else "no description")
    return out


def new_description(view: SwitchView, write: PortWrite, limit: int) -> str | None:
    """The port's description after ``write`` (None when its record does not change).
    ValueError when the person's text and the record do not fit in ``limit`` characters."""
    if write.record is None:
        return None
    person, _ = split_description(view.descriptions.get(write.port, ""))
    text = join_description(person, write.record)
    if len(text) > limit:
        raise ValueError(
            f"the description of {write.port} would exceed {limit} characters with "
            f"vmfabric's origin record ({len(text)}); shorten its text"
        )
    return text


def _allowed_after(view: SwitchView, writes: Mapping[str, PortWrite], port: str) -> frozenset[int]:
    raw = view.switchports[port]
    write = writes.get(port)
    if write is None:
        return raw.allowed or frozenset()
    current = frozenset() if write.narrow or raw.allowed is None else raw.allowed
    return (current | write.add) - write.remove


def vlan_in_use(view: SwitchView, writes: Mapping[str, PortWrite], vlan: int) -> bool:
    """Whether any port would still use ``vlan`` after ``writes``: as its access VLAN, its
    native VLAN, on an explicit allowed list, or as an SVI (interface VlanN)."""
    if f"Vlan{vlan}" in view.descriptions or f"vlan{vlan}" in view.descriptions:
        return True
    for port, raw in view.switchports.items():
        if raw.mode == "access" and raw.access_vlan == vlan:
            return True
        if raw.mode != "trunk":
            continue
        if raw.native_vlan == vlan:
            return True
        if (raw.allowed is not None or port in writes) and vlan in _allowed_after(
            view, writes, port
        ):
            return True
    return False


def plan_commands(
    view: SwitchView, writes: Sequence[PortWrite], template: str, limit: int
) -> list[str]:
    """Every configuration command of one plan, in order (see the module docstring)."""
    by_port = {w.port: w for w in writes}
    commands: list[str] = []
    for vlan in sorted({v for w in writes for v in w.add} - set(view.vlans)):
        commands += [f"vlan {vlan}", f"name {vlan_name(template, vlan)}"]
    for write in writes:
        commands += port_commands(write.port, write, new_description(view, write, limit))
    for vlan in sorted({v for w in writes for v in w.remove}):
        ours = view.vlans.get(vlan) == vlan_name(template, vlan)
        if ours and not vlan_in_use(view, by_port, vlan):
            commands.append(f"no vlan {vlan}")
    return commands


def check_template(template: str) -> str:
    """A VLAN name template must name the VLAN and render a usable name (1-32 characters
    of letters, digits, ``-``, ``_``, ``.``)."""
    if "{vlan}" not in template:
        raise ValueError(f"{template!r} must contain {{vlan}}")
    try:
        sample = template.format(vlan=4094)
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{template!r} may contain only the field {{vlan}}") from None
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,32}", sample):
        raise ValueError(f"{template!r} gives {sample!r}: use 1-32 letters, digits, - _ .")
    return template
