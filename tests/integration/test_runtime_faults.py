"""The reconcile loop under faults (issue 10's defects), end to end on a real OVS.

- a worker survives a deleted bridge (a ConfigError inside the loop) and an unexpected
  exception, says so in ``show switch``, and serves the switch again;
- after a frozen ovsdb-server (SIGSTOP while a VM moves: the transaction times out, then
  commits late), every VLAN on the switch has its audit entry;
- SIGKILL of ``vmfabric run`` right after a commit, and SIGTERM during a stall: the next
  start audits what was committed;
- ``run`` stops with a clear error when its store file is deleted;
- a locked store does not stall the event loop (store writes run on a writer thread);
- SIGHUP applies a new link, and a bad new file is refused while the old one stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
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
from support.setup import inventory, ovs_cfg, record, rewrite, write_setup
from vmfabric.config import parse_switch
from vmfabric.core.model import PortState
from vmfabric.store import Store
from vmfabric.targets.switchport.fake import FakeDriver

pytestmark = pytest.mark.integration

PGS = {"web": 110, "app": 120}
LINKS = [("esx1", "leaf1", "e1"), ("esx2", "leaf1", "e2")]


def trunks(sw: OvsSwitch, port: str) -> set[int]:
    return ovs_trunks(sw.ovs, port)


def switch_row(store: Store) -> dict[str, Any]:
    rows = store.show_switches()
    if len(rows) != 1:
        raise LookupError(f"switch rows: {rows}")  # not written yet: wait_for waits
    return rows[0]


def switch_ok(store: Store) -> bool:
    return [s["state"] for s in store.show_switches()] == ["ok"]


def audited_adds(store: Store) -> list[tuple[str, int]]:
    return [(e["port"], e["vlan"]) for e in store.audit(1000) if e["action"] == "add"]


def dynamic_on_switch(sw: OvsSwitch) -> set[tuple[str, int]]:
    """Every (port, VLAN) the switch's origin record says vmfabric added."""
    out: set[tuple[str, int]] = set()
    for port in sw.ports:
        text = record(sw, port)
        for part in filter(None, text.split(",")):
            lo, _, hi = part.partition("-")
            out.update((port, v) for v in range(int(lo), int(hi or lo) + 1))
    return out


# ---- a worker never dies -------------------------------------------------------------------


def test_a_worker_survives_a_deleted_bridge_and_serves_it_again(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    inv = inventory([("web-01", "esx1", "web")], PGS)
    config = write_setup(tmp_path, inv, [ovs_cfg(sw, timeout=2)], LINKS,
                         engine={"retry_max": "2s"})  # fmt: skip
    with running_controller(config, port_reread=0.5) as ctl:
        wait_for(lambda: trunks(sw, "e1") == {110}, 10, "VLAN 110 on e1")
        sw.ovs.vsctl("del-br", "sw")
        wait_for(lambda: switch_row(ctl.store)["state"] == "error", 15, "switch state error")
        assert "bridge sw does not exist" in switch_row(ctl.store)["error"]
        rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx2", "web")], PGS))
        sw.ovs.vsctl("add-br", "sw", "--", "set", "bridge", "sw", "datapath_type=netdev")
        for port in sw.ports:
            sw.ovs.vsctl("add-port", "sw", port, "trunks=4095")
        wait_for(lambda: trunks(sw, "e2") == {110}, 15, "VLAN 110 on e2 once the bridge is back")
        wait_for(lambda: switch_row(ctl.store)["state"] == "ok", 10, "switch state ok again")


def trunk_of(driver: FakeDriver, port: str) -> set[int]:
    raw = driver.port(port)
    return set(raw.trunks) if raw is not None else set()


class _Exploding(FakeDriver):
    """A fake switch whose reads raise an unexpected exception (a bug) a few times."""

    failures = 2

    def read_ports(self) -> dict[str, PortState]:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("boom in read_ports")
        return super().read_ports()


def test_an_unexpected_exception_is_logged_with_traceback_marked_error_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"]}
    config = write_setup(tmp_path, inventory([("web-01", "esx1", "web")], PGS), [fake], LINKS,
                         engine={"retry_max": "1s"})  # fmt: skip
    driver = _Exploding(config.switches[0])
    caplog.set_level(logging.WARNING, logger="vmfabric")
    with running_controller(config, drivers={"leaf1": driver}) as ctl:
        wait_for(lambda: switch_row(ctl.store)["state"] == "error", 10, "switch state error")
        assert "unexpected RuntimeError: boom in read_ports" in switch_row(ctl.store)["error"]
        wait_for(lambda: 110 in trunk_of(driver, "e1"), 15, "VLAN 110 after the retries")
        wait_for(lambda: switch_row(ctl.store)["state"] == "ok", 10, "switch state ok again")
    bugs = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert bugs and bugs[0].exc_info is not None, "the traceback must be logged"


# ---- nothing unaudited --------------------------------------------------------------------


def test_after_a_frozen_ovsdb_every_vlan_on_the_switch_has_its_audit_entry(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    inv = inventory([("web-01", "esx1", "web"), ("app-01", "esx1", "app")], PGS)
    config = write_setup(tmp_path, inv, [ovs_cfg(sw, timeout=1)], LINKS,
                         engine={"retry_max": "1s", "prune_delay": "30s"})  # fmt: skip
    server = sw.ovs.pid("ovsdb-server")
    assert server is not None
    with running_controller(config) as ctl:
        wait_for(lambda: trunks(sw, "e1") == {110, 120}, 10, "VLANs on e1")
        os.kill(server, signal.SIGSTOP)
        try:
            moved = [("web-01", "esx2", "web"), ("app-01", "esx2", "app")]
            rewrite(tmp_path / "inv.yaml", inventory(moved, PGS))
            wait_for(lambda: switch_row(ctl.store)["state"] == "unreachable", 15,
                     "the write timing out against the frozen ovsdb-server")  # fmt: skip
        finally:
            os.kill(server, signal.SIGCONT)
        wait_for(lambda: trunks(sw, "e2") == {110, 120}, 15, "the VLANs on e2")
        wait_for(lambda: dynamic_on_switch(sw) <= set(audited_adds(ctl.store)), 10,
                 "an audit entry for every VLAN vmfabric added")  # fmt: skip
        adds = audited_adds(ctl.store)
    assert len(adds) == len(set(adds)), f"an add audited twice: {adds}"
    assert {("e2", 110), ("e2", 120)} <= set(adds)


@contextmanager
def vmfabric_run(config_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``vmfabric run`` as a process of its own; killed by PID on the way out."""
    argv = [sys.executable, "-m", "vmfabric", "run", "-c", str(config_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_sigkill_right_after_a_commit_loses_no_audit_entry(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    config = write_setup(tmp_path, inventory([], PGS), [ovs_cfg(sw, timeout=30)], LINKS)
    cfg_path = tmp_path / "vmfabric.yaml"
    vswitchd = sw.ovs.pid("ovs-vswitchd")
    assert vswitchd is not None
    with vmfabric_run(cfg_path) as proc:
        store = Store(config.store_url())
        wait_for(lambda: switch_ok(store), 20, "the switch ok")
        os.kill(vswitchd, signal.SIGSTOP)  # OVSDB commits; the driver waits for vswitchd
        try:
            rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx1", "web")], PGS))
            wait_for(lambda: trunks(sw, "e1") == {110}, 20, "VLAN 110 committed to OVSDB")
            proc.send_signal(signal.SIGKILL)  # before the driver returned: nothing audited
            proc.wait(10)
        finally:
            os.kill(vswitchd, signal.SIGCONT)
        assert ("e1", 110) not in audited_adds(store), "the window was missed: nothing tested"
        store.close()
    with running_controller(config) as ctl:
        wait_for(lambda: ("e1", 110) in audited_adds(ctl.store), 15, "the commit audited")
        assert [p["status"] for p in ctl.store.plans()] == ["applied"]


def test_sigterm_during_a_stall_and_a_late_commit_is_audited_at_the_next_start(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    config = write_setup(tmp_path, inventory([], PGS), [ovs_cfg(sw, timeout=2)], LINKS)
    server = sw.ovs.pid("ovsdb-server")
    assert server is not None
    with vmfabric_run(tmp_path / "vmfabric.yaml") as proc:
        store = Store(config.store_url())
        wait_for(lambda: switch_ok(store), 20, "the switch ok")
        os.kill(server, signal.SIGSTOP)
        try:
            rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx1", "web")], PGS))
            wait_for(lambda: [p["status"] for p in store.plans()] == ["applying"], 20,
                     "the plan recorded as applying before the stalled write")  # fmt: skip
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            os.kill(server, signal.SIGCONT)  # the stalled transaction commits now
        wait_for(lambda: trunks(sw, "e1") == {110}, 15, "the late commit")
        assert audited_adds(store) == []
        store.close()
    with running_controller(config) as ctl:
        wait_for(lambda: audited_adds(ctl.store) == [("e1", 110)], 15, "the late commit audited")


# ---- the store -----------------------------------------------------------------------------


def test_run_stops_with_a_clear_error_when_its_store_is_deleted(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    config = write_setup(tmp_path, inventory([("web-01", "esx1", "web")], PGS), [ovs_cfg(sw)],
                         LINKS)  # fmt: skip
    db = Path(config.store_url().removeprefix("sqlite:///"))
    with vmfabric_run(tmp_path / "vmfabric.yaml") as proc:
        wait_for(lambda: trunks(sw, "e1") == {110}, 20, "VLAN 110 on e1")
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
        code = proc.wait(20)
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 1
    assert f"store {db} was deleted while in use" in err
    assert "Traceback" not in err


def test_a_locked_store_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    fake = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"]}
    config = write_setup(tmp_path, inventory([("web-01", "esx1", "web")], PGS), [fake], LINKS)
    driver = FakeDriver(config.switches[0])
    with running_controller(config, drivers={"leaf1": driver}) as ctl:
        wait_for(lambda: 110 in driver.read_ports()["e1"].vlans, 10, "VLAN 110 on e1")
        assert ctl.loop is not None
        locker = sqlite3.connect(config.store_url().removeprefix("sqlite:///"), timeout=10)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx2", "web")], PGS))
            wait_for(lambda: ctl.events_handled >= 2, 10, "the move handled while locked")
            started = time.monotonic()
            future = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), ctl.loop)
            future.result(timeout=10)
            answered = time.monotonic() - started
            locked_still = locker.in_transaction
        finally:
            locker.rollback()
            locker.close()
        assert locked_still, "the store lock was released before the loop answered"
        assert answered < 4.0, f"the event loop was stalled {answered:.1f}s by the store"
        wait_for(lambda: 110 in driver.read_ports()["e2"].vlans, 20, "VLAN 110 on e2 after")
        wait_for(lambda: ("e2", 110) in audited_adds(ctl.store), 10, "and audited")


# ---- SIGHUP ------------------------------------------------------------------------------


def test_sighup_applies_a_new_link_and_refuses_a_bad_file(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    config = write_setup(tmp_path, inventory([("web-01", "esx1", "web")], PGS), [ovs_cfg(sw)],
                         [("esx2", "leaf1", "e2")])  # fmt: skip
    cfg_path = tmp_path / "vmfabric.yaml"
    with vmfabric_run(cfg_path) as proc:
        store = Store(config.store_url())
        wait_for(lambda: store.show_sessions("inv")[0]["in_sync"], 20, "the session in sync")
        wait_for(lambda: switch_row(store)["state"] == "ok", 20, "the switch read")
        assert trunks(sw, "e1") == {4095}, "no link for esx1 yet: nothing on e1"
        data = yaml.safe_load(cfg_path.read_text())
        data["links"].append({"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "e1"})
        cfg_path.write_text(yaml.safe_dump(data))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: trunks(sw, "e1") == {110}, 20, "VLAN 110 on e1 after SIGHUP")
        (session,) = store.show_sessions("inv")
        assert session["state"] == "connected" and session["in_sync"], "an unchanged session"
        cfg_path.write_text("switches: [unclosed\n")
        proc.send_signal(signal.SIGHUP)
        data["links"].pop()  # the refused file must not have taken the link away
        rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx1", "web"),
                                                   ("app-01", "esx1", "app")], PGS))  # fmt: skip
        wait_for(lambda: trunks(sw, "e1") == {110, 120}, 20, "the old config still in force")
        assert proc.poll() is None, "SIGHUP must not end run"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        err = proc.stderr.read() if proc.stderr else ""
        store.close()
    refused = [line for line in err.splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "invalid YAML" in refused[0], err
    assert "configuration reloaded" in err
    assert parse_switch(data["switches"][0]).name == "leaf1"


# ---- closing an open port (open_ports: close) ------------------------------------------------


def port_entries(store: Store) -> list[dict[str, Any]]:
    """The switch-port entries of the audit log (approvals are audited too)."""
    return [e for e in store.audit(10) if e["kind"] == "switchport"]


def test_closing_an_open_port_is_audited_and_held_by_the_guard(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=1, trunks=frozenset())  # e1 carries every VLAN
    inv = inventory([("web-01", "esx1", "web")], PGS)
    config = write_setup(tmp_path, inv, [ovs_cfg(sw, open_ports="close")], LINKS[:1],
                         engine={"max_removals": 0})  # fmt: skip
    with running_controller(config) as ctl:
        wait_for(lambda: len(ctl.store.plans("held")) == 1, 10, "the closing held")
        (held,) = ctl.store.plans("held")
        assert "max_removals=0" in held["reason"]
        assert trunks(sw, "e1") == set(), "held: the open port must stay open, no VLAN added"
        assert ctl.store.audit(10) == []
        ctl.store.approve_plan(held["id"], time.time())
        wait_for(lambda: trunks(sw, "e1") == {110}, 10, "closed to VLAN 110 once approved")
        wait_for(lambda: len(port_entries(ctl.store)) == 2, 10, "both changes audited")
        audit = {(e["port"], e["vlan"], e["action"]): e["reason"] for e in port_entries(ctl.store)}
        assert [e["plan"] for e in ctl.store.audit(10) if e["kind"] == "approval"] == [held["id"]]
    assert "port carried every VLAN" in audit[("e1", 0, "remove")]
    assert ("e1", 110, "add") in audit


def test_a_bug_in_event_intake_is_logged_and_later_events_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"]}
    config = write_setup(tmp_path, inventory([("web-01", "esx1", "web")], PGS), [fake], LINKS)
    driver = FakeDriver(config.switches[0])
    caplog.set_level(logging.WARNING, logger="vmfabric")
    with running_controller(config, drivers={"leaf1": driver}) as ctl:
        wait_for(lambda: 110 in trunk_of(driver, "e1"), 10, "VLAN 110 on e1")
        handled = ctl.events_handled
        real = ctl.intake.handle
        calls: list[int] = []

        def broken(batch: Any, now: float) -> Any:
            calls.append(len(batch))
            if len(calls) == 1:
                raise RuntimeError("bug in intake")
            return real(batch, now)

        ctl.intake.handle = broken  # type: ignore[method-assign]
        rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx1", "web"),
                                                   ("app-01", "esx1", "app")], PGS))  # fmt: skip
        wait_for(lambda: len(calls) >= 1, 10, "the broken batch")
        rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx2", "web")], PGS))
        wait_for(lambda: 110 in trunk_of(driver, "e2"), 10, "a later change served")
        assert ctl.events_handled > handled
    assert any("intake: unexpected error" in r.getMessage() and r.exc_info
               for r in caplog.records)  # fmt: skip
