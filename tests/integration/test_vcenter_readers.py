"""The source's own readers of ``WaitForUpdatesEx`` answers against pyVmomi's reading of the
same bytes, on answers written by vcsim (no mocks): every feed the fast reader reads."""

from __future__ import annotations

from typing import Any

import pytest

from support.vcsim_fixtures import Lab
from vmfabric.sources.vcenter.feeds import FEEDS, FeedSpec, filter_spec, vim_type
from vmfabric.sources.vcenter.wire import (
    Change,
    GuestNic,
    ObjectUpdate,
    Updates,
    WaitCall,
    parse_fast,
    parse_tree,
)

pytestmark = pytest.mark.integration

FAST_FEEDS = [spec for spec in FEEDS if spec.reader == "fast"]


def _plain(value: Any) -> Any:
    """A pyVmomi value as the fast reader gives it: a reference is its moref id, an array
    a tuple, a custom value (key, value), a guest NIC a ``GuestNic``."""
    if value is None or isinstance(value, (str, bool, int)):
        return None if value is None else str(value)
    if hasattr(value, "_moId"):
        return str(value._moId)
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "macAddress"):
        return GuestNic(str(value.macAddress or ""), tuple(map(str, value.ipAddress or ())))
    if hasattr(value, "key") and hasattr(value, "value"):
        return (int(value.key), str(value.value))
    raise AssertionError(f"no plain form for {type(value).__name__}")


def _as_plain(updates: Updates | None) -> Updates | None:
    if updates is None:
        return None
    objects = tuple(
        ObjectUpdate(o.kind, o.type, o.moref,
                     tuple(Change(c.name, c.op, _plain(c.val)) for c in o.changes))
        for o in updates.objects
    )  # fmt: skip
    return Updates(updates.version, updates.truncated, objects)


def _initial_answer(lab: Lab, spec: FeedSpec) -> tuple[bytes, WaitCall]:
    si = lab.control._si
    content = si.RetrieveContent()
    kind = vim_type(spec.kind)
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    collector = content.propertyCollector.CreatePropertyCollector()
    collector.CreateFilter(filter_spec(view, kind, spec.paths), partialUpdates=False)
    call = WaitCall(si._stub, collector, "fast")
    try:
        return call.fetch("", 0, 1000), call
    finally:
        call.close()


@pytest.fixture
def varied_lab(vcsim_lab: Lab) -> Lab:
    """VMs whose answers carry every kind of value: guest addresses, a custom attribute
    with characters XML escapes, a folder of their own, a VM powered off."""
    ctl = vcsim_lab.control
    ctl.create_vm("db & <cache>", "hv2", "trunk", power_on=False)
    ctl.set_guest_ip("web-01", "10.0.110.11")
    ctl.set_custom_value("web-01", "owner", 'team "a" & <b>')
    ctl.move_to_folder("std-01", "prod")
    return vcsim_lab


@pytest.mark.parametrize("spec", FAST_FEEDS, ids=[s.name for s in FAST_FEEDS])
def test_the_fast_reader_reads_vcsims_answers_as_pyvmomi_does(
    varied_lab: Lab, spec: FeedSpec
) -> None:
    body, call = _initial_answer(varied_lab, spec)
    fast = parse_fast(body)
    assert fast is not None and fast.objects
    assert fast == _as_plain(call.parse_pyvmomi(body))
    assert fast == parse_tree(body)


def test_every_vm_value_the_source_reads_is_in_the_comparison(varied_lab: Lab) -> None:
    """The comparison above is not vacuous: the VM feeds' answers carry the values set."""
    values: dict[str, set[Any]] = {}
    for spec in FAST_FEEDS:
        if spec.kind == "VirtualMachine":
            fast = parse_fast(_initial_answer(varied_lab, spec)[0])
            assert fast is not None
            for obj in fast.objects:
                for change in obj.changes:
                    values.setdefault(change.name, set()).add(change.val)
    assert "db & <cache>" in values["name"]
    assert "poweredOff" in values["runtime.powerState"]
    assert any(any(n.ips == ("10.0.110.11",) for n in nics) for nics in values["guest.net"])
    assert any(v and v[0][1] == 'team "a" & <b>' for v in values["customValue"])
    assert len(values["parent"]) == 2  # the VM folder and "prod"
