"""README "Safety", faults: each injected under a running controller, each must converge.

- ovsdb-server killed and restarted: writes fail, are retried with backoff, then land;
- a switch unreachable at start-up (fake driver, and an OVS whose database starts late);
- an edge port deleted and re-created: its VLANs come back;
- a slow switch (fake driver, 2 s latency) does not delay another switch's change;
- the vCenter simulator killed and restarted: session disconnected, nothing pruned,
  reconnects and converges;
- the store cannot be written (its write lock held elsewhere): the controller reports it
  and applies nothing it cannot record; once writable again it converges and audits.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controller import running_controller, wait_for
from support.controller import trunks as ovs_trunks
from support.ovs_fixtures import MakeSwitch, OvsSwitch
from support.vcsim_fixtures import VcsimFactory
from vmfabric.config import Config, load_config
from vmfabric.lab.vcsim import VcsimControl
from vmfabric.runtime import Controller
from vmfabric.runtime.switchports import SwitchPortTarget
from vmfabric.store import Store, StoreError
from vmfabric.targets.switchport.fake import FakeDriver

pytestmark = pytest.mark.integration

Inventory = dict[str, list[dict[str, Any]]]


# ---- harness -----------------------------------------------------------------------------


@contextmanager
def controller(
    config: Config, drivers: dict[str, Any] | None = None, port_reread: float | None = None
) -> Iterator[Controller]:
    """Run a Controller in a thread with its own event loop until the block ends."""
    with running_controller(config, drivers=drivers, port_reread=port_reread) as ctl:
        yield ctl


def trunks(sw: OvsSwitch, port: str) -> set[int]:
    return ovs_trunks(sw.ovs, port)


def inventory(vms: list[tuple[str, str, str]], pgs: dict[str, Any], hosts: int = 2) -> Inventory:
    return {
        "hosts": [{"name": f"esx{i}", "nics": ["vmnic0"]} for i in range(1, hosts + 1)],
        "portgroups": [{"name": n, "vlan": v} for n, v in pgs.items()],
        "vms": [{"name": n, "host": h, "power": "on", "portgroups": [p]} for n, h, p in vms],
    }


def write_setup(
    tmp: Path,
    switches: list[dict[str, Any]],
    links: list[tuple[str, str, str]],
    *,
    inv: Inventory | None = None,
    prune: str = "1s",
    sessions: list[dict[str, Any]] | None = None,
    store: str = "sqlite:///vmfabric.db",
    nic: str = "vmnic0",
) -> Config:
    if inv is not None:
        (tmp / "inv.yaml").write_text(yaml.safe_dump(inv))
    cfg = {
        "store": store,
        "engine": {"prune_delay": prune, "coalesce": "10ms", "retry_max": "2s"},
        "sessions": sessions or [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
        "switches": switches,
        "links": [{"host": h, "nic": nic, "switch": s, "port": p} for h, s, p in links],
    }
    (tmp / "vmfabric.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(tmp / "vmfabric.yaml")


def rewrite(path: Path, inv: Inventory) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(inv))
    tmp.replace(path)


def ovs_cfg(sw: OvsSwitch) -> dict[str, Any]:
    cfg = sw.config.model_dump(mode="json", exclude_none=True)
    return {**cfg, "timeout": 2}


PGS = {"web": 110, "app": 120, "db": 130}
TWO = [("web-01", "esx1", "web"), ("app-01", "esx2", "app")]
LINKS = [("esx1", "leaf1", "e1"), ("esx2", "leaf1", "e2")]


# ---- OVSDB server killed and restarted ---------------------------------------------------


def test_ovsdb_killed_and_restarted_writes_are_retried_then_converge(
    ovs_switch: MakeSwitch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vmfabric")
    sw = ovs_switch(n=2)
    config = write_setup(tmp_path, [ovs_cfg(sw)], LINKS, inv=inventory(TWO, PGS))
    with controller(config) as ctl:
        wait_for(lambda: trunks(sw, "e2") == {120}, 10, "first convergence")
        sw.ovs.kill_daemon("ovsdb-server")
        rewrite(tmp_path / "inv.yaml", inventory([*TWO, ("db-01", "esx2", "db")], PGS))
        wait_for(lambda: "retrying in" in caplog.text, 15, "a failed write retried")
        time.sleep(1.0)
        sw.ovs.start_ovsdb()
        took = wait_for(lambda: trunks(sw, "e2") == {120, 130}, 20, "VLAN 130 after restart")

        def audited() -> set[tuple[str, int, str]]:
            return {(e["port"], e["vlan"], e["action"]) for e in ctl.store.audit(20)}

        # the audit is written right after the switch confirms; OVS shows the VLAN first
        wait_for(lambda: ("e2", 130, "add") in audited(), 5, "VLAN 130's add in the audit")
        states = [s["state"] for s in ctl.store.show_switches()]
    assert states == ["ok"]
    assert trunks(sw, "e1") == {110}
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert all("\n" not in r.getMessage() for r in retries)
    assert not [r for r in retries if "switch leaf1: switch leaf1" in r.getMessage()]
    assert took < 20


# ---- a switch unreachable at start-up ----------------------------------------------------


def test_switch_unreachable_at_start_converges_once_reachable(tmp_path: Path) -> None:
    fake = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"]}
    config = write_setup(tmp_path, [fake], LINKS, inv=inventory(TWO, PGS))
    driver = FakeDriver(config.switches[0])
    driver.unreachable = True
    with controller(config, {"leaf1": driver}) as ctl:
        wait_for(
            lambda: [s["state"] for s in ctl.store.show_switches()] == ["unreachable"],
            10,
            "the switch reported unreachable",
        )
        time.sleep(1.5)
        assert driver.transactions == 0
        driver.unreachable = False
        wait_for(lambda: driver.ports["e2"].trunks == {120}, 15, "converged after reachable")
        wait_for(lambda: [s["state"] for s in ctl.store.show_switches()] == ["ok"], 5, "switch ok")
    assert driver.ports["e1"].trunks == {110}


def test_ovs_whose_database_starts_late_converges(ovs_switch: MakeSwitch, tmp_path: Path) -> None:
    sw = ovs_switch(n=2)
    sw.ovs.kill_daemon("ovsdb-server")  # the switch's database is down when vmfabric starts
    config = write_setup(tmp_path, [ovs_cfg(sw)], LINKS, inv=inventory(TWO, PGS))
    with controller(config) as ctl:
        wait_for(
            lambda: [s["state"] for s in ctl.store.show_switches()] == ["unreachable"],
            15,
            "the switch reported unreachable",
        )
        sw.ovs.start_ovsdb()
        wait_for(lambda: trunks(sw, "e2") == {120}, 20, "converged after the database started")
    assert trunks(sw, "e1") == {110}


# ---- an edge port deleted and re-created -------------------------------------------------


def test_deleted_and_recreated_edge_port_gets_its_vlans_back(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    config = write_setup(tmp_path, [ovs_cfg(sw)], LINKS, inv=inventory(TWO, PGS))
    with controller(config, port_reread=0.5) as ctl:
        wait_for(lambda: trunks(sw, "e1") == {110}, 10, "first convergence")
        sw.ovs.vsctl("del-port", sw.bridge, "e1")
        wait_for(
            lambda: any(d["port"] == "e1" and d["mode"] == "missing" for d in interfaces(ctl)),
            10,
            "e1 seen missing",
        )
        sw.ovs.vsctl("add-port", sw.bridge, "e1", "trunks=4095")  # re-created, closed
        wait_for(lambda: trunks(sw, "e1") == {110}, 10, "VLAN 110 restored on the new e1")
    assert trunks(sw, "e2") == {120}


def interfaces(ctl: Controller) -> list[dict[str, Any]]:
    target = ctl.targets["leaf1"]
    assert isinstance(target, SwitchPortTarget)
    return [{"port": s.port, "mode": str(s.mode)} for s in target.states.values()]


# ---- a slow switch -----------------------------------------------------------------------


def test_a_slow_switch_does_not_delay_another_switch(tmp_path: Path) -> None:
    slow = {"name": "slow", "driver": "fake", "edge_ports": ["e1"], "latency": 2}
    fast = {"name": "fast", "driver": "fake", "edge_ports": ["e1"]}
    links = [("esx1", "slow", "e1"), ("esx2", "fast", "e1")]
    config = write_setup(tmp_path, [slow, fast], links, inv=inventory(TWO, PGS))
    drivers = {s.name: FakeDriver(s) for s in config.switches}
    with controller(config, drivers):
        wait_for(lambda: drivers["slow"].ports["e1"].trunks == {110}, 15, "slow converged")
        wait_for(lambda: drivers["fast"].ports["e1"].trunks == {120}, 5, "fast converged")
        both = [("web-02", "esx1", "db"), ("db-01", "esx2", "db")]
        rewrite(tmp_path / "inv.yaml", inventory([*TWO, *both], PGS))
        fast_took = wait_for(lambda: 130 in drivers["fast"].ports["e1"].trunks, 5, "fast 130")
        slow_took = wait_for(lambda: 130 in drivers["slow"].ports["e1"].trunks, 15, "slow 130")
    assert fast_took < 2.0, f"the fast switch took {fast_took:.2f}s: it waited for the slow one"
    assert fast_took + slow_took >= 2.0, "the slow switch's latency was not injected"


# ---- the vCenter simulator killed and restarted ------------------------------------------


def test_vcsim_killed_and_restarted_prunes_nothing_and_converges(
    ovs_switch: MakeSwitch,
    vcsim_factory: VcsimFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts = ("hv1", "hv2")
    sw = ovs_switch(n=2)
    sim = vcsim_factory(host_names=hosts, vms=0)
    with VcsimControl.of(sim) as control:
        control.add_dvportgroup("web", vlan=110)
        control.create_vm("web-01", "hv1", "web")
    monkeypatch.setenv("VMFABRIC_FAULT_PW", sim.password)
    session = {"name": "vc", "kind": "vcenter", "url": sim.url, "username": sim.username,
               "password": "env:VMFABRIC_FAULT_PW", "verify_tls": False}  # fmt: skip
    links = [("hv1", "leaf1", "e1"), ("hv2", "leaf1", "e2")]  # vcsim's DVS uses vmnic1
    config = write_setup(
        tmp_path, [ovs_cfg(sw)], links, sessions=[session], nic="vmnic1", prune="5s"
    )
    with controller(config) as ctl:
        wait_for(lambda: trunks(sw, "e1") == {110}, 20, "VLAN 110 from vCenter on e1")
        sim.kill()
        wait_for(lambda: session_state(ctl) == "disconnected", 10, "session disconnected")
        time.sleep(6.0)  # past the prune delay: fail-static holds VLAN 110
        assert trunks(sw, "e1") == {110}, "pruned while the session was disconnected"
        again = vcsim_factory(
            host_names=hosts, vms=0, port=sim.port, username=sim.username, password=sim.password
        )
        with VcsimControl.of(again) as control:
            control.add_dvportgroup("web", vlan=110)
            control.create_vm("web-01", "hv1", "web")
            control.create_vm("web-02", "hv2", "web")
        wait_for(lambda: trunks(sw, "e2") == {110}, 30, "reconnected and converged on e2")
        removals = [e for e in ctl.store.audit(50) if e["action"] == "remove"]
    assert trunks(sw, "e1") == {110}
    assert removals == [], f"the restart pruned: {removals}"


def session_state(ctl: Controller) -> str:
    found = ctl.store.show_sessions("vc")
    return str(found[0]["state"]) if found else ""


# ---- the store cannot be written ---------------------------------------------------------


def test_unwritable_store_is_reported_and_nothing_unrecorded_is_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds SQLite's write lock (as a stuck writer or a full disk would
    stop writes): the store raises StoreError after its busy timeout."""
    caplog.set_level(logging.WARNING, logger="vmfabric")
    fake = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"]}
    config = write_setup(tmp_path, [fake], LINKS, inv=inventory(TWO, PGS))
    driver = FakeDriver(config.switches[0])
    with controller(config, {"leaf1": driver}) as ctl:
        wait_for(lambda: driver.ports["e2"].trunks == {120}, 10, "first convergence")
        with write_lock(tmp_path / "vmfabric.db"):
            rewrite(tmp_path / "inv.yaml", inventory([*TWO, ("db-01", "esx2", "db")], PGS))
            wait_for(lambda: "database is locked" in caplog.text, 15, "the store failure logged")
            time.sleep(1.0)
            assert 130 not in driver.ports["e2"].trunks, "applied what the store cannot record"
        wait_for(lambda: 130 in driver.ports["e2"].trunks, 20, "converged once writable")
        wait_for(lambda: ("e2", 130, "add") in audited(ctl), 5, "the change audited")
        wait_for(lambda: "db-01" in {v["name"] for v in ctl.store.show_vms()}, 5, "show vm")
    failures = [r.getMessage() for r in caplog.records if "locked" in r.getMessage()]
    assert all("\n" not in m for m in failures)


def test_a_plan_the_store_refused_is_retried_without_a_new_event(tmp_path: Path) -> None:
    """The store refuses to record a plan once (StoreError, as after SQLite's busy
    timeout): nothing is applied then, and the loop retries on its own after the backoff
    (no source event, no re-read timer) and applies and audits the change."""
    fake = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"]}
    config = write_setup(tmp_path, [fake], LINKS, inv=inventory(TWO, PGS))
    driver = FakeDriver(config.switches[0])
    with controller(config, {"leaf1": driver}, port_reread=3600) as ctl:
        wait_for(lambda: driver.ports["e2"].trunks == {120}, 10, "first convergence")
        begin = ctl.store.begin_apply
        refused: list[tuple[Any, ...]] = []

        def refuse_once(*args: Any, **kwargs: Any) -> int:
            if not refused:
                refused.append(args)
                raise StoreError("store vmfabric.db: database is locked")
            return begin(*args, **kwargs)

        ctl.store.begin_apply = refuse_once  # type: ignore[method-assign]
        rewrite(tmp_path / "inv.yaml", inventory([*TWO, ("db-01", "esx2", "db")], PGS))
        wait_for(lambda: bool(refused), 15, "the plan refused by the store")
        assert 130 not in driver.ports["e2"].trunks, "applied what the store refused to record"
        wait_for(lambda: 130 in driver.ports["e2"].trunks, 20, "applied on the retry")
        wait_for(lambda: ("e2", 130, "add") in audited(ctl), 5, "the change audited")


@contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Hold the SQLite write lock of ``db`` from a separate connection."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def audited(ctl: Controller) -> set[tuple[str, int, str]]:
    return {(e["port"], e["vlan"], e["action"]) for e in ctl.store.audit(50)}


# ---- the store on a read-only or full file system -----------------------------------------


def can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare(1) for a mount namespace")
@pytest.mark.parametrize(
    ("mount", "why"),
    [("mount --bind -o ro {d} {d}", "read-only"), ("mount -t tmpfs -o size=4k tmpfs {d}", "full")],
)
def test_run_on_an_unwritable_store_reports_it_and_applies_nothing(
    tmp_path: Path, mount: str, why: str
) -> None:
    db_dir, state = tmp_path / "db", tmp_path / "leaf1.json"
    db_dir.mkdir()
    fake = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"],
            "state_file": str(state)}  # fmt: skip
    store = f"sqlite:///{db_dir}/vmfabric.db"
    write_setup(tmp_path, [fake], LINKS, inv=inventory(TWO, PGS), store=store)
    if why == "read-only":
        Store(store).close()  # an existing store, now on a read-only mount
    shell = f'{mount.format(d=db_dir)} && exec "$0" -m vmfabric run -c "$1"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", shell, sys.executable, str(tmp_path / "vmfabric.yaml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    switch = json.loads(state.read_text())["ports"] if state.exists() else {}
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(db_dir) in done.stderr and why in done.stderr, done.stderr
    assert all(p["trunks"] in ([], [4095]) for p in switch.values()), "applied without a store"
