"""Overlay and fabric configuration: VLAN-to-VNI mapping, VTEP addresses, fabric links.

The keys this module owns in vmfabric.yaml::

    overlay:
      vni_map: {110: 10110, 120: 10120}   # VLAN -> VNI, or:
      vni_base: 10000                     # VNI = vni_base + VLAN for every VLAN
    switches:
      - {name: leaf1, ..., vtep: 10.253.0.1, fabric_ports: [eth51, eth52]}
      - {name: leaf2, ..., vtep: {address: 10.253.0.3, ovsdb: "unix:/run/vtep2.sock",
                                 bridge: br-int}}
    fabric_links:                          # static switch-to-switch wiring
      - {a: "leaf1:eth51", b: "spine3:eth1"}
    pruning: {keep_vlans: "1,4000-4094"}  # carried on every fabric trunk, never pruned

``vtep`` (a switch's VTEP: its address, and where its flood lists are written, by default
the switch entry's own OVSDB and bridge) and ``fabric_ports`` (its inter-switch trunks that
vmfabric may prune; opt-in, only those are written) are keys of the switch entry; the
validators here are shared with ``SwitchConfig``. ``check_fabric`` does the checks that
need the whole file (duplicate VTEP addresses, links naming unknown switches or ports).

Bad input is one line naming the key: a VNI outside 1..16,777,214, two VLANs on one VNI,
a VTEP address that is not an IP address, a fabric port that is also an edge port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from vmfabric.core.vlans import VLAN_MAX, VLAN_MIN, check_vlan, format_vlans, parse_vlans

VNI_MIN = 1
VNI_MAX = 16_777_214  # 2^24 - 2: 0 and 2^24 - 1 are reserved by many implementations


def check_vni(vni: Any) -> int:
    """``vni`` if it is a usable VXLAN network identifier, else ValueError."""
    if isinstance(vni, bool) or not isinstance(vni, int):
        raise ValueError(f"VNI {vni!r} is not a number")
    if not VNI_MIN <= vni <= VNI_MAX:
        raise ValueError(f"VNI {vni} is outside {VNI_MIN}..{VNI_MAX:,}")
    return vni


def check_address(value: Any) -> str:
    """``value`` as a normalised IP address text, else ValueError naming it."""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def check_fabric_port(value: Any) -> str:
    """A ``switch:port`` endpoint of a fabric link."""
    text = str(value)
    switch, sep, port = text.partition(":")
    if not sep or not switch or not port:
        raise ValueError(f"{text!r} is not switch:port")
    return text


def _vtep(value: Any) -> Any:
    """The short form ``vtep: ADDRESS`` is ``vtep: {address: ADDRESS}``."""
    if isinstance(value, str):
        return {"address": check_address(value)}
    return value


Vni = Annotated[int, AfterValidator(check_vni)]
Address = Annotated[str, BeforeValidator(check_address)]
Endpoint = Annotated[str, BeforeValidator(check_fabric_port)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _vni_map(value: Any) -> Any:
    """VLAN keys in range and each VNI used once; VNI values are checked by ``Vni``."""
    if not isinstance(value, dict):
        return value
    seen: dict[Any, Any] = {}
    for vlan, vni in sorted(value.items(), key=lambda item: str(item[0])):
        check_vlan(int(vlan) if str(vlan).isdigit() else vlan)
        if vni in seen:
            raise ValueError(f"VLANs {seen[vni]} and {vlan} both map to VNI {vni}")
        seen[vni] = vlan
    return value


def _vni_base(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        for vlan in (VLAN_MIN, VLAN_MAX):
            if not VNI_MIN <= value + vlan <= VNI_MAX:
                raise ValueError(
                    f"VLAN {vlan} would get VNI {value + vlan}, outside {VNI_MIN}..{VNI_MAX:,}"
                )
    return value


class OverlayConfig(_Model):
    """Which VLANs are carried as VXLAN segments, and their VNIs. Give one of ``vni_map``
    and ``vni_base``. A VLAN without a VNI stays local to its leaf."""

    vni_map: Annotated[dict[int, Vni] | None, BeforeValidator(_vni_map)] = Field(
        None, description="VLAN -> VNI, e.g. {110: 10110}; only these VLANs are overlaid."
    )
    vni_base: Annotated[int | None, AfterValidator(_vni_base)] = Field(
        None,
        description=f"Every VLAN is overlaid with VNI = vni_base + VLAN (0..{VNI_MAX - VLAN_MAX}).",
    )

    @model_validator(mode="after")
    def _one_rule(self) -> OverlayConfig:
        if self.vni_map is not None and self.vni_base is not None:
            raise ValueError("give vni_map or vni_base, not both")
        if self.vni_map is None and self.vni_base is None:
            raise ValueError("give vni_map (VLAN -> VNI) or vni_base (VNI = vni_base + VLAN)")
        return self

    def mapping(self) -> dict[int, int]:
        """VLAN -> VNI for every overlaid VLAN."""
        if self.vni_map is not None:
            return dict(self.vni_map)
        base = self.vni_base or 0
        return {vlan: base + vlan for vlan in range(VLAN_MIN, VLAN_MAX + 1)}


class VtepOptions(_Model):
    """A switch's VXLAN tunnel endpoint: its address and how vmfabric writes its flood
    lists. ``vtep: 10.0.0.1`` is short for ``vtep: {address: 10.0.0.1}``."""

    address: Address = Field(description="VTEP address: the tunnels' local and remote IP.")
    driver: Literal["ovs"] = Field("ovs", description="VTEP driver (ovs: tunnel ports).")
    ovsdb: str | None = Field(
        None, description="OVSDB endpoint of the VTEP; default: the switch entry's ovsdb."
    )
    bridge: str | None = Field(
        None, description="Bridge holding the tunnel ports; default: the switch's bridge."
    )
    timeout: float = Field(5.0, gt=0, le=3600, allow_inf_nan=False, description="Seconds.")

    @field_validator("ovsdb")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        kind, _, rest = (value or "unix:x").partition(":")
        if kind not in ("unix", "tcp") or not rest:
            raise ValueError(f"{value!r} is not unix:PATH or tcp:HOST:PORT")
        return value


Vtep = Annotated[VtepOptions, BeforeValidator(_vtep)]


def _vlans(value: Any) -> Any:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return parse_vlans(value) if str(value).strip() else frozenset()
    return value


class PruningConfig(_Model):
    """Inter-switch VLAN pruning (switches opt in with ``fabric_ports``)."""

    keep_vlans: Annotated[
        frozenset[int], BeforeValidator(_vlans), PlainSerializer(format_vlans, return_type=str)
    ] = Field(
        default=frozenset(),
        description="VLANs every fabric trunk carries whatever the VMs need (management, "
        "storage, routing): never pruned. E.g. 1,4000-4094.",
    )


class FabricLink(_Model):
    """A static switch-to-switch link. A switch named here need not be managed (an
    unmanaged spine is still a path); a managed switch's port must be in its
    ``fabric_ports`` when it lists any."""

    a: Endpoint = Field(description='One end, "switch:port".')
    b: Endpoint = Field(description='The other end, "switch:port".')

    def ends(self) -> tuple[tuple[str, str], tuple[str, str]]:
        a_sw, _, a_port = self.a.partition(":")
        b_sw, _, b_port = self.b.partition(":")
        return (a_sw, a_port), (b_sw, b_port)


def check_fabric_ports(ports: list[str], edge_ports: Sequence[str]) -> list[str]:
    """A switch's ``fabric_ports``: no duplicates, none also an edge port."""
    seen: set[str] = set()
    for port in ports:
        if port in seen:
            raise ValueError(f"fabric port {port!r} is listed twice")
        if port in edge_ports:
            raise ValueError(f"fabric port {port!r} is also an edge port")
        seen.add(port)
    return ports


class _Switch(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def vtep(self) -> VtepOptions | None: ...
    @property
    def fabric_ports(self) -> list[str]: ...


def check_fabric(switches: Sequence[_Switch], links: Sequence[FabricLink]) -> None:
    """Whole-file checks: one VTEP address per switch, links between known ports."""
    owner: dict[str, str] = {}
    for item in switches:
        if item.vtep is None:
            continue
        address = item.vtep.address
        if address in owner:
            raise ValueError(f"VTEP address {address} is used by {owner[address]} and {item.name}")
        owner[address] = item.name
    by_name: Mapping[str, _Switch] = {item.name: item for item in switches}
    used: dict[tuple[str, str], int] = {}
    for i, link in enumerate(links):
        where = f"fabric_links[{i}]"
        ends = link.ends()
        if ends[0][0] == ends[1][0]:
            raise ValueError(f"{where}: a link must join two different switches")
        if not any(end[0] in by_name for end in ends):
            raise ValueError(f"{where}: neither {link.a} nor {link.b} is a configured switch")
        for end in ends:
            if end in used:
                raise ValueError(f"{where}: {end[0]}:{end[1]} is in fabric_links[{used[end]}] too")
            used[end] = i
            _check_end(by_name.get(end[0]), end[1], where)


def _check_end(switch: _Switch | None, port: str, where: str) -> None:
    if switch is not None and switch.fabric_ports and port not in switch.fabric_ports:
        raise ValueError(f"{where}: {port} is not in the fabric_ports of {switch.name}")
