"""What every address-set driver (nftables, ovs-dfw, panos, edl) shares.

A driver holds *holders* (a group's address set, a DFW rule's dimension) with *members*
(addresses, VM ports). ``read()`` returns holder -> members of everything vmfabric keeps on
the target (its own table, tags with its prefix, flows with its cookie): it is all
vmfabric's, so that read is also the origin record. ``apply(changes)`` applies one plan
as one transaction where the target allows it, idempotently (adding a present member is
not a write), touching nothing else, and returns the state after it.

``PolicyRule`` is one ordered rule as a driver renders it (the runtime compiles it from
``policies:``): empty ``sources``/``destinations`` mean any.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from vmfabric.targets.base import Capabilities

State = Mapping[str, frozenset[str]]
RuleAction = Literal["allow", "drop", "reject"]


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One member added to or removed from one holder (the runtime renders the intent's
    ``Change``s as these: targets do not import intents)."""

    holder: str
    member: str
    action: Literal["add", "remove"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A protocol (``any``, ``tcp``, ``udp``, ``sctp``, ``icmp``, ``icmpv6``) and its
    destination port ranges (empty: every port)."""

    proto: str
    ports: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyRule:
    name: str
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    services: tuple[ServiceSpec, ...]
    action: RuleAction


class AddrSetDriver(Protocol):
    capabilities: Capabilities

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def read(self) -> State: ...

    def apply(self, changes: Sequence[MemberChange]) -> State: ...


def split_family(members: Iterable[str]) -> tuple[list[str], list[str]]:
    """IPv4 and IPv6 members, each sorted by address."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for m in members:
        net = ipaddress.ip_network(m, strict=False)
        if isinstance(net, ipaddress.IPv4Network):
            v4.append(net)
        else:
            v6.append(net)
    return [element(n) for n in sorted(v4)], [element(n) for n in sorted(v6)]


def element(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """A network as a member: a host is its bare address, anything else a CIDR."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def normalize(member: str) -> str:
    return element(ipaddress.ip_network(member.strip(), strict=False))


def apply_to_state(state: State, changes: Iterable[MemberChange]) -> dict[str, set[str]]:
    """``state`` after ``changes`` (what a driver must make the target hold)."""
    out = {h: set(m) for h, m in state.items()}
    for c in changes:
        members = out.setdefault(c.holder, set())
        if c.action == "add":
            members.add(c.member)
        else:
            members.discard(c.member)
    return out
