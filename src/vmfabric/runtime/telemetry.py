"""Prometheus metrics: what ``/metrics`` serves.

Two sources, each used where it is exact:

- **The event bus** (this process's work): ``Telemetry`` subscribes to it and counts source
  events, transactions, writes and apply errors per target, the event-to-commit latency and
  the leader status (the ``controller`` event, or ``set_leader``).
- **The store** (the fabric's state, the same on leader and standby, right after a
  restart): ``watch_store`` adds a collector that reads, at each scrape, sessions connected
  and in sync, the inventory size, plans by status, audit entries and switch states. A
  scrape costs a few COUNT queries.

Every series is listed in README.md ("Metrics").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from vmfabric.runtime.bus import BusEvent, EventBus
from vmfabric.store import db
from vmfabric.store.schema import audit_log, hosts, plans, sessions, switches, vms

log = logging.getLogger("vmfabric.telemetry")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SWITCH_STATES = ("ok", "unreachable", "error")


class Telemetry:
    """This process's metrics, fed by ``bus`` (and the methods below), in ``registry``."""

    def __init__(self, bus: EventBus, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._store: StoreCollector | None = None
        self._lock = threading.Lock()
        reg = self.registry
        target = ["target", "kind"]
        self.bus_events = Counter(
            "vmfabric_bus_events", "Events published on the live event bus.", ["kind"], registry=reg
        )
        self.source_events = Counter(
            "vmfabric_source_events", "Source events received (VM, host, port group).", registry=reg
        )
        self.latency = Histogram(
            "vmfabric_event_to_commit_seconds",
            "From the oldest source event an apply serves to the target's commit.",
            target,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.apply_seconds = Histogram(
            "vmfabric_apply_seconds", "Time of one apply (one transaction).", target, registry=reg
        )
        self.transactions = Counter(
            "vmfabric_transactions", "Transactions applied per target.", target, registry=reg
        )
        self.writes = Counter(
            "vmfabric_writes", "Changes written per target (members added or removed).", target,
            registry=reg,
        )  # fmt: skip
        self.apply_errors = Counter(
            "vmfabric_apply_errors", "Applies that failed, per target.", target, registry=reg
        )
        self.leader = Gauge(
            "vmfabric_leader", "1 while this controller is the leader, else 0.", registry=reg
        )
        self.sse_clients = Gauge(
            "vmfabric_sse_clients", "Clients connected to the live event stream.", registry=reg
        )
        self._unsubscribe = bus.subscribe(self._on_event)

    def set_leader(self, leader: bool) -> None:
        """For a composition root that does not publish ``controller`` events."""
        self.leader.set(1 if leader else 0)

    def watch_store(self, store_url: str) -> None:
        """Also serve the store's gauges (once; later calls do nothing)."""
        with self._lock:
            if self._store is None:
                self._store = StoreCollector(store_url)
                self.registry.register(self._store)

    def close(self) -> None:
        self._unsubscribe()
        with self._lock:
            if self._store is not None:
                self.registry.unregister(self._store)
                self._store.close()
                self._store = None

    def _on_event(self, event: BusEvent) -> None:
        self.bus_events.labels(event.kind).inc()
        data = event.data
        if event.kind == "events":
            self.source_events.inc(max(0, int(data.get("count", 0))))
        elif event.kind == "apply":
            self._on_apply(data)
        elif event.kind == "controller":
            self.set_leader(data.get("role") == "leader")

    def _on_apply(self, data: dict[str, Any]) -> None:
        labels = (str(data.get("target", "")), str(data.get("kind", "")))
        if data.get("error"):
            self.apply_errors.labels(*labels).inc()
            return
        self.transactions.labels(*labels).inc()
        self.writes.labels(*labels).inc(max(0, int(data.get("changes") or 0)))
        if data.get("seconds") is not None:
            self.apply_seconds.labels(*labels).observe(float(data["seconds"]))
        if data.get("age") is not None:
            self.latency.labels(*labels).observe(float(data["age"]))


class StoreCollector(Collector):
    """Gauges read from the store at each scrape (see the module docstring)."""

    def __init__(self, store_url: str) -> None:
        parsed = db.parse_url(store_url)
        self._where = db.describe(parsed)
        self._path = db.sqlite_file(parsed)
        self._engine: Engine = db.open_engine(parsed, 5.0)

    def close(self) -> None:
        self._engine.dispose()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("vmfabric_store_up", "1 if the store answered this scrape.")
        try:
            found = list(self._read())
        except db.StoreError as err:
            log.warning("metrics: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _read(self) -> Iterator[Metric]:
        with db.transaction(self._engine, self._where, write=False, path=self._path) as conn:
            connected = _family("vmfabric_session_connected", "1 if the session is connected.")
            in_sync = _family("vmfabric_session_in_sync", "1 if the session is in sync.")
            for name, state, synced in conn.execute(
                select(sessions.c.name, sessions.c.state, sessions.c.in_sync)
            ):
                connected.add_metric([name], 1 if state == "connected" else 0)
                in_sync.add_metric([name], 1 if synced else 0)
            yield connected
            yield in_sync
            yield _counted(conn, vms.c.session, "vmfabric_inventory_vms", "VMs known, per session.")
            yield _counted(
                conn, hosts.c.session, "vmfabric_inventory_hosts", "Hosts known, per session."
            )
            yield _plans(conn)
            total = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
            audit = GaugeMetricFamily("vmfabric_audit_entries", "Entries in the audit log.")
            audit.add_metric([], float(total))
            yield audit
            yield _switch_states(conn)


def _family(name: str, doc: str, label: str = "session") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=[label])


def _counted(conn: Any, column: Any, name: str, doc: str) -> GaugeMetricFamily:
    family = _family(name, doc)
    for key, n in conn.execute(select(column, func.count()).group_by(column)):
        family.add_metric([key], float(n))
    return family


def _plans(conn: Any) -> GaugeMetricFamily:
    family = _family("vmfabric_plans", "Plans in the store by status (held: awaiting approval).",
                     "status")  # fmt: skip
    counts = dict(conn.execute(select(plans.c.status, func.count()).group_by(plans.c.status)).all())
    for status in sorted({"held", *counts}):
        family.add_metric([status], float(counts.get(status, 0)))
    return family


def _switch_states(conn: Any) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "vmfabric_switch_state", "1 for each switch's current state.", labels=["switch", "state"]
    )
    for name, state in conn.execute(select(switches.c.name, switches.c.state)):
        for known in SWITCH_STATES:
            family.add_metric([name, known], 1 if state == known else 0)
    return family
