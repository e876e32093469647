"""A small typed registry of plugins by name (drivers, sources).

Built-in plugins register themselves on import; third-party ones through the entry-point
groups ``vmfabric.drivers`` and ``vmfabric.sources``. Registering a name twice fails
loudly rather than letting the later plugin win silently.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from vmfabric.core.errors import ConfigError

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    def __init__(self, kind: str, group: str, builtins: dict[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins  # name -> module that registers it when imported
        self._factories: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorate(factory: F) -> F:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> F:
        if name not in self._factories and name in self._builtins:
            import_module(self._builtins[name])
        if name not in self._factories:
            for ep in entry_points(group=self.group):
                if ep.name == name:
                    self._factories[name] = ep.load()
        if name not in self._factories:
            raise ConfigError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        return self._factories[name]

    def names(self) -> list[str]:
        found = set(self._builtins) | set(self._factories)
        found |= {ep.name for ep in entry_points(group=self.group)}
        return sorted(found)


# Switch-port drivers: name -> module that registers it (``@SWITCH_DRIVERS.register``).
# Each driver class carries ``Options``, its pydantic model (a ``SwitchConfig`` subclass).
SWITCH_DRIVERS: Registry[Callable[..., Any]] = Registry(
    "driver",
    "vmfabric.drivers",
    {
        "ovs": "vmfabric.targets.switchport.ovs",
        "fake": "vmfabric.targets.switchport.fake",
        "eos": "vmfabric.targets.switchport.eos",
        "nxos": "vmfabric.targets.switchport.nxos",
        "junos": "vmfabric.targets.switchport.junos",
        "cumulus": "vmfabric.targets.switchport.cumulus",
        "cli": "vmfabric.targets.switchport.cli",
    },
)


def switch_options(name: str) -> Any:
    """The options model (a ``SwitchConfig`` subclass) of the switch driver ``name``.
    ConfigError when no such driver exists or it declares no model."""
    factory = SWITCH_DRIVERS.get(name)
    options = getattr(factory, "Options", None)
    if options is None:
        raise ConfigError(f"driver {name!r} declares no options model")
    return options
