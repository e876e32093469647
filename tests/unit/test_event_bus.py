"""The live event bus: ids in order, bounded replay, and publishing many events at once
exactly as publishing them one by one."""

from __future__ import annotations

from vmfabric.runtime.bus import BusEvent, EventBus


def _fields(events: list[BusEvent]) -> list[tuple[int, str, dict[str, object]]]:
    return [(e.id, e.kind, e.data) for e in events]


def test_publish_many_is_publish_one_by_one_under_one_lock() -> None:
    one, many = EventBus(keep=3), EventBus(keep=3)
    seen_one: list[BusEvent] = []
    seen_many: list[BusEvent] = []
    one.subscribe(seen_one.append)
    many.subscribe(seen_many.append)
    datas = [{"member": str(v)} for v in (110, 120, 130, 140)]
    one.publish("plan", {"id": 1})
    many.publish("plan", {"id": 1})
    for data in datas:
        one.publish("member", data)
    many.publish_many("member", datas)
    assert _fields(seen_many) == _fields(seen_one)
    assert [e.id for e in seen_many] == [1, 2, 3, 4, 5]
    assert many.last_id == one.last_id == 5
    # the replay buffer keeps the last three, and says what it dropped
    assert _fields(many.since(0)) == _fields(one.since(0)) == _fields(seen_one[2:])
    assert many.replay(0)[1] is False
    assert many.replay(2)[1] is True
    many.publish_many("member", [])  # nothing: no id used
    assert many.last_id == 5


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = EventBus()
    got: list[int] = []

    def broken(event: BusEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(lambda e: got.append(e.id))
    bus.publish_many("member", [{"a": 1}, {"a": 2}])
    assert got == [1, 2]
