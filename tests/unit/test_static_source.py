"""The static source: snapshot on start, a new one on each change, fail-static on a bad
file, and no re-reading of an unchanged file."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from vmfabric.config import StaticSession
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Power, SessionStatus, Snapshot, SourceEvent
from vmfabric.sources.static import StaticSource, load_inventory

INV: dict[str, list[dict[str, object]]] = {
    "hosts": [{"name": "esx1", "nics": ["vmnic0"]}],
    "portgroups": [{"name": "web", "vlan": 110}, {"name": "tr", "vlan": "200-202"}],
    "vms": [{"name": "web-01", "host": "esx1", "power": True, "portgroups": ["web", "tr"]}],
}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, StaticSource, queue.Queue[SourceEvent]]]:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(INV))
    source = StaticSource(StaticSession(name="inv", kind="static", path=Path("inv.yaml")), tmp_path)
    events: queue.Queue[SourceEvent] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(events.put, stop))
    thread.start()
    try:
        yield path, source, events
    finally:
        stop.set()
        thread.join(5)


def next_of(events: queue.Queue[SourceEvent], kind: type) -> SourceEvent:
    while True:
        ev = events.get(timeout=5)
        if isinstance(ev, kind):
            return ev


def test_file_is_read_at_start_and_on_change_only(
    running: tuple[Path, StaticSource, queue.Queue[SourceEvent]],
) -> None:
    path, source, events = running
    snap = next_of(events, Snapshot)
    assert isinstance(snap, Snapshot)
    assert snap.vms[0].power is Power.ON and snap.vms[0].networks == ("web", "tr")
    assert {p.name: p.vlans for p in snap.portgroups}["tr"] == frozenset({200, 201, 202})
    threading.Event().wait(0.8)  # several poll intervals
    assert source.reads == 1, "an unchanged file must not be re-read"
    changed = {**INV, "vms": [{**INV["vms"][0], "host": "esx1", "power": "off"}]}
    path.write_text(yaml.safe_dump(changed))
    snap = next_of(events, Snapshot)
    assert isinstance(snap, Snapshot) and snap.vms[0].power is Power.OFF
    assert source.reads == 2


def test_bad_file_takes_the_session_out_of_sync_and_a_fix_restores_it(
    running: tuple[Path, StaticSource, queue.Queue[SourceEvent]],
) -> None:
    path, _, events = running
    next_of(events, Snapshot)
    path.write_text("vms: [unclosed\n")
    status = next_of(events, SessionStatus)
    assert isinstance(status, SessionStatus)
    assert status.state == "disconnected" and status.bad_input
    assert "invalid YAML" in status.error and "\n" not in status.error
    path.write_text(yaml.safe_dump(INV))
    assert isinstance(next_of(events, Snapshot), Snapshot)


@pytest.mark.parametrize(
    ("inv", "message"),
    [
        ({"vms": [{"name": "a", "host": "nope"}]}, "vms[0].host: host 'nope' is not in hosts"),
        ({"hosts": [{"name": "h"}, {"name": "h"}]}, "hosts[1].name: 'h' is used twice"),
        ({"portgroups": [{"name": "p", "vlan": 0}]}, "portgroups[0].vlan: VLAN 0 is outside"),
        ({"hosts": [{"name": "h"}], "vms": [{"name": "a", "host": "h", "power": "maybe"}]},
         "vms[0].power: power 'maybe' is not one of on, off, suspended"),
        ({"hosts": [{"name": "h"}], "vms": [{"name": "a", "host": "h", "portgroups": ["x"]}]},
         "vms[0].portgroups: port group 'x' is not in portgroups"),
        ([1, 2], "the top level must be a mapping"),
        ({"vm": []}, "vm: unknown key"),
    ],
)  # fmt: skip
def test_bad_inventory_is_one_line_naming_file_and_key(
    tmp_path: Path, inv: object, message: str
) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(inv))
    with pytest.raises(ConfigError) as err:
        load_inventory(path, "inv")
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
