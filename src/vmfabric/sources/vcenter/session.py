"""The vCenter session: connect, read everything, then turn feed answers into changes.

Lifecycle: connecting -> connected -> (Snapshot, changes) -> disconnected (one-line reason)
-> reconnect with ``Backoff`` capped at 60 s. The password never leaves memory.

Full read (at connect and every ``audit_interval``): every feed (``feeds.FEEDS``) starts
and reads its kind at once, in parallel; hints are queried as soon as the hosts are in,
while VMs are still arriving; the ``Snapshot`` follows once every feed (and, at the first
read, the tags) has answered. Afterwards each feed answer is applied in arrival order and
the rebuilt model objects are diffed against what was last emitted: ``VmUpsert``,
``HostUpsert``, ``PortGroupUpsert``... An audit recreates the feeds and emits a new
``Snapshot`` (the runtime diffs it).

Uplink discovery: ``QueryNetworkHint`` once per host (never per NIC; read by ``hints``)
at every connect, when a host (re)connects and every ``hint_refresh``; a ``HostUpsert``
follows only when a neighbour changed. Carriage keys: a distributed port group is carried by
``dvs:<dvs uuid>``, a standard one by ``pg:<port group name>``.
"""

from __future__ import annotations

import gc
import logging
import queue
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyVim import connect as _connect
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from vmfabric.config import SessionConfig, VcenterSession, resolve_secret
from vmfabric.core.errors import ConfigError, TransientError, VmfabricError
from vmfabric.core.gcpause import gc_paused
from vmfabric.core.model import SessionStatus, Snapshot, SourceEvent
from vmfabric.sources.base import SOURCES, Backoff, Emit
from vmfabric.sources.vcenter.feeds import (
    CONNECTION_ERRORS,
    FEEDS,
    WAIT_SECONDS,
    Feed,
    FeedItem,
)
from vmfabric.sources.vcenter.hints import query_network_hint
from vmfabric.sources.vcenter.inventory import (
    Emitted,
    Inventory,
    Touched,
    apply_update,
    in_order,
)
from vmfabric.sources.vcenter.mapping import moref, neighbors_from_hints
from vmfabric.sources.vcenter.tags import TagClient, TagFeed

log = logging.getLogger(__name__)

vim: Any = _vim
vmodl: Any = _vmodl
SmartConnect: Any = _connect.SmartConnect
Disconnect: Any = _connect.Disconnect

# A slow answer is treated as a lost server: reconnect and re-read. Measured in a storm of
# 1,000 vMotions on vcsim: quiet after 40-60 s with 30 s, after 123-137 s with 120 s.
SOCKET_TIMEOUT = 30.0
HINT_THREADS = 8  # QueryNetworkHint calls in flight at a full read (one per host)
# pyVmomi's connection pool: one connection per hint thread and a few for the session
# thread, so that no call opens (and, with https, handshakes) a connection of its own. With
# pyVmomi's default of 5, 250 hosts' hints opened about a hundred connections and took
# 0.73-0.79 s while a VM answer was parsed, 0.43-0.48 s with the pool sized (16 threads
# did no better in the cold start benchmark).
POOL_SIZE = HINT_THREADS + 4


class LoginError(TransientError):
    """The server refused the credentials (retried: they may be fixed meanwhile)."""


def describe(exc: BaseException) -> str:
    """A one-line reason for a lost or refused connection."""
    if isinstance(exc, vmodl.MethodFault):
        text = str(getattr(exc, "msg", "") or type(exc).__name__.rsplit(".", 1)[-1])
    elif isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate verify failed: {exc.verify_message}"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class VcenterSource:
    """A vCenter session: ``run`` reports its inventory until ``stop`` is set.

    Counters for tests and benchmarks: ``full_reads`` (full inventory retrievals),
    ``hint_queries`` (QueryNetworkHint calls), ``updates`` (feed answers after the full
    read), ``host_rereads`` and ``last_full_read_seconds``.
    """

    def __init__(self, config: VcenterSession, base_dir: Path) -> None:
        self.name = config.name
        self.config = config
        self.base_dir = base_dir
        self.full_reads = 0
        self.host_rereads = 0  # VMs announced without a host whose host was read directly
        self.hint_queries = 0
        self.updates = 0
        self.last_full_read_seconds = 0.0
        self.backoff = Backoff(first=1.0, cap=60.0)

    def __repr__(self) -> str:
        return f"VcenterSource(name={self.name!r}, url={self.config.url!r})"

    # -- lifecycle

    def run(self, emit: Emit, stop: threading.Event) -> None:
        while not stop.is_set():
            emit(SessionStatus(self.name, "connecting"))
            try:
                self._session(emit, stop)
            except (VmfabricError, vmodl.MethodFault, *CONNECTION_ERRORS) as exc:
                self._lost(emit, exc)
            except Exception as exc:  # a bug must not end the session thread
                log.exception("session %s: unexpected error", self.name)
                self._lost(emit, exc)
            else:
                return
            stop.wait(self.backoff.next())

    def _lost(self, emit: Emit, exc: BaseException) -> None:
        reason = describe(exc)
        if not isinstance(exc, (LoginError, ConfigError)):
            reason = f"{self.config.url}: {reason}"
        reason = self._scrub(reason)
        log.warning("session %s disconnected: %s", self.name, reason)
        bad_input = isinstance(exc, ConfigError)  # e.g. a secret file others can read
        emit(SessionStatus(self.name, "disconnected", error=reason, bad_input=bad_input))

    def _scrub(self, text: str) -> str:
        """Belt and braces: never let the password reach an event or a log."""
        try:
            secret = resolve_secret(self.config.password, self.base_dir).get_secret_value()
        except ConfigError:
            return text
        return text.replace(secret, "***") if secret else text

    def _session(self, emit: Emit, stop: threading.Event) -> None:
        context = self._ssl_context() if urlsplit(self.config.url).scheme == "https" else None
        si = self._connect(context)
        try:
            content = si.RetrieveContent()
            about = content.about
            emit(
                SessionStatus(
                    self.name,
                    "connected",
                    version=f"{about.fullName} (API {about.apiVersion})",
                    warnings=self._warnings(),
                )
            )
            watch = _Watch(self, si, content, emit, self._tag_client(context))
            watch.run(stop)
        finally:
            self._logout(si)

    def _warnings(self) -> tuple[str, ...]:
        if urlsplit(self.config.url).scheme == "http":
            return ("plain http: the session is not encrypted",)
        if not self.config.verify_tls:
            return ("TLS certificate verification is off (verify_tls: false)",)
        return ()

    def _connect(self, context: ssl.SSLContext | None) -> Any:
        parts = urlsplit(self.config.url)
        password = resolve_secret(self.config.password, self.base_dir)
        https = parts.scheme == "https"
        kwargs: dict[str, Any] = {
            "protocol": parts.scheme,
            "host": parts.hostname,
            "port": parts.port or (443 if https else 80),
            "path": parts.path or "/sdk",
            "user": self.config.username,
            "httpConnectionTimeout": SOCKET_TIMEOUT,
        }
        if context is not None:
            kwargs["sslContext"] = context
        try:
            si = SmartConnect(pwd=password.get_secret_value(), **kwargs)
        except vim.fault.InvalidLogin:
            raise LoginError(
                f"login failed for user {self.config.username} at {self.config.url}"
            ) from None
        si._stub.poolSize = POOL_SIZE  # SmartConnect does not pass it on
        return si

    def _tag_client(self, context: ssl.SSLContext | None) -> TagClient | None:
        if not self.config.tag_refresh:
            return None
        return TagClient(
            self.config.url,
            self.config.username,
            lambda: resolve_secret(self.config.password, self.base_dir),
            context,
            SOCKET_TIMEOUT,
        )

    def _ssl_context(self) -> ssl.SSLContext:
        if not self.config.verify_tls:
            log.warning(
                "session %s: TLS certificate verification is off for %s",
                self.name,
                self.config.url,
            )
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        ca = self.config.ca_file
        if ca is not None and not ca.is_absolute():
            ca = self.base_dir / ca
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    def _logout(self, si: Any) -> None:
        try:
            Disconnect(si)
        except Exception as exc:  # the server may be gone: nothing to log out of
            log.debug("session %s: logout failed: %s", self.name, describe(exc))


class _Watch:
    """One connected session: feeds, the full read, then changes, hint refreshes and audits."""

    def __init__(self, source: VcenterSource, si: Any, content: Any, emit: Emit,
                 tags: TagClient | None) -> None:  # fmt: skip
        self.source = source
        self.stub = si._stub
        self.emit = emit
        self.queue: queue.Queue[FeedItem] = queue.Queue()
        self.content = content
        self.feeds: list[Feed] = []
        self.tag_feed = (
            TagFeed(tags, source.config.tag_refresh, self.queue, source.name)
            if tags is not None
            else None
        )
        self.tags_read = False
        self.inventory = Inventory(source.name)
        self.emitted = Emitted()

    def run(self, stop: threading.Event) -> None:
        healthy = False
        try:
            if self.tag_feed is not None:
                self.tag_feed.start()
            if not self.full_read(stop, query_hints=True):
                return
            self.source.backoff.reset()  # only a session that got as far as a snapshot counts
            self._loop(stop)
            healthy = True
        finally:
            self.close(polite=healthy or stop.is_set())

    def _loop(self, stop: threading.Event) -> None:
        config = self.source.config
        now = time.monotonic()
        next_audit, next_hints = now + config.audit_interval, now + config.hint_refresh
        while not stop.is_set():
            self.poll(max(0.0, min(WAIT_SECONDS, next_audit - now, next_hints - now)))
            now = time.monotonic()
            if now >= next_hints:
                self.refresh_hints(list(self.inventory.hosts))
                next_hints = now + config.hint_refresh
            if now >= next_audit:
                if not self.full_read(stop, query_hints=False):
                    return
                next_audit = now + config.audit_interval

    def close(self, polite: bool) -> None:
        """End the feeds; ``polite`` also tells the server (skipped when it is gone, so a
        frozen server does not hold the session for a socket timeout per feed)."""
        self._close_feeds(polite)
        if self.tag_feed is not None:
            self.tag_feed.close()

    def _close_feeds(self, polite: bool) -> None:
        for feed in self.feeds:
            feed.stop()  # all at once, then the server calls
        for feed in self.feeds:
            if polite:
                feed.close()
        self.feeds = []

    # -- full read

    def full_read(self, stop: threading.Event, query_hints: bool) -> bool:
        """(Re)start every feed; emit a Snapshot once all have read their kind. False when
        ``stop`` was set first.

        The cyclic collector is paused meanwhile: the feeds' readers and ``_absorb`` build
        hundreds of thousands of containers and no cycles, and the collector rescanned the
        growing inventory again and again (a fifth of the parse time at 10,000 VMs). What
        the read built is then frozen (``gc.freeze``) before the collector resumes: else
        its first collection scanned all of it once more, 0.17 s between the read and the
        runtime's intake at 10,000 VMs. The runtime freezes the heap itself on a Snapshot
        and thaws it once the targets are at rest (``core.gcpause.HeapFreeze``), which
        returns these objects to the collector too."""
        started = time.monotonic()
        with gc_paused():
            snap = self._read_all(stop, query_hints)
            if snap is not None:
                gc.freeze()
        if snap is None:
            return False
        self.source.full_reads += 1
        self.source.last_full_read_seconds = time.monotonic() - started
        self.emitted = Emitted.of(snap)
        self.emit(snap)
        return True

    def _read_all(self, stop: threading.Event, query_hints: bool) -> Snapshot | None:
        """Every feed's first answer (and the hints) absorbed, as a Snapshot; None when
        ``stop`` was set first.

        The hints are asked in a thread of their own as soon as the hosts are in, so that
        the VM answers are absorbed while they are on the way (on the session thread, they
        held up every answer behind them); the Snapshot waits for them."""
        self._close_feeds(polite=True)
        self._drop_stale()
        old = self.inventory
        self.inventory = Inventory(old.session, neighbors=old.neighbors, tags=old.tags)
        self.feeds = [
            Feed(s, self.content, self.stub, self.queue, old.session).start() for s in FEEDS
        ]
        if self.tag_feed is not None and self.source.full_reads:
            self.tag_feed.read_again()
        pending = {f.spec.name for f in self.feeds}
        if self.tag_feed is not None and not self.tags_read:
            pending.add("tags")
        if query_hints:
            self.inventory.neighbors = {}
        hinter = ThreadPoolExecutor(1, thread_name_prefix="vcenter-hint-reader")
        try:
            hints: Future[None] | None = None
            while pending:
                if stop.is_set():
                    return None
                try:
                    item = self.queue.get(timeout=WAIT_SECONDS)
                except queue.Empty:
                    continue
                self._absorb(item, Touched())
                if item.initial or item.feed == "tags":
                    pending.discard(item.feed)
                if query_hints and hints is None and "host" not in pending:
                    hints = hinter.submit(self.query_hints, list(self.inventory.hosts))
            if hints is not None and not _wait(hints, stop):
                return None
        finally:
            hinter.shutdown(wait=False)  # stopped: a hint call in flight ends on its own
        self._read_hosts(h for h, p in self.inventory.vms.items() if p.get("runtime.host") is None)
        return self.inventory.snapshot()

    def _drop_stale(self) -> None:
        """Forget queued answers of closed feeds; keep tags (they are not per feed)."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item.feed == "tags":
                self._absorb(item, Touched())

    def _absorb(self, item: FeedItem, touched: Touched) -> None:
        """Apply one feed answer to the inventory, noting what it touched."""
        if item.error is not None:
            raise item.error
        if item.feed == "tags":
            self._absorb_tags(item.payload, touched)
            return
        inv = self.inventory
        table = inv.table(item.feed)
        for updates in item.updates:
            for update in in_order(updates.objects):
                touched.note(item.feed, update, inv)
                apply_update(table, update)

    def _absorb_tags(self, tags: dict[str, tuple[str, ...]] | None, touched: Touched) -> None:
        self.tags_read = True
        if tags is None:
            return  # not readable now: keep the last known tags
        old = self.inventory.tags
        touched.vms.update(vm for vm in old.keys() | tags.keys() if old.get(vm) != tags.get(vm))
        self.inventory.tags = tags

    def _read_hosts(self, refs: Any) -> None:
        """VMs announced without their host (vcsim does this for some new VMs and may
        never send the host later; vCenter can while a VM is being created): read it."""
        for ref in list(refs):
            try:
                host = vim.VirtualMachine(ref, self.stub).runtime.host
            except vmodl.MethodFault as exc:
                log.info("session %s: VM %s has no host yet: %s", self.source.name, ref,
                         describe(exc))  # fmt: skip
                continue
            if host is not None and ref in self.inventory.vms:
                self.inventory.vms[ref]["runtime.host"] = moref(host)
                self.source.host_rereads += 1

    # -- changes

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` for feed answers; apply all that are queued; emit what
        changed."""
        try:
            items = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        touched = Touched()
        for item in items:
            self._absorb(item, touched)
            if item.feed != "tags":
                self.source.updates += 1
        vms = self.inventory.vms
        self._read_hosts(m for m in touched.vms if m in vms and vms[m].get("runtime.host") is None)
        if touched.reconnected:
            self.query_hints(sorted(touched.reconnected))
        self._emit_changes(touched)

    def _emit_changes(self, touched: Touched) -> None:
        inv = self.inventory
        events: list[SourceEvent] = []
        if touched.others:
            events += self.emitted.portgroup_changes(inv.portgroups())
            events += self.emitted.host_changes(inv.hosts_by_name())
            for gone in inv.neighbors.keys() - inv.hosts.keys():
                del inv.neighbors[gone]
        now = inv.vms_of(inv.vms if touched.others else touched.vms)
        events += self.emitted.vm_changes(now, touched.vms - now.keys())
        for event in events:
            self.emit(event)

    # -- hints

    def query_hints(self, hosts: list[str]) -> None:
        """QueryNetworkHint once per host, ``HINT_THREADS`` at a time; hosts that cannot be
        asked or do not answer keep their last neighbours."""
        asked = [(ref, system) for ref in hosts if (system := self._network_system(ref))]
        self.source.hint_queries += len(asked)
        with ThreadPoolExecutor(HINT_THREADS, thread_name_prefix="vcenter-hints") as pool:
            answers = list(pool.map(lambda pair: self._hints(*pair), asked))
        for (ref, _), hints in zip(asked, answers, strict=True):
            if hints is not None:
                self.inventory.neighbors[ref] = neighbors_from_hints(hints)

    def _network_system(self, ref: str) -> Any:
        props = self.inventory.hosts.get(ref, {})
        system = props.get("configManager.networkSystem")
        if system is None or props.get("runtime.connectionState") != "connected":
            return None
        if isinstance(system, str):  # the tree reader's moref id
            return vim.host.NetworkSystem(system, self.stub)
        return system

    def _hints(self, ref: str, system: Any) -> list[Any] | None:
        try:
            return list(query_network_hint(self.stub, system))
        except vmodl.MethodFault as exc:
            name = self.inventory.hosts.get(ref, {}).get("name", ref)
            log.info("session %s: no hints from host %s: %s", self.source.name, name,
                     describe(exc))  # fmt: skip
            return None

    def refresh_hints(self, hosts: list[str]) -> None:
        """Re-query hints; emit HostUpsert for hosts whose neighbours changed."""
        self.query_hints(hosts)
        for event in self.emitted.host_changes(self.inventory.hosts_by_name()):
            self.emit(event)


def _wait(future: Future[None], stop: threading.Event) -> bool:
    """Wait for ``future`` (its error is raised here); False when ``stop`` was set first."""
    while not stop.is_set():
        try:
            future.result(timeout=WAIT_SECONDS)
        except FutureTimeout:
            continue
        return True
    return False


def _create(config: SessionConfig, base_dir: Path) -> VcenterSource:
    if not isinstance(config, VcenterSession):
        raise ConfigError(f"session {config.name} is not of kind vcenter")
    return VcenterSource(config, base_dir)


SOURCES.register("vcenter")(_create)
