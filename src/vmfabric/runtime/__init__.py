"""The runtime: the only place with tasks, clocks, threads and retries.

- ``root``: the composition root (``Controller``) and SIGHUP reload;
- ``intake``: source events -> inventory -> intents -> woken targets, recorded;
- ``reconciler``: one reconcile loop per target; ``target``: what it drives;
- ``switchports``: the switch-port target (a driver + autovlan);
- ``recorder``: the store's writer thread; ``approvals``; ``bus``: live events;
- ``sync``: ``vmfabric sync``, the same step once.
"""

from vmfabric.runtime.root import Controller
from vmfabric.runtime.sync import SyncResult, sync_once

__all__ = ["Controller", "SyncResult", "sync_once"]
