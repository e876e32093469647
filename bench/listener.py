"""Floor (a): a bare pyVmomi ``WaitForUpdatesEx`` listener, run as its own process.

``python -m bench.listener`` reads the vCenter URL and user from its arguments and the
password from ``$BENCH_VC_PASSWORD``, watches ``runtime.host`` of every VM through one
ContainerView filter (the same long poll vmfabric's source makes: maxWaitSeconds 1), and
prints ``ready`` after the initial read, then one line per change:
``<epoch seconds> <vm moref> <host moref>``. ``$BENCH_LISTENER_PATHS`` (comma-separated)
widens the property list and ``$BENCH_LISTENER_FILTERS=source`` makes it watch through wave
1's five filters on one collector instead: experiments on what vcsim's update cost depends on.
It exits when stdin closes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from pyVim import connect as _connect
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

vim: Any = _vim
vmodl: Any = _vmodl
SmartConnect: Any = _connect.SmartConnect


def connect(url: str, user: str, password: str) -> Any:
    parts = urlsplit(url)
    return SmartConnect(protocol=parts.scheme, host=parts.hostname, port=parts.port,
                        path=parts.path or "/sdk", user=user, pwd=password)  # fmt: skip


def vm_host_filter(content: Any, collector: Any, paths: list[str]) -> Any:
    pc = vmodl.query.PropertyCollector
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
        propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=paths)],
    )
    return collector.CreateFilter(spec, partialUpdates=False)


# Wave 1's vcenter source: five filters (one per kind) on one collector, kept here to show
# what that layout costs on vcsim (the source now has one collector per kind).
WAVE1_FILTERS = (
    ("VirtualMachine", ("name", "runtime.host", "runtime.powerState", "network")),
    ("HostSystem", ("name", "runtime.connectionState", "configManager.networkSystem",
                    "config.network.pnic", "config.network.vswitch", "config.network.portgroup",
                    "config.network.proxySwitch")),
    ("Network", ("name",)),
    ("dvs.DistributedVirtualPortgroup", ("name", "key", "config.defaultPortConfig",
                                         "config.distributedVirtualSwitch")),
    ("DistributedVirtualSwitch", ("uuid", "config.uplinkPortgroup")),
)  # fmt: skip


def source_filters(content: Any, collector: Any) -> None:
    """Wave 1's five filters (one per kind, each over a ContainerView) on one collector."""
    from vmfabric.sources.vcenter.feeds import filter_spec, vim_type

    for kind, paths in WAVE1_FILTERS:
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim_type(kind)], True)
        collector.CreateFilter(filter_spec(view, vim_type(kind), paths), partialUpdates=False)


def listen(url: str, user: str, password: str, stop: threading.Event) -> None:
    si = connect(url, user, password)
    content = si.RetrieveContent()
    # A collector of its own: vcsim (govmomi 0.24) keys WaitForUpdates listeners by the
    # collector's moref, and every session's default one is "propertyCollector", so a
    # second session waiting on the default collector would take vmfabric's updates away.
    pc = content.propertyCollector.CreatePropertyCollector()
    paths = os.environ.get("BENCH_LISTENER_PATHS", "runtime.host").split(",")
    if os.environ.get("BENCH_LISTENER_FILTERS") == "source":
        source_filters(content, pc)
    else:
        vm_host_filter(content, pc, paths)
    version = initial_read(pc)
    print("ready", flush=True)
    options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=1)
    while not stop.is_set():
        update = pc.WaitForUpdatesEx(version, options)
        now = time.time()
        if update is not None:
            version = update.version
            report(update, now)


def initial_read(pc: Any) -> str:
    """The first answer(s): the whole watched inventory; returns the version after it."""
    options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=0, maxObjectUpdates=1000)
    version = ""
    while True:
        update = pc.WaitForUpdatesEx(version, options)
        if update is None:
            return version
        version = str(update.version)
        if not update.truncated:
            return version


def report(update: Any, now: float) -> None:
    for fs in update.filterSet or ():
        for obj in fs.objectSet or ():
            for change in obj.changeSet or ():
                if change.name == "runtime.host" and change.val is not None:
                    print(f"{now:.6f} {obj.obj._moId} {change.val._moId}", flush=True)


def main(argv: list[str]) -> int:
    url, user = argv[0], argv[1]
    password = os.environ["BENCH_VC_PASSWORD"]
    stop = threading.Event()
    thread = threading.Thread(target=listen, args=(url, user, password, stop), daemon=True)
    thread.start()
    sys.stdin.read()  # the parent closes stdin to stop us
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
