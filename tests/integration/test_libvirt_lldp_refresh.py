"""A libvirt session re-reads its hypervisors' LLDP neighbours every ``lldp_refresh`` and
reports a changed host as one HostUpsert, without re-reading its domains."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from vmfabric.config import LibvirtSession
from vmfabric.core.model import HostUpsert, Snapshot, SourceEvent
from vmfabric.sources.libvirt import LibvirtSource

pytestmark = pytest.mark.integration
DATA = Path(__file__).parent.parent / "data" / "lldpd"
NODE = """<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
<active>2</active><mhz>2000</mhz><model>i686</model></cpu><memory>2097152</memory></node>"""


def test_changed_lldp_neighbours_arrive_as_one_host_upsert(tmp_path: Path) -> None:
    (tmp_path / "kvm1.xml").write_text(NODE)
    shutil.copy(DATA / "empty.json", tmp_path / "kvm1.json")
    config = LibvirtSession(
        name="kvm", kind="libvirt", uris={"kvm1": f"test://{tmp_path}/kvm1.xml"},
        lldp_command=f"cat {tmp_path}/{{host}}.json", lldp_refresh=0.3,
    )  # fmt: skip
    source = LibvirtSource(config, tmp_path)
    events: list[SourceEvent] = []
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(events.append, stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any(isinstance(e, Snapshot) for e in events) and time.monotonic() < deadline:
            time.sleep(0.05)
        snap = next(e for e in events if isinstance(e, Snapshot))
        assert snap.hosts[0].nics == ()
        time.sleep(1.0)  # several refreshes with nothing changed
        assert not [e for e in events if isinstance(e, HostUpsert)], "no change, no event"
        shutil.copy(DATA / "hv_lldp_and_cdp.json", tmp_path / "kvm1.json")
        deadline = time.monotonic() + 5
        while not any(isinstance(e, HostUpsert) for e in events) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    ups = [e for e in events if isinstance(e, HostUpsert)]
    assert len(ups) == 1, "one HostUpsert for one change"
    assert {n.name: n.neighbor.system_name for n in ups[0].host.nics if n.neighbor} == {
        "vl6d563h1": "leaf1", "vl6d563h2": "cdp-sw1.lab", "vl6d563h3": "leaf1"
    }  # fmt: skip
    assert len([e for e in events if isinstance(e, Snapshot)]) == 1, "no re-read of domains"
