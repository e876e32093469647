"""vmfabric's state store: inventory, switch port states, audit log and plans, and the
queries behind ``vmfabric show`` (SQLite by default, PostgreSQL-ready)."""

from vmfabric.store.db import StoreError
from vmfabric.store.records import AuditEntry
from vmfabric.store.store import Store

__all__ = ["AuditEntry", "Store", "StoreError"]
