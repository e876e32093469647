"""``groups:``, ``policies:`` and ``firewalls:`` of vmfabric.yaml as typed models.

- A **group** matches VMs (``match``: tag, name glob, port group, guest OS glob, host,
  cluster, folder, session, custom attribute, combined with ``any``/``all``/``not``, or
  another ``group``) and may list static ``addresses`` (CIDRs).
- A **policy** is one firewall rule, ordered as NSX DFW rules are: source and destination
  (group names or ``any``), a service (``tcp/8080``, ``udp/53``, ``tcp/8000-8100``,
  ``icmp``, ``any``), an action (``allow``, ``drop``, ``reject``) and an optional
  ``applied_to`` (groups, or firewall names). Rules are stateful.
- A **firewall** is where groups and rules go, by ``kind``: ``nftables``, ``ovs-dfw``,
  ``panos``, ``edl``; each kind has its own options.

``check_security`` holds the cross-checks (an unknown group in a policy, a cycle of
nested groups, a policy naming an unknown firewall); ``Config`` calls it. Every error is
one line naming the key path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

ANY = "any"
GROUP_NAME = r"^[A-Za-z][A-Za-z0-9_-]*$"
_PROTOCOLS = ("tcp", "udp", "sctp", "icmp", "icmpv6")
_PORTED = ("tcp", "udp", "sctp")
_SERVICE = re.compile(r"^(?P<proto>[a-z0-9]+)(?:/(?P<ports>[0-9,\- ]+))?$")
GroupName = Annotated[str, Field(pattern=GROUP_NAME, max_length=40)]
FirewallName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
Action = Literal["allow", "drop", "reject"]
FwMode = Literal["enforce", "check"]
Hook = Literal["forward", "input", "output"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---- groups ------------------------------------------------------------------------------


class Match(_Model):
    """What makes a VM a member. Keys in one mapping must all hold (an implicit ``all``).
    Globs use shell syntax (``db-*``, ``ubuntu*``); a tag is ``category:name`` or a bare
    name (which matches that name in any category)."""

    tag: str | None = Field(None, min_length=1, description="category:name, or a bare name")
    name: str | None = Field(None, min_length=1, description="VM name glob")
    portgroup: str | None = Field(None, min_length=1, description="port group name glob")
    guest_os: str | None = Field(None, min_length=1, description="guest OS glob")
    host: str | None = Field(None, min_length=1, description="hypervisor name glob")
    cluster: str | None = Field(None, min_length=1, description="cluster name glob")
    folder: str | None = Field(None, min_length=1, description="inventory folder path glob")
    session: str | None = Field(None, min_length=1, description="session name")
    attribute: dict[str, str] | None = Field(
        None, description="custom attribute key -> value glob; every one must match"
    )
    group: GroupName | None = Field(None, description="members of another group")
    any_: list[Match] | None = Field(
        None, alias="any", min_length=1, description="At least one of these matches."
    )
    all_: list[Match] | None = Field(
        None, alias="all", min_length=1, description="Every one of these matches."
    )
    not_: Match | None = Field(None, alias="not", description="This does not match.")

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        if not self.model_fields_set:
            raise ValueError("a match needs at least one key (tag, name, group, any, ...)")
        return self

    def groups(self) -> set[str]:
        """Every group this match names, at any depth."""
        found = {self.group} if self.group else set()
        for sub in [*(self.any_ or ()), *(self.all_ or ()), *([self.not_] if self.not_ else [])]:
            found |= sub.groups()
        return found


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR") from None
    return str(net)


class GroupConfig(_Model):
    """A security group: VMs that match, plus static addresses."""

    name: GroupName = Field(description="Group name (nftables sets are <name>_v4/_v6).")
    match: Match | None = Field(None, description="Which VMs are members.")
    addresses: list[str] = Field(
        default_factory=list, description="Static members: IP addresses or CIDRs."
    )
    description: str = Field("", description="Free text, for people.")

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return [_cidr(str(v)) for v in values]

    @model_validator(mode="after")
    def _something(self) -> GroupConfig:
        if self.match is None and not self.addresses:
            raise ValueError(f"group {self.name!r} has neither match nor addresses")
        return self


# ---- policies ----------------------------------------------------------------------------


class Service(_Model):
    """One protocol and its destination port ranges (empty: every port)."""

    proto: Literal["any", "tcp", "udp", "sctp", "icmp", "icmpv6"]
    ports: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        if not self.ports:
            return self.proto
        spans = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ports)
        return f"{self.proto}/{spans}"


def parse_service(text: Any) -> Service:
    """``tcp/8080``, ``tcp/80,443``, ``udp/5000-5100``, ``icmp``, ``any`` -> Service."""
    if isinstance(text, Service):
        return text
    raw = str(text).strip().lower()
    match = _SERVICE.match(raw)
    if not match or (match.group("proto") not in (*_PROTOCOLS, ANY)):
        raise ValueError(
            f"service {text!r} is not proto[/ports] (tcp/8080, udp/53, tcp/8000-8100, icmp, any)"
        )
    proto, ports = match.group("proto"), match.group("ports")
    if ports is None:
        return Service(proto=proto)
    if proto not in _PORTED:
        raise ValueError(f"service {text!r}: {proto} has no ports")
    return Service(proto=proto, ports=tuple(_port_range(p, text) for p in ports.split(",")))


def _port_range(part: str, text: Any) -> tuple[int, int]:
    lo_text, _, hi_text = part.strip().partition("-")
    try:
        lo, hi = int(lo_text), int(hi_text or lo_text)
    except ValueError:
        raise ValueError(f"service {text!r}: {part.strip()!r} is not a port range") from None
    if not (1 <= lo <= hi <= 65535):
        raise ValueError(f"service {text!r}: port range {part.strip()!r} is not within 1-65535")
    return (lo, hi)


def _names(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


def _services(value: Any) -> Any:
    items = [value] if isinstance(value, str | Service) else value
    if not isinstance(items, list):
        return items
    return [parse_service(v) for v in items]


Names = Annotated[list[str], BeforeValidator(_names)]
Services = Annotated[list[Service], BeforeValidator(_services)]


class PolicyConfig(_Model):
    """One ordered, stateful rule: the first rule matching a connection decides it."""

    name: FirewallName = Field(description="Rule name, unique.")
    source: Names = Field(description="Source group(s), or any.")
    destination: Names = Field(description="Destination group(s), or any.")
    service: Services = Field(
        default_factory=lambda: [Service(proto="any")],
        description="tcp/8080, udp/53, tcp/8000-8100, tcp/80,443, icmp, icmpv6 or any "
        "(default), or a list of them.",
    )
    action: Action = Field(description="allow, drop or reject (TCP reset / ICMP unreachable).")
    applied_to: list[str] = Field(
        default_factory=list,
        description="Where the rule is enforced: group names (at those VMs' ports, ovs-dfw) "
        "or firewall names; empty: every firewall, at the source's and destination's VMs.",
    )
    unknown_address: Literal["skip", "block"] = Field(
        "skip",
        description="A member VM with no known address: skip it (a warning in show group), "
        "or block applying the rule's groups until it has one.",
    )

    @field_validator("source", "destination")
    @classmethod
    def _not_empty(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("needs at least one group (or any)")
        return names


# ---- firewalls ---------------------------------------------------------------------------


class FirewallConfig(_Model):
    """Keys every firewall kind shares; each kind adds its own (top-level keys)."""

    name: FirewallName = Field(description="Firewall name, unique (targets are named by it).")
    kind: str = Field(description="nftables, ovs-dfw, panos or edl.")
    groups: list[GroupName] | None = Field(
        None, description="Only these groups (default: every group the kind needs)."
    )
    mode: FwMode = Field("enforce", description="enforce: apply plans; check: record them only.")


class NftablesFirewall(FirewallConfig):
    """Linux nftables: table ``inet <table>`` with a set per group and the policy rules."""

    kind: Literal["nftables"] = Field(description="nftables")
    table: str = Field(
        "vmfabric", pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=32,
        description="The table (family inet) vmfabric owns whole; nothing else is touched.",
    )  # fmt: skip
    netns: str | None = Field(None, description="Run nft in this network namespace.")
    hooks: list[Hook] = Field(
        default_factory=lambda: list[Hook](["forward"]), description="Where rules are evaluated."
    )
    priority: int = Field(0, description="Base chain priority (filter is 0).")
    default_action: Literal["allow", "drop"] = Field(
        "allow", description="What traffic matching no rule gets."
    )


class OvsDfwFirewall(FirewallConfig):
    """A distributed firewall on each hypervisor's Open vSwitch (conntrack, conjunctions)."""

    kind: Literal["ovs-dfw"] = Field(description="ovs-dfw")
    hosts: dict[str, str] = Field(
        description="Hypervisor name -> OpenFlow connection of its vSwitch bridge "
        "(unix:/run/openvswitch/vs0.mgmt)."
    )
    port_name: str = Field(
        "vm-{vm}", description="The VM's port on the vSwitch; {vm} is the VM name."
    )
    zone: int = Field(7, ge=0, le=65535, description="Conntrack zone of the firewall.")
    table_base: int = Field(
        60, ge=1, le=250, description="First of the five OpenFlow tables vmfabric owns."
    )
    default_action: Literal["allow", "drop"] = Field(
        "allow", description="What traffic at a classified VM port matching no rule gets."
    )
    timeout: float = Field(10.0, gt=0, description="Seconds to wait for the vSwitch.")


class PanosFirewall(FirewallConfig):
    """A Palo Alto firewall or Panorama: group members as User-ID registered-ip tags."""

    kind: Literal["panos"] = Field(description="panos")
    host: str = Field(description="Firewall or Panorama management address.")
    port: int = Field(443, ge=1, le=65535, description="XML API port (HTTPS).")
    api_key: str = Field(description="env:NAME or file:/path (never a literal key).")
    vsys: str | None = Field(None, description="Target vsys (multi-vsys firewalls).")
    tag_prefix: str = Field("vmf-", max_length=32, description="Tag = prefix + group name.")
    verify_tls: bool = Field(True, description="Verify the certificate (keep it on).")
    ca_file: Path | None = Field(None, description="CA bundle to verify the firewall with.")
    timeout: float = Field(10.0, gt=0, description="Seconds to wait for an API answer.")
    batch_size: int = Field(500, ge=1, description="Entries per uid-message.")

    @field_validator("api_key")
    @classmethod
    def _ref(cls, value: str) -> str:
        kind, _, ref = value.partition(":")
        if kind not in ("env", "file") or not ref:
            raise ValueError("literal API keys are refused: write env:VARIABLE or file:/path")
        return value


class EdlFirewall(FirewallConfig):
    """External Dynamic Lists served over HTTP: one plain-text list per group."""

    kind: Literal["edl"] = Field(description="edl")
    listen: str = Field("127.0.0.1:8471", description="host:port to serve the lists on.")
    auth: Literal["bearer", "basic", "none"] = Field(
        "bearer", description="How clients authenticate: a bearer token, basic, or none."
    )
    username: str = Field("vmfabric", description="User name for basic authentication.")
    token: str | None = Field(None, description="env:NAME or file:/path: the token/password.")

    @model_validator(mode="after")
    def _token(self) -> EdlFirewall:
        if self.auth != "none" and not self.token:
            raise ValueError(f"auth: {self.auth} needs token (env:NAME or file:/path)")
        if self.token and not self.token.startswith(("env:", "file:")):
            raise ValueError("literal tokens are refused: write env:VARIABLE or file:/path")
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen {self.listen!r} is not host:port")
        return self


FIREWALL_KINDS: dict[str, type[FirewallConfig]] = {
    "nftables": NftablesFirewall,
    "ovs-dfw": OvsDfwFirewall,
    "panos": PanosFirewall,
    "edl": EdlFirewall,
}


def _firewall(value: Any) -> Any:
    """Validate one ``firewalls[]`` entry with its kind's model."""
    if isinstance(value, FirewallConfig) or not isinstance(value, dict) or "kind" not in value:
        return value
    model = FIREWALL_KINDS.get(str(value["kind"]))
    if model is None:
        known = ", ".join(FIREWALL_KINDS)
        raise ValueError(f"unknown firewall kind {value['kind']!r} (known: {known})")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        sub = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"])
        if err["type"] == "missing":
            msg = "required key is missing"
        raise PydanticCustomError(
            "switch_option", "{message}", {"sub": sub, "message": msg.removeprefix("Value error, ")}
        ) from None


AnyFirewall = Annotated[FirewallConfig, BeforeValidator(_firewall)]


def firewall_schema_type() -> Any:
    """Every firewall kind's model as one union on ``kind`` (for the JSON schema: the
    config itself validates entries with ``_firewall``, for one-line errors)."""
    models = tuple(FIREWALL_KINDS.values())
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007


# ---- cross-checks ------------------------------------------------------------------------


def check_security(
    groups: Sequence[GroupConfig],
    policies: Sequence[PolicyConfig],
    firewalls: Sequence[FirewallConfig],
    sessions: Iterable[str],
) -> None:
    """Raise ValueError (one line, naming the entry) for what no single entry can see."""
    _unique([g.name for g in groups], "group")
    _unique([p.name for p in policies], "policy")
    fw_names = [f.name for f in firewalls]
    _unique(fw_names, "firewall")
    by_name = {g.name: g for g in groups}
    known_sessions = set(sessions)
    for i, g in enumerate(groups):
        for ref in sorted(g.match.groups() if g.match else set()):
            if ref not in by_name:
                raise ValueError(f"groups[{i}] ({g.name}): unknown group {ref!r}")
        if g.match is not None:
            _check_sessions(g.match, known_sessions, f"groups[{i}] ({g.name})")
    cycle = find_cycle({g.name: g.match.groups() if g.match else set() for g in groups})
    if cycle:
        raise ValueError(f"groups: nested groups form a cycle: {' -> '.join(cycle)}")
    for i, p in enumerate(policies):
        _check_policy(i, p, by_name, set(fw_names))
    for i, f in enumerate(firewalls):
        for ref in f.groups or ():
            if ref not in by_name:
                raise ValueError(f"firewalls[{i}] ({f.name}): unknown group {ref!r}")


def _check_sessions(match: Match, sessions: set[str], where: str) -> None:
    if match.session is not None and sessions and match.session not in sessions:
        raise ValueError(f"{where}: unknown session {match.session!r}")
    for sub in [*(match.any_ or ()), *(match.all_ or ()), *([match.not_] if match.not_ else [])]:
        _check_sessions(sub, sessions, where)


def _check_policy(
    i: int, p: PolicyConfig, groups: Mapping[str, GroupConfig], firewalls: set[str]
) -> None:
    where = f"policies[{i}] ({p.name})"
    for key, names in (("source", p.source), ("destination", p.destination)):
        for ref in names:
            if ref != ANY and ref not in groups:
                raise ValueError(f"{where}: {key}: unknown group {ref!r}")
        if ANY in names and len(names) > 1:
            raise ValueError(f"{where}: {key}: 'any' cannot be combined with groups")
    for ref in p.applied_to:
        if ref not in groups and ref not in firewalls:
            raise ValueError(f"{where}: applied_to: {ref!r} is neither a group nor a firewall")


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} name {name!r} is used twice")
        seen.add(name)


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """A cycle in ``edges`` (name -> names it refers to) as a path, or []."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for name in sorted(edges):
        if name not in state and (found := visit(name)):
            return found
    return []
