"""The store's writer thread: the targets lane goes before the inventory lane, a held
inventory lane waits for its release (or ``max_defer``), and nothing queued is lost."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.store_data import esx01, portgroups, vms
from vmfabric.core.model import SessionStatus, Snapshot, VmUpsert
from vmfabric.inventory.index import Inventory
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.intake import Intake
from vmfabric.runtime.recorder import Recorder
from vmfabric.store import AuditEntry, Store


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    store = Store(f"sqlite:///{tmp_path / 'vmfabric.db'}")
    rec = Recorder(store)
    yield rec
    rec.close()
    store.close()


def _blocked(rec: Recorder) -> threading.Event:
    """Occupy the writer until the returned event is set."""
    gate = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        gate.wait(30)

    rec.submit(block)
    assert started.wait(30)
    return gate


def test_targets_lane_overtakes_queued_inventory_writes(recorder: Recorder) -> None:
    done: list[str] = []
    gate = _blocked(recorder)
    recorder.submit(done.append, "inventory 1", lane="inventory")
    recorder.submit(done.append, "inventory 2", lane="inventory")
    last = recorder.submit(done.append, "plan")
    gate.set()
    last.result(30)
    recorder.close()
    assert done == ["plan", "inventory 1", "inventory 2"]


def test_held_inventory_lane_waits_for_release(recorder: Recorder) -> None:
    recorder.max_defer = 3600.0
    recorder.hold()
    copied = recorder.submit(lambda: "copied", lane="inventory")
    planned = recorder.submit(lambda: "planned")
    assert planned.result(30) == "planned"
    assert not copied.done() and not recorder.idle()
    recorder.release()
    assert copied.result(30) == "copied"
    deadline = time.monotonic() + 30
    while not recorder.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.idle()


def test_a_hold_never_starves_the_inventory_lane(recorder: Recorder) -> None:
    recorder.max_defer = 0.05
    recorder.hold()  # never released: a target stuck mid-step
    assert recorder.submit(lambda: "copied", lane="inventory").result(30) == "copied"


def test_close_runs_what_is_queued_even_when_held(recorder: Recorder) -> None:
    recorder.max_defer = 3600.0
    recorder.hold()
    done: list[str] = []
    recorder.submit(done.append, "inventory", lane="inventory")
    recorder.close()
    assert done == ["inventory"]
    with pytest.raises(RuntimeError):
        recorder.submit(done.append, "late")


def test_call_returns_the_result_and_raises_the_error(recorder: Recorder) -> None:
    async def main() -> tuple[int, str]:
        value = await recorder.call(sum, [1, 2, 3])
        try:
            await recorder.call(int, "not a number")
        except ValueError as exc:
            return value, str(exc)
        return value, ""

    value, error = asyncio.run(main())
    assert value == 6
    assert "not a number" in error


def test_plan_entries_round_trip_as_rows(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'vmfabric.db'}")
    try:
        entries = [
            AuditEntry.switchport(1.5, "sw1", f"p{i}", 100 + i, "add", "vm", "s") for i in range(3)
        ]
        plan_id = store.begin_apply("sw1", {"ports": [], "changes": []}, entries, 1.5, ["s"])
        [(found_id, pending)] = store.unconfirmed("sw1")
        assert found_id == plan_id and pending == entries
        store.finish_apply(plan_id, pending[:2], 2.0)
        logged = store.audit(10)
        assert store.unconfirmed("sw1") == []
        assert sorted((e["port"], e["vlan"], e["plan"]) for e in logged) == [
            ("p0", 100, plan_id),
            ("p1", 101, plan_id),
        ]
        assert store.plan(plan_id)["status"] == "applied"  # type: ignore[index]
        # an entry stored as wave 2's first object form still reads
        assert AuditEntry.from_json(entries[0].to_json()) == entries[0]
        assert AuditEntry.from_json(list(entries[0])) == entries[0]
    finally:
        store.close()


def test_a_snapshot_waits_in_the_inventory_lane_and_what_follows_it_too(
    recorder: Recorder,
) -> None:
    """The intake queues a whole inventory in the inventory lane, and the incremental
    changes behind it there too (in order); once it is written, changes go with the plans."""
    store = recorder.store
    intake = Intake(Inventory(["lab"]), lambda: (), recorder, EventBus(), lambda *_: None)
    snapshot = Snapshot("lab", (esx01(),), tuple(portgroups()), tuple(vms()))
    moved = dataclasses.replace(vms()[0], host="esx02")
    gate = _blocked(recorder)
    intake.handle([snapshot], 1.0)
    intake.handle([VmUpsert(moved)], 2.0)
    lanes = {name: len(queued) for name, queued in recorder._lanes.items()}
    assert lanes == {"targets": 0, "inventory": 4}  # two writes and their two publishes
    gate.set()
    deadline = time.monotonic() + 30
    while not recorder.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {v.id: v.host for v in store.snapshot("lab").vms}[moved.id] == "esx02"
    gate = _blocked(recorder)
    intake.handle([VmUpsert(dataclasses.replace(moved, host="esx01"))], 3.0)
    assert {name: len(q) for name, q in recorder._lanes.items()} == {"targets": 2, "inventory": 0}
    gate.set()


def test_no_session_row_says_in_sync_before_the_store_has_its_inventory(
    recorder: Recorder,
) -> None:
    """A source's status and its first snapshot in one batch: each row written says in
    sync only once the store holds the session's VMs (``show host`` reads the store)."""
    store = recorder.store
    written: list[tuple[bool, int]] = []
    set_status = store.set_session_status

    def watched(session: str, state: str, **kwargs: Any) -> None:
        written.append((bool(kwargs.get("in_sync")), len(store.snapshot(session).vms)))
        set_status(session, state, **kwargs)

    store.set_session_status = watched  # type: ignore[method-assign,assignment]
    intake = Intake(Inventory(["lab"]), lambda: (), recorder, EventBus(), lambda *_: None)
    snapshot = Snapshot("lab", (esx01(),), tuple(portgroups()), tuple(vms()))
    intake.handle([SessionStatus("lab", "connected"), snapshot], 1.0)
    deadline = time.monotonic() + 30
    while not recorder.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written[-1] == (True, len(vms()))
    assert all(count for in_sync, count in written if in_sync), written


def _wait(condition: Any) -> bool:
    deadline = time.monotonic() + 30
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


def test_a_snapshot_freezes_the_heap_until_the_targets_are_at_rest(recorder: Recorder) -> None:
    """After a whole inventory, the collector leaves the heap alone while the woken
    targets plan and record (a hold), and gets it back once none holds: a cycle that
    became garbage meanwhile is freed then, not kept for good."""
    intake = Intake(Inventory(["lab"]), lambda: (), recorder, EventBus(), lambda *_: None)
    snapshot = Snapshot("lab", (esx01(),), tuple(portgroups()), tuple(vms()))
    recorder.hold()  # a target woken by the snapshot, between its wake-up and its apply
    intake.handle([snapshot], 1.0)
    assert gc.get_freeze_count() > 0
    assert _wait(recorder.idle)  # written, but a target still holds: still frozen
    assert gc.get_freeze_count() > 0
    recorder.release()
    assert _wait(lambda: gc.get_freeze_count() == 0)


def test_closing_the_recorder_thaws_the_heap(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'vmfabric.db'}")
    rec = Recorder(store)
    rec.hold()
    rec.freeze_heap()
    assert gc.get_freeze_count() > 0
    gc.freeze()  # what a source froze itself (the vCenter source's full read) goes too
    rec.close()
    store.close()
    assert gc.get_freeze_count() == 0
