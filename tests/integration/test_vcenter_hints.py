"""The source's own reader of ``QueryNetworkHint`` against pyVmomi's, on vcsim's answers, and
the hints of a full read asked beside the VM reads (no mocks: vcsim's real vSphere API)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from support.vcsim_fixtures import LAB_HOSTS, Lab, SourceRunner
from vmfabric.core.model import Neighbor, SessionStatus, Snapshot
from vmfabric.sources.vcenter import session
from vmfabric.sources.vcenter.hints import query_network_hint
from vmfabric.sources.vcenter.mapping import neighbors_from_hints

pytestmark = pytest.mark.integration

vim: Any = _vim  # pyVmomi's bindings are untyped
vmodl: Any = _vmodl


def _network_systems(lab: Lab) -> dict[str, Any]:
    content = lab.control._si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    try:
        return {str(h.name): h.configManager.networkSystem for h in view.view}
    finally:
        view.DestroyView()


def _until(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_hint_reader_reads_every_hosts_cdp_and_lldp_as_pyvmomi_does(vcsim_lab: Lab) -> None:
    stub = vcsim_lab.control._si._stub
    systems = _network_systems(vcsim_lab)
    assert sorted(systems) == sorted(LAB_HOSTS)
    seen: set[str] = set()
    for name, system in systems.items():
        ours = query_network_hint(stub, system)
        theirs = list(system.QueryNetworkHint())
        assert [h.device for h in ours] == [str(h.device) for h in theirs], name
        assert neighbors_from_hints(ours) == neighbors_from_hints(theirs), name
        seen.update(n.protocol for n in neighbors_from_hints(ours).values())
    assert seen == {"cdp", "lldp"}  # both kinds of answer were compared


def test_the_hint_reader_raises_the_servers_fault(vcsim_lab: Lab) -> None:
    stub = vcsim_lab.control._si._stub
    gone = vim.host.NetworkSystem("networkSystem-404", stub)
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        query_network_hint(stub, gone)


def test_vm_answers_are_absorbed_while_hints_are_asked_and_the_snapshot_waits_for_them(
    vcsim_lab: Lab, source_run: SourceRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked, release = threading.Event(), threading.Event()
    held: list[tuple[Any, threading.Thread]] = []
    query_hints = session._Watch.query_hints

    def held_hints(watch: Any, hosts: list[str]) -> None:
        held.append((watch, threading.current_thread()))
        asked.set()
        release.wait(30)
        query_hints(watch, hosts)

    monkeypatch.setattr(session._Watch, "query_hints", held_hints)
    run = source_run(vcsim_lab.sim)
    try:
        assert asked.wait(15)
        watch, thread = held[0]
        assert thread is not run.thread  # not on the session thread

        def vms_absorbed() -> bool:
            inv = watch.inventory  # one table per VM feed
            names = sorted(p.get("name", "") for p in inv.vm_more.values())
            powered = all(p.get("runtime.powerState") for p in inv.vms.values())
            return (
                names == ["std-01", "web-01"]
                and len(inv.vms) == 2
                and powered
                and (inv.vm_extra.keys() == inv.vms.keys())
            )

        assert _until(vms_absorbed)  # the VM feeds' answers went in while hints were held
        assert not run.events.of(Snapshot)  # ... and the Snapshot waits for the hints
    finally:
        release.set()
    snap = run.events.wait(Snapshot, timeout=15)[1]
    hv1 = next(h for h in snap.hosts if h.name == "hv1")
    assert hv1.nics[0].neighbor == Neighbor(
        protocol="cdp", system_name="leaf1", port_id="Ethernet1", mgmt_addr="192.0.2.1"
    )


def test_a_hint_call_that_loses_the_connection_reconnects_the_session(
    vcsim_lab: Lab, source_run: SourceRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    query_hints = session._Watch.query_hints
    calls: list[int] = []

    def failing_once(watch: Any, hosts: list[str]) -> None:
        calls.append(len(hosts))
        if len(calls) == 1:
            raise ConnectionResetError("hint connection reset")
        query_hints(watch, hosts)

    monkeypatch.setattr(session._Watch, "query_hints", failing_once)
    run = source_run(vcsim_lab.sim)
    _, lost = run.events.wait(SessionStatus, lambda s: s.state == "disconnected", timeout=15)
    assert lost.error is not None and "hint connection reset" in lost.error
    assert not run.events.of(Snapshot)  # nothing half read was emitted
    snap = run.events.wait(Snapshot, timeout=15)[1]
    assert any(n.neighbor is not None for h in snap.hosts for n in h.nics)
    assert len(calls) == 2
