"""``kind: ovs-dfw``: a distributed, stateful firewall on one hypervisor's Open vSwitch.

One driver per hypervisor bridge (``hosts:`` maps a hypervisor to its bridge's OpenFlow
connection). It writes OpenFlow through ``ovs-ofctl`` (one ``--bundle`` per plan: atomic)
and only flows carrying its cookie (high word ``0x766d66..``, "vmf"): the bridge's own
flows (the ``NORMAL`` flow) are never read or written.

Pipeline (``B`` = ``table_base``, ``Z`` = ``zone``):

    table 0   ip/ipv6 (not IPv6 ND)               -> ct(table=B, zone=Z)
    B         +inv: drop; +rel, +est+rpl: NORMAL   (stateful: replies pass)
              in_port=<local VM port>              -> reg6=port, resubmit(B+1)  (egress)
              else                                 -> resubmit(B+2)
    B+1, B+3  the rules at the VM's vNIC (reg6): allow -> next stage; drop/reject -> drop;
              no rule: default_action
    B+2       nw_dst=<local VM address>            -> reg6=port, resubmit(B+3)  (ingress)
              else                                 -> resubmit(B+4)
    B+4       +new: ct(commit, zone=Z), NORMAL; else NORMAL

Each rule is one conjunctive match (OVN's technique): dimension 1 is the rule's local
scope (``reg6=<port>``), 2 its source addresses, 3 its destination addresses, 4 its
service; N sources and M destinations cost N + M flows, not N x M. The per-member flows
(scope, addresses, classification) exist only for VMs running on this hypervisor, so a
rule's flows follow its VMs through vMotion. Packets of the original direction are
evaluated on every packet: a member leaving a group loses its access at once.

Holders (from the groups intent): ``egress`` and ``ingress`` (``address=port``) members
classify the local VM ports; ``<rule>.scope``, ``<rule>.src`` and ``<rule>.dst`` feed the
rule's dimensions. ``reject`` is rendered as drop (OVS cannot answer with a reset here).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vmfabric.config.groups import OvsDfwFirewall
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.targets.addrset.base import MemberChange, PolicyRule, ServiceSpec, State, normalize
from vmfabric.targets.base import Capabilities

MEMBER = 0x766D6600  # cookie high word of per-member flows
SKELETON = 0x766D6601  # of the pipeline and rule skeleton (service clauses, conj flows)
GENERATION = 0x766D6602  # of the one flow whose cookie names the skeleton's hash
_HIGH = 0xFFFFFFFF00000000
_SCOPE, _SRC, _DST, _EGRESS, _INGRESS = 1, 2, 3, 8, 9
_DIMS = {"scope": _SCOPE, "src": _SRC, "dst": _DST}
_PRIO_TOP = 30000
_FLOW = re.compile(r"cookie=(0x[0-9a-f]+).*?table=(\d+).*?priority=(\d+),?(\S*) actions=(\S+)")
_REG6 = re.compile(r"(?:load:|set_field:)(0x[0-9a-f]+|\d+)->(?:NXM_NX_REG6\[\]|reg6)")


@dataclass(frozen=True, slots=True)
class _Flow:
    table: int
    priority: int
    match: str
    actions: str
    cookie: int

    def add(self) -> str:
        m = f",{self.match}" if self.match else ""
        return (
            f"add table={self.table},priority={self.priority},cookie={self.cookie:#x}{m} "
            f"actions={self.actions}"
        )

    def delete(self) -> str:
        m = f",{self.match}" if self.match else ""
        return f"delete_strict table={self.table},priority={self.priority}{m}"


class OvsDfwDriver:
    capabilities = Capabilities(
        atomic=True, origin="target", notes="one OpenFlow bundle per plan; flows by cookie"
    )

    def __init__(self, config: OvsDfwFirewall, host: str, rules: Sequence[PolicyRule]) -> None:
        self.config = config
        self.host = host
        self.target = config.hosts[host]
        self.rules = list(rules)
        self.index = {r.name: i for i, r in enumerate(self.rules)}
        self.base = config.table_base
        self.ports: dict[str, int] = {}  # port name -> ofport
        self._state: dict[str, frozenset[str]] = {}
        self._found: dict[tuple[str, str], list[str]] = {}  # (holder, member) -> its flows

    # ---- ovs-ofctl ------------------------------------------------------------------------

    def _ofctl(self, *args: str, script: str | None = None) -> str:
        return self._finish(self._start(args, script), script)

    def _start(self, args: Sequence[str], script: str | None = None) -> subprocess.Popen[str]:
        argv = ["ovs-ofctl", "-O", "OpenFlow14", "--no-names",
                f"--timeout={int(self.config.timeout)}", *args]  # fmt: skip
        stdin = subprocess.PIPE if script is not None else subprocess.DEVNULL
        return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    def _finish(self, proc: subprocess.Popen[str], script: str | None = None) -> str:
        try:
            out, err = proc.communicate(script, timeout=self.config.timeout + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TransientError(f"{self._name}: ovs-ofctl did not answer") from None
        if proc.returncode != 0:
            line = (err.strip() or "failed").splitlines()[-1]
            if "Connection refused" in line or "No such file" in line or "timeout" in line.lower():
                raise TransientError(f"{self._name}: {line}")
            raise PermanentError(f"{self._name}: ovs-ofctl refused: {line}")
        return out

    @property
    def _name(self) -> str:
        return f"{self.config.name}@{self.host}"

    def _bundle(self, lines: Iterable[str]) -> None:
        text = "\n".join(lines)
        if text:
            self._ofctl("--bundle", "add-flows", self.target, "-", script=text + "\n")

    # ---- the driver contract ----------------------------------------------------------------

    def connect(self) -> None:
        if shutil.which("ovs-ofctl") is None:
            raise ConfigError(f"firewall {self._name}: ovs-ofctl is not installed")
        skeleton = self.skeleton()
        digest = int(
            hashlib.sha256("\n".join(f.add() for f in skeleton).encode()).hexdigest()[:8], 16
        )
        marker = _Flow(
            self.base + 4, 1, "reg7=0x766d66,reg8=0x766d66", "drop", (GENERATION << 32) | digest
        )
        if self._generation() == marker.cookie:
            return
        # a new skeleton (first start, changed rules): every flow of ours goes, in one bundle
        lines = [
            f"delete cookie={high << 32:#x}/{_HIGH:#x}" for high in (MEMBER, SKELETON, GENERATION)
        ]
        self._bundle([*lines, *(f.add() for f in skeleton), marker.add()])

    def _generation(self) -> int:
        out = self._ofctl("dump-flows", self.target, f"cookie={GENERATION << 32:#x}/{_HIGH:#x}")
        for line in out.splitlines():
            found = _FLOW.search(line)
            if found:
                return int(found.group(1), 16)
        return 0

    def close(self) -> None:
        return None

    def _read_ports(self, out: str | None = None) -> None:
        if out is None:
            out = self._ofctl("dump-ports-desc", self.target)
        self.ports = {
            m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\((\S+)\):", out, re.M)
        }

    def read(self) -> State:
        """The member flows and the bridge's ports, read at once (two ``ovs-ofctl`` run
        side by side)."""
        ports = self._start(["dump-ports-desc", self.target])
        flows = self._start(["dump-flows", self.target, f"cookie={MEMBER << 32:#x}/{_HIGH:#x}"])
        try:
            self._read_ports(self._finish(ports))
        finally:
            dump = self._finish(flows)
        names = {n: p for p, n in self.ports.items()}
        out: dict[str, set[str]] = {}
        self._found = {}
        for line in dump.splitlines():
            found = _FLOW.search(line)
            if found:
                holder, member = self._member(found, names)
                if holder:
                    out.setdefault(holder, set()).add(member)
                    match = f",{found.group(4)}" if found.group(4) else ""
                    spec = f"delete_strict table={found.group(2)},priority={found.group(3)}{match}"
                    self._found.setdefault((holder, member), []).append(spec)
        self._state = {h: frozenset(m) for h, m in out.items()}
        return self._state

    def _member(self, found: re.Match[str], names: dict[int, str]) -> tuple[str, str]:
        cookie = int(found.group(1), 16)
        match, actions = found.group(4), found.group(5)
        rule_no, dim = (cookie >> 8) & 0xFFFF, cookie & 0xFF
        fields = dict(f.partition("=")[::2] for f in match.split(",") if "=" in f)
        if dim == _EGRESS:
            return "egress", _port_name(names, fields.get("in_port", "0"))
        if dim == _INGRESS:
            reg = _REG6.search(actions)
            port = _port_name(names, reg.group(1) if reg else "0")
            addr = fields.get("nw_dst") or fields.get("ipv6_dst", "")
            return "ingress", f"{normalize(addr)}={port}"
        if not 0 < rule_no <= len(self.rules):
            return "", ""
        rule = self.rules[rule_no - 1].name
        if dim == _SCOPE:
            return f"{rule}.scope", _port_name(names, fields.get("reg6", "0"))
        key = ("nw_src", "ipv6_src") if dim == _SRC else ("nw_dst", "ipv6_dst")
        addr = fields.get(key[0]) or fields.get(key[1], "")
        return f"{rule}.{'src' if dim == _SRC else 'dst'}", normalize(addr)

    def apply(self, changes: Sequence[MemberChange]) -> State:
        """Add the flows of each added member; delete the flows read for each removed one
        (as read: a VM port that left the bridge no longer names its ofport). The ports
        are read again only when a port an addition names was not there at the last read."""
        wanted = {_port_of(c.holder, c.member) for c in changes if c.action == "add"}
        if not wanted <= {"", *self.ports}:
            self._read_ports()
        lines: list[str] = []
        for c in changes:
            present = c.member in self._state.get(c.holder, ())
            if c.action == "remove" and present:
                found = self._found.get((c.holder, c.member))
                lines += found or [f.delete() for f in self.member_flows(c.holder, c.member)]
            elif c.action == "add" and not present:
                lines += [f.add() for f in self.member_flows(c.holder, c.member)]
        self._bundle(lines)
        return self.read()

    # ---- rendering ----------------------------------------------------------------------------

    def _prio(self, rule_no: int) -> int:
        return _PRIO_TOP - 10 * rule_no

    def _dims(self, rule: PolicyRule) -> list[int]:
        dims = [_SCOPE]
        if rule.sources:
            dims.append(_SRC)
        if rule.destinations:
            dims.append(_DST)
        if not any(s.proto == "any" for s in rule.services):
            dims.append(4)
        return dims

    def member_flows(self, holder: str, member: str) -> list[_Flow]:
        """The flows one (holder, member) stands for (empty: its port is not on the bridge)."""
        b = self.base
        if holder == "egress":
            port = self.ports.get(member)
            cookie = (MEMBER << 32) | _EGRESS
            act = f"load:{port}->NXM_NX_REG6[],resubmit(,{b + 1})"
            return [] if port is None else [_Flow(b, 200, f"in_port={port}", act, cookie)]
        if holder == "ingress":
            addr, _, name = member.partition("=")
            port = self.ports.get(name)
            field = "ip,nw_dst" if ":" not in addr else "ipv6,ipv6_dst"
            act = f"load:{port}->NXM_NX_REG6[],resubmit(,{b + 3})"
            cookie = (MEMBER << 32) | _INGRESS
            return [] if port is None else [_Flow(b + 2, 200, f"{field}={addr}", act, cookie)]
        rule_name, _, dim_name = holder.rpartition(".")
        i = self.index.get(rule_name)
        dim = _DIMS.get(dim_name)
        if i is None or dim is None:
            return []
        rule = self.rules[i]
        dims = self._dims(rule)
        cookie = (MEMBER << 32) | ((i + 1) << 8) | dim
        verdict = self._verdict(rule, b + 2) if len(dims) == 1 else ""
        if dim == _SCOPE:
            port = self.ports.get(member)
            if port is None:
                return []
            match = f"reg6={port}"
        else:
            v6 = ":" in member
            fam, key = ("ipv6", "ipv6_") if v6 else ("ip", "nw_")
            match = f"{fam},{key}{'src' if dim == _SRC else 'dst'}={member}"
        out = []
        for table, nxt in ((b + 1, b + 2), (b + 3, b + 4)):
            act = (
                self._verdict(rule, nxt)
                if verdict
                else f"conjunction({1000 + i},{dims.index(dim) + 1}/{len(dims)})"
            )
            out.append(_Flow(table, self._prio(i + 1), match, act, cookie))
        return out

    def _verdict(self, rule: PolicyRule, nxt: int) -> str:
        return f"resubmit(,{nxt})" if rule.action == "allow" else "drop"

    def skeleton(self) -> list[_Flow]:
        """The pipeline and each rule's service clauses and conjunction flows."""
        b, z = self.base, self.config.zone
        ck = SKELETON << 32
        default_next = "resubmit(,{})" if self.config.default_action == "allow" else "drop"
        flows = [
            _Flow(0, 1100, "icmp6,icmp_type=135", "NORMAL", ck),
            _Flow(0, 1100, "icmp6,icmp_type=136", "NORMAL", ck),
            _Flow(0, 1000, "ip", f"ct(table={b},zone={z})", ck),
            _Flow(0, 1000, "ipv6", f"ct(table={b},zone={z})", ck),
            _Flow(b, 300, "ct_state=+inv+trk", "drop", ck),
            _Flow(b, 300, "ct_state=+rel+trk", "NORMAL", ck),
            _Flow(b, 300, "ct_state=+est+rpl+trk", "NORMAL", ck),
            _Flow(b, 0, "", f"resubmit(,{b + 2})", ck),
            _Flow(b + 1, 0, "", default_next.format(b + 2), ck),
            _Flow(b + 2, 0, "", f"resubmit(,{b + 4})", ck),
            _Flow(b + 3, 0, "", default_next.format(b + 4), ck),
            _Flow(b + 4, 100, "ct_state=+new+trk,ip", f"ct(commit,zone={z}),NORMAL", ck),
            _Flow(b + 4, 100, "ct_state=+new+trk,ipv6", f"ct(commit,zone={z}),NORMAL", ck),
            _Flow(b + 4, 0, "", "NORMAL", ck),
        ]
        for i, rule in enumerate(self.rules):
            flows += self._rule_skeleton(i, rule)
        return flows

    def _rule_skeleton(self, i: int, rule: PolicyRule) -> list[_Flow]:
        dims = self._dims(rule)
        if len(dims) == 1:
            return []
        out: list[_Flow] = []
        ck = SKELETON << 32 | ((i + 1) << 8)
        for table, nxt in ((self.base + 1, self.base + 2), (self.base + 3, self.base + 4)):
            prio = self._prio(i + 1)
            out.append(_Flow(table, prio, f"conj_id={1000 + i}", self._verdict(rule, nxt), ck))
            if 4 in dims:
                act = f"conjunction({1000 + i},{len(dims)}/{len(dims)})"
                out += [
                    _Flow(table, prio, m, act, ck)
                    for s in rule.services
                    for m in service_matches(s)
                ]
        return out


def _port_of(holder: str, member: str) -> str:
    """The VM port a member names ("" for an address)."""
    if holder == "ingress":
        return member.partition("=")[2]
    return member if holder == "egress" or holder.endswith(".scope") else ""


def _port_name(names: dict[int, str], ofport: str) -> str:
    """The name of the port numbered ``ofport`` (decimal or 0x hex) on the bridge, or
    ``#<ofport>`` for a port that left it (its flows are stale: they must go)."""
    number = int(ofport, 0)
    return names.get(number, f"#{number}")


def service_matches(svc: ServiceSpec) -> list[str]:
    """OpenFlow matches of one service, both families; port ranges as prefix masks."""
    if svc.proto == "icmp":
        return ["icmp"]
    if svc.proto == "icmpv6":
        return ["icmp6"]
    proto = svc.proto
    if not svc.ports:
        return [proto, f"{proto}6"]
    out = []
    for lo, hi in svc.ports:
        for value, mask in port_masks(lo, hi):
            tp = f"tp_dst={value}" if mask == 0xFFFF else f"tp_dst={value:#x}/{mask:#x}"
            out += [f"{proto},{tp}", f"{proto}6,{tp}"]
    return out


def port_masks(lo: int, hi: int) -> list[tuple[int, int]]:
    """The range lo-hi as (value, mask) prefixes of the 16-bit port."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out
