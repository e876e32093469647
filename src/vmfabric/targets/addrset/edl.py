"""``kind: edl``: External Dynamic Lists, one plain-text list per group over HTTP.

``GET /edl/<group>.txt`` answers the group's addresses, one address or CIDR per line
(the format PAN-OS, FortiGate and Check Point poll). Each list carries an ``ETag`` (a
hash of its text) and ``Last-Modified`` (when its members last changed); a poller sending
``If-None-Match`` or ``If-Modified-Since`` gets ``304 Not Modified``. Every request needs
the token: ``Authorization: Bearer <token>`` (``auth: bearer``) or HTTP basic with
``username`` and the token as password (``auth: basic``); without it, 401.

Until the API listener serves them, the driver runs a small HTTP server of its own on
``listen`` (loopback in tests). The lists live in memory: after a restart they start
empty and the first plan fills them (a poller meanwhile gets the last list it cached,
since the server answers 503 until the first apply).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Sequence
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import SecretStr

from vmfabric.config.groups import EdlFirewall
from vmfabric.core.errors import TransientError
from vmfabric.targets.addrset.base import MemberChange, State, apply_to_state, split_family
from vmfabric.targets.base import Capabilities

PREFIX = "/edl/"


class _List:
    __slots__ = ("etag", "modified", "text")

    def __init__(self, members: frozenset[str], modified: float) -> None:
        v4, v6 = split_family(members)
        self.text = "".join(f"{m}\n" for m in (*v4, *v6)).encode()
        self.etag = '"' + hashlib.sha256(self.text).hexdigest()[:32] + '"'
        self.modified = int(modified)


class EdlDriver:
    capabilities = Capabilities(atomic=True, origin="target", notes="lists served from memory")

    def __init__(self, config: EdlFirewall, token: SecretStr | None, clock: Any = None) -> None:
        import time

        self.config = config
        self._token = token
        self._clock = clock or time.time
        self._lists: dict[str, _List] = {}
        self._state: dict[str, frozenset[str]] = {}
        self._ready = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    def connect(self) -> None:
        if self._server is not None:
            return
        host, _, port = self.config.listen.rpartition(":")
        try:
            server = ThreadingHTTPServer((host.strip("[]"), int(port)), _handler(self))
        except OSError as exc:
            raise TransientError(
                f"{self.config.name}: cannot listen on {self.config.listen}: {exc.strerror}"
            ) from None
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, daemon=True, name=f"edl-{self.config.name}"
        ).start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def read(self) -> State:
        with self._lock:
            return dict(self._state)

    def apply(self, changes: Sequence[MemberChange]) -> State:
        with self._lock:
            after = apply_to_state(self._state, changes)
            now = self._clock()
            for group, members in after.items():
                frozen = frozenset(members)
                if frozen != self._state.get(group) or group not in self._lists:
                    self._lists[group] = _List(frozen, now)
            self._state = {g: frozenset(m) for g, m in after.items()}
            self._ready = True
            return dict(self._state)

    # ---- serving ---------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        if self.config.auth == "none":
            return True
        if not header or self._token is None:
            return False
        secret = self._token.get_secret_value()
        scheme, _, value = header.partition(" ")
        if self.config.auth == "bearer":
            return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), secret)
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user, self.config.username)
        return hmac.compare_digest(password, secret) and ok_user

    def lookup(self, path: str) -> tuple[int, _List | None]:
        name = path.partition("?")[0]
        if not name.startswith(PREFIX) or not name.endswith(".txt"):
            return 404, None
        with self._lock:
            if not self._ready:
                return 503, None
            found = self._lists.get(name[len(PREFIX) : -len(".txt")])
        return (200, found) if found is not None else (404, None)


def _not_modified(headers: Any, item: _List) -> bool:
    tags = headers.get("If-None-Match")
    if tags is not None:
        return item.etag in [t.strip() for t in tags.split(",")] or tags.strip() == "*"
    since = headers.get("If-Modified-Since")
    if since:
        try:
            return item.modified <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _handler(edl: EdlDriver) -> Any:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not edl.authorized(self.headers.get("Authorization")):
                self.send_response(401)
                realm = 'Basic realm="vmfabric"' if edl.config.auth == "basic" else "Bearer"
                self.send_header("WWW-Authenticate", realm)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, item = edl.lookup(self.path)
            if item is None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            fresh = _not_modified(self.headers, item)
            self.send_response(304 if fresh else 200)
            self.send_header("ETag", item.etag)
            self.send_header("Last-Modified", formatdate(item.modified, usegmt=True))
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Length", "0" if fresh else str(len(item.text)))
            self.end_headers()
            if not fresh:
                self.wfile.write(item.text)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
