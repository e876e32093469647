"""vmfabric's state store: inventory, target states, plans, origins and the audit log
(SQLite by default, PostgreSQL-ready; schema migrations with Alembic). ``vmfabric.views``
builds the ``show`` documents from it."""

from vmfabric.store.db import StoreError, StoreReplacedError
from vmfabric.store.reader import Reader, SessionRecord, VmSummary
from vmfabric.store.records import (
    PLAN_STATUSES,
    SWITCH_STATES,
    AuditEntry,
    PlanRecord,
    SwitchStatus,
)
from vmfabric.store.store import Store

__all__ = [
    "PLAN_STATUSES",
    "SWITCH_STATES",
    "AuditEntry",
    "PlanRecord",
    "Reader",
    "SessionRecord",
    "Store",
    "StoreError",
    "StoreReplacedError",
    "SwitchStatus",
    "VmSummary",
]
