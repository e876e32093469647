"""``kind: nftables``: security groups and policy rules in one nftables table.

Everything lives in table ``inet <table>`` (default ``vmfabric``), which vmfabric owns
whole; no other table is ever read or written:

- one named set per group and family, ``<group>_v4`` (``type ipv4_addr; flags interval``)
  and ``<group>_v6`` (``ipv6_addr``): the group's addresses (hosts and CIDRs);
- one base chain per hook (``forward`` by default; ``input``, ``output``): connection
  tracking first (invalid dropped, related and reply packets accepted: rules are
  stateful), then the policy rules in order, then the default action as chain policy.
  Packets of the original direction are evaluated on every packet, so a member leaving a
  group loses its access at once, also on connections it already had.

``connect`` writes the table, the sets and the chains in one transaction (``nft -f``):
sets are added (their elements kept), chains are flushed and refilled. ``apply`` sends
only the changed elements (``add element`` / ``delete element``), all in one atomic
``nft -f`` transaction; a transaction that fails because the table changed under it is
re-planned once against a fresh read. ``netns:`` runs ``nft`` in that network namespace
(``targets.addrset.netns``: from a thread that enters it, not through ``ip netns exec``).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

from vmfabric.config.groups import NftablesFirewall
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.targets.addrset.base import (
    MemberChange,
    PolicyRule,
    ServiceSpec,
    State,
    apply_to_state,
    normalize,
    split_family,
)
from vmfabric.targets.addrset.netns import NetnsRunner
from vmfabric.targets.base import Capabilities

log = logging.getLogger("vmfabric.nftables")
TIMEOUT = 20.0
_FAMILIES = (("v4", "ip", "ipv4_addr"), ("v6", "ip6", "ipv6_addr"))
_L4 = {"tcp": "tcp", "udp": "udp", "sctp": "sctp"}
_VERDICT = {"allow": "accept", "drop": "drop"}


class NftablesDriver:
    capabilities = Capabilities(
        atomic=True, origin="target", notes="one nft transaction per plan; the table is ours"
    )

    def __init__(
        self, config: NftablesFirewall, rules: Sequence[PolicyRule], groups: Iterable[str]
    ) -> None:
        self.config = config
        self.table = config.table
        self.rules = list(rules)
        self.groups = sorted(
            set(groups) | {g for r in rules for g in (*r.sources, *r.destinations)}
        )
        self._state: dict[str, frozenset[str]] = {}
        self._netns = NetnsRunner(config.netns) if config.netns else None

    # ---- running nft ---------------------------------------------------------------------------

    def _nft(self, *args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["nft", *args]
        try:
            if self._netns is not None:
                return self._netns.run(argv, input=script, timeout=TIMEOUT)
            return subprocess.run(argv, input=script, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise TransientError(
                f"{self.config.name}: nft did not answer in {TIMEOUT:g}s"
            ) from None

    def _run_script(self, script: str) -> str:
        """Run ``script`` as one transaction; the error text, or "" on success."""
        proc = self._nft("-f", "-", script=script)
        return "" if proc.returncode == 0 else _first_error(proc.stderr)

    # ---- the driver contract -----------------------------------------------------------------

    def connect(self) -> None:
        if shutil.which("nft") is None:
            raise ConfigError(
                f"firewall {self.config.name}: nft is not installed (Debian: nftables)"
            )
        error = self._run_script(self.skeleton())
        if error:
            raise PermanentError(f"{self.config.name}: nft refused the table: {error}")

    def close(self) -> None:
        if self._netns is not None:
            self._netns.close()

    def read(self) -> State:
        proc = self._nft("-j", "list", "table", "inet", self.table)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                self._state = {}
                return self._state
            raise TransientError(
                f"{self.config.name}: nft list failed: {_first_error(proc.stderr)}"
            )
        self._state = parse_table(json.loads(proc.stdout))
        return self._state

    def apply(self, changes: Sequence[MemberChange]) -> State:
        script = self.element_script(self._state, changes)
        if script:
            error = self._run_script(script)
            if error:  # the sets changed under us (or vanished): re-plan once on a fresh read
                log.info(
                    "%s: nft transaction failed (%s); retrying on a fresh read",
                    self.config.name,
                    error,
                )
                if not self.read() and self.groups:
                    self.connect()
                retry = self.element_script(self.read(), changes)
                error = self._run_script(retry) if retry else ""
                if error:
                    raise PermanentError(f"{self.config.name}: nft refused the changes: {error}")
        return self.read()

    # ---- rendering ---------------------------------------------------------------------------

    def skeleton(self) -> str:
        """The table, its sets and chains as one transaction (sets keep their elements)."""
        t = f"inet {self.table}"
        lines = [f"add table {t}"]
        for group in self.groups:
            for suffix, _, kind in _FAMILIES:
                lines.append(f"add set {t} {group}_{suffix} {{ type {kind}; flags interval; }}")
        policy = "accept" if self.config.default_action == "allow" else "drop"
        for hook in self.config.hooks:
            lines.append(
                f"add chain {t} {hook} {{ type filter hook {hook} priority "
                f"{self.config.priority}; policy {policy}; }}"
            )
            lines.append(f"flush chain {t} {hook}")
            lines += [f"add rule {t} {hook} {r}" for r in self.chain_rules()]
        for stale in self._stale_sets():
            lines.append(f"delete set {t} {stale}")
        return "\n".join(lines) + "\n"

    def _stale_sets(self) -> list[str]:
        wanted = {f"{g}_{s}" for g in self.groups for s, _, _ in _FAMILIES}
        proc = self._nft("-j", "list", "table", "inet", self.table)
        if proc.returncode != 0:
            return []
        found = [
            item["set"]["name"]
            for item in json.loads(proc.stdout).get("nftables", [])
            if "set" in item
        ]
        return sorted(n for n in found if n not in wanted)

    def chain_rules(self) -> list[str]:
        out = [
            "ct state invalid drop",
            "ct state related accept",
            "ct state established ct direction reply accept",
        ]
        for rule in self.rules:
            out += render_rule(rule)
        return out

    def element_script(self, state: State, changes: Sequence[MemberChange]) -> str:
        """``add element``/``delete element`` lines for the changes not already true of
        ``state`` (idempotent: a present member is not added twice)."""
        target = apply_to_state(state, changes)
        lines: list[str] = []
        for holder in sorted({c.holder for c in changes}):
            before = split_family(state.get(holder, ()))
            after = split_family(target.get(holder, ()))
            for (suffix, _, _), old, new in zip(_FAMILIES, before, after, strict=True):
                name = f"inet {self.table} {holder}_{suffix}"
                gone = [m for m in old if m not in set(new)]
                added = [m for m in new if m not in set(old)]
                if gone:
                    lines.append(f"delete element {name} {{ {', '.join(gone)} }}")
                if added:
                    lines.append(f"add element {name} {{ {', '.join(added)} }}")
        return "\n".join(lines) + "\n" if lines else ""


def render_rule(rule: PolicyRule) -> list[str]:
    """One policy rule as nft rule bodies: per family (where a side names groups), per
    source and destination group, per service."""
    out: list[str] = []
    families = _FAMILIES if (rule.sources or rule.destinations) else (("", "", ""),)
    for _, fam, _ in families:
        suffix = "_v4" if fam == "ip" else "_v6"
        srcs = [f"{fam} saddr @{g}{suffix}" for g in rule.sources] or [""]
        dsts = [f"{fam} daddr @{g}{suffix}" for g in rule.destinations] or [""]
        for svc in rule.services:
            match = _service(svc, fam)
            if match is None:
                continue
            for s in srcs:
                for d in dsts:
                    head = " ".join(p for p in (s, d, match) if p)
                    out += [f"{head} {v}".strip() for v in _verdicts(rule, svc)]
    return out


def _service(svc: ServiceSpec, fam: str) -> str | None:
    if svc.proto == "any":
        return ""
    if svc.proto == "icmp":
        return None if fam == "ip6" else "meta l4proto icmp"
    if svc.proto == "icmpv6":
        return None if fam == "ip" else "meta l4proto ipv6-icmp"
    proto = _L4[svc.proto]
    if not svc.ports:
        return f"meta l4proto {proto}"
    spans = [str(a) if a == b else f"{a}-{b}" for a, b in svc.ports]
    ports = spans[0] if len(spans) == 1 else "{ " + ", ".join(spans) + " }"
    return f"{proto} dport {ports}"


def _verdicts(rule: PolicyRule, svc: ServiceSpec) -> list[str]:
    comment = f'comment "{rule.name}"'
    if rule.action != "reject":
        return [f"{_VERDICT[rule.action]} {comment}"]
    if svc.proto == "tcp":
        return [f"reject with tcp reset {comment}"]
    if svc.proto == "any":
        return [
            f"meta l4proto tcp reject with tcp reset {comment}",
            f"reject with icmpx type admin-prohibited {comment}",
        ]
    return [f"reject with icmpx type admin-prohibited {comment}"]


# ---- reading ------------------------------------------------------------------------------------


def parse_table(doc: dict[str, Any]) -> dict[str, frozenset[str]]:
    """``nft -j list table`` -> group -> members (both families' sets merged)."""
    out: dict[str, set[str]] = {}
    for item in doc.get("nftables", []):
        s = item.get("set")
        if s is None:
            continue
        name = str(s["name"])
        group, sep, family = name.rpartition("_")
        if not sep or family not in ("v4", "v6"):
            continue
        members = out.setdefault(group, set())
        for elem in s.get("elem", []):
            members.add(_element(elem))
    return {g: frozenset(m) for g, m in out.items()}


def _element(elem: Any) -> str:
    if isinstance(elem, dict) and "elem" in elem:
        elem = elem["elem"]["val"]
    if isinstance(elem, str):
        return normalize(elem)
    if isinstance(elem, dict) and "prefix" in elem:
        return normalize(f"{elem['prefix']['addr']}/{elem['prefix']['len']}")
    if isinstance(elem, dict) and "range" in elem:
        lo, hi = elem["range"]
        return f"{lo}-{hi}"
    return str(elem)


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "Error:" in line:
            return line.split("Error:", 1)[1].strip()
    return stderr.strip().splitlines()[0] if stderr.strip() else "unknown error"
