"""Host NIC -> switch port: static links first, then CDP/LLDP neighbours matched to the
configured switches.

A neighbour matches a switch by name (case-insensitive, with or without a domain suffix,
a Cisco-style "(serial)" tail ignored; the switch's ``aliases`` count as names) or by
management address. Its port id is mapped to a configured edge port by exact name, else
by interface-name equivalence ("Et1" = "Ethernet1" = "eth1"; "Gi1/0/1" =
"GigabitEthernet1/0/1"). A neighbour that matches no switch stays unmatched: the host keeps
the NIC with its neighbour and no uplink, and ``show host`` lists it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from vmfabric.config import LinkConfig, SwitchConfig
from vmfabric.core.model import Host, Neighbor, Uplink

# Interface-name prefixes that mean the same kind of port, mapped to one spelling.
_PREFIXES = {
    "et": "ethernet", "eth": "ethernet", "ethernet": "ethernet",
    "gi": "gigabitethernet", "gig": "gigabitethernet", "ge": "gigabitethernet",
    "gigabitethernet": "gigabitethernet",
    "te": "tengigabitethernet", "ten": "tengigabitethernet", "tengig": "tengigabitethernet",
    "tengigabitethernet": "tengigabitethernet",
    "fa": "fastethernet", "fastethernet": "fastethernet",
    "po": "port-channel", "port-channel": "port-channel", "portchannel": "port-channel",
    "twe": "twentyfivegige", "twentyfivegige": "twentyfivegige",
    "hu": "hundredgige", "hundredgige": "hundredgige", "hundredgigabitethernet": "hundredgige",
}  # fmt: skip
_IFNAME = re.compile(r"^([a-z][a-z-]*?)[\s]*(\d[\d/.:]*)$")


def canonical_port(name: str) -> str:
    """One spelling per interface: "Et1" -> "ethernet1", "Gi1/0/1" -> "gigabitethernet1/0/1".
    Names that are not of the prefix+number form are only lower-cased."""
    text = name.strip().lower()
    match = _IFNAME.match(text)
    if not match:
        return text
    prefix, number = match.groups()
    return _PREFIXES.get(prefix, prefix) + number


def canonical_name(name: str) -> str:
    """A device name without case, domain suffix or "(serial)" tail."""
    text = re.sub(r"\(.*\)\s*$", "", name.strip()).lower()
    if re.fullmatch(r"[\d.]+|[0-9a-f:]+", text):
        return text  # an address, not a name: keep it whole
    return text.split(".", 1)[0]


class Resolver:
    """Resolves hosts' NICs to switch ports for one configuration."""

    def __init__(self, switches: Iterable[SwitchConfig], links: Iterable[LinkConfig]) -> None:
        self._by_name: dict[str, SwitchConfig] = {}
        self._by_addr: dict[str, SwitchConfig] = {}
        for sw in switches:
            for name in (sw.name, *sw.aliases):
                self._by_name[canonical_name(name)] = sw
            if sw.mgmt_address:
                self._by_addr[sw.mgmt_address.strip().lower()] = sw
        self._links = list(links)
        # by host name: a 2,500-host cold start resolves every host once
        self._links_by_host: dict[str, list[LinkConfig]] = {}
        for link in self._links:
            self._links_by_host.setdefault(link.host, []).append(link)

    def match_switch(self, neighbor: Neighbor) -> SwitchConfig | None:
        for name in (neighbor.system_name, neighbor.chassis_id):
            if name and canonical_name(name) in self._by_name:
                return self._by_name[canonical_name(name)]
        for addr in (neighbor.mgmt_addr, neighbor.chassis_id):
            if addr and addr.strip().lower() in self._by_addr:
                return self._by_addr[addr.strip().lower()]
        return None

    @staticmethod
    def match_port(switch: SwitchConfig, neighbor: Neighbor) -> str:
        """The configured edge port the neighbour's port id names, else the id as given."""
        for reported in (neighbor.port_id, neighbor.port_descr):
            if reported in switch.edge_ports:
                return reported
        for reported in (neighbor.port_id, neighbor.port_descr):
            if not reported:
                continue
            wanted = canonical_port(reported)
            for port in switch.edge_ports:
                if canonical_port(port) == wanted:
                    return port
        return neighbor.port_id or neighbor.port_descr

    def static_links(self, host: Host) -> dict[str, Uplink]:
        return {
            link.nic: Uplink(link.nic, link.switch, link.port, "static")
            for link in self._links_by_host.get(host.name, ())
            if link.session in (None, host.session)
        }

    def resolve(self, host: Host) -> Host:
        """The host with ``uplinks`` filled: static links win over discovery."""
        uplinks = self.static_links(host)
        for nic in host.nics:
            if nic.name in uplinks or nic.neighbor is None:
                continue
            switch = self.match_switch(nic.neighbor)
            if switch is not None:
                port = self.match_port(switch, nic.neighbor)
                uplinks[nic.name] = Uplink(nic.name, switch.name, port, nic.neighbor.protocol)
        ordered = tuple(uplinks[n] for n in sorted(uplinks))
        if ordered == host.uplinks:
            return host
        return dataclasses.replace(host, uplinks=ordered)
