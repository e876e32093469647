"""The ``api:`` section of vmfabric.yaml: where the REST API, the live event stream, the web
UI and ``/metrics`` listen, the bearer token (a secret reference, like every password) and
optional TLS.

    api:
      listen: 127.0.0.1:8470          # host:port ([::1]:8470 for IPv6; port 0 picks a free one)
      token: env:VMFABRIC_API_TOKEN   # or file:/etc/vmfabric/api.token (mode 0600)
      tls: {cert: api.crt, key: api.key}
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
MAX_PORT = 65535


def _token_ref(value: Any) -> str:
    """Refuse a literal token exactly as a literal password is refused."""
    from vmfabric.config import _secret_ref  # the one rule for every secret; no import cycle

    return _secret_ref(value)


def split_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"``) -> (host, port); ValueError naming what is wrong."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:8470)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        _check_ip(host, value, version=6)
    elif not _is_ip(host) and not _HOSTNAME.match(host):
        raise ValueError(f"{value!r}: {host!r} is not an IP address or host name")
    if not port_text.isdigit() or int(port_text) > MAX_PORT:
        raise ValueError(f"{value!r}: port {port_text!r} is not a number from 0 to {MAX_PORT}")
    return host, int(port_text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_ip(host: str, value: str, version: int) -> None:
    try:
        if ipaddress.ip_address(host).version == version:
            return
    except ValueError:
        pass
    raise ValueError(f"{value!r}: [{host}] is not an IPv6 address")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Section):
    """Serve HTTPS with this certificate chain and private key (PEM files)."""

    cert: Path = Field(description="Certificate chain (PEM); relative to the config file.")
    key: Path = Field(description="Private key (PEM, unencrypted); relative to the config file.")


class ApiConfig(_Section):
    """The REST API, live events, web UI and metrics, served by ``vmfabric run``."""

    listen: str = Field(
        "127.0.0.1:8470", description="host:port to listen on ([::1]:8470 for IPv6)."
    )
    token: Annotated[str, BeforeValidator(_token_ref)] = Field(
        description="Bearer token of every /api/v1 request, as a secret reference: "
        "env:VARIABLE or file:/path (mode 0600). `vmfabric api-token` prints a fresh one."
    )
    tls: TlsConfig | None = Field(None, description="Serve HTTPS instead of HTTP.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    def address(self) -> tuple[str, int]:
        return split_listen(self.listen)
