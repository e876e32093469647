"""The switch-port driver conformance suite: the contract of ``targets.switchport.base``,
proven the same way for every driver.

A driver's test module subclasses ``SwitchPortConformance`` (the class name must start with
``Test`` there) and overrides the ``harness`` fixture with a ``SwitchHarness``: access to the
switch (or to a faithful peer of it) that does not go through the driver under test. The
suite speaks only of ports and VLANs; how a port becomes a trunk, an access port or *open*
(carrying every VLAN) is the harness's business, so the suite names no vendor's columns or
commands::

    class TestMyDriver(SwitchPortConformance):
        @pytest.fixture
        def harness(self, my_peer) -> Iterator[SwitchHarness]:
            yield MyHarness(my_peer)

The harness's switch has five edge ports, ``edge_ports`` = p1..p5 (any names): the suite
makes p1, p2 and p5 trunks carrying no VLAN and p3 open before every test; p4 must not
exist on the switch. ``non_edge_port`` exists on the switch and is not an edge port.

Drivers keep two counters, as ``SwitchPortDriver`` does: ``transactions`` (applies that
wrote something) and ``writes`` ((port, VLAN) memberships changed). The harness counts
what the *switch* received (``peer_writes``), so "sends nothing" is checked at both ends.

What it proves, beyond reads and writes of each port mode: idempotency (a present VLAN is
not written), a person's concurrent edit survives, access and open ports are left alone
(``open_ports: close`` narrows an open port), a non-edge port is refused before anything is
written, an error in the middle of an apply leaves the switch as it was (``atomic`` drivers;
others must leave every port between its old and its wanted state and never claim a VLAN a
person configured), and the origin record survives a lost store where the driver says it
lives on the switch (``origin == "target"``), while with ``origin == "store"`` every VLAN
reads as static once the store is gone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortChange, PortMode, PortState
from vmfabric.targets.base import Capabilities

FAILURES = (PermanentError, TransientError)


class CountingDriver(Protocol):
    """A switch-port driver (``targets.switchport.base.Driver``) with its write counters."""

    name: str
    transactions: int
    writes: int

    @property
    def capabilities(self) -> Capabilities: ...

    def connect(self) -> None: ...
    def read_ports(self) -> dict[str, PortState]: ...
    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PeerPort:
    """A port as the switch holds it, read by the harness without the driver under test.

    ``vlans``: the trunk's VLANs (without any placeholder a driver uses to keep a port
    closed), or the access VLAN; empty for an open or missing port."""

    mode: PortMode
    vlans: frozenset[int] = frozenset()


def trunk(*vlans: int) -> PeerPort:
    return PeerPort(PortMode.TRUNK, frozenset(vlans))


class SwitchHarness(ABC):
    """One switch (or a faithful peer), reached without the driver under test."""

    edge_ports: Sequence[str]  # p1..p5 (see the module docstring)
    non_edge_port: str

    @abstractmethod
    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        """A new driver object for this switch, with nothing in memory (as after a restart
        with a lost store). Every driver it made is closed by the suite."""

    @abstractmethod
    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        """Make ``port`` a trunk carrying exactly ``vlans``, configured by a person (static);
        no VLAN: a trunk that carries none."""

    @abstractmethod
    def set_access(self, port: str, vlan: int) -> None:
        """Make ``port`` an access port of ``vlan``."""

    @abstractmethod
    def set_open(self, port: str) -> None:
        """Make ``port`` carry every VLAN (a trunk allowing all)."""

    @abstractmethod
    def read(self, port: str) -> PeerPort:
        """The port as the switch holds it."""

    @abstractmethod
    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        """A person adds and removes VLANs of a trunk port on the switch."""

    @abstractmethod
    def set_unrelated(self, port: str) -> None:
        """Configure something on ``port`` that has nothing to do with VLAN membership."""

    @abstractmethod
    def unrelated(self, port: str) -> object:
        """The port's configuration other than VLAN membership and vmfabric's origin record."""

    @abstractmethod
    def snapshot(self) -> object:
        """The switch's whole relevant configuration, comparable with ``==``."""

    @abstractmethod
    def peer_writes(self) -> int:
        """How many writes (transactions, configuration requests) the switch has received."""

    @abstractmethod
    def concurrent_edit(
        self, driver: CountingDriver, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> AbstractContextManager[None]:
        """Within the block, the driver's next apply meets a person's ``manual_edit`` made
        after the driver read the switch and before its write reaches it (as close to that
        as the switch allows: say where in the harness)."""

    @abstractmethod
    def broken_mid_apply(self) -> AbstractContextManager[None]:
        """Within the block, the next apply fails part way through its write (a refused
        command, a switch that stops answering); the switch is healthy again after it."""


@contextmanager
def edit_after_first_read(driver: Any, edit: Callable[[], None]) -> Iterator[None]:
    """A ``concurrent_edit`` for drivers built on ``SwitchPortDriver``: ``edit`` runs right
    after the apply's first ``read_raw`` returns, before its write."""
    original = driver.read_raw
    done = False

    def read_then_edit(ports: Sequence[str]) -> dict[str, PortState]:
        nonlocal done
        states: dict[str, PortState] = original(ports)
        if not done:
            done = True
            edit()
        return states

    driver.read_raw = read_then_edit
    try:
        yield
    finally:
        del driver.read_raw
    assert done, "the driver never read the switch during the block"


@dataclass
class Switch:
    """The harness plus the drivers made in one test (closed at its end)."""

    harness: SwitchHarness
    drivers: list[CountingDriver] = field(default_factory=list)

    @property
    def ports(self) -> Sequence[str]:
        return self.harness.edge_ports

    def driver(self, open_ports: str = "keep") -> CountingDriver:
        made = self.harness.make_driver(open_ports)
        self.drivers.append(made)
        return made

    def dyn(self, driver: CountingDriver, vlans: Iterable[int]) -> frozenset[int]:
        """What ``read_ports`` reports as dynamic for ``vlans`` vmfabric added: the VLANs
        themselves where the record lives on the switch, nothing where it is in the store."""
        return frozenset(vlans) if driver.capabilities.origin == "target" else frozenset()

    def reset(self) -> None:
        p1, p2, p3, p4, p5 = self.ports
        for port in (p1, p2, p5):
            self.harness.set_trunk(port, ())
        self.harness.set_open(p3)
        assert self.harness.read(p4).mode is PortMode.MISSING, f"{p4} must not exist"

    def close(self) -> None:
        for driver in self.drivers:
            driver.close()


def change(port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> PortChange:
    return PortChange(port, frozenset(add), frozenset(remove))


def _between(before: PeerPort, after: PeerPort, wanted: PortChange) -> bool:
    """A port that is neither worse than before nor beyond what was wanted."""
    keep = before.vlans - wanted.remove
    return keep <= after.vlans <= before.vlans | wanted.add


class SwitchPortConformance:
    """The suite. Subclass it as ``Test<Driver>`` and override the ``harness`` fixture."""

    @pytest.fixture
    def harness(self) -> Iterator[SwitchHarness]:
        raise NotImplementedError("a conformance subclass overrides the harness fixture")
        yield  # pragma: no cover

    @pytest.fixture
    def sw(self, harness: SwitchHarness) -> Iterator[Switch]:
        switch = Switch(harness)
        switch.reset()
        try:
            yield switch
        finally:
            switch.close()

    # ---- declarations ------------------------------------------------------------------

    def test_capabilities_are_declared_and_non_atomic_drivers_say_why(self, sw: Switch) -> None:
        caps = sw.driver().capabilities
        assert isinstance(caps, Capabilities)
        assert caps.origin in ("target", "store")
        if not caps.atomic:
            assert caps.notes.strip(), "a driver that is not atomic must say what is not"

    def test_close_is_safe_twice_and_connect_opens_again(self, sw: Switch) -> None:
        driver = sw.driver()
        driver.connect()
        assert driver.read_ports()[sw.ports[0]].mode is PortMode.TRUNK
        driver.close()
        driver.close()
        driver.connect()
        assert driver.read_ports()[sw.ports[0]].mode is PortMode.TRUNK

    # ---- reads -------------------------------------------------------------------------

    def test_read_ports_reports_every_mode(self, sw: Switch) -> None:
        p1, p2, p3, p4, p5 = sw.ports
        sw.harness.set_trunk(p1, {10, 20})
        sw.harness.set_access(p2, 5)
        states = sw.driver().read_ports()
        assert sorted(states) == sorted(sw.ports)
        assert states[p1].mode is PortMode.TRUNK
        assert states[p1].vlans == {10, 20}
        assert states[p1].static == {10, 20}
        assert states[p2].mode is PortMode.ACCESS
        assert states[p2].vlans == {5}  # the access VLAN, reported as static
        assert states[p2].dynamic == frozenset()
        assert states[p3].mode is PortMode.OPEN
        assert states[p4].mode is PortMode.MISSING
        assert states[p5].mode is PortMode.TRUNK
        assert states[p5].vlans == frozenset()  # a trunk carrying none: closed

    # ---- writes ------------------------------------------------------------------------

    def test_apply_adds_and_removes_on_several_ports_in_one_transaction(self, sw: Switch) -> None:
        p1, p2, *_ = sw.ports
        sw.harness.set_trunk(p1, {10, 20})
        driver = sw.driver()
        writes = sw.harness.peer_writes()
        result = driver.apply([change(p1, add={110}, remove={10}), change(p2, add={110, 120})])
        assert driver.transactions == 1
        assert driver.writes == 4
        assert sw.harness.peer_writes() == writes + 1
        assert result[p1].vlans == {20, 110}
        assert result[p2].vlans == {110, 120}
        assert sw.harness.read(p1) == trunk(20, 110)
        assert sw.harness.read(p2) == trunk(110, 120)

    def test_origin_record_marks_only_vlans_vmfabric_added(self, sw: Switch) -> None:
        p1 = sw.ports[0]
        sw.harness.set_trunk(p1, {10, 20})
        driver = sw.driver()
        driver.apply([change(p1, add={110, 111, 20})])
        state = driver.read_ports()[p1]
        assert state.vlans == {10, 20, 110, 111}
        assert state.dynamic == sw.dyn(driver, {110, 111})
        driver.apply([change(p1, remove={110, 111})])
        state = driver.read_ports()[p1]
        assert state.vlans == {10, 20}
        assert state.dynamic == frozenset()
        assert sw.harness.read(p1) == trunk(10, 20)

    def test_second_identical_apply_sends_nothing(self, sw: Switch) -> None:
        p1, p2, *_ = sw.ports
        sw.harness.set_trunk(p1, {10})
        driver = sw.driver()
        changes = [change(p1, add={110}, remove={10}), change(p2, add={120})]
        first = driver.apply(changes)
        writes = sw.harness.peer_writes()
        second = driver.apply(changes)
        driver.apply([change(p1, remove={999}), change(p2, add={120})])
        assert driver.transactions == 1
        assert driver.writes == 3
        assert sw.harness.peer_writes() == writes
        assert first == second
        assert sw.harness.read(p1) == trunk(110)

    def test_adding_a_present_vlan_sends_nothing_and_keeps_it_static(self, sw: Switch) -> None:
        p1 = sw.ports[0]
        sw.harness.set_trunk(p1, {10})
        driver = sw.driver()
        writes = sw.harness.peer_writes()
        state = driver.apply([change(p1, add={10}, remove={20})])[p1]
        assert driver.transactions == 0
        assert sw.harness.peer_writes() == writes
        assert state.vlans == {10}
        assert state.dynamic == frozenset()  # a VLAN a person configured is never adopted

    def test_removing_the_last_vlan_leaves_a_trunk_carrying_none(self, sw: Switch) -> None:
        p1 = sw.ports[0]
        driver = sw.driver()
        driver.apply([change(p1, add={110})])
        assert sw.harness.read(p1) == trunk(110)
        state = driver.apply([change(p1, remove={110})])[p1]
        assert sw.harness.read(p1) == trunk()  # never open to every VLAN
        assert state.mode is PortMode.TRUNK
        assert state.vlans == frozenset()
        driver.apply([change(p1, add={120})])
        assert sw.harness.read(p1) == trunk(120)

    # ---- ports vmfabric leaves alone ---------------------------------------------------

    def test_open_port_is_left_alone_with_open_ports_keep(self, sw: Switch) -> None:
        p3 = sw.ports[2]
        driver = sw.driver(open_ports="keep")
        writes = sw.harness.peer_writes()
        state = driver.apply([change(p3, add={110})])[p3]
        assert state.mode is PortMode.OPEN
        assert sw.harness.read(p3).mode is PortMode.OPEN
        assert driver.transactions == 0
        assert sw.harness.peer_writes() == writes

    def test_open_port_is_narrowed_to_the_added_vlans_with_open_ports_close(
        self, sw: Switch
    ) -> None:
        p3 = sw.ports[2]
        driver = sw.driver(open_ports="close")
        state = driver.apply([change(p3, add={110})])[p3]
        assert state.mode is PortMode.TRUNK
        assert state.dynamic == sw.dyn(driver, {110})
        assert sw.harness.read(p3) == trunk(110)
        sw.harness.set_open(p3)
        driver.apply([change(p3)])
        assert sw.harness.read(p3) == trunk()

    def test_access_port_is_never_edited(self, sw: Switch) -> None:
        p2 = sw.ports[1]
        sw.harness.set_access(p2, 7)
        driver = sw.driver(open_ports="close")
        writes = sw.harness.peer_writes()
        state = driver.apply([change(p2, add={110}, remove={7})])[p2]
        assert state.mode is PortMode.ACCESS
        assert state.vlans == {7}
        assert sw.harness.read(p2) == PeerPort(PortMode.ACCESS, frozenset({7}))
        assert driver.transactions == 0
        assert sw.harness.peer_writes() == writes

    def test_apply_touches_only_vlan_membership_of_edge_ports(self, sw: Switch) -> None:
        p1, p2, *_ = sw.ports
        other = sw.harness.non_edge_port
        sw.harness.set_trunk(other, {10})
        sw.harness.set_access(p2, 7)
        sw.harness.set_unrelated(p1)
        unrelated = sw.harness.unrelated(p1)
        other_before = sw.harness.unrelated(other)
        sw.driver().apply([change(p1, add={110}), change(p2, add={110})])
        assert sw.harness.read(p1) == trunk(110)
        assert sw.harness.unrelated(p1) == unrelated
        assert sw.harness.read(p2) == PeerPort(PortMode.ACCESS, frozenset({7}))
        assert sw.harness.read(other) == trunk(10)
        assert sw.harness.unrelated(other) == other_before

    def test_missing_port_is_reported_and_never_created(self, sw: Switch) -> None:
        p4 = sw.ports[3]
        driver = sw.driver()
        state = driver.apply([change(p4, add={110})])[p4]
        assert state.mode is PortMode.MISSING
        assert driver.transactions == 0
        assert driver.read_ports()[p4].mode is PortMode.MISSING
        assert sw.harness.read(p4).mode is PortMode.MISSING

    def test_change_for_a_non_edge_port_is_refused_before_anything_is_written(
        self, sw: Switch
    ) -> None:
        p1 = sw.ports[0]
        other = sw.harness.non_edge_port
        sw.harness.set_trunk(other, {10})
        driver = sw.driver()
        before, writes = sw.harness.snapshot(), sw.harness.peer_writes()
        with pytest.raises(PermanentError, match=f"{other} is not an edge port"):
            driver.apply([change(p1, add={110}), change(other, add={110})])
        assert sw.harness.snapshot() == before
        assert sw.harness.peer_writes() == writes
        assert driver.transactions == 0

    def test_bad_vlans_and_a_port_named_twice_are_refused_before_anything_is_written(
        self, sw: Switch
    ) -> None:
        p1, p2, *_ = sw.ports
        driver = sw.driver()
        before, writes = sw.harness.snapshot(), sw.harness.peer_writes()
        for changes in (
            [change(p2, add={110}), change(p1, add={4095})],
            [change(p1, remove={0})],
            [change(p1, add={110}), change(p1, add={120})],
        ):
            with pytest.raises(ConfigError):
                driver.apply(changes)
        assert sw.harness.snapshot() == before
        assert sw.harness.peer_writes() == writes

    # ---- people and faults -------------------------------------------------------------

    def test_a_concurrent_manual_edit_survives(self, sw: Switch) -> None:
        p1 = sw.ports[0]
        sw.harness.set_trunk(p1, {10})
        driver = sw.driver()
        driver.read_ports()
        with sw.harness.concurrent_edit(driver, p1, add={20}):
            driver.apply([change(p1, add={110})])
        assert sw.harness.read(p1) == trunk(10, 20, 110)
        state = driver.read_ports()[p1]
        assert state.static == {10, 20}
        assert state.dynamic == sw.dyn(driver, {110})
        with sw.harness.concurrent_edit(driver, p1, add={30}, remove={10}):
            driver.apply([change(p1, remove={110})])
        assert sw.harness.read(p1) == trunk(20, 30)

    def test_an_error_mid_apply_leaves_the_switch_as_it_was_or_as_notes_promise(
        self, sw: Switch
    ) -> None:
        p1, p2, _, _, p5 = sw.ports
        sw.harness.set_trunk(p1, {10})
        driver = sw.driver()
        changes = [change(p1, add={110}, remove={10}), change(p2, add={120}), change(p5, add={130})]
        before = sw.harness.snapshot()
        ports_before = {c.port: sw.harness.read(c.port) for c in changes}
        with sw.harness.broken_mid_apply(), pytest.raises(FAILURES):
            driver.apply(changes)
        if driver.capabilities.atomic:
            assert sw.harness.snapshot() == before, "an atomic driver left a partial change"
        else:
            self._partial_but_safe(sw, driver, changes, ports_before)
        result = driver.apply(changes)  # the switch is back: the same plan converges
        assert {p: s.vlans for p, s in result.items()} == {p1: {110}, p2: {120}, p5: {130}}
        assert sw.harness.read(p1) == trunk(110)

    @staticmethod
    def _partial_but_safe(
        sw: Switch,
        driver: CountingDriver,
        changes: Sequence[PortChange],
        before: Mapping[str, PeerPort],
    ) -> None:
        states = driver.read_ports()
        for wanted in changes:
            after = sw.harness.read(wanted.port)
            assert _between(before[wanted.port], after, wanted), (wanted, before, after)
            claimed = states[wanted.port].dynamic - wanted.add
            assert not claimed, f"{wanted.port}: the record claims VLANs it did not add"

    # ---- the origin record and a lost store --------------------------------------------

    def test_origin_record_survives_a_lost_store_when_kept_on_the_switch(self, sw: Switch) -> None:
        p1, p2, *_ = sw.ports
        first = sw.driver()
        if first.capabilities.origin != "target":
            pytest.skip("this driver keeps its origin record in the store")
        sw.harness.set_trunk(p1, {10})
        first.apply([change(p1, add={110, 111}), change(p2, add={120})])
        first.close()
        fresh = sw.driver()  # a new process with an empty store
        states = fresh.read_ports()
        assert states[p1].dynamic == {110, 111}
        assert states[p1].static == {10}
        assert states[p2].dynamic == {120}
        fresh.apply([change(p1, remove={110, 111})])
        assert sw.harness.read(p1) == trunk(10)

    def test_every_vlan_reads_static_after_a_lost_store_when_kept_in_the_store(
        self, sw: Switch
    ) -> None:
        p1 = sw.ports[0]
        first = sw.driver()
        if first.capabilities.origin != "store":
            pytest.skip("this driver keeps its origin record on the switch")
        sw.harness.set_trunk(p1, {10})
        first.apply([change(p1, add={110})])
        first.close()
        state = sw.driver().read_ports()[p1]
        assert state.vlans == {10, 110}
        assert state.dynamic == frozenset()


__all__ = [
    "CountingDriver",
    "PeerPort",
    "SwitchHarness",
    "SwitchPortConformance",
    "change",
    "edit_after_first_read",
    "trunk",
]
