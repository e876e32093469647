"""The read views the API serves, one function per ``show`` view: ``vmfabric.views`` (the
typed views ``show`` renders), so ``/api/v1/<view>`` and ``show <view> --json`` are one
code path.
Security groups and policies are computed as ``show group|policy`` computes them: the
configuration's groups over the inventory the store holds, with the controller's engine.
"""

from __future__ import annotations

from typing import Any

from vmfabric import views
from vmfabric.config import Config
from vmfabric.inventory.index import Inventory
from vmfabric.runtime.groups import build_intent, group_view, policy_view
from vmfabric.store import Store

Json = list[dict[str, Any]]


def open_reader(url: str) -> Store:
    """The API's store: it reads, and records approvals when no controller is beside it
    (so a writer: it may also be the first to open the store)."""
    return Store(url)


def sessions(store: Store, name: str | None = None) -> Json:
    return list(map(dict, views.sessions(store, name)))


def vms(store: Store, name: str | None = None) -> Json:
    return list(map(dict, views.vms(store, name)))


def hosts(store: Store) -> Json:
    return list(map(dict, views.hosts(store)))


def interfaces(store: Store, port: str | None = None) -> Json:
    return list(map(dict, views.interfaces(store, port)))


def vlans(store: Store, vlan: int | None = None, dynamic: bool = False) -> Json:
    return list(map(dict, views.vlans(store, vlan, dynamic)))


def switches(store: Store) -> Json:
    return list(map(dict, views.switches(store)))


def plans(store: Store, plan_id: int | None = None, status: str | None = None) -> Json:
    return list(map(dict, views.plans(store, plan_id, status)))


def audit(store: Store, limit: int, switch: str | None = None) -> Json:
    return list(map(dict, views.audit(store, limit, switch)))


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
