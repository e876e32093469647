"""The live event stream (Server-Sent Events) on a real server: one JSON event per change
after an inventory change, resuming with Last-Event-ID (nothing lost, nothing doubled), a
reset when the events are gone, kind filters, and streams ending when the server stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.api_fixtures import TOKEN_ENV, Api, api_config, move_vm, populate, port
from support.live_fabric import LiveFabric, live_fabric
from support.sse import SseReader, StreamClosedError
from vmfabric.api import events
from vmfabric.api.server import start
from vmfabric.runtime.bus import BusEvent, EventBus
from vmfabric.store import Store

pytestmark = pytest.mark.integration


def stream_url(api: Api, query: str = "") -> str:
    return f"{api.url}/api/v1/events{query}"


def test_a_vm_move_streams_one_json_event_per_change(api: Api) -> None:
    with SseReader(stream_url(api), api.token) as reader:
        move_vm(api.store, api.bus, "web-01", "esx02", port("leaf1", "p2", "1,110", "110"))
        vm = reader.next()
        member = reader.next()
    assert vm.event == "vm"
    assert vm.id == f"{api.bus.boot}-1"
    body = vm.json()
    assert body["id"] == vm.id
    assert body["kind"] == "vm"
    assert body["time"].endswith("Z")
    assert body["data"] == {
        "session": "lab",
        "vm": "web-01",
        "host": "esx02",
        "power": "poweredOn",
        "change": "moved",
    }
    assert member.event == "member"
    assert member.json()["data"]["port"] == "p2"
    assert member.json()["data"]["vlan"] == 110
    # the store already shows what the events announce
    with api.client() as client:
        web = client.get("/api/v1/vms?name=web-01").json()[0]
    assert web["attachments"] == [{"switch": "leaf1", "port": "p2"}]


def publish(bus: EventBus, n: int, kind: str = "plan") -> list[BusEvent]:
    return [bus.publish(kind, {"id": i, "target": "leaf1", "status": "held"}) for i in range(n)]


def test_resuming_with_last_event_id_replays_exactly_what_was_missed(api: Api) -> None:
    with SseReader(stream_url(api), api.token) as reader:
        publish(api.bus, 3)
        seen = [reader.next() for _ in range(3)]
    missed = publish(api.bus, 4)
    with SseReader(stream_url(api), api.token, last_event_id=seen[-1].id) as again:
        publish(api.bus, 1)
        resumed = [again.next() for _ in range(5)]
    assert [e.id for e in resumed] == [f"{api.bus.boot}-{i}" for i in range(4, 9)]
    assert [e.json()["data"]["id"] for e in resumed[:4]] == [e.data["id"] for e in missed]


def test_last_event_id_as_a_query_parameter_works_too(api: Api) -> None:
    first = publish(api.bus, 2)[0]
    url = stream_url(api, f"?last_event_id={api.bus.boot}-{first.id}")
    with SseReader(url, api.token) as reader:
        assert reader.next().id == f"{api.bus.boot}-{first.id + 1}"


def test_an_id_of_an_earlier_life_gets_a_reset_then_live_events(api: Api) -> None:
    publish(api.bus, 2)
    with SseReader(stream_url(api), api.token, last_event_id="0badf00d-1") as reader:
        reset = reader.next()
        publish(api.bus, 1)
        live = reader.next()
    assert reset.event == "reset"
    assert reset.json() == {"reason": "events were missed"}
    assert live.id == f"{api.bus.boot}-3"


def test_events_gone_from_the_buffer_give_a_reset(tmp_path: Path, api_token: str) -> None:
    config = api_config(tmp_path)
    store = Store(config.store_url())
    populate(store)
    bus = EventBus(keep=5)
    handle = start(config, config.store_url(), bus)
    try:
        publish(bus, 20)
        url = f"{handle.url}/api/v1/events"
        with SseReader(url, api_token, last_event_id=f"{bus.boot}-2") as reader:
            first = reader.next()
            replayed = [reader.next() for _ in range(5)]
        assert first.event == "reset"
        assert [e.id for e in replayed] == [f"{bus.boot}-{i}" for i in range(16, 21)]
    finally:
        handle.stop()
        store.close()


def test_kinds_filter_the_stream(api: Api) -> None:
    with SseReader(stream_url(api, "?kinds=vm,session"), api.token) as reader:
        publish(api.bus, 3, "plan")
        api.bus.publish("session", {"name": "lab", "state": "connected", "in_sync": True})
        assert reader.next().event == "session"


def test_stopping_the_server_ends_open_streams(tmp_path: Path, api_token: str) -> None:
    config = api_config(tmp_path)
    handle = start(config, config.store_url(), EventBus())
    reader = SseReader(f"{handle.url}/api/v1/events", api_token)
    try:
        assert handle.telemetry.registry.get_sample_value("vmfabric_sse_clients") == 1
        handle.stop()
        with pytest.raises(StreamClosedError):
            reader.next(timeout=10)
    finally:
        reader.close()


def test_a_stream_without_the_token_is_refused(api: Api) -> None:
    with SseReader(stream_url(api), "not-the-token") as reader:
        assert reader.status == 401


def test_a_client_that_falls_behind_is_cut_off_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "QUEUE_LIMIT", 3)

    async def overflow() -> list[object]:
        feed = events._Feed(asyncio.get_running_loop(), asyncio.Queue())
        for i in range(1, 6):
            feed.push(BusEvent(i, 0.0, "plan", {}))
        await asyncio.sleep(0)
        got: list[object] = []
        while not feed.queue.empty():
            got.append(feed.queue.get_nowait())
        assert feed.overflow
        return got

    got = asyncio.run(overflow())
    assert [e.id if isinstance(e, BusEvent) else e for e in got] == [1, 2, 3, None, None]


def test_a_static_inventory_edit_streams_the_new_vlan(tmp_path: Path, api_token: str) -> None:
    """End to end: the real controller reads the edited file, moves the VLAN, publishes;
    the views already show what the event announces when it arrives."""
    with live_fabric(tmp_path, TOKEN_ENV) as fabric:
        url = f"{fabric.api.url}/api/v1/events?kinds=member"
        with SseReader(url, fabric.token) as reader:
            wait_for_vlan(fabric, "leaf1", "p1", 110)
            fabric.move("web-01", "esx2")
            added = next_member_on(reader, "leaf1", "p2")
            headers = {"Authorization": f"Bearer {fabric.token}"}
            web = httpx.get(f"{fabric.api.url}/api/v1/vms?name=web-01", headers=headers)
            audit = httpx.get(f"{fabric.api.url}/api/v1/audit?limit=1", headers=headers)
    assert (added["switch"], added["port"], added["vlan"], added["action"]) == (
        "leaf1",
        "p2",
        110,
        "add",
    )
    assert web.json()[0]["attachments"] == [{"switch": "leaf1", "port": "p2"}]
    newest = audit.json()[0]
    assert (newest["switch"], newest["port"], newest["vlan"], newest["action"]) == (
        "leaf1",
        "p2",
        110,
        "add",
    )


def next_member_on(reader: SseReader, switch: str, port: str) -> dict[str, Any]:
    """The next ``member`` event on ``switch`` ``port`` (the first apply's events for the
    starting inventory may still be on their way: they are skipped)."""
    deadline = time.monotonic() + 30
    while True:
        data: dict[str, Any] = reader.next_of("member", deadline - time.monotonic()).json()["data"]
        if (data["switch"], data["port"]) == (switch, port):
            return data


def wait_for_vlan(fabric: LiveFabric, switch: str, port: str, vlan: int) -> None:
    """Until the switch carries ``vlan`` on ``port`` (the controller's first apply; its
    targets are made once it runs, so a missing one is "not yet")."""
    deadline = time.monotonic() + 60
    while vlan not in vlans_of(fabric.controller.targets.get(switch), port):
        assert time.monotonic() < deadline, f"{switch} {port} never carried VLAN {vlan}"
        time.sleep(0.05)


def vlans_of(target: object, port: str) -> frozenset[int]:
    states = getattr(target, "states", {})
    state = states.get(port)
    return state.vlans if state is not None else frozenset()


def test_a_client_that_leaves_is_unsubscribed(api: Api) -> None:
    def clients() -> float | None:
        return api.handle.telemetry.registry.get_sample_value("vmfabric_sse_clients")

    with SseReader(stream_url(api), api.token):
        assert clients() == 1
    deadline = time.monotonic() + 30
    while clients() != 0:
        assert time.monotonic() < deadline, "the stream of a client that left is still open"
        time.sleep(0.02)
    api.bus.publish("plan", {"id": 1, "target": "leaf1", "status": "held"})  # nobody listens
    assert clients() == 0
