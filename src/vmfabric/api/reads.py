"""The read views the API serves, one function per ``show`` view: the switch-over point to
``vmfabric.views`` (the typed views shared with ``show``).

Until ``vmfabric.views`` provides a view, the function here calls the same ``Store``
method ``show`` calls, so ``/api/v1/<view>`` and ``show <view> --json`` are one code path.
Security groups and policies are computed as ``show group|policy`` computes them: the
configuration's groups over the inventory the store holds, with the controller's engine.
"""

from __future__ import annotations

from typing import Any

from vmfabric.config import Config
from vmfabric.inventory.index import Inventory
from vmfabric.runtime.groups import build_intent, group_view, policy_view
from vmfabric.store import Store

Json = list[dict[str, Any]]


def open_reader(url: str) -> Store:
    """The API's store: it only reads (``Store(url, readonly=True)`` once views land)."""
    return Store(url)


def sessions(store: Store, name: str | None = None) -> Json:
    return store.show_sessions(name)


def vms(store: Store, name: str | None = None) -> Json:
    return store.show_vms(name)


def hosts(store: Store) -> Json:
    return store.show_hosts()


def interfaces(store: Store, port: str | None = None) -> Json:
    rows = store.show_interfaces()
    return rows if port is None else [r for r in rows if r["port"] == port]


def vlans(store: Store, vlan: int | None = None, dynamic: bool = False) -> Json:
    rows = store.show_vlans(dynamic)
    return rows if vlan is None else [r for r in rows if r["vlan"] == vlan]


def switches(store: Store) -> Json:
    return store.show_switches()


def plans(store: Store, plan_id: int | None = None, status: str | None = None) -> Json:
    if plan_id is not None:
        found = store.plan(plan_id)
        return [] if found is None else [found]
    return store.plans(status)


def audit(store: Store, limit: int, switch: str | None = None) -> Json:
    return store.audit(limit, switch)


def _groups_state(config: Config, store: Store) -> tuple[Any, Inventory]:
    """The groups intent over the store's inventory (as ``show group`` builds it)."""
    names = [s.name for s in config.sessions]
    inventory = Inventory(names)
    delta = inventory.apply([store.snapshot(n) for n in names], 0.0)
    intent = build_intent(config)
    intent.update(inventory, delta, 0.0)
    return intent, inventory


def groups(config: Config, store: Store, name: str | None = None) -> Json:
    intent, inventory = _groups_state(config, store)
    return group_view(intent, inventory, name)


def policies(config: Config, store: Store) -> Json:
    intent, _ = _groups_state(config, store)
    return policy_view(config, intent)
