"""Security-group figures (print only): ``python -m bench.groups``.

- membership engine: VM events/s at 10,000 VMs x 1,000 groups (tag, glob and nested
  groups), events = tag changes, vMotions, address changes (the intent alone, pure);
- nftables: event -> set element as read back (``nft -j list set``) in a namespace, p50;
- panos: event -> tag registered on the PAN-OS XML API peer (tests/support/peers), p50.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from vmfabric.core.model import Power, Snapshot, Vm, VmUpsert
from vmfabric.intents.groups import (
    AddressTarget,
    AllOf,
    Glob,
    GlobField,
    GroupDef,
    GroupsIntent,
    Ref,
    Tag,
)
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Inventory


def engine(vms: int = 10_000, groups: int = 1_000, events: int = 50_000) -> float:
    rnd = random.Random(7)
    defs: list[GroupDef] = []
    for i in range(groups):
        kind = i % 10
        if kind < 7:
            defs.append(GroupDef(f"g{i}", Tag(f"app:a{i}")))
        elif kind < 9:
            defs.append(GroupDef(f"g{i}", AllOf((Ref(f"g{i - 7}"), Tag("env:prod")))))
        else:
            field: GlobField = "name"
            defs.append(GroupDef(f"g{i}", Glob(field, f"vm-{i % 97}*")))
    targets = [AddressTarget("fw", "nftables", frozenset(d.name for d in defs))]
    intent = GroupsIntent(defs, [], targets, [], Removals(0.0))
    inv = Inventory(["s"])

    def vm(n: int) -> Vm:
        tags = (f"app:a{rnd.randrange(groups)}", "env:prod" if n % 2 else "env:test")
        ip = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
        host = f"hv{rnd.randrange(50)}"
        return Vm("s", str(n), f"vm-{n}", host, Power.ON, ips=(ip,), tags=tuple(sorted(tags)))

    intent.update(
        inv, inv.apply([Snapshot("s", (), (), tuple(vm(n) for n in range(vms)))], 0.0), 0.0
    )
    batch = [VmUpsert(vm(rnd.randrange(vms))) for _ in range(events)]
    deltas = [inv.apply([e], 1.0) for e in batch]  # the inventory's cost is not the engine's
    start = time.perf_counter()
    for d in deltas:
        intent.update(inv, d, 1.0)
    return events / (time.perf_counter() - start)


def nftables(samples: int = 40) -> list[float]:
    import yaml

    from support.groups_net import RoutedNet
    from vmfabric.config import parse_config
    from vmfabric.runtime.groups import build, step

    out: list[float] = []
    with RoutedNet("b") as net:
        net.add_leaf("web", 1)
        cfg = parse_config(
            yaml.safe_load(f"""
sessions: [{{name: s, kind: static, path: x}}]
groups: [{{name: web, match: {{tag: "tier:web"}}}}]
policies: [{{name: p, source: web, destination: any, action: allow}}]
firewalls: [{{name: fw, kind: nftables, netns: {net.router}}}]
"""),
            "bench",
        )
        inv = Inventory(["s"])
        built = build(cfg, inv)
        assert built is not None
        intent, (target,) = built
        target.connect()
        intent.update(inv, inv.apply([Snapshot("s", (), (), ())], 0.0), 0.0)  # in sync
        for i in range(samples):
            tags = ("tier:web",) if i % 2 == 0 else ()
            t0 = time.perf_counter()
            d = inv.apply(
                [VmUpsert(Vm("s", "v", "v", "h", Power.ON, ips=("10.1.0.2",), tags=tags))], float(i)
            )
            intent.update(inv, d, float(i))
            step(target, float(i))
            argv = ["ip", "netns", "exec", net.router, "nft", "-j", "list", "set"]
            argv += ["inet", "vmfabric", "web_v4"]
            seen = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            assert ("10.1.0.2" in seen) == bool(tags)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def panos(samples: int = 40) -> list[float]:
    from pydantic import SecretStr

    from support.peers.panos import PanosPeer
    from vmfabric.config.groups import PanosFirewall
    from vmfabric.targets.addrset.base import MemberChange
    from vmfabric.targets.addrset.panos import PanosDriver

    out: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        peer = PanosPeer(Path(d), "k")
        try:
            cfg = PanosFirewall.model_validate(
                {
                    "name": "pa",
                    "kind": "panos",
                    "host": "127.0.0.1",
                    "port": peer.port,
                    "api_key": "env:X",
                    "ca_file": str(peer.cert),
                }
            )
            drv = PanosDriver(cfg, SecretStr("k"))
            drv.connect()
            drv.read()
            for i in range(samples):
                t0 = time.perf_counter()
                drv.apply([MemberChange("web", f"10.0.{i // 250}.{i % 250 + 1}", "add")])
                out.append((time.perf_counter() - t0) * 1000)
        finally:
            peer.stop()
    return out


def main() -> None:
    rate = engine()
    print(
        f"membership engine: {rate:,.0f} VM events/s at 10,000 VMs x 1,000 groups (target 100,000)"
    )
    nft = nftables()
    print(
        f"nftables event->set read back: p50 {statistics.median(nft):.1f} ms, "
        f"max {max(nft):.1f} ms over {len(nft)} (target 50 ms)"
    )
    pa = panos()
    p50 = statistics.median(pa)
    print(f"panos event->registered on the peer: p50 {p50:.1f} ms, max {max(pa):.1f} ms")


if __name__ == "__main__":
    main()
