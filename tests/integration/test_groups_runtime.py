"""Security groups end to end through the real runtime: the Controller (intake, groups
intent, one reconcile loop per firewall, the store) with ``switches: []``, a static
inventory whose VMs carry ``ips:`` and ``tags:``, and an nftables firewall in a router
namespace this test creates. TCP connections between leaf namespaces prove the policy.

- the sets fill and the policy holds with real connections;
- a tag change moves a VM's address to another group's set at once;
- a session out of sync keeps its groups' members (fail-static), additions still go;
- a mass removal beyond ``engine.max_removals`` is held for ``vmfabric approve``, and
  applied after it;
- every member change is in the audit log (target, set, address, action).
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controller import running_controller, wait_for
from support.groups_net import RoutedNet
from support.setup import cli, rewrite
from vmfabric.config import Config, load_config
from vmfabric.core.model import Power, SessionStatus, Snapshot, SourceEvent, Vm
from vmfabric.lab import netns as nsx
from vmfabric.sources.base import Emit

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed"),
]

TIERS = ("web", "app", "db")
GROUPS = [{"name": t, "match": {"tag": f"tier:{t}"}} for t in TIERS]
POLICIES = [
    {"name": "web-to-app", "source": "web", "destination": "app", "service": "tcp/8080",
     "action": "allow"},
    {"name": "app-to-db", "source": "app", "destination": "db", "service": "tcp/5432",
     "action": "allow"},
    {"name": "default", "source": "any", "destination": list(TIERS), "action": "drop"},
]  # fmt: skip


# ---- harness -------------------------------------------------------------------------------


@pytest.fixture
def net() -> Iterator[RoutedNet]:
    """A router namespace (the firewall) and one leaf per tier listening on 8080 and 5432."""
    with RoutedNet("r") as n:
        for i, name in enumerate(TIERS, 1):
            n.add_leaf(name, i)
            n.listen(name, 8080, 5432)
        yield n


def vm_entry(name: str, ip: str, tier: str, host: str = "hv1") -> dict[str, Any]:
    return {"name": name, "host": host, "power": "on", "ips": [ip], "tags": [f"tier:{tier}"]}


def inventory(vms: list[dict[str, Any]]) -> dict[str, Any]:
    return {"hosts": [{"name": "hv1", "nics": ["vmnic0"]}], "vms": vms}


def tiers(net: RoutedNet, **moved: str) -> list[dict[str, Any]]:
    """One VM per tier at its leaf's address; ``moved`` gives a VM another tier."""
    return [vm_entry(t, net.addresses[t], moved.get(t, t)) for t in TIERS]


def write_config(
    tmp: Path, net: RoutedNet, vms: list[dict[str, Any]], engine: dict[str, Any] | None = None
) -> Config:
    (tmp / "inv.yaml").write_text(yaml.safe_dump(inventory(vms)))
    cfg = {
        "store": "sqlite:///vmfabric.db",
        "engine": {"coalesce": "10ms", **(engine or {})},
        "sessions": [{"name": "s1", "kind": "static", "path": "inv.yaml"}],
        "switches": [],
        "groups": GROUPS,
        "policies": POLICIES,
        "firewalls": [{"name": "fw1", "kind": "nftables", "netns": net.router}],
    }
    (tmp / "vmfabric.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(tmp / "vmfabric.yaml")


def members(net: RoutedNet, group: str) -> set[str]:
    """The IPv4 set of ``group`` as nftables holds it now (read with nft, not the driver)."""
    found = nsx.run(
        ["nft", "-j", "list", "set", "inet", "vmfabric", f"{group}_v4"], net.router, check=False
    )
    if found.returncode != 0:
        return set()
    for item in json.loads(found.stdout)["nftables"]:
        if "set" in item:
            return {str(e) for e in item["set"].get("elem", [])}
    return set()


def holds(net: RoutedNet, **want: set[str]) -> bool:
    return all(members(net, g) == m for g, m in want.items())


def audited(config: Config) -> list[tuple[str, str, str, str]]:
    """(target, holder, member, action) of every audit entry, oldest first."""
    from vmfabric.store import Store

    with Store(config.store_url()) as store:
        entries = store.audit(1000)
    return [(e["target"], e["holder"], e["member"], e["action"]) for e in reversed(entries)]


class ScriptedSource:
    """A session whose events the test sends (``send``): what a vCenter that reconnects
    half-started looks like, which a static file cannot show."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: queue.Queue[list[SourceEvent]] = queue.Queue()

    def send(self, *events: SourceEvent) -> None:
        self.events.put(list(events))

    def run(self, emit: Emit, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                batch = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            for ev in batch:
                emit(ev)


# ---- tests ---------------------------------------------------------------------------------


def test_the_sets_fill_and_the_policy_holds_with_real_connections(
    net: RoutedNet, tmp_path: Path
) -> None:
    config = write_config(tmp_path, net, tiers(net))
    assert net.probe("web", "db", 5432) == "open", "no table yet: everything passes"
    with running_controller(config):
        want = {t: {net.addresses[t]} for t in TIERS}
        wait_for(lambda: holds(net, **want), 15, "every tier's address in its set")
        assert net.probe("web", "app", 8080) == "open", "allowed; the reply passes (stateful)"
        assert net.probe("app", "db", 5432) == "open"
        assert net.probe("web", "db", 5432) == "timeout", "the scope's default: drop"
        assert net.probe("db", "web", 8080) == "timeout"


def test_a_tag_change_moves_the_address_to_the_other_set_at_once(
    net: RoutedNet, tmp_path: Path
) -> None:
    config = write_config(tmp_path, net, tiers(net))
    web, app = net.addresses["web"], net.addresses["app"]
    with running_controller(config):
        wait_for(lambda: holds(net, web={web}, app={app}), 15, "the first sets")
        assert net.probe("web", "db", 5432) == "timeout"
        rewrite(tmp_path / "inv.yaml", inventory(tiers(net, web="app")))
        wait_for(lambda: holds(net, web=set(), app={web, app}), 10, "web's address in app")
        assert net.probe("web", "db", 5432) == "open", "now an app VM: app-to-db allows it"
        assert net.probe("web", "app", 8080) == "timeout", (
            "no longer a web VM: web-to-app is not its"
        )


def test_a_session_out_of_sync_keeps_its_groups_members(net: RoutedNet, tmp_path: Path) -> None:
    config = write_config(tmp_path, net, [])
    source = ScriptedSource("s1")
    vms = tuple(
        Vm("s1", t, t, "hv1", Power.ON, ips=(net.addresses[t],), tags=(f"tier:{t}",)) for t in TIERS
    )
    with running_controller(config, sources=[source]):
        source.send(SessionStatus("s1", "connected"), Snapshot("s1", (), (), vms))
        want = {t: {net.addresses[t]} for t in TIERS}
        wait_for(lambda: holds(net, **want), 15, "every tier's address in its set")
        # the manager reconnects half-started: db and app are not reported, a new web VM is
        late = Vm("s1", "web2", "web2", "hv1", Power.ON, ips=("10.1.0.9",), tags=("tier:web",))
        source.send(
            SessionStatus("s1", "disconnected", error="lost"),
            SessionStatus("s1", "connected"),
            Snapshot("s1", (), (), (vms[0], late), unknown_hosts=("hv2",)),
        )
        wait_for(lambda: "10.1.0.9" in members(net, "web"), 10, "the addition (never held)")
        assert members(net, "app") == {net.addresses["app"]}, "fail-static: app kept"
        assert members(net, "db") == {net.addresses["db"]}, "fail-static: db kept"
        assert net.probe("app", "db", 5432) == "open", "access kept while out of sync"
        # in sync again without them: now they go
        source.send(Snapshot("s1", (), (), (vms[0], late)))
        wait_for(lambda: holds(net, app=set(), db=set()), 10, "the removals once in sync")


def test_a_mass_removal_is_held_for_approve_and_applied_after(
    net: RoutedNet, tmp_path: Path
) -> None:
    extra = [vm_entry(f"web{i}", f"10.1.0.{10 + i}", "web") for i in range(5)]
    config = write_config(tmp_path, net, [*tiers(net), *extra], engine={"max_removals": 3})
    cfg_path = tmp_path / "vmfabric.yaml"
    many = {net.addresses["web"], *(e["ips"][0] for e in extra)}
    with running_controller(config) as ctl:
        wait_for(lambda: members(net, "web") == many, 15, "six web addresses")
        # five web VMs go and a db VM comes: the addition goes, the removals are held
        rewrite(
            tmp_path / "inv.yaml",
            inventory([*tiers(net), vm_entry("db2", "10.3.0.9", "db")]),
        )
        wait_for(lambda: "10.3.0.9" in members(net, "db"), 10, "the addition despite the hold")
        wait_for(lambda: len(ctl.store.plans("held")) == 1, 10, "a held plan in the store")
        held = ctl.store.plans("held")[0]
        assert "max_removals=3" in held["reason"]
        assert members(net, "web") == many, "held removals were applied"
        approved = cli("approve", str(held["id"]), config=cfg_path)
        assert approved.returncode == 0, approved.stderr
        wait_for(lambda: members(net, "web") == {net.addresses["web"]}, 10, "approved, applied")
        wait_for(
            lambda: ctl.store.plan(held["id"])["status"] == "applied",  # type: ignore[index]
            10,
            "the plan marked applied",
        )
    removed = {m for t, h, m, a in audited(config) if (t, h, a) == ("fw1", "web", "remove")}
    assert removed == {e["ips"][0] for e in extra}


def test_every_member_change_is_audited(net: RoutedNet, tmp_path: Path) -> None:
    config = write_config(tmp_path, net, tiers(net))
    web = net.addresses["web"]
    with running_controller(config):
        wait_for(lambda: members(net, "db") == {net.addresses["db"]}, 15, "the first sets")
        rewrite(tmp_path / "inv.yaml", inventory(tiers(net, web="app")))
        wait_for(lambda: members(net, "app") == {web, net.addresses["app"]}, 10, "the move")
        wait_for(lambda: ("fw1", "web", web, "remove") in audited(config), 10, "audited")
    entries = audited(config)
    first = sorted(("fw1", t, net.addresses[t], "add") for t in TIERS)
    move = [("fw1", "app", web, "add"), ("fw1", "web", web, "remove")]
    assert sorted(entries[:3]) == first and sorted(entries[3:]) == move, (
        "each change audited once, in order, and nothing else"
    )
