"""Pytest fixtures that start a private Open vSwitch (userspace datapath, own namespace).

- ``ovs``: a started ``OvsInstance`` for one test; stopped (daemons killed by PID, namespace
  and directory deleted) when the test ends, also when it fails.
- ``ovs_switch``: a factory making a bridge with N veth edge ports on that instance and the
  ``SwitchConfig`` that points the ovs driver at it.

Tests using these skip, with the reason, only when Open vSwitch is not installed.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from vmfabric.config import SwitchConfig, parse_switch
from vmfabric.lab.netns import netns_exists
from vmfabric.lab.ovs import OvsInstance, ovs_installed, unique_name

CLOSED = frozenset({4095})


@dataclass
class OvsSwitch:
    """A bridge on a private OVS, its edge ports, and a SwitchConfig for the ovs driver."""

    ovs: OvsInstance
    bridge: str
    ports: list[str]
    config: SwitchConfig


def require_ovs() -> None:
    if not ovs_installed():
        pytest.skip("Open vSwitch is not installed (needs ovsdb-server, ovs-vswitchd, ovs-vsctl)")


@pytest.fixture
def ovs() -> Iterator[OvsInstance]:
    """A private OVS in a namespace named ``vft`` + 6 random hex digits."""
    require_ovs()
    instance = OvsInstance(unique_name("vft"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
    assert not netns_exists(instance.netns), f"namespace {instance.netns} was left behind"


MakeSwitch = Callable[..., OvsSwitch]


@pytest.fixture
def ovs_switch(ovs: OvsInstance) -> MakeSwitch:
    """Factory: ``ovs_switch(n=3, trunks=CLOSED, name="leaf1", bridge="sw", **config)``.

    Makes bridge ``bridge`` with veth edge ports ``e1``..``eN`` (names are private to the
    instance's namespace), each a trunk of ``trunks`` (an empty set leaves them open to
    every VLAN), and returns them with a SwitchConfig (extra keyword arguments go to it).
    """

    def make(
        n: int = 3,
        trunks: frozenset[int] = CLOSED,
        name: str = "leaf1",
        bridge: str = "sw",
        **config: object,
    ) -> OvsSwitch:
        ovs.add_bridge(bridge)
        ports = [f"e{i}" for i in range(1, n + 1)]
        for port in ports:
            ovs.add_edge_port(bridge, port, trunks=trunks or None)
        cfg = parse_switch(
            {
                "name": name,
                "driver": "ovs",
                "ovsdb": ovs.db_url,
                "bridge": bridge,
                "edge_ports": ports,
                **config,
            }
        )
        return OvsSwitch(ovs=ovs, bridge=bridge, ports=ports, config=cfg)

    return make


@contextlib.contextmanager
def port_updates(ovs: OvsInstance) -> Iterator[list[str]]:
    """Names of the Port rows OVSDB reports changed (name, trunks, tag, external_ids) while
    the block runs, filled in when it ends. An OVSDB monitor, so a write by anyone shows;
    end the block with a probe write to prove the monitor saw the period."""
    argv = ["ovsdb-client", "monitor", ovs.db_url, "Open_vSwitch", "Port",
            "name", "trunks", "tag", "external_ids", "--format=csv", "--no-headings"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    updates: list[str] = []
    try:
        time.sleep(0.5)  # let the monitor print its initial rows
        yield updates
        time.sleep(0.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=5)
    rows = [line.split(",") for line in out.splitlines() if line]
    names = {r[0]: r[2] for r in rows if r[1] in ("initial", "new", "insert")}
    updates.extend(sorted({names.get(r[0], r[0]) for r in rows if r[1] != "initial"}))
