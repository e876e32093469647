"""The error hierarchy. Callers decide what to do next from the type alone.

- ``ConfigError``: bad input (config, arguments, inventory files). Never retried; exit 2.
- ``TransientError``: the peer may answer later (timeout, lost connection). Retry with backoff.
- ``PermanentError``: the peer answered and refused (a switch rejected a change). Report; do
  not retry the same change.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with line breaks escaped, so that an error stays one line even when it
    quotes a key or value a person typed with a line break in it."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class VmfabricError(Exception):
    """Root of every error vmfabric raises on purpose."""


class ConfigError(VmfabricError):
    """Bad input: a config file, an inventory file or a command-line argument.

    ``where`` names the file and key path (``vmfabric.yaml: sessions[0].allowed_vlans``).
    """

    def __init__(self, message: str, where: str = "") -> None:
        self.where = one_line(where)
        text = f"{where}: {message}" if where else message
        super().__init__(one_line(text))


class TransientError(VmfabricError):
    """The operation may succeed later: retry with backoff."""


class PermanentError(VmfabricError):
    """The peer refused the operation: retrying the same thing will not help."""
