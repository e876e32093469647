"""/metrics on a real server: counters and the latency histogram fed by bus events, gauges
read from the store at each scrape, the leader gauge, and every series documented in
README.md."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.api_fixtures import Api
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.telemetry import Telemetry

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics (fetched without a token): (name, labels) -> value."""
    reply = httpx.get(f"{api.url}/metrics", timeout=30)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_store_gauges_describe_the_fabric(api: Api) -> None:
    got = scrape(api)
    assert got[("vmfabric_store_up", ())] == 1
    assert got[("vmfabric_session_connected", (("session", "lab"),))] == 1
    assert got[("vmfabric_session_in_sync", (("session", "lab"),))] == 1
    assert got[("vmfabric_inventory_vms", (("session", "lab"),))] == 4
    assert got[("vmfabric_inventory_hosts", (("session", "lab"),))] == 3
    assert got[("vmfabric_plans", (("status", "held"),))] == 1
    assert got[("vmfabric_audit_entries", ())] == 3
    assert got[("vmfabric_switch_state", (("state", "unreachable"), ("switch", "leaf2")))] == 1
    assert got[("vmfabric_switch_state", (("state", "ok"), ("switch", "leaf2")))] == 0
    assert got[("vmfabric_switch_state", (("state", "ok"), ("switch", "leaf1")))] == 1


def test_store_gauges_follow_the_store(api: Api) -> None:
    api.store.set_session_status("lab", "disconnected", in_sync=False, error="gone", now=1.0)
    with api.client() as client:
        assert client.post(f"/api/v1/plans/{api.held}/approve").status_code == 200
    got = scrape(api)
    assert got[("vmfabric_session_connected", (("session", "lab"),))] == 0
    assert got[("vmfabric_session_in_sync", (("session", "lab"),))] == 0
    assert got[("vmfabric_plans", (("status", "held"),))] == 0
    assert got[("vmfabric_plans", (("status", "approved"),))] == 1


def test_bus_events_feed_counters_and_the_latency_histogram(api: Api) -> None:
    bus = api.bus
    bus.publish("events", {"count": 7})
    bus.publish("events", {"count": 5})
    for age in (0.004, 0.08, 0.3):
        bus.publish("apply", {"target": "leaf1", "kind": "switchport", "changes": 2,
                              "seconds": 0.01, "age": age})  # fmt: skip
    bus.publish("apply", {"target": "leaf1", "kind": "switchport", "changes": 4,
                          "seconds": 0.5, "age": None, "error": "refused"})  # fmt: skip
    target = (("kind", "switchport"), ("target", "leaf1"))
    got = scrape(api)
    assert got[("vmfabric_source_events_total", ())] == 12
    assert got[("vmfabric_transactions_total", target)] == 3
    assert got[("vmfabric_writes_total", target)] == 6
    assert got[("vmfabric_apply_errors_total", target)] == 1
    assert got[("vmfabric_event_to_commit_seconds_count", target)] == 3
    assert got[("vmfabric_event_to_commit_seconds_bucket", (*target[:1], ("le", "0.1"),
                                                             *target[1:]))] == 2  # fmt: skip
    assert got[("vmfabric_event_to_commit_seconds_sum", target)] == pytest.approx(0.384)
    assert got[("vmfabric_bus_events_total", (("kind", "apply"),))] == 4


def test_the_leader_gauge_follows_controller_events(api: Api) -> None:
    assert scrape(api)[("vmfabric_leader", ())] == 0
    api.bus.publish("controller", {"id": "c1", "role": "leader", "epoch": 3})
    assert scrape(api)[("vmfabric_leader", ())] == 1
    api.bus.publish("controller", {"id": "c1", "role": "standby", "epoch": 3})
    assert scrape(api)[("vmfabric_leader", ())] == 0


def test_a_store_that_cannot_be_read_is_store_up_zero(tmp_path: Path) -> None:
    telemetry = Telemetry(EventBus())
    telemetry.watch_store(f"sqlite:///{tmp_path}/vmfabric.db")
    (tmp_path / "vmfabric.db").unlink()  # no tables: every query fails
    (tmp_path / "vmfabric.db").mkdir()  # and the file is a folder now
    try:
        assert telemetry.registry.get_sample_value("vmfabric_store_up") == 0
    finally:
        telemetry.close()


def test_every_series_is_documented_in_the_readme(api: Api) -> None:
    api.bus.publish("apply", {"target": "leaf1", "kind": "switchport", "changes": 1,
                              "seconds": 0.01, "age": 0.02})  # fmt: skip
    api.bus.publish("apply", {"target": "leaf1", "kind": "switchport", "error": "refused"})
    names = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name, _ in scrape(api)}
    vmfabric = {n for n in names if n.startswith("vmfabric_")}
    assert len(vmfabric) >= 17
    readme = README.read_text()
    undocumented = sorted(n for n in vmfabric if f"`{n}" not in readme)
    assert not undocumented, f"series missing from README.md: {undocumented}"
