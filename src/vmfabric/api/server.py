"""Starting and stopping the API server: ``start(config, store_url, bus, control)``.

``start`` checks everything a person can get wrong before anything runs, each as one line:
the token reference (resolved like a password: ``ConfigError``, exit 2), the TLS files
(``ConfigError``), the listen address (an address not on this machine: ``ConfigError``; a
port in use: ``TransientError``, exit 1). It binds the socket itself, so these errors
reach the caller, then runs uvicorn in a thread of its own with its own event loop: a busy
controller loop never delays the API, and the API never blocks the controller.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import uvicorn

from vmfabric.api.app import ApiContext, Control, create_app
from vmfabric.api.cache import ViewCache
from vmfabric.api.events import EventStreams
from vmfabric.api.reads import open_reader
from vmfabric.config import Config, resolve_secret
from vmfabric.config.api import ApiConfig
from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.lease import controllers
from vmfabric.runtime.telemetry import Telemetry
from vmfabric.store import Store

log = logging.getLogger("vmfabric.api")
START_TIMEOUT = 10.0
_NOT_HERE = (errno.EADDRNOTAVAIL, errno.EACCES, errno.EAFNOSUPPORT)


@dataclass
class ApiHandle:
    """A running API server: its URL, and ``stop()``."""

    url: str
    host: str
    port: int
    telemetry: Telemetry
    _server: uvicorn.Server
    _thread: threading.Thread
    _streams: EventStreams
    _store: Store
    _cache: ViewCache
    _owned: list[Telemetry] = field(default_factory=list)

    def stop(self, timeout: float = 5.0) -> None:
        """End the live streams, stop serving, close the store (idempotent)."""
        self._streams.close()
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        for telemetry in self._owned:
            telemetry.close()
        self._owned.clear()
        self._cache.close()
        self._store.close()


def start(
    config: Config,
    store_url: str,
    bus: EventBus,
    control: Control | None = None,
    *,
    telemetry: Telemetry | None = None,
) -> ApiHandle:
    """Serve ``config.api`` (ConfigError without one) until ``handle.stop()``."""
    api = config.api
    if api is None:
        raise ConfigError("no api: section in the config")
    token = resolve_secret(api.token, config.base_dir)
    if not token.get_secret_value().strip():
        raise ConfigError(f"api.token: the secret {api.token} is empty")
    tls = _tls_files(api, config)
    sock = bind(api)
    owned = [] if telemetry is not None else [Telemetry(bus)]
    metrics = telemetry if telemetry is not None else owned[0]
    metrics.watch_store(store_url)
    store = open_reader(store_url)
    streams = EventStreams(bus, metrics.sse_clients.set)
    cache = ViewCache(store_url)
    ctx = ApiContext(config, store, bus, token, metrics, streams,
                     lambda: controllers(store_url), cache, control)  # fmt: skip
    server = uvicorn.Server(_uvicorn_config(ctx, tls))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="vmfabric-api", daemon=True
    )
    thread.start()
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    handle = ApiHandle(_url(scheme, host, port), host, port, metrics, server, thread, streams,
                       store, cache, owned)  # fmt: skip
    _wait_started(handle, server, thread)
    log.info("API, web UI and metrics at %s", handle.url)
    return handle


def _uvicorn_config(ctx: ApiContext, tls: tuple[str, str] | None) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(ctx),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )


def _wait_started(handle: ApiHandle, server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            handle.stop(timeout=1.0)
            raise TransientError(f"the API server on {handle.url} did not start")
        time.sleep(0.01)


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):  # noqa: S104 (naming it, not binding it)
        shown = socket.gethostname()
    return f"{scheme}://{shown}:{port}"


def bind(api: ApiConfig) -> socket.socket:
    """A listening socket on ``api.listen``; one-line errors naming it."""
    host, port = api.address()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ConfigError(f"api.listen {api.listen}: {err.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise TransientError(f"api.listen {api.listen}: the port is in use") from None
        if err.errno in _NOT_HERE:
            raise ConfigError(f"api.listen {api.listen}: {err.strerror}") from None
        raise TransientError(f"api.listen {api.listen}: {err.strerror}") from None
    sock.setblocking(False)
    return sock


def _tls_files(api: ApiConfig, config: Config) -> tuple[str, str] | None:
    """The certificate and key paths, checked by loading them once (one-line errors)."""
    if api.tls is None:
        return None
    cert, key = config.resolve(api.tls.cert), config.resolve(api.tls.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as err:
        raise ConfigError(f"api.tls: {err.filename or cert}: file not found") from None
    except (ssl.SSLError, OSError) as err:
        reason = getattr(err, "reason", None) or err.strerror or type(err).__name__
        raise ConfigError(f"api.tls: cannot load {cert} with {key}: {reason}") from None
    return str(cert), str(key)
