"""Fixtures for the end-to-end tests: the leaf-spine lab, vcsim and the controller.

``e2e`` (module scope) builds one ``Fabric`` (the built-in leaf-spine lab, ``underlay:
none``, under a random name in a /tmp/vfl-test-* state root, and a simulator whose hosts
are the lab's hypervisors and whose CDP/LLDP answers come from the lab's LLDP), then runs
the controller on it with a short prune delay. Everything is stopped by PID and removed by
name in the finalizer, also when a test fails. ``vm_cleanup`` destroys, after each test,
every VM the test created (in vcsim and in the lab) so the tests of a module stay
independent; each test also uses port groups and VLANs of its own.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.controller import running_controller, wait_for
from vmfabric.config import Config, parse_config
from vmfabric.demo import SESSION, Fabric, sigterm_as_interrupt
from vmfabric.lab.ovs import ovs_installed
from vmfabric.runtime import Controller

PRUNE = 2.0
ALLOWED = "2-1000"
PASSWORD_ENV = "VMFABRIC_E2E_PASSWORD"


@dataclass
class E2e:
    fabric: Fabric
    controller: Controller
    config: Config
    prune: float = PRUNE

    def power_state(self, vm: str) -> str | None:
        """What the controller's store says about ``vm``'s power (None: not known yet)."""
        found = self.controller.store.show_vms(vm)
        return str(found[0]["power_state"]) if found else None

    def known(self, vm: str, vlan: int) -> bool:
        """True when the store has ``vm`` on its current lab host with ``vlan``."""
        found = self.controller.store.show_vms(vm)
        host = self.fabric.lab.vms[vm].host
        return (
            bool(found)
            and found[0]["host"] == host
            and any(net["vlan"] == vlan for net in found[0]["networks"])
        )


def _need() -> None:
    if not ovs_installed():
        pytest.skip("Open vSwitch is not installed")
    missing = [tool for tool in ("lldpd", "lldpcli", "ping") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture(scope="module")
def e2e(vcsim_binary: Path) -> Iterator[E2e]:
    _need()
    root = Path(tempfile.mkdtemp(prefix="vfl-test-", dir="/tmp"))
    root.chmod(0o755)  # lldpd drops privileges: the lab's state dir must be searchable
    # SIGTERM becomes KeyboardInterrupt, on which pytest still runs this finalizer
    with (
        sigterm_as_interrupt(),
        pytest.MonkeyPatch.context() as env,
        contextlib.ExitStack() as stack,
    ):
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        fabric = Fabric.build(stack, name=f"e2e{uuid.uuid4().hex[:5]}", root=root / "lab",
                              workdir=root, binary=vcsim_binary)  # fmt: skip
        env.setenv(PASSWORD_ENV, fabric.sim.password)
        raw = fabric.config(root / "vf.db", prune=PRUNE, allowed=ALLOWED,
                            password_env=PASSWORD_ENV, coalesce="10ms")  # fmt: skip
        config = parse_config(raw, base_dir=root)
        ctl = stack.enter_context(running_controller(config))
        wait_for(lambda: any(s["in_sync"] for s in ctl.store.show_sessions(SESSION)), 60,
                 "the vCenter session in sync")  # fmt: skip
        yield E2e(fabric, ctl, config)


@pytest.fixture
def vm_cleanup(e2e: E2e) -> Iterator[None]:
    """Destroy the VMs a test created, in vcsim and in the lab."""
    before = set(e2e.fabric.lab.vms)
    yield
    for name in sorted(set(e2e.fabric.lab.vms) - before):
        with contextlib.suppress(Exception):
            e2e.fabric.destroy(name)
