"""The demo's security-group act (issue 12, point 5) on a lab of its own: the 3-tier app's
policy holds with real TCP between the lab's VM namespaces, survives a vMotion, and follows
a tag change at once; the act checks every outcome itself (it raises on any other) and
leaves no listener behind.

The controller runs as ``vmfabric run`` (a process, as in ``vmfabric demo``), first with
the leaves only; the act adds its session, groups, policy and firewall with a SIGHUP.
``tests/e2e/test_reachability.py`` runs the whole ``vmfabric demo``, this act included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from vmfabric.demo import Fabric, FabricDemo, poll, sigterm_as_interrupt
from vmfabric.demo_groups import SHOP, GroupsAct, probe
from vmfabric.lab.ovs import ovs_installed

pytestmark = pytest.mark.e2e


@pytest.fixture
def demo(vcsim_binary: Path) -> Iterator[FabricDemo]:
    if not ovs_installed() or shutil.which("lldpd") is None:
        pytest.skip("Open vSwitch or lldpd is not installed")
    root = Path(tempfile.mkdtemp(prefix="vfl-test-", dir="/tmp"))
    root.chmod(0o755)  # lldpd drops privileges: the lab's state dir must be searchable
    with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        fabric = Fabric.build(stack, name=f"e2g{uuid.uuid4().hex[:5]}", root=root / "lab",
                              workdir=root, binary=vcsim_binary)  # fmt: skip
        demo = FabricDemo(root, fabric, pause=False, password=fabric.sim.password)
        stack.callback(demo.stop_controller)
        config = {
            "store": f"sqlite:///{root / 'vf.db'}",
            "engine": {"coalesce": "10ms"},
            "sessions": [],
            "switches": fabric.switch_configs(),
        }
        demo.config_path.write_text(yaml.safe_dump(config))
        demo.start_controller()
        poll(lambda: _switches_ok(demo), 60, "the leaves served by the controller", every=0.3)
        yield demo


def _switches_ok(demo: FabricDemo) -> bool:
    demo.check_controller()
    ports = demo.show_json("interface") if (demo.dir / "vf.db").exists() else []
    return len(ports) == len([p for sw in demo.fab.switch_configs() for p in sw["edge_ports"]])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid and stat[0] != "Z":
                    found.append(int(entry.name))
    return found


def test_the_policy_follows_the_vms_through_a_vmotion_and_a_tag_change(
    demo: FabricDemo,
) -> None:
    before = set(_children(os.getpid()))
    act = GroupsAct(demo, first_step=1)
    act.run()  # raises on any unexpected connection outcome
    demo.check_controller()
    timings = dict(demo.timings)
    assert "re-tagged VM reaches db after the tag change" in timings
    assert "shop-db's rules moved to hv1 after the vMotion" in timings
    assert demo.fab.lab.vms["shop-db"].host == "hv1", "the vMotion happened in the lab"
    assert set(_children(os.getpid())) - before == set(), "a listener was left running"
    web, db = SHOP[0], SHOP[2]
    ns = demo.fab.lab.vms[web[0]].netns
    assert probe(ns, db[3], 5432) == "refused", "allowed, and no listener left to answer"
