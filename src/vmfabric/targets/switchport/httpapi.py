"""A kept-open HTTP(S) connection to a switch's command API (EOS eAPI, NX-API), and the
one-line errors for failing to reach it.

- ``tls_context``: certificates are verified by default (against ``ca_file`` when given,
  else the system's CAs); ``verify_tls: false`` is for labs and logs a warning at every
  connect.
- ``KeptConnection``: one HTTP/1.1 connection, reused request after request (no TCP or TLS
  handshake per change). When a reused connection turns out closed by the switch before
  it answered (its idle timeout), the request is sent once more on a fresh connection;
  the drivers only send requests that are safe to repeat (reads, and plans made of
  add/remove commands, which a second run leaves as the first did).
- ``reach_error``: what a failure means for the caller: a refused connection, a timeout or
  a lost connection is ``TransientError`` (retry with backoff); a certificate that does not
  verify, a TLS handshake that fails, or credentials the switch refuses are
  ``PermanentError`` (retrying the same thing will not help; fix the switch or the
  config). Each names the switch and the URL, never the password.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from vmfabric.core.errors import ConfigError, PermanentError, TransientError, VmfabricError

LOG = logging.getLogger(__name__)
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def tls_context(switch: str, verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """The TLS context of a switch connection. ConfigError when ``ca_file`` is unreadable."""
    if not verify:
        LOG.warning("switch %s: TLS certificate verification is off (verify_tls: false)", switch)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"switch {switch}: ca_file {ca_file}: cannot use it: {reason}") from None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str
    body: bytes


class KeptConnection:
    """One kept-open HTTP(S) connection (see the module docstring). Thread-safe: requests
    on one connection are serialised."""

    def __init__(
        self,
        switch: str,
        url: str,
        host: str,
        port: int,
        *,
        timeout: float,
        context: ssl.SSLContext | None,
    ) -> None:
        self.switch = switch
        self.url = url
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = context
        self.requests = 0  # requests sent (retries of stale connections included)
        self.connects = 0
        self._conn: http.client.HTTPConnection | None = None
        self._used = False
        self._lock = threading.Lock()

    def _open(self) -> http.client.HTTPConnection:
        if self.context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        if conn.sock is not None:  # http.client sends headers and body apart: no Nagle wait
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1
        self._used = False
        return conn

    def open(self) -> None:
        """Connect now (TCP, and the TLS handshake with certificate check) if not connected."""
        with self._lock:
            if self._conn is not None:
                return
            try:
                self._conn = self._open()
            except (OSError, http.client.HTTPException) as exc:
                raise reach_error(self.switch, self.url, self.timeout, exc) from None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """POST ``body``; TransientError/PermanentError (``reach_error``) when it fails."""
        with self._lock:
            try:
                return self._post(path, body, headers)
            except VmfabricError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise reach_error(self.switch, self.url, self.timeout, exc) from None

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if self._conn is None:
            self._conn = self._open()
        try:
            return self._send(self._conn, path, body, headers)
        except _STALE:
            if not self._used:
                raise
            LOG.debug("switch %s: kept connection was closed by the switch; reopening", self.switch)
            self._drop()
            self._conn = self._open()
            return self._send(self._conn, path, body, headers)

    def _send(
        self, conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
    ) -> Reply:
        self.requests += 1
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        self._used = True
        if response.will_close:
            self._drop()
        return Reply(response.status, response.reason, data)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


def reach_error(switch: str, url: str, timeout: float, exc: BaseException) -> VmfabricError:
    """The one-line error for a request to ``url`` that failed with ``exc``."""
    where = f"switch {switch}: {url}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(
            f"{where}: TLS certificate not trusted ({exc.verify_message}); give the switch's "
            "CA in ca_file (verify_tls: false only in labs)"
        )
    if isinstance(exc, ssl.SSLError):
        return PermanentError(f"{where}: TLS handshake failed ({exc.reason or exc})")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{where}: no answer within {timeout:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(f"{where}: cannot reach the switch (connection refused)")
    if isinstance(exc, _STALE | http.client.HTTPException):
        return TransientError(f"{where}: connection lost ({type(exc).__name__})")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return TransientError(f"{where}: cannot reach the switch ({reason})")


def auth_error(switch: str, url: str, username: str, reply: Reply) -> PermanentError | None:
    """The error for an HTTP status that refuses the request itself (None: not one)."""
    if reply.status == 401:
        return PermanentError(
            f"switch {switch}: {url}: the switch refused the credentials of user "
            f"{username!r} (HTTP 401)"
        )
    if reply.status == 403:
        return PermanentError(
            f"switch {switch}: {url}: user {username!r} may not use the API (HTTP 403)"
        )
    if reply.status != 200:
        return PermanentError(
            f"switch {switch}: {url}: unexpected HTTP {reply.status} {reply.reason}"
        )
    return None
