"""Security groups: which VMs (and addresses) are in each group, kept up to date one VM
change at a time, and what every firewall target must hold because of it.

Membership
----------
A group's ``match`` is an expression over one VM's own fields (tags, name, port groups,
guest OS, host, cluster, folder, session, custom attributes), combined with all/any/not,
and may name other groups. Since every leaf looks at the VM alone, a VM's membership in
every group is a function of that VM: a change to one VM re-evaluates that VM only.

To keep that cheap at 1,000 groups, each group has a *requirement*: keys one of which a
VM must have to possibly match (a tag, a session, an exact host name...). A VM is
evaluated only against the groups indexed under its keys, plus the few groups with no
requirement (globs, ``not``). A VM whose matched fields did not change (a power change,
a vMotion under host-free groups) costs a tuple comparison.

A group's *addresses* are its static CIDRs plus the IP addresses of its member VMs (a VM
address inside one of the group's static CIDRs is left out: the CIDR covers it, and an
nftables interval set refuses overlapping elements). ``full_membership`` computes the
same from scratch; the two must always agree (tests/unit/test_groups_equivalence.py).

Targets
-------
- *Address targets* (nftables, panos, edl): holder = group name, members = addresses.
- *DFW targets* (ovs-dfw, one per (firewall, hypervisor)): holders describe the flows of
  the VM ports running on that hypervisor: ``egress``/``ingress`` (which local ports and
  addresses are classified), and per rule ``<rule>.scope`` (local ports the rule is
  applied to), ``<rule>.src``/``<rule>.dst`` (addresses; present only while the rule has
  a local port, so a rule costs flows only where its VMs run and moves with them).

Removals go through the generic removal safety (prune delay, fail-static, origin); a
group whose session is out of sync keeps its members. A rule with ``unknown_address:
block`` whose groups have a member VM without any address blocks every target enforcing
it (its plan is held with the reason). Pure: no I/O, no clock it is not given.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from vmfabric.core.model import Vm
from vmfabric.intents.base import Change, Desired, TargetPlan
from vmfabric.intents.removals import Gate, Removals
from vmfabric.inventory.index import Delta, Inventory

Key = tuple[str, str]  # (session, VM id)
GlobField = Literal["name", "portgroup", "guest_os", "host", "cluster", "folder", "session"]
_GLOB_CHARS = re.compile(r"[*?\[]")
_NO_GROUPS: frozenset[str] = frozenset()
_NO_USER = object()
_AFFIX_CACHE = 10_000  # field values whose prefix/suffix keys are kept (VM names are not)
_COMBINATIONS = 100_000  # shared membership sets kept (beyond: forgotten, still valid)
_REASON_VMS = 10
_SMALL = 512  # a group's members are kept as a list up to this many

# ---- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tag:
    value: str  # "category:name" or a bare name (any category)


@dataclass(frozen=True, slots=True)
class Glob:
    field: GlobField
    pattern: str


@dataclass(frozen=True, slots=True)
class Attr:
    key: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Ref:
    group: str


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr = Tag | Glob | Attr | Ref | AllOf | AnyOf | Not
ReqKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class GroupDef:
    """A group: VMs matching ``match`` (None: no VM) plus static ``addresses`` (CIDRs)."""

    name: str
    match: Expr | None = None
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleDef:
    """What the intent needs of one policy rule. Empty ``sources``/``destinations`` mean
    any. ``scope``: groups whose VM ports the rule is applied to (empty: the source's and
    destination's VMs; every VM when both are any)."""

    name: str
    sources: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    block_unknown: bool = False  # unknown_address: block

    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.sources, *self.destinations)))

    def scope_groups(self) -> tuple[str, ...] | None:
        """Groups whose VMs the rule applies to, or None for every VM."""
        if self.scope:
            return self.scope
        return self.groups() or None


@dataclass(frozen=True, slots=True)
class AddressTarget:
    """A target holding one address set per group (nftables, panos, edl)."""

    name: str
    kind: str
    groups: frozenset[str]
    rules: tuple[str, ...] = ()  # rules it enforces (for unknown_address: block)


@dataclass(frozen=True, slots=True)
class DfwTarget:
    """One hypervisor's vSwitch of an ovs-dfw firewall."""

    name: str
    host: str
    rules: tuple[str, ...]  # names of the rules it enforces, in order
    port_name: str = "vm-{vm}"
    session: str | None = None  # only hosts of this session (None: any)

    def port(self, vm: Vm) -> str:
        return self.port_name.replace("{vm}", vm.name)


# ---- compiling -----------------------------------------------------------------------------


class _Ctx:
    """One VM being evaluated, with the derived views leaves need and a memo of nested
    group results."""

    __slots__ = ("_names", "memo", "vm")

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self.memo: dict[str, bool] = {}
        self._names: frozenset[str] | None = None

    def tag_names(self) -> frozenset[str]:
        if self._names is None:
            self._names = frozenset(t.rpartition(":")[2] for t in self.vm.tags)
        return self._names


Pred = Callable[[_Ctx], bool]


def _glob(pattern: str) -> Callable[[str], bool]:
    if not _GLOB_CHARS.search(pattern):
        return pattern.__eq__
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda text: match(text) is not None


def _all(preds: list[Pred]) -> Pred:
    if len(preds) == 2:  # the common case (a group and one more condition), without a loop
        first, second = preds
        return lambda c: first(c) and second(c)
    return lambda c: all(p(c) for p in preds)


def _any(preds: list[Pred]) -> Pred:
    if len(preds) == 2:
        first, second = preds
        return lambda c: first(c) or second(c)
    return lambda c: any(p(c) for p in preds)


def _field_values(ctx: _Ctx, name: GlobField) -> tuple[str, ...]:
    vm = ctx.vm
    if name == "portgroup":
        return vm.networks
    return (getattr(vm, name),)


class Compiled:
    """The groups as fast predicates, their requirement index and evaluation order."""

    def __init__(self, groups: Iterable[GroupDef]) -> None:
        self.defs = {g.name: g for g in groups}
        self.preds: dict[str, Pred] = {}
        self.index: dict[ReqKey, list[str]] = {}  # key -> groups to evaluate
        # key -> groups whose match is having all of some keys (this one among them)
        self.keyed: dict[ReqKey, list[tuple[str, frozenset[ReqKey]]]] = {}
        self.always: list[str] = []
        self.fields: set[str] = set()  # Vm fields any match reads
        self.affixes: dict[tuple[str, str], set[int]] = {}  # (^ or $ + field) -> lengths
        reqs: dict[str, frozenset[ReqKey] | None] = {}
        conj: dict[str, frozenset[ReqKey] | None] = {}
        for name in self.defs:
            self._requirement(name, reqs, set())
        for name, g in self.defs.items():
            if g.match is None:
                continue
            self.preds[name] = self._compile(g.match)
            keys = self._all_keys(name, conj, set())
            if keys is not None:
                self.keyed.setdefault(min(keys), []).append((name, keys))
                self._note_affixes(keys)
                continue
            req = reqs[name]
            if req is None:
                self.always.append(name)
                continue
            for key in req:
                self.index.setdefault(key, []).append(name)
            self._note_affixes(req)
        self.static = {n: _networks(g.addresses) for n, g in self.defs.items() if g.addresses}
        self._lookup = {  # key -> (keyed groups, groups to evaluate)
            k: (tuple(self.keyed.get(k, ())), tuple(self.index.get(k, ())))
            for k in {*self.index, *self.keyed}
        }
        kinds = {k[0] for k in self._lookup}
        kinds |= {k[0] for entries in self.keyed.values() for _, ks in entries for k in ks}
        self._exact = [(kind, fn) for kind, fn in _KEY_VALUES.items() if kind in kinds]
        self._affixes = [(k[0] + k[1], k[0] == "^", _KEY_VALUES[k[1]], sorted(ls))
                         for k, ls in sorted(self.affixes.items())]  # fmt: skip
        self._affix_keys: dict[tuple[str, str], list[ReqKey]] = {}  # (kind, value) -> keys
        self._combinations: dict[frozenset[str], frozenset[str]] = {}
        fields = sorted(self.fields)
        self.relevant: Callable[[Vm], object] = (
            operator.attrgetter(*fields) if fields else lambda vm: ()
        )

    def _note_affixes(self, keys: Iterable[ReqKey]) -> None:
        for kind, value in keys:
            if kind[0] in "^$":
                self.affixes.setdefault((kind[0], kind[1:]), set()).add(len(value))

    def _all_keys(
        self, name: str, memo: dict[str, frozenset[ReqKey] | None], seen: set[str]
    ) -> frozenset[ReqKey] | None:
        """Keys such that a VM is in group ``name`` exactly when it has all of them (a tag,
        an exact value, ``prefix*``, all of those, other such groups), or None."""
        if name not in memo:
            g = self.defs.get(name)
            memo[name] = None  # until known (and for a cycle)
            if g is not None and g.match is not None and name not in seen:
                memo[name] = self._expr_keys(g.match, memo, {*seen, name})
        return memo[name]

    def _expr_keys(
        self, e: Expr, memo: dict[str, frozenset[ReqKey] | None], seen: set[str]
    ) -> frozenset[ReqKey] | None:
        if isinstance(e, Tag):
            return self._req(e, {}, set())
        if isinstance(e, Glob):
            return _glob_requirement(e.field, e.pattern) if _is_key(e) else None
        if isinstance(e, Ref):
            return self._all_keys(e.group, memo, seen)
        if not isinstance(e, AllOf):
            return None
        out: frozenset[ReqKey] = frozenset()
        for item in e.items:
            keys = self._expr_keys(item, memo, seen)
            if keys is None:
                return None
            out |= keys
        return out

    # requirement: keys one of which a VM must have to match, or None (cannot tell)
    def _requirement(
        self, name: str, memo: dict[str, frozenset[ReqKey] | None], seen: set[str]
    ) -> frozenset[ReqKey] | None:
        if name in memo:
            return memo[name]
        g = self.defs.get(name)
        if g is None or g.match is None or name in seen:
            memo[name] = frozenset() if g is None or g.match is None else None
            return memo[name]
        seen.add(name)
        memo[name] = self._req(g.match, memo, seen)
        return memo[name]

    def _req(  # noqa: PLR0911 (one return per expression kind)
        self, e: Expr, memo: dict[str, frozenset[ReqKey] | None], seen: set[str]
    ) -> frozenset[ReqKey] | None:
        match e:
            case Tag(value=v):
                return frozenset({("tag", v) if ":" in v else ("tagname", v)})
            case Glob(field=f, pattern=p):
                return _glob_requirement(f, p)
            case Attr(key=k):
                return frozenset({("attr", k)})
            case Ref(group=g):
                return self._requirement(g, memo, seen)
            case AllOf(items=items):
                found = [r for r in (self._req(i, memo, seen) for i in items) if r is not None]
                return min(found, key=len) if found else None
            case AnyOf(items=items):
                out: set[ReqKey] = set()
                for i in items:
                    r = self._req(i, memo, seen)
                    if r is None:
                        return None
                    out |= r
                return frozenset(out)
            case Not():
                return None

    def _compile(self, e: Expr) -> Pred:  # noqa: PLR0911 (one return per expression kind)
        match e:
            case Tag(value=v) if ":" in v:
                self.fields.add("tags")
                return lambda c: v in c.vm.tags
            case Tag(value=v):
                self.fields.add("tags")
                return lambda c: v in c.tag_names()
            case Glob(field=f, pattern=p):
                self.fields.add("networks" if f == "portgroup" else f)
                test = _glob(p)
                return lambda c: any(test(x) for x in _field_values(c, f))
            case Attr(key=k, pattern=p):
                self.fields.add("attributes")
                test = _glob(p)
                return lambda c: (val := c.vm.attribute(k)) is not None and test(val)
            case Ref(group=g):
                return lambda c: self.member(g, c)
            case AllOf(items=items):
                return _all([self._compile(i) for i in items])
            case AnyOf(items=items):
                return _any([self._compile(i) for i in items])
            case Not(item=item):
                pred = self._compile(item)
                return lambda c: not pred(c)

    def member(self, group: str, ctx: _Ctx) -> bool:
        found = ctx.memo.get(group)
        if found is None:
            pred = self.preds.get(group)
            found = pred(ctx) if pred is not None else False
            ctx.memo[group] = found
        return found

    def keys(self, vm: Vm) -> list[ReqKey]:
        """The requirement keys ``vm`` has, of the kinds any group is indexed under: its
        exact values, and the literal prefixes and suffixes of its values that glob
        patterns are indexed under."""
        out: list[ReqKey] = []
        for kind, values in self._exact:
            out += [(kind, v) for v in values(vm)]
        cache = self._affix_keys
        for kind, front, values, lengths in self._affixes:
            if kind[1:] == "name":  # unique per VM: a cache would hold every name (memory)
                for v in values(vm):
                    out += _affix_keys(kind, front, v, lengths)
                continue
            for v in values(vm):
                found = cache.get((kind, v))
                if found is None:
                    if len(cache) >= _AFFIX_CACHE:
                        cache.clear()
                    found = cache[(kind, v)] = _affix_keys(kind, front, v, lengths)
                out += found
        return out

    def groups_of(self, vm: Vm) -> frozenset[str]:
        """Every group ``vm`` is a member of: those whose key it has, and those of its
        candidates (indexed under its keys, or never indexed) whose match holds."""
        lookup = self._lookup
        found: set[str] = set()
        candidates = set(self.always)
        keys = self.keys(vm)
        have: set[ReqKey] | None = None
        for key in keys:
            hit = lookup.get(key)
            if hit is None:
                continue
            for name, needed in hit[0]:
                if len(needed) == 1 or needed <= (have := have or set(keys)):
                    found.add(name)
            candidates.update(hit[1])
        candidates -= found
        if candidates:
            ctx = _Ctx(vm)
            ctx.memo = dict.fromkeys(found, True)
            found.update(g for g in candidates if self.member(g, ctx))
        if not found:
            return _NO_GROUPS
        groups = frozenset(found)  # one shared set per combination of groups (memory)
        shared = self._combinations
        if len(shared) >= _COMBINATIONS:
            shared.clear()
        return shared.setdefault(groups, groups)

    def why(self, group: str, vm: Vm) -> str:
        """Why ``vm`` is in ``group`` (a short text), or "" when it is not."""
        g = self.defs.get(group)
        if g is None or g.match is None:
            return ""
        return _explain(g.match, vm, self, _Ctx(vm)) or ""


_KEY_VALUES: dict[str, Callable[[Vm], Iterable[str]]] = {
    "session": lambda vm: (vm.session,),
    "name": lambda vm: (vm.name,),
    "host": lambda vm: (vm.host,),
    "tag": lambda vm: vm.tags,
    "tagname": lambda vm: [t.rpartition(":")[2] for t in vm.tags],
    "portgroup": lambda vm: vm.networks,
    "attr": lambda vm: [k for k, _ in vm.attributes],
    "guest_os": lambda vm: (vm.guest_os,),
    "cluster": lambda vm: (vm.cluster,),
    "folder": lambda vm: (vm.folder,),
}


def _affix_keys(kind: str, front: bool, value: str, lengths: list[int]) -> list[ReqKey]:
    """The keys of ``value``'s literal prefixes (``front``) or suffixes of ``lengths``."""
    n = len(value)
    return [(kind, value[:k] if front else value[n - k :]) for k in lengths if k <= n]


def _is_key(e: Expr | None) -> bool:
    """True when having the expression's requirement key is the same as matching it: a
    tag, an exact value, a literal prefix followed by ``*`` (or ``*`` and a suffix)."""
    if isinstance(e, Tag):
        return True
    if not isinstance(e, Glob):
        return False
    wild = _GLOB_CHARS.findall(e.pattern)
    if not wild:
        return True
    req = _glob_requirement(e.field, e.pattern)
    if wild != ["*"] or req is None:
        return False
    ((kind, affix),) = req
    return e.pattern == (affix + "*" if kind[0] == "^" else "*" + affix)


def _glob_requirement(field: str, pattern: str) -> frozenset[ReqKey] | None:
    """The key a value matching ``pattern`` must have: the value itself (no wildcard), its
    literal prefix (``^field``) or suffix (``$field``), whichever is longer; None when the
    pattern has neither (``*``, ``*x*``)."""
    first = _GLOB_CHARS.search(pattern)
    if first is None:
        return frozenset({(field, pattern)})
    prefix = pattern[: first.start()]
    tail = re.search(r"[^*?\[\]]*$", pattern)
    suffix = tail.group(0) if tail else ""
    if prefix and len(prefix) >= len(suffix):
        return frozenset({("^" + field, prefix)})
    if suffix:
        return frozenset({("$" + field, suffix)})
    return None


def _networks(cidrs: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _explain(e: Expr, vm: Vm, comp: Compiled, ctx: _Ctx) -> str | None:  # noqa: PLR0911
    match e:
        case Tag(value=v):
            return f"tag {v}" if comp._compile(e)(ctx) else None
        case Glob(field=f, pattern=p):
            return f"{f} {p}" if comp._compile(e)(ctx) else None
        case Attr(key=k, pattern=p):
            return f"attribute {k}={p}" if comp._compile(e)(ctx) else None
        case Ref(group=g):
            inner = comp.why(g, vm)
            return f"group {g} ({inner})" if inner else None
        case AllOf(items=items):
            parts = [_explain(i, vm, comp, ctx) for i in items]
            return " and ".join(p for p in parts if p) if all(parts) else None
        case AnyOf(items=items):
            return next((p for p in (_explain(i, vm, comp, ctx) for i in items) if p), None)
        case Not(item=item):
            return None if comp._compile(item)(ctx) else f"not ({_describe(item)})"


def _describe(e: Expr) -> str:  # noqa: PLR0911 (one return per expression kind)
    match e:
        case Tag(value=v):
            return f"tag {v}"
        case Glob(field=f, pattern=p):
            return f"{f} {p}"
        case Attr(key=k, pattern=p):
            return f"attribute {k}={p}"
        case Ref(group=g):
            return f"group {g}"
        case AllOf(items=items):
            return " and ".join(_describe(i) for i in items)
        case AnyOf(items=items):
            return " or ".join(_describe(i) for i in items)
        case Not(item=item):
            return f"not ({_describe(item)})"


# ---- full computation (verification) -------------------------------------------------------


def full_membership(groups: Iterable[GroupDef], vms: Iterable[Vm]) -> dict[str, frozenset[Key]]:
    """Members of every group computed from scratch, without the index (the reference)."""
    comp = Compiled(groups)
    out: dict[str, set[Key]] = {g: set() for g in comp.defs}
    for vm in vms:
        ctx = _Ctx(vm)
        for g in comp.preds:
            if comp.member(g, ctx):
                out[g].add(vm.key)
    return {g: frozenset(m) for g, m in out.items()}


def group_addresses(comp: Compiled, group: str, vms: Iterable[Vm]) -> frozenset[str]:
    """A group's addresses from its member VMs (those not covered by a static CIDR)."""
    g = comp.defs[group]
    static = comp.static.get(group, ())
    out = set(g.addresses)
    for vm in vms:
        out.update(a for a in vm.ips if not _covered(a, static))
    return frozenset(out)


def _covered(address: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    if not nets:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in nets)


# ---- the intent ----------------------------------------------------------------------------


@dataclass
class _Count:
    """Users of one (group, address): VM keys (static CIDRs count as ``None``)."""

    users: set[Key | None] = field(default_factory=set)


class GroupsIntent:
    """Incremental group membership and each firewall target's desired state. Not
    thread-safe: the runtime owns it. See the module docstring."""

    name = "groups"
    kind = "addrset"

    def __init__(
        self,
        groups: Iterable[GroupDef],
        rules: Iterable[RuleDef],
        address_targets: Iterable[AddressTarget],
        dfw_targets: Iterable[DfwTarget],
        removals: Removals,
    ) -> None:
        self.compiled = Compiled(groups)
        self.rules = {r.name: r for r in rules}
        self.address_targets = {t.name: t for t in address_targets}
        self.dfw_targets = {t.name: t for t in dfw_targets}
        self.removals = removals
        self._member_of: dict[Key, frozenset[str]] = {}
        self._members: dict[str, list[Key] | set[Key]] = {g: [] for g in self.compiled.defs}
        # the shared inventory's VMs (the last one ``update`` was given): read, not copied
        self._vms: Mapping[Key, Vm] = {}
        # group -> address -> its user (a VM key; None: a static CIDR), or a set of users
        self._addrs: dict[str, dict[str, object]] = {g: {} for g in self.compiled.defs}
        self._vacated_by: dict[str, set[str]] = {}  # member -> sessions of its last users
        self._targets_of_group = self._address_targets_by_group()
        self._dirty_of = self._dirty_by_group()
        self._dfw_by_host: dict[str, list[DfwTarget]] = {}
        for t in self.dfw_targets.values():
            self._dfw_by_host.setdefault(t.host, []).append(t)
        self._dirty: set[str] = set()  # targets whose desired state changed
        self._changed: set[str] = set()  # groups whose addresses changed (-> _dirty_of)
        for g in self.compiled.defs.values():
            for cidr in g.addresses:
                self._add_addr(g.name, cidr, None)
        self._dirty.clear()
        self._changed.clear()

    def _address_targets_by_group(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for t in self.address_targets.values():
            for g in t.groups:
                out.setdefault(g, set()).add(t.name)
        return out

    # ---- queries ---------------------------------------------------------------------------

    def targets(self) -> list[str]:
        return sorted({*self.address_targets, *self.dfw_targets})

    def members(self, group: str) -> frozenset[Key]:
        return frozenset(self._members.get(group, ()))

    def groups_of(self, key: Key) -> frozenset[str]:
        return self._member_of.get(key, _NO_GROUPS)

    def addresses(self, group: str) -> frozenset[str]:
        return frozenset(self._addrs.get(group, ()))

    def membership(self) -> dict[str, frozenset[Key]]:
        return {g: frozenset(m) for g, m in self._members.items()}

    def all_addresses(self) -> dict[str, frozenset[str]]:
        return {g: frozenset(a) for g, a in self._addrs.items()}

    def desired(self, target: str) -> Desired:
        at = self.address_targets.get(target)
        if at is not None:
            return {g: frozenset(self._addrs.get(g, ())) for g in sorted(at.groups)}
        dt = self.dfw_targets.get(target)
        if dt is not None:
            return self._dfw_desired(dt, self._vms.values())
        return {}

    def recompute(self, inventory: Inventory) -> dict[str, Desired]:
        """Every target's desired state from scratch (the equivalence reference)."""
        vms = list(inventory.vms.values())
        members = full_membership(self.compiled.defs.values(), vms)
        addrs = {
            g: group_addresses(self.compiled, g, (inventory.vms[k] for k in keys))
            for g, keys in members.items()
        }
        out: dict[str, Desired] = {}
        for t in self.address_targets.values():
            out[t.name] = {g: addrs.get(g, frozenset()) for g in sorted(t.groups)}
        member_of: dict[Key, set[str]] = {}
        for g, keys in members.items():
            for k in keys:
                member_of.setdefault(k, set()).add(g)
        for dt in self.dfw_targets.values():
            out[dt.name] = _dfw_state(
                dt, self.rules, vms, lambda k: frozenset(member_of.get(k, ())), addrs
            )
        return out

    def _dfw_desired(self, dt: DfwTarget, vms: Iterable[Vm]) -> Desired:
        return _dfw_state(dt, self.rules, vms, self.groups_of, self._addrs)

    # ---- changes ---------------------------------------------------------------------------

    def update(self, inventory: Inventory, delta: Delta, now: float) -> set[str]:
        """Re-evaluate the VMs the delta names; return the targets whose desired state
        changed, or every target when a session's sync state changed (held removals may
        go). Host and port group changes do not change membership (only VM fields do)."""
        self._vms, before = inventory.vms, delta.before
        for key in delta.vms:  # as last seen: its record before the batch (None: new)
            self._update_vm(key, before.get(key), inventory.vms.get(key), now)
        dirty, self._dirty = self._dirty, set()
        for g in self._changed:
            dirty.update(self._dirty_of[g])
        self._changed.clear()
        if delta.sessions:
            dirty |= set(self.targets())
        return dirty

    def _update_vm(self, key: Key, old: Vm | None, vm: Vm | None, now: float) -> None:
        if vm is None:
            if old is not None:
                self._set_groups(key, old, None, _NO_GROUPS, now)
            return
        if old is not None and self.compiled.relevant(old) == self.compiled.relevant(vm):
            groups = self._member_of.get(key, _NO_GROUPS)
        else:
            groups = self.compiled.groups_of(vm)
        self._set_groups(key, old, vm, groups, now)

    def _set_groups(
        self, key: Key, old: Vm | None, vm: Vm | None, groups: frozenset[str], now: float
    ) -> None:
        before = self._member_of.get(key, _NO_GROUPS)
        old_ips = old.ips if old is not None else ()
        new_ips = vm.ips if vm is not None else ()
        if self.dfw_targets:
            self._dfw_dirty(old, vm)
        if groups is before and old_ips == new_ips:
            return  # a vMotion, a power change: nothing of the groups changed
        if groups:
            self._member_of[key] = groups
        else:
            self._member_of.pop(key, None)
        members, drop, add = self._members, self._drop_addr, self._add_addr
        static = self.compiled.static
        for g in before - groups:
            _leave(members, g, key)
            for a in old_ips:
                drop(g, a, key, now)
        if old_ips != new_ips:
            self._readdress(key, before & groups, old_ips, new_ips, now)
        for g in groups - before:
            _join(members, g, key)
            for a in new_ips if g not in static else self._uncovered(g, new_ips):
                add(g, a, key)

    def _readdress(
        self, key: Key, groups: Iterable[str], old: tuple[str, ...], new: tuple[str, ...],
        now: float,
    ) -> None:  # fmt: skip
        """The VM's addresses changed from ``old`` to ``new``, in ``groups`` it stays in."""
        drop, add, static = self._drop_addr, self._add_addr, self.compiled.static
        gone = [a for a in old if a not in new]
        came = [a for a in new if a not in old]
        for g in groups:
            for a in gone:
                drop(g, a, key, now)
            for a in came if g not in static else self._uncovered(g, came):
                add(g, a, key)

    def _dfw_dirty(self, old: Vm | None, vm: Vm | None) -> None:
        """Every DFW target of the hosts the VM ran and runs on (its ports are there). The
        VM's session is a user of its port and addresses there: when they go (a vMotion,
        a re-tag), only that session being out of sync holds their removal."""
        if old is not None:
            for t in self._dfw_by_host.get(old.host, ()):
                for member in (t.port(old), *old.ips):
                    self._vacated_by.setdefault(member, set()).add(old.session)
        for v in (old, vm):
            if v is not None:
                self._dirty.update(t.name for t in self._dfw_by_host.get(v.host, ()))

    def _uncovered(self, group: str, ips: Iterable[str]) -> list[str]:
        """The addresses no static CIDR of ``group`` covers (those the VM adds to it)."""
        static = self.compiled.static[group]
        return [a for a in ips if not _covered(a, static)]

    def _users(self, group: str, addr: str) -> set[Key | None]:
        """The users of one address of a group (VM keys; None: a static CIDR)."""
        users = self._addrs.get(group, {}).get(addr, _NO_USER)
        if users is _NO_USER:
            return set()
        return set(users) if isinstance(users, set) else {users}  # type: ignore[arg-type]

    def _add_addr(self, group: str, addr: str, user: Key | None) -> None:
        """One more user of (group, addr). One user is stored as itself, several as a set:
        nearly every address has exactly one."""
        addrs = self._addrs[group]
        users = addrs.get(addr, _NO_USER)
        if users is not _NO_USER:
            if isinstance(users, set):
                users.add(user)
            elif users != user:
                addrs[addr] = {users, user}
            return
        addrs[addr] = user
        self._changed.add(group)
        if self.removals.prune_delay:  # without a delay there is no timer to cancel
            for t in self._targets_of_group.get(group, ()):
                self.removals.reclaimed(t, group, addr)

    def _drop_addr(self, group: str, addr: str, user: Key, now: float) -> None:
        addrs = self._addrs[group]
        users = addrs.get(addr, _NO_USER)
        if isinstance(users, set):
            users.discard(user)
            if len(users) == 1:
                addrs[addr] = users.pop()
            return
        if users != user:
            return
        del addrs[addr]
        sessions = self._vacated_by.get(addr)
        if sessions is None:
            self._vacated_by[addr] = {user[0]}
        else:
            sessions.add(user[0])
        self._changed.add(group)
        if self.removals.prune_delay:  # without a delay, removal safety starts no timer
            for t in self._targets_of_group.get(group, ()):
                self.removals.vacated(t, group, addr, now)

    def _dirty_by_group(self) -> dict[str, tuple[str, ...]]:
        """The targets whose desired state a change of a group's addresses changes: its
        address targets, and every DFW target when a rule names the group."""
        ruled = {g for r in self.rules.values() for g in r.groups()}
        out: dict[str, tuple[str, ...]] = {}
        for g in self.compiled.defs:
            found = set(self._targets_of_group.get(g, ()))
            if g in ruled:
                found.update(self.dfw_targets)
            out[g] = tuple(sorted(found))
        return out

    def removed(self, member: str) -> None:
        """A target removed ``member``: once no group has its address, who last used it
        is forgotten (a target still removing it then waits for every session: safe)."""
        addr = _address_of(member)
        if addr in self._vacated_by and not any(addr in a for a in self._addrs.values()):
            del self._vacated_by[addr]

    # ---- warnings --------------------------------------------------------------------------

    def unaddressed(self, group: str) -> list[Key]:
        """Members of ``group`` with no known address (left out of its address set)."""
        return sorted(k for k in self._members.get(group, ()) if not self._vms[k].ips)

    def blocked(self, target: str) -> str:
        """Why applying ``target`` is blocked (unknown_address: block), or ""."""
        t = self.address_targets.get(target) or self.dfw_targets.get(target)
        if t is None:
            return ""
        for name in t.rules:
            rule = self.rules.get(name)
            if rule is None or not rule.block_unknown:
                continue
            for g in rule.groups():
                missing = self.unaddressed(g)
                if missing:
                    vm = self._vms[missing[0]].name
                    return (
                        f"rule {rule.name}: VM {vm} in group {g} has no known address "
                        "(unknown_address: block)"
                    )
        return ""

    # ---- planning --------------------------------------------------------------------------

    def gate(self, inventory: Inventory) -> Gate:
        """The sync gate of a member: the first session that could want it and is out of
        sync (or ""), and the latest time one of those (re)gained sync. A member whose
        last users are unknown (read from the target after a restart) may be wanted by
        any session."""

        def gate(member: str) -> tuple[str, float]:
            sessions = self._vacated_by.get(_address_of(member)) or inventory.sessions()
            latest = 0.0
            for s in sorted(sessions):
                if not inventory.in_sync(s):
                    return s, latest
                latest = max(latest, inventory.synced_at(s))
            return "", latest

        return gate

    def plan(
        self, target: str, state: Mapping[str, frozenset[str]], inventory: Inventory, now: float
    ) -> TargetPlan:
        """Changes that bring ``target`` (whose holders hold ``state``, all of it
        vmfabric's) to its desired state at ``now``. Additions go at once; removals wait
        for removal safety (listed in ``held`` with the reason). A blocked target
        (unknown_address: block) holds everything."""
        desired = self.desired(target)
        gate = self.gate(inventory)
        changes: list[Change] = []
        held: list[Change] = []
        for holder in sorted(set(desired) | set(state)):
            want = desired.get(holder, frozenset())
            have = state.get(holder, frozenset())
            for member in sorted(want - have):
                changes.append(self._add_change(holder, member))
            remove, waiting = self.removals.due(target, holder, have, want, now=now, gate=gate)
            for member in sorted(remove):
                changes.append(Change(holder, member, "remove", "no member needs it"))
            held.extend(Change(holder, m, "remove", why) for m, why in sorted(waiting.items()))
        kind = "addrset"
        why = self.blocked(target)
        if why:
            blocked = tuple(Change(c.holder, c.member, c.action, why) for c in changes)
            return TargetPlan(target, kind, (), (*blocked, *held), (), {"*": why})
        return TargetPlan(target, kind, tuple(changes), tuple(held))

    def _add_change(self, holder: str, member: str) -> Change:
        group = holder.partition(".")[0]
        users = sorted(k for k in self._users(group, member) if k is not None)
        if not users:
            return Change(holder, member, "add", "desired")
        vms = self._vms
        names = [vms[k].name for k in users[:_REASON_VMS] if k in vms]
        more = f" and {len(users) - len(names)} more" if len(users) > len(names) else ""
        sessions = tuple(sorted({k[0] for k in users}))
        return Change(holder, member, "add", f"VMs {', '.join(names)}{more}", sessions)


def _join(members: dict[str, list[Key] | set[Key]], group: str, key: Key) -> None:
    """``key`` joins ``group``: members kept in a list while few (8 bytes a member, a set
    costs ~40), a set from ``_SMALL`` on (fast removal from big groups)."""
    found = members[group]
    if isinstance(found, set):
        found.add(key)
        return
    found.append(key)  # callers never add a member twice (``groups - before``)
    if len(found) > _SMALL:
        members[group] = set(found)


def _leave(members: dict[str, list[Key] | set[Key]], group: str, key: Key) -> None:
    found = members[group]
    if isinstance(found, set):
        found.discard(key)
    elif key in found:
        found.remove(key)


def _address_of(member: str) -> str:
    """The address or port a member names (DFW ingress members are ``address=port``)."""
    return member.partition("=")[0]


def _dfw_state(
    dt: DfwTarget,
    rules: Mapping[str, RuleDef],
    vms: Iterable[Vm],
    groups_of: Callable[[Key], frozenset[str]],
    addrs: Mapping[str, Iterable[str]],
) -> dict[str, frozenset[str]]:
    local = [v for v in vms if v.host == dt.host and (dt.session in (None, v.session))]
    out: dict[str, set[str]] = {}
    ports: set[Key] = set()
    for name in dt.rules:
        rule = rules.get(name)
        if rule is None:
            continue
        wanted = rule.scope_groups()
        scoped = [v for v in local if wanted is None or groups_of(v.key) & set(wanted)]
        if not scoped:
            continue
        out[f"{name}.scope"] = {dt.port(v) for v in scoped}
        ports.update(v.key for v in scoped)
        for holder, names in (("src", rule.sources), ("dst", rule.destinations)):
            if names:
                out[f"{name}.{holder}"] = {a for g in names for a in addrs.get(g, ())}
    by_key = {v.key: v for v in local}
    if ports:
        out["egress"] = {dt.port(by_key[k]) for k in ports}
        out["ingress"] = {f"{a}={dt.port(by_key[k])}" for k in ports for a in by_key[k].ips}
    return {h: frozenset(m) for h, m in out.items()}
