"""Inventory feeds: one PropertyCollector, one filter, one long-poll thread per object kind.

Why one collector per kind. vcsim (govmomi 0.24) answers a collector's ``WaitForUpdatesEx``
by re-collecting every filter of that collector once per filter and per queued object
change, so the cost of an update grows with the square of the filters on a collector and
with every property path of every object they cover. Wave 1's single collector with five
filters took 1.4 s to deliver a vMotion at 10,000 VMs, against 0.2 s for a bare listener
with one filter. With one filter per collector each kind pays only for itself; and the VMs
are split in three feeds: ``vm`` (host and power state, what a vMotion or power change
needs), ``vm-more`` (name, networks, guest OS) and ``vm-extra`` (folder, custom attributes,
guest NICs), so that the feed a vMotion travels on costs two paths per VM. The price: a
VM's port groups ride on ``vm-more``, so a NIC moved to another port group reaches
autovlan when that heavier feed answers (on a busy vcsim with 10,000 VMs, up to seconds; a
vMotion or a power change, the ``vm`` feed's fraction of that). The rest of a VM is split
in two feeds, not one, because vcsim builds each answer in one goroutine, in memory, before
it writes a byte: two feeds' initial answers (7.5 and 8 MB at 10,000 VMs) are built on two
cores, and the first is read while the second is still built (a cold start's critical
path). (A filter spanning several kinds, or
whose property type differs from the objects' type, can crash vcsim when an object is
changed and deleted within one tick: one kind per filter.) vCenter itself keeps its filters
incrementally; there the split costs a few more idle long polls and nothing else.

Threads. Each feed reads its initial content (``WaitForUpdatesEx`` from version "") and
then long-polls, on an HTTP connection of its own (``wire.WaitCall``), putting every
answer on the session's queue as a ``FeedItem``; the session thread alone applies them,
in arrival order. A failing call ends the feed with a ``FeedItem`` carrying the error; the
session then reconnects. ``close`` shuts the feed's socket and destroys its collector.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from vmfabric.sources.vcenter.wire import Updates, WaitCall, wait_all

log = logging.getLogger(__name__)
vim: Any = _vim
vmodl: Any = _vmodl

WAIT_SECONDS = 1  # longest WaitForUpdatesEx wait: a feed notices ``close`` within this
# How long the heavier VM feeds' (vm-more, vm-extra) answers may take. Every other call
# keeps the session's 30 s socket timeout, the light vm feed included, so a dead server is
# still noticed within 30 s; but vcsim, busy, can take longer than that to collect three
# paths of every VM for each change, and dropping the session for it (a reconnect and a
# full re-read, which busies it more) delayed vMotions that the vm feed had already
# delivered (measured at 10,000 VMs).
SLOW_FEED_TIMEOUT = 180.0
MAX_OBJECT_UPDATES = 1000  # per WaitForUpdatesEx answer; larger reads arrive truncated
CONNECTION_ERRORS = (OSError, http.client.HTTPException)

# A VM's port groups come from ``network`` (its networks and distributed port groups).
# ``config.hardware.device`` would name them per NIC, but parsing every VM's device list
# is 93% of a 10,000-VM inventory read, for no information autovlan uses.
VM_PATHS = ("runtime.host", "runtime.powerState")
VM_MORE_PATHS = ("name", "network", "config.guestId")
VM_EXTRA_PATHS = ("parent", "customValue", "guest.net")
# A host's network configuration rides on a feed of its own (``host-net``, 2 MB at 250
# hosts): the ``host`` feed's small answer is in early, and with it what the hint queries
# need (the network system and the connection state), so that the hints are asked while
# the VM answers are still being built, off a cold start's critical path.
HOST_PATHS = ("name", "parent", "runtime.connectionState", "configManager.networkSystem")
HOST_NET_PATHS = (
    "config.network.pnic",
    "config.network.vswitch",
    "config.network.portgroup",
    "config.network.proxySwitch",
)
DVPG_PATHS = ("name", "key", "config.defaultPortConfig", "config.distributedVirtualSwitch")
DVS_PATHS = ("uuid", "config.uplinkPortgroup")


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed: the vim type (dotted below ``vim``), its property paths, which reader
    (``reader``: "fast", "tree" or "pyvmomi", see ``wire``), and where its objects come from: a
    ContainerView of the kind from the root folder, or the one ``content`` attribute
    named by ``single`` (the CustomFieldsManager)."""

    name: str
    kind: str
    paths: tuple[str, ...]
    reader: str = "pyvmomi"
    single: str = ""
    timeout: float | None = None  # seconds an answer may take; None: the session's 30 s


FEEDS: tuple[FeedSpec, ...] = (
    FeedSpec("vm", "VirtualMachine", VM_PATHS, reader="fast"),
    FeedSpec("vm-more", "VirtualMachine", VM_MORE_PATHS, reader="fast", timeout=SLOW_FEED_TIMEOUT),
    FeedSpec("vm-extra", "VirtualMachine", VM_EXTRA_PATHS, "fast", timeout=SLOW_FEED_TIMEOUT),
    FeedSpec("host", "HostSystem", HOST_PATHS, reader="fast"),
    FeedSpec("host-net", "HostSystem", HOST_NET_PATHS, reader="tree"),
    FeedSpec("network", "Network", ("name",), reader="fast"),
    FeedSpec("dvpg", "dvs.DistributedVirtualPortgroup", DVPG_PATHS),
    FeedSpec("dvs", "DistributedVirtualSwitch", DVS_PATHS, reader="fast"),
    FeedSpec("folder", "Folder", ("name", "parent"), reader="fast"),
    FeedSpec("datacenter", "Datacenter", ("name", "parent"), reader="fast"),
    FeedSpec("cluster", "ClusterComputeResource", ("name",), reader="fast"),
    FeedSpec("fields", "CustomFieldsManager", ("field",), single="customFieldsManager"),
)


@dataclass(frozen=True, slots=True)
class FeedItem:
    """A feed's message to the session thread: answers (the ``initial`` read, or one long
    poll), tags (``payload``, from the tag feed) or the error that ended the feed."""

    feed: str
    updates: tuple[Updates, ...] = ()
    initial: bool = False
    error: BaseException | None = None
    payload: Any = None


def vim_type(dotted: str) -> Any:
    kind: Any = vim
    for part in dotted.split("."):
        kind = getattr(kind, part)
    return kind


def filter_spec(obj: Any, kind: Any, paths: tuple[str, ...], view: bool = True) -> Any:
    """A FilterSpec reading ``paths`` of every ``kind`` object in a ContainerView (or of
    ``obj`` itself when ``view`` is False)."""
    collector = vmodl.query.PropertyCollector
    if view:
        traverse = collector.TraversalSpec(
            name="view", path="view", skip=False, type=vim.view.ContainerView
        )
        objects = collector.ObjectSpec(obj=obj, skip=True, selectSet=[traverse])
    else:
        objects = collector.ObjectSpec(obj=obj, skip=False)
    return collector.FilterSpec(
        objectSet=[objects], propSet=[collector.PropertySpec(type=kind, pathSet=list(paths))]
    )


class Feed:
    """One kind's collector, filter and long-poll thread (see the module docstring). The
    thread creates its own collector, ContainerView and filter, so that every feed of a
    full read is set up in parallel."""

    def __init__(self, spec: FeedSpec, content: Any, stub: Any, out: queue.Queue[FeedItem],
                 session: str) -> None:  # fmt: skip
        self.spec = spec
        self.content = content
        self.stub = stub
        self.out = out
        self.collector: Any = None
        self.view: Any = None
        self.call: WaitCall | None = None
        self.closing = False
        self.thread = threading.Thread(
            target=self._run, name=f"vcenter-{session}-{spec.name}", daemon=True
        )

    def start(self) -> Feed:
        self.thread.start()
        return self

    def _filter_spec(self) -> Any:
        kind = vim_type(self.spec.kind)
        if self.spec.single:
            return filter_spec(getattr(self.content, self.spec.single), kind, self.spec.paths,
                               view=False)  # fmt: skip
        self.view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [kind], True
        )
        return filter_spec(self.view, kind, self.spec.paths)

    def _run(self) -> None:
        try:
            self.collector = self.content.propertyCollector.CreatePropertyCollector()
            self.collector.CreateFilter(self._filter_spec(), partialUpdates=False)
            self.call = call = WaitCall(
                self.stub, self.collector, self.spec.reader, self.spec.timeout
            )
            if self.closing:
                return
            initial = tuple(wait_all(call, "", 0, MAX_OBJECT_UPDATES))
            version = initial[-1].version if initial else ""
            self.out.put(FeedItem(self.spec.name, initial, initial=True))
            while not self.closing:
                for updates in wait_all(call, version, WAIT_SECONDS, MAX_OBJECT_UPDATES):
                    version = updates.version
                    self.out.put(FeedItem(self.spec.name, (updates,)))
        except Exception as exc:  # every failure ends the feed: the session decides
            if not self.closing:
                self.out.put(FeedItem(self.spec.name, error=exc))

    def stop(self) -> None:
        """End the long poll at once (shuts the feed's socket); no server call."""
        self.closing = True
        if self.call is not None:
            self.call.close()

    def close(self) -> None:
        """``stop``, then destroy the feed's collector and view on the server."""
        self.stop()
        self.thread.join(timeout=5)
        for name, obj in (("DestroyPropertyCollector", self.collector),
                          ("DestroyView", self.view)):  # fmt: skip
            if obj is None:
                continue
            try:
                getattr(obj, name)()
            except (vmodl.MethodFault, *CONNECTION_ERRORS) as exc:
                log.debug("feed %s: %s failed: %s", self.spec.name, name, exc)
