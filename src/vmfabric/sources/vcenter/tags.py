"""vSphere tags of VMs, through the vSphere Automation REST API (``/rest/com/vmware/cis``).

Tags live outside the SOAP API: no PropertyCollector property and no event tells that a
tag was attached or detached. The tag feed therefore reads them on a timer
(``tag_refresh``, and once before the session's first snapshot): one call for the tag ids,
one per tag and category it has not seen (names are cached until the next full read), and
one ``list-attached-objects-on-tags`` for every attachment. A VM's tags are
``"category:tag"`` strings. A server without the tagging API (an ESXi host, or a user
without the right to it) gives no tags, with one log line, and is asked again at the next
refresh.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import queue
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from vmfabric.core.errors import TransientError
from vmfabric.sources.addresses import normalize_tags
from vmfabric.sources.vcenter.feeds import FeedItem

log = logging.getLogger(__name__)

API = "/rest/com/vmware/cis"
SESSION_HEADER = "vmware-api-session-id"
VmTags = dict[str, tuple[str, ...]]


class TaggingUnavailableError(TransientError):
    """The server has no tagging API for this user (404, 403 or 401 after a login)."""


class TagClient:
    """A small client of the tagging API: ``read`` returns VM moref -> tags."""

    def __init__(self, url: str, username: str, password: Callable[[], SecretStr],
                 context: ssl.SSLContext | None, timeout: float) -> None:  # fmt: skip
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.netloc = parts.netloc
        self.username = username
        self.password = password
        self.context = context
        self.timeout = timeout
        self.token = ""
        self.names: dict[str, str] = {}  # tag or category id -> name
        self.categories: dict[str, str] = {}  # tag id -> category id

    def forget_names(self) -> None:
        """Re-read tag and category names at the next ``read`` (renames are seen then)."""
        self.names.clear()
        self.categories.clear()

    def read(self) -> VmTags:
        ids = [str(i) for i in self._call("GET", "/tagging/tag") or ()]
        for tag_id in ids:
            if tag_id not in self.categories:
                tag = self._call("GET", f"/tagging/tag/id:{quote(tag_id, safe='')}") or {}
                self.names[tag_id] = str(tag.get("name", tag_id))
                self.categories[tag_id] = str(tag.get("category_id", ""))
        for cat_id in set(self.categories.values()) - self.names.keys():
            cat = self._call("GET", f"/tagging/category/id:{quote(cat_id, safe='')}") or {}
            self.names[cat_id] = str(cat.get("name", cat_id))
        attached = self._call(
            "POST",
            "/tagging/tag-association?~action=list-attached-objects-on-tags",
            {"tag_ids": ids},
        )
        return self._vm_tags(attached or ())

    def _vm_tags(self, attached: Any) -> VmTags:
        out: dict[str, list[str]] = {}
        for entry in attached:
            tag_id = str(entry.get("tag_id", ""))
            category = self.names.get(self.categories.get(tag_id, ""), "")
            label = f"{category}:{self.names.get(tag_id, tag_id)}"
            for obj in entry.get("object_ids") or ():
                if obj.get("type") == "VirtualMachine":
                    out.setdefault(str(obj.get("id")), []).append(label)
        return {vm: normalize_tags(tags) for vm, tags in out.items()}

    # -- HTTP

    def _connection(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.netloc, timeout=self.timeout,
                                               context=self.context)  # fmt: skip
        return http.client.HTTPConnection(self.netloc, timeout=self.timeout)

    def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        conn = self._connection()
        try:
            data = json.dumps(body) if body is not None else None
            conn.request(method, API + path, data, {"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {}
        return resp.status, decoded.get("value") if isinstance(decoded, dict) else decoded

    def _login(self) -> None:
        secret = f"{self.username}:{self.password().get_secret_value()}"
        auth = "Basic " + base64.b64encode(secret.encode()).decode()
        status, value = self._request("POST", "/session", None, {"Authorization": auth})
        if status in (401, 403, 404) or not isinstance(value, str):
            raise TaggingUnavailableError(f"tagging API login answered HTTP {status}")
        self.token = value

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in (1, 2):
            if not self.token:
                self._login()
            status, value = self._request(method, path, body, {SESSION_HEADER: self.token})
            if status == 401 and attempt == 1:
                self.token = ""  # the session expired: log in again once
                continue
            if status in (401, 403, 404):
                raise TaggingUnavailableError(f"tagging API answered HTTP {status} for {path}")
            if status >= 300:
                raise TransientError(f"tagging API answered HTTP {status} for {path}")
            return value
        return None


class TagFeed:
    """Reads tags every ``refresh`` seconds in a thread and puts ``FeedItem("tags",
    payload=...)`` on the session queue: the VM tags, or None when they could not be read
    (the session keeps the last ones it had)."""

    def __init__(self, client: TagClient, refresh: float, out: queue.Queue[FeedItem],
                 session: str) -> None:  # fmt: skip
        self.client = client
        self.refresh = refresh
        self.out = out
        self.session = session
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.last_error = ""
        self.thread = threading.Thread(target=self._run, name=f"vcenter-{session}-tags",
                                       daemon=True)  # fmt: skip

    def start(self) -> TagFeed:
        self.thread.start()
        return self

    def read_again(self) -> None:
        """A full read: forget names and read now."""
        self.client.forget_names()
        self.wake.set()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.out.put(FeedItem("tags", payload=self._read()))
            self.wake.wait(self.refresh)
            self.wake.clear()

    def _read(self) -> VmTags | None:
        try:
            tags = self.client.read()
        except (TransientError, OSError, http.client.HTTPException, ValueError) as exc:
            text = " ".join(str(exc).split()) or type(exc).__name__
            if text != self.last_error:
                log.warning("session %s: VM tags not read: %s", self.session, text)
            self.last_error = text
            return None
        self.last_error = ""
        return tags

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        self.thread.join(timeout=5)
