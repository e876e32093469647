"""The OVS VTEP driver against a real Open vSwitch: flood lists as protected tunnel ports.

Adds and removes are one OVSDB transaction that ovs-vswitchd has applied when ``apply``
returns; tunnel ports a person made are static (read, never removed); a VNI without a VLAN
and a missing bridge are refused before anything is written; a frozen ovs-vswitchd makes
``apply`` fail as transient, and what was committed is confirmed by the next read.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.lab.ovs import OvsInstance
from vmfabric.targets.vtep.base import FloodChange, FloodList
from vmfabric.targets.vtep.ovs import ORIGIN_KEY, OvsVtepDriver, OvsVtepOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
VLAN_OF = {10110: 110, 10120: 120}
R2, R3 = "10.0.0.2", "10.0.0.3"


@pytest.fixture
def vtep(ovs: OvsInstance) -> Iterator[OvsVtepDriver]:
    ovs.add_bridge("br-int")
    driver = OvsVtepDriver(OvsVtepOptions("leaf1", ovs.db_url, "br-int", "10.0.0.1"), VLAN_OF)
    driver.connect()
    try:
        yield driver
    finally:
        driver.close()


def _column(ovs: OvsInstance, table: str, row: str, column: str) -> str:
    return ovs.vsctl("get", table, row, column)


def test_a_flood_list_is_one_protected_tunnel_port_per_remote_vtep(
    vtep: OvsVtepDriver,
    ovs: OvsInstance,
) -> None:
    assert vtep.read() == {}
    after = vtep.apply([FloodChange(10110, add=frozenset({R2, R3}))])
    assert after == {10110: FloodList(frozenset({R2, R3}), frozenset({R2, R3}))}
    assert vtep.transactions == 1 and vtep.writes == 2
    port = f"vx10110-{R2}"
    assert _column(ovs, "port", port, "tag") == "110"
    assert _column(ovs, "port", port, "protected") == "true"
    assert _column(ovs, "port", port, f"external_ids:{ORIGIN_KEY}") == "dynamic"
    options = _column(ovs, "interface", port, "options")
    assert 'key="10110"' in options and f'remote_ip="{R2}"' in options
    assert 'local_ip="10.0.0.1"' in options
    assert ovs.vsctl("get", "interface", port, "ofport") not in ("-1", "[]"), "in the datapath"

    assert vtep.apply([FloodChange(10110, add=frozenset({R2}))]) == after
    assert vtep.transactions == 1, "adding a present member is not a write"

    vtep.apply(
        [FloodChange(10110, remove=frozenset({R3})), FloodChange(10120, add=frozenset({R3}))]
    )
    assert vtep.read() == {
        10110: FloodList(frozenset({R2}), frozenset({R2})),
        10120: FloodList(frozenset({R3}), frozenset({R3})),
    }
    assert vtep.transactions == 2, "one transaction per plan"
    assert f"vx10110-{R3}" not in ovs.vsctl("list-ports", "br-int").split()


def test_a_tunnel_port_a_person_made_is_static_and_never_removed(
    vtep: OvsVtepDriver,
    ovs: OvsInstance,
) -> None:
    ovs.vsctl(
        "add-port", "br-int", "manual", "--", "set", "port", "manual", "tag=110",
        "--", "set", "interface", "manual", "type=vxlan",
        "options:key=10110", f"options:remote_ip={R3}",
    )  # fmt: skip
    assert vtep.read() == {10110: FloodList(frozenset({R3}), frozenset())}
    assert vtep.apply([FloodChange(10110, remove=frozenset({R3}))])[10110].remotes == {R3}
    assert vtep.apply([FloodChange(10110, add=frozenset({R3}))])[10110].dynamic == set()
    assert vtep.transactions == 0
    assert "manual" in ovs.vsctl("list-ports", "br-int").split()


def test_bad_requests_are_refused_and_nothing_is_written(
    vtep: OvsVtepDriver,
    ovs: OvsInstance,
) -> None:
    with pytest.raises(ConfigError, match="VNI 10999 has no VLAN"):
        vtep.apply(
            [FloodChange(10110, add=frozenset({R2})), FloodChange(10999, add=frozenset({R3}))]
        )
    assert vtep.read() == {}, "all or nothing"
    gone = OvsVtepDriver(OvsVtepOptions("leaf1", ovs.db_url, "br-nope", "10.0.0.1"), VLAN_OF)
    try:
        with pytest.raises(ConfigError, match="bridge br-nope does not exist"):
            gone.read()
    finally:
        gone.close()
    nowhere = OvsVtepOptions("leaf9", f"unix:{ovs.dir}/nope.sock", "br-int", "10.0.0.9", 1.0)
    with pytest.raises(TransientError, match="leaf9"):
        OvsVtepDriver(nowhere, VLAN_OF).connect()


def test_a_frozen_vswitchd_is_transient_and_the_commit_is_confirmed_later(
    vtep: OvsVtepDriver,
    ovs: OvsInstance,
) -> None:
    vtep.timeout = 1.5
    pid = ovs.pid("ovs-vswitchd")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(TransientError, match="has not applied"):
            vtep.apply([FloodChange(10110, add=frozenset({R2}))])
    finally:
        os.kill(pid, signal.SIGCONT)
    vtep.sync()
    assert vtep.read()[10110].dynamic == {R2}, "committed once: the retry finds it done"
    assert vtep.apply([FloodChange(10110, add=frozenset({R2}))])[10110].remotes == {R2}
    assert vtep.transactions == 1
