"""The error hierarchy. Callers decide what to do next from the type alone.

- ``ConfigError``: bad input (config, arguments, inventory files). Never retried; exit 2.
- ``TransientError``: the peer may answer later (timeout, lost connection). Retry with backoff.
- ``PermanentError``: the peer answered and refused (a switch rejected a change). Report; do
  not retry the same change.
"""

from __future__ import annotations


class VmfabricError(Exception):
    """Root of every error vmfabric raises on purpose."""


class ConfigError(VmfabricError):
    """Bad input: a config file, an inventory file or a command-line argument.

    ``where`` names the file and key path (``vmfabric.yaml: sessions[0].allowed_vlans``).
    """

    def __init__(self, message: str, where: str = "") -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class TransientError(VmfabricError):
    """The operation may succeed later: retry with backoff."""


class PermanentError(VmfabricError):
    """The peer refused the operation: retrying the same thing will not help."""
