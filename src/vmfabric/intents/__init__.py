"""Pure desired-state computation: no I/O, no clocks it is not handed."""

from vmfabric.intents.autovlan import (
    AutovlanEngine,
    SessionPolicy,
    SwitchPolicy,
    full_desired,
)
from vmfabric.intents.guard import GuardLimits, guard_verdict

__all__ = [
    "AutovlanEngine",
    "GuardLimits",
    "SessionPolicy",
    "SwitchPolicy",
    "full_desired",
    "guard_verdict",
]
