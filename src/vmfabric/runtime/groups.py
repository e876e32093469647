"""Security groups in the runtime: from config to the groups intent and its targets.

- ``compile_groups`` / ``compile_rules`` turn the ``groups:``/``policies:`` config into the
  pure intent's definitions (intents never read config);
- ``build(config)`` is what the composition root calls: the ``GroupsIntent`` and one
  ``Target`` per firewall (one per hypervisor for ``ovs-dfw``), or None when nothing is
  configured;
- ``GroupTarget`` joins one address-set driver (nftables, ovs-dfw, panos, edl) with the
  intent, in the shape of ``runtime.target.Target`` that the reconcile loop drives;
- ``group_view`` / ``policy_view`` are what ``show group`` and ``show policy`` print.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from vmfabric.config import Config, resolve_secret
from vmfabric.config.groups import (
    ANY,
    EdlFirewall,
    FirewallConfig,
    GroupConfig,
    Match,
    NftablesFirewall,
    OvsDfwFirewall,
    PanosFirewall,
    PolicyConfig,
)
from vmfabric.core.errors import ConfigError
from vmfabric.intents.base import Change, TargetPlan
from vmfabric.intents.groups import (
    AddressTarget,
    AllOf,
    AnyOf,
    Attr,
    DfwTarget,
    Expr,
    Glob,
    GlobField,
    GroupDef,
    GroupsIntent,
    Not,
    Ref,
    RuleDef,
    Tag,
)
from vmfabric.intents.guard import GuardLimits, guard_verdict
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Inventory
from vmfabric.targets.addrset.base import AddrSetDriver, MemberChange, PolicyRule, ServiceSpec
from vmfabric.targets.base import Capabilities

_GLOBS: tuple[GlobField, ...] = (
    "name", "portgroup", "guest_os", "host", "cluster", "folder", "session"
)  # fmt: skip

# ---- config -> intent ------------------------------------------------------------------------


def compile_match(m: Match) -> Expr:
    """One ``match`` mapping as an expression (several keys: all of them)."""
    parts: list[Expr] = []
    if m.tag is not None:
        parts.append(Tag(m.tag))
    for name in _GLOBS:
        value = getattr(m, name)
        if value is not None:
            parts.append(Glob(name, value))
    for key, pattern in sorted((m.attribute or {}).items()):
        parts.append(Attr(key, pattern))
    if m.group is not None:
        parts.append(Ref(m.group))
    if m.any_ is not None:
        parts.append(AnyOf(tuple(compile_match(x) for x in m.any_)))
    if m.all_ is not None:
        parts.append(AllOf(tuple(compile_match(x) for x in m.all_)))
    if m.not_ is not None:
        parts.append(Not(compile_match(m.not_)))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def compile_groups(groups: Iterable[GroupConfig]) -> list[GroupDef]:
    return [
        GroupDef(g.name, compile_match(g.match) if g.match else None, tuple(g.addresses))
        for g in groups
    ]


def _names(names: Sequence[str]) -> tuple[str, ...]:
    return () if ANY in names else tuple(names)


def compile_rules(policies: Iterable[PolicyConfig], groups: Collection[str]) -> list[RuleDef]:
    return [
        RuleDef(
            p.name,
            _names(p.source),
            _names(p.destination),
            tuple(a for a in p.applied_to if a in groups),
            p.unknown_address == "block",
        )
        for p in policies
    ]


def enforced_by(policy: PolicyConfig, firewall: str, firewalls: Collection[str]) -> bool:
    """A rule is enforced by every firewall unless its applied_to names firewalls."""
    named = [a for a in policy.applied_to if a in firewalls]
    return not named or firewall in named


def policy_rules(config: Config, fw: FirewallConfig) -> list[PolicyRule]:
    """The ordered rules ``fw`` enforces, in the drivers' terms."""
    names = {f.name for f in config.firewalls}
    return [
        PolicyRule(
            p.name,
            _names(p.source),
            _names(p.destination),
            tuple(ServiceSpec(s.proto, s.ports) for s in p.service),
            p.action,
        )
        for p in config.policies
        if enforced_by(p, fw.name, names)
    ]


def _exported(config: Config, fw: FirewallConfig, rules: Sequence[PolicyRule]) -> frozenset[str]:
    if isinstance(fw, NftablesFirewall):
        return _nft_groups(config, fw, rules)
    if fw.groups is not None:
        return frozenset(fw.groups)
    return frozenset(g.name for g in config.groups)


def _nft_groups(
    config: Config, fw: NftablesFirewall, rules: Sequence[PolicyRule]
) -> frozenset[str]:
    """nftables needs a set for every group its rules name, plus those it exports."""
    used = frozenset(g for r in rules for g in (*r.sources, *r.destinations))
    return used | frozenset(fw.groups or ())


def dfw_target_name(firewall: str, host: str) -> str:
    return f"{firewall}@{host}"


def build_intent(config: Config, removals: Removals | None = None) -> GroupsIntent:
    """The groups intent for ``config`` (group member removals are not delayed: a
    security policy must not lag; fail-static and the guard still hold them)."""
    groups = compile_groups(config.groups)
    rules = compile_rules(config.policies, {g.name for g in config.groups})
    addr: list[AddressTarget] = []
    dfw: list[DfwTarget] = []
    for fw in config.firewalls:
        enforced = policy_rules(config, fw)
        names = tuple(r.name for r in enforced)
        if isinstance(fw, OvsDfwFirewall):
            for host in sorted(fw.hosts):
                dfw.append(DfwTarget(dfw_target_name(fw.name, host), host, names, fw.port_name))
        else:
            kept = names if isinstance(fw, NftablesFirewall) else ()
            addr.append(AddressTarget(fw.name, fw.kind, _exported(config, fw, enforced), kept))
    return GroupsIntent(groups, rules, addr, dfw, removals or Removals(0.0))


# ---- the Target adapter --------------------------------------------------------------------


class GroupTarget:
    """One firewall target: a driver joined with the groups intent (``runtime.target.Target``).

    The driver's ``read()`` returns holder -> members of everything vmfabric keeps there
    (its own table, its own tags, its own flows): all of it is vmfabric's (origin on the
    target), so the state is also the origin record."""

    kind = "addrset"

    def __init__(
        self,
        name: str,
        firewall: FirewallConfig,
        driver: AddrSetDriver,
        intent: GroupsIntent,
        inventory: Inventory,
    ) -> None:
        self.name = name
        self.firewall = firewall
        self.driver_name = firewall.kind
        self.mode = firewall.mode
        self.driver = driver
        self.capabilities: Capabilities = driver.capabilities
        self.intent = intent
        self.inventory = inventory
        self.state: dict[str, frozenset[str]] = {}

    def connect(self) -> None:
        self.driver.connect()

    def close(self) -> None:
        self.driver.close()

    def read(self) -> None:
        self.state = dict(self.driver.read())

    def plan(self, now: float) -> TargetPlan:
        return self.intent.plan(self.name, self.state, self.inventory, now)

    def admit(self, changes: Sequence[Change]) -> list[Change]:
        return list(changes)

    def apply(self, changes: Sequence[Change]) -> None:
        self.state = dict(
            self.driver.apply([MemberChange(c.holder, c.member, c.action) for c in changes])
        )

    def confirmed(self, changes: Sequence[Change]) -> list[Change]:
        return [
            c for c in changes if (c.member in self.state.get(c.holder, ())) == (c.action == "add")
        ]

    def dynamic_count(self) -> int:
        return sum(len(m) for m in self.state.values())

    def origins(self) -> Mapping[str, Collection[str]] | None:
        return None

    def applied(self, changes: Sequence[Change]) -> None:
        for c in changes:
            if c.action == "remove":
                self.intent.removals.forget(self.name, c.holder, (c.member,))
                self.intent.removed(c.member)


def step(target: GroupTarget, now: float, limits: GuardLimits | None = None) -> TargetPlan:
    """One reconcile step without the runtime's loop (``sync``-like use, the demo, tests,
    benchmarks): read, plan, hold removals beyond the guard's limits, apply, confirm.
    Returns the plan; the changes applied are those the target confirmed."""
    target.read()
    plan = target.plan(now)
    changes = list(plan.changes)
    verdict = guard_verdict(
        len(plan.removals()), target.dynamic_count(), target.name, limits or GuardLimits(),
        "(set, address) memberships",
    )  # fmt: skip
    if verdict:
        held = tuple(Change(c.holder, c.member, c.action, verdict) for c in plan.removals())
        changes = [c for c in changes if c.action == "add"]
        plan = TargetPlan(plan.target, plan.kind, tuple(changes), (*plan.held, *held), plan.check,
                          {**plan.notes, "guard": verdict})  # fmt: skip
    if changes and target.mode == "enforce":
        target.apply(changes)
        target.applied(target.confirmed(changes))
    return plan


# ---- the composition root's entry point -----------------------------------------------------


def make_driver(config: Config, fw: FirewallConfig, host: str | None = None) -> AddrSetDriver:
    """The driver of one firewall (for ovs-dfw: of one hypervisor's vSwitch)."""
    rules = policy_rules(config, fw)
    if isinstance(fw, NftablesFirewall):
        from vmfabric.targets.addrset.nftables import NftablesDriver

        return NftablesDriver(fw, rules, sorted(_exported(config, fw, rules)))
    if isinstance(fw, OvsDfwFirewall) and host is not None:
        from vmfabric.targets.addrset.ovs_dfw import OvsDfwDriver

        return OvsDfwDriver(fw, host, rules)
    if isinstance(fw, PanosFirewall):
        from vmfabric.targets.addrset.panos import PanosDriver

        return PanosDriver(fw, resolve_secret(fw.api_key, config.base_dir))
    if isinstance(fw, EdlFirewall):
        from vmfabric.targets.addrset.edl import EdlDriver

        token = resolve_secret(fw.token, config.base_dir) if fw.token else None
        return EdlDriver(fw, token)
    raise ConfigError(f"firewall {fw.name}: no driver for kind {fw.kind!r}")


def build_targets(config: Config, intent: GroupsIntent, inventory: Inventory) -> list[GroupTarget]:
    out: list[GroupTarget] = []
    for fw in config.firewalls:
        if isinstance(fw, OvsDfwFirewall):
            for host in sorted(fw.hosts):
                name = dfw_target_name(fw.name, host)
                out.append(GroupTarget(name, fw, make_driver(config, fw, host), intent, inventory))
        else:
            out.append(GroupTarget(fw.name, fw, make_driver(config, fw), intent, inventory))
    return out


def build(
    config: Config, inventory: Inventory | None = None, removals: Removals | None = None
) -> tuple[GroupsIntent, list[GroupTarget]] | None:
    """The groups intent and its targets, or None when no groups or firewalls are
    configured. ``inventory`` is the runtime's shared inventory the targets plan against."""
    if not config.groups and not config.firewalls:
        return None
    intent = build_intent(config, removals)
    return intent, build_targets(config, intent, inventory or Inventory())


# ---- views: show group / show policy ----------------------------------------------------------


def group_view(intent: GroupsIntent, inventory: Inventory, name: str | None = None) -> list[Any]:
    """``show group --json``: [{name, members: [{vm, session, addresses, why}], addresses,
    warnings}]."""
    out: list[dict[str, Any]] = []
    for g in sorted(intent.compiled.defs):
        if name is not None and g != name:
            continue
        members = []
        for key in sorted(intent.members(g), key=lambda k: (inventory.vms[k].name, k)):
            vm = inventory.vms[key]
            why = intent.compiled.why(g, vm)
            members.append(
                {"vm": vm.name, "session": vm.session, "addresses": list(vm.ips), "why": why}
            )
        warnings = [
            f"VM {inventory.vms[k].name} has no known address: left out of the group's address set"
            for k in intent.unaddressed(g)
        ]
        static = list(intent.compiled.defs[g].addresses)
        out.append(
            {
                "name": g,
                "members": members,
                "addresses": sorted(intent.addresses(g), key=_addr_key),
                "static": static,
                "warnings": warnings,
            }
        )
    return out


def policy_view(config: Config, intent: GroupsIntent) -> list[Any]:
    """``show policy --json``: the ordered rules with the member counts of their groups."""
    names = {f.name for f in config.firewalls}
    out: list[dict[str, Any]] = []
    for i, p in enumerate(config.policies, 1):
        out.append(
            {
                "order": i,
                "name": p.name,
                "source": _side(p.source, intent),
                "destination": _side(p.destination, intent),
                "service": [str(s) for s in p.service],
                "action": p.action,
                "applied_to": list(p.applied_to),
                "firewalls": [f.name for f in config.firewalls if enforced_by(p, f.name, names)],
                "unknown_address": p.unknown_address,
            }
        )
    return out


def _side(names: Sequence[str], intent: GroupsIntent) -> list[dict[str, Any]]:
    return [
        {"group": n, "members": None if n == ANY else len(intent.members(n)),
         "addresses": None if n == ANY else len(intent.addresses(n))}
        for n in names
    ]  # fmt: skip


def _addr_key(text: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)
