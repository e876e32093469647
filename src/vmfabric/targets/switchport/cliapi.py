"""The base of drivers that speak a Cisco-style CLI through an HTTP command API (``eos``
over eAPI, ``nxos`` over NX-API): their shared options, the kept connection, and one
apply as one read request plus one write request whose answer is the state after it.

A vendor driver subclasses ``HttpCliDriver`` and supplies ``canonical`` (its interface
names in one form), ``read_view`` (one request: switchports, descriptions, VLAN database,
as a ``trunkcli.SwitchView``) and ``write_view`` (the plan's commands made atomic the
vendor's way, the reads appended, one request; undo on failure). Everything else (ports
named as configured, planning with the switch-port base, the commands of a plan, the
counters) lives here once.
"""

from __future__ import annotations

import dataclasses
import threading
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from vmfabric.config import SecretRef, SwitchConfig, resolve_secret
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortChange, PortState
from vmfabric.targets.switchport.base import (
    PortWrite,
    SwitchPortDriver,
    check_changes,
    plan_write,
)
from vmfabric.targets.switchport.httpapi import KeptConnection, Reply, tls_context
from vmfabric.targets.switchport.trunkcli import (
    DEFAULT_VLAN_NAME,
    SwitchView,
    check_template,
    plan_commands,
)


class HttpApiSwitch(SwitchConfig):
    """Options every HTTP command-API switch shares (a vendor's model adds ``driver``)."""

    host: str = Field(min_length=1, description="Management address or name of the switch.")
    port: int | None = Field(None, ge=1, le=65535, description="API port (443 / 80).")
    transport: Literal["https", "http"] = Field(
        "https", description="https (default); http only for labs."
    )
    username: str = Field(min_length=1, description="API user (see README: least privilege).")
    password: SecretRef = Field(description="env:VARIABLE or file:/path (mode 0600).")
    verify_tls: bool = Field(True, description="Verify the switch's certificate (keep it on).")
    ca_file: Path | None = Field(None, description="CA bundle to verify the switch with.")
    timeout: float = Field(
        10.0, gt=0, le=600, allow_inf_nan=False, description="Seconds per API request."
    )
    vlan_name: str = Field(
        DEFAULT_VLAN_NAME, description="Name of VLANs vmfabric creates; {vlan} is the id."
    )

    api_path: ClassVar[str] = "/"
    api_name: ClassVar[str] = "API"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if "://" in value or "/" in value or " " in value.strip():
            raise ValueError(f"{value!r} is not a host name or address (no scheme, no path)")
        return value.strip()

    @field_validator("vlan_name")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)

    def tcp_port(self) -> int:
        return self.port or (443 if self.transport == "https" else 80)

    def url(self) -> str:
        return f"{self.transport}://{self.host}:{self.tcp_port()}{self.api_path}"

    def endpoint(self) -> str:
        return f"{self.api_name} {self.url()}"


class HttpCliDriver(SwitchPortDriver):
    """See the module docstring. ``requests`` counts API requests (benchmarks)."""

    max_description: ClassVar[int] = 240

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, HttpApiSwitch):
            raise ConfigError(f"switch {config.name}: not an {type(self).__name__} entry")
        super().__init__(config)
        self.options: HttpApiSwitch = config
        self._http: KeptConnection | None = None
        self._password: SecretStr | None = None
        self._view = SwitchView()
        self._guard = threading.Lock()
        self._sent = 0

    # ---- what a vendor supplies ------------------------------------------------------------

    @staticmethod
    @abstractmethod
    def canonical(name: str) -> str:
        """The switch's own spelling of an interface name."""

    @abstractmethod
    def read_view(self) -> SwitchView:
        """One request: the whole switch as ``SwitchView``."""

    @abstractmethod
    def write_view(self, commands: list[str]) -> SwitchView:
        """Apply ``commands`` (atomically where the switch can) and return the view after
        them; on failure undo what can be undone and raise."""

    # ---- connection --------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """API requests sent by this driver object (across reconnects)."""
        return self._sent + (self._http.requests if self._http is not None else 0)

    def connect(self) -> None:
        """Open the kept connection (TCP and TLS); credentials are checked by the first
        request. ConfigError for a bad secret or CA file; TransientError/PermanentError
        when the switch cannot be reached or its certificate is not trusted."""
        with self._guard:
            if self._http is not None:
                return
            opts = self.options
            password = resolve_secret(opts.password)
            context = None
            if opts.transport == "https":
                context = tls_context(self.name, opts.verify_tls, opts.ca_file)
            http = KeptConnection(
                self.name, opts.url(), opts.host, opts.tcp_port(),
                timeout=opts.timeout, context=context,
            )  # fmt: skip
            http.open()
            self._http, self._password = http, password
            self.connected(http, password)

    def connected(self, http: KeptConnection, password: SecretStr) -> None:
        """Hook: the connection is open (a vendor may build its client on it)."""

    def close(self) -> None:
        with self._guard:
            http, self._http, self._password = self._http, None, None
        if http is not None:
            self._sent += http.requests
            http.close()

    def post(self, body: bytes, headers: dict[str, str]) -> Reply:
        """POST to the API path on the kept connection (connecting first if needed)."""
        if self._http is None:
            self.connect()
        http = self._http
        if http is None:
            raise TransientError(f"switch {self.name}: connection closed")
        return http.post(self.options.api_path, body, headers)

    # ---- reads and writes ------------------------------------------------------------------

    def _states(self, ports: Sequence[str]) -> dict[str, PortState]:
        """States of ``ports`` as configured (a short name finds the switch's long one)."""
        out = {}
        for port in ports:
            state = self._view.state(self.name, self.canonical(port))
            out[port] = dataclasses.replace(state, port=port)
        return out

    def read_raw(self, ports: Sequence[str]) -> dict[str, PortState]:
        self._view = self.read_view()
        return self._states(ports)

    def write(self, writes: Sequence[PortWrite], before: Mapping[str, PortState]) -> None:
        named = [dataclasses.replace(w, port=self.canonical(w.port)) for w in writes]
        try:
            commands = plan_commands(
                self._view, named, self.options.vlan_name, self.max_description
            )
        except ValueError as exc:
            raise PermanentError(f"switch {self.name}: {exc}") from None
        self._view = self.write_view(commands)

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        """Read, plan, write: two requests for a plan that writes (the write's answer is
        the state after it), one for a plan that does not."""
        check_changes(self.config, changes)
        ports = list(dict.fromkeys(c.port for c in changes))
        before = self.read_raw(ports)
        writes = [w for c in changes if (w := plan_write(before[c.port], c, self.open_ports))]
        if not writes:
            return before
        self.write(writes, before)
        self.transactions += 1
        self.writes += sum(w.memberships for w in writes)
        return self._states(ports)
