"""nftables enforcement with real packets: a router namespace runs vmfabric's table, and
TCP connections between VM namespaces are allowed, dropped or rejected as the policy says,
after a tag change too; other tables are never touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import yaml

from support.groups_net import RoutedNet
from vmfabric.config import Config, parse_config
from vmfabric.core.model import Power, SessionStatus, Snapshot, Vm, VmUpsert
from vmfabric.inventory.index import Inventory
from vmfabric.lab import netns as nsx
from vmfabric.runtime.groups import GroupTarget, build, step
from vmfabric.targets.addrset.base import MemberChange
from vmfabric.targets.addrset.netns import NetnsRunner
from vmfabric.targets.addrset.nftables import NftablesDriver

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed"),
]

CONFIG = """
sessions: [{name: s1, kind: static, path: inv.yaml}]
switches: []
groups:
  - {name: web, match: {tag: "tier:web"}}
  - {name: app, match: {tag: "tier:app"}}
  - {name: db, match: {tag: "tier:db"}}
policies:
  - {name: web-to-app, source: web, destination: app, service: tcp/8080, action: allow}
  - {name: app-to-db, source: app, destination: db, service: tcp/5432, action: allow}
  - {name: web-to-db, source: web, destination: db, service: tcp/5432, action: reject}
  - {name: default, source: any, destination: [web, app, db], action: drop}
firewalls:
  - {name: fw1, kind: nftables, netns: NETNS, table: vmfabric}
"""


def vm(name: str, ip: str, tier: str) -> Vm:
    return Vm("s1", name, name, "hv1", Power.ON, ips=(ip,), tags=(f"tier:{tier}",))


@pytest.fixture
def net() -> Iterator[RoutedNet]:
    with RoutedNet("n") as n:
        for i, name in enumerate(("web", "app", "db"), 1):
            n.add_leaf(name, i)
            n.listen(name, 8080, 5432)
        yield n


def setup(net: RoutedNet) -> tuple[Config, Inventory, GroupTarget]:
    cfg = parse_config(yaml.safe_load(CONFIG.replace("NETNS", net.router)), "test")
    inv = Inventory(["s1"])
    built = build(cfg, inv)
    assert built is not None
    intent, targets = built
    vms = tuple(vm(n, net.addresses[n], n) for n in ("web", "app", "db"))
    intent.update(inv, inv.apply([Snapshot("s1", (), (), vms)], 1.0), 1.0)
    target = targets[0]
    target.connect()
    return cfg, inv, target


def nft_json(net: RoutedNet, *args: str) -> dict[str, object]:
    return json.loads(nsx.exec_in(net.router, "nft", "-j", "list", *args))  # type: ignore[no-any-return]


def test_policy_allows_drops_and_rejects_real_connections(net: RoutedNet) -> None:
    assert net.probe("web", "db", 5432) == "open", "no table yet: everything passes"
    _, _, target = setup(net)
    step(target, 2.0)
    assert target.state == {
        "web": {"10.1.0.2"}, "app": {"10.2.0.2"}, "db": {"10.3.0.2"}
    }  # fmt: skip
    assert net.probe("web", "app", 8080) == "open", "allowed; the reply passes (stateful)"
    assert net.probe("app", "db", 5432) == "open"
    assert net.probe("web", "db", 5432) == "refused", "reject: a TCP reset"
    assert net.probe("web", "app", 5432) == "timeout", "the scope's default: drop"
    assert net.probe("db", "web", 8080) == "timeout"


def test_a_tag_change_moves_a_vm_to_another_tier_at_once(net: RoutedNet) -> None:
    _, inv, target = setup(net)
    step(target, 2.0)
    assert net.probe("web", "db", 5432) == "refused"
    delta = inv.apply([VmUpsert(vm("web", net.addresses["web"], "app"))], 3.0)
    assert target.intent.update(inv, delta, 3.0) == {"fw1"}
    plan = step(target, 3.0)
    assert sorted((c.holder, c.member, c.action) for c in plan.changes) == [
        ("app", "10.1.0.2", "add"),
        ("web", "10.1.0.2", "remove"),
    ]
    assert net.probe("web", "db", 5432) == "open", "now in app: app-to-db allows it"


def test_other_tables_are_never_touched(net: RoutedNet) -> None:
    script = (
        "table inet other {\n set keep { type ipv4_addr; elements = { 192.0.2.1 } }\n"
        " chain c { type filter hook forward priority 10; policy accept; }\n}\n"
    )
    subprocess.run(
        nsx.in_netns(net.router, ["nft", "-f", "-"]), input=script, text=True, check=True
    )
    before = nft_json(net, "table", "inet", "other")
    _, inv, target = setup(net)
    step(target, 2.0)
    delta = inv.apply([VmUpsert(vm("db", net.addresses["db"], "web"))], 3.0)
    target.intent.update(inv, delta, 3.0)
    step(target, 3.0)
    assert nft_json(net, "table", "inet", "other") == before


def test_a_change_sends_only_the_changed_elements_in_one_transaction(net: RoutedNet) -> None:
    _, _, target = setup(net)
    step(target, 2.0)
    driver = target.driver
    assert isinstance(driver, NftablesDriver)
    script = driver.element_script(
        target.state,
        [MemberChange("web", "10.1.0.9", "add"), MemberChange("web", "fd00:1::2", "add"),
         MemberChange("db", "10.3.0.2", "remove"), MemberChange("app", "10.2.0.2", "add")],
    )  # fmt: skip
    assert script == (
        "delete element inet vmfabric db_v4 { 10.3.0.2 }\n"
        "add element inet vmfabric web_v4 { 10.1.0.9 }\n"
        "add element inet vmfabric web_v6 { fd00:1::2 }\n"
    ), "the present member is not sent again"
    bad = [MemberChange("web", "10.1.0.7", "add"), MemberChange("nosuch", "10.1.0.8", "add")]
    with pytest.raises(Exception, match="nft refused"):
        driver.apply(bad)
    assert "10.1.0.7" not in driver.read()["web"], "all or nothing: the good half is not applied"


def test_a_group_whose_session_is_out_of_sync_keeps_its_members(net: RoutedNet) -> None:
    _, inv, target = setup(net)
    step(target, 2.0)
    delta = inv.apply(
        [SessionStatus("s1", "disconnected"), Snapshot("s1", (), (), (), unknown_hosts=("hv1",))],
        3.0,
    )
    target.intent.update(inv, delta, 3.0)
    plan = step(target, 3.0)
    assert plan.changes == ()
    assert {c.member for c in plan.held} == {"10.1.0.2", "10.2.0.2", "10.3.0.2"}
    assert all("not in sync" in c.reason for c in plan.held)
    assert net.probe("app", "db", 5432) == "open", "fail-static: access kept"


def test_commands_run_in_the_namespace_from_a_thread_that_returns_to_its_own() -> None:
    ns = nsx.add_netns(f"vfgr{uuid.uuid4().hex[:6]}")
    runner = NetnsRunner(ns)
    try:
        nsx.add_veth("vfgdummy0", "vfgdummy1", ns, ns)
        inside = runner.run(["ip", "-o", "link", "show"], timeout=10)
        assert inside.returncode == 0 and "vfgdummy0" in inside.stdout
        assert "vfgdummy0" not in nsx.run(["ip", "-o", "link", "show"]).stdout
        assert runner._pool is not None
        here = os.readlink("/proc/thread-self/ns/net")
        there = runner._pool.submit(os.readlink, "/proc/thread-self/ns/net").result()
        assert there == here, "the runner's thread stayed in the namespace"
    finally:
        runner.close()
        nsx.delete_netns(ns)
    gone = NetnsRunner(ns)
    try:
        failed = gone.run(["true"], timeout=10)
    finally:
        gone.close()
    assert failed.returncode == 1 and "Cannot open network namespace" in failed.stderr
