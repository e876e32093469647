"""The static source: a snapshot at start, then only what changed; fail-static on a bad file
(one line naming file, line and key); no re-reading of an unchanged file; the new VM fields;
and the fast reading of one-line items equal to the YAML loader's."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmfabric.config import StaticSession
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import (
    HostUpsert,
    Power,
    SessionStatus,
    Snapshot,
    SourceEvent,
    VmRemoved,
    VmUpsert,
)
from vmfabric.sources.static import StaticSource, load_inventory
from vmfabric.sources.static.reader import InventoryReader, read_text

INV: dict[str, list[dict[str, object]]] = {
    "hosts": [{"name": "esx1", "nics": ["vmnic0"]}],
    "portgroups": [{"name": "web", "vlan": 110}, {"name": "tr", "vlan": "200-202"}],
    "vms": [{"name": "web-01", "host": "esx1", "power": True, "portgroups": ["web", "tr"]}],
}


def flow_lines(inv: Any) -> str:
    """The inventory as one flow mapping per line (the fast form)."""
    out = []
    for section, items in inv.items():
        out.append(f"{section}:")
        for item in items:
            out.append("  - " + yaml.safe_dump(item, default_flow_style=True, width=10**6).strip())
    return "\n".join(out) + "\n"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, StaticSource, queue.Queue[SourceEvent]]]:
    path = tmp_path / "inv.yaml"
    path.write_text(flow_lines(INV))
    source = StaticSource(StaticSession(name="inv", kind="static", path=Path("inv.yaml")), tmp_path)
    events: queue.Queue[SourceEvent] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(events.put, stop))
    thread.start()
    try:
        yield path, source, events
    finally:
        stop.set()
        thread.join(5)


def write(path: Path, text: str) -> None:
    """Replace the file at once, as editors save (a half-written file is another test)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def next_of(events: queue.Queue[SourceEvent], kind: type) -> Any:
    while True:
        ev = events.get(timeout=5)
        if isinstance(ev, kind):
            return ev


def drained(events: queue.Queue[SourceEvent]) -> list[SourceEvent]:
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def test_a_snapshot_first_then_only_the_changes(
    running: tuple[Path, StaticSource, queue.Queue[SourceEvent]],
) -> None:
    path, source, events = running
    snap = next_of(events, Snapshot)
    assert snap.vms[0].power is Power.ON and snap.vms[0].networks == ("web", "tr")
    assert {p.name: p.vlans for p in snap.portgroups}["tr"] == frozenset({200, 201, 202})
    threading.Event().wait(0.8)  # several poll intervals
    assert source.reads == 1, "an unchanged file must not be re-read"
    changed: dict[str, Any] = {
        **INV,
        "hosts": [*INV["hosts"], {"name": "esx2"}],
        "vms": [{**INV["vms"][0], "power": "off"}, {"name": "db-01", "host": "esx2"}],
    }
    write(path, flow_lines(changed))
    first = next_of(events, HostUpsert)
    assert first.host.name == "esx2"
    upserts = [next_of(events, VmUpsert), next_of(events, VmUpsert)]
    assert {(u.vm.name, u.vm.power) for u in upserts} == {
        ("web-01", Power.OFF),
        ("db-01", Power.ON),
    }
    write(path, flow_lines({**changed, "vms": changed["vms"][1:]}))
    removed: VmRemoved = next_of(events, VmRemoved)
    assert removed.id == "web-01"
    threading.Event().wait(0.6)
    assert not [e for e in drained(events) if isinstance(e, Snapshot | SessionStatus)]
    assert source.reads == 3


def test_a_file_saved_again_unchanged_emits_nothing(
    running: tuple[Path, StaticSource, queue.Queue[SourceEvent]],
) -> None:
    path, source, events = running
    next_of(events, Snapshot)
    write(path, path.read_text() + "# saved again\n")
    threading.Event().wait(0.8)
    assert source.reads == 2 and drained(events) == []


def test_bad_file_keeps_the_last_inventory_and_a_fix_sends_a_full_snapshot(
    running: tuple[Path, StaticSource, queue.Queue[SourceEvent]],
) -> None:
    path, _, events = running
    next_of(events, Snapshot)
    path.write_text(
        flow_lines(INV).replace("ips", "ips") + "  - {name: x, host: esx1, ips: [1.2.3]}\n"
    )
    status = next_of(events, SessionStatus)
    assert status.state == "disconnected" and status.bad_input
    assert status.error == f"{path}:8: vms[1].ips[0]: '1.2.3' is not an IPv4 or IPv6 address"
    assert not [e for e in drained(events) if isinstance(e, VmUpsert | VmRemoved | Snapshot)]
    fixed = {**INV, "vms": [*INV["vms"], {"name": "x", "host": "esx1", "ips": ["10.0.0.1"]}]}
    write(path, flow_lines(fixed))
    assert next_of(events, SessionStatus).state == "connected"
    snap = next_of(events, Snapshot)  # out of sync until a full snapshot
    assert {v.name: v.ips for v in snap.vms} == {"web-01": (), "x": ("10.0.0.1",)}


def test_an_emptied_file_is_a_rewrite_in_progress_not_an_empty_inventory(
    running: tuple[Path, StaticSource, queue.Queue[SourceEvent]],
) -> None:
    path, _, events = running
    next_of(events, Snapshot)
    path.write_text("")  # what an editor's truncate-then-write shows for a moment
    status = next_of(events, SessionStatus)
    assert status.state == "disconnected" and "the file is empty" in status.error
    assert not [e for e in drained(events) if isinstance(e, VmRemoved)]


def test_invalid_yaml_is_one_line_with_line_and_column(
    running: tuple[Path, StaticSource, queue.Queue[SourceEvent]],
) -> None:
    path, _, events = running
    next_of(events, Snapshot)
    write(path, "vms: [unclosed\n")
    status = next_of(events, SessionStatus)
    assert status.state == "disconnected" and status.bad_input
    assert status.error.startswith(f"{path}:2:1: invalid YAML") and "\n" not in status.error


BAD = [
    ({"vms": [{"name": "a", "host": "nope"}]}, 2, "vms[0].host: host 'nope' is not in hosts"),
    ({"hosts": [{"name": "h"}, {"name": "h"}]}, 3, "hosts[1].name: 'h' is used twice"),
    ({"portgroups": [{"name": "p", "vlan": 0}]}, 2, "portgroups[0].vlan: VLAN 0 is outside 1-4094"),
    ({"hosts": [{"name": "h"}], "vms": [{"name": "a", "host": "h", "power": "maybe"}]}, 4,
     "vms[0].power: power 'maybe' is not one of on, off, suspended"),
    ({"hosts": [{"name": "h"}], "vms": [{"name": "a", "host": "h", "portgroups": ["x"]}]}, 4,
     "vms[0].portgroups: port group 'x' is not in portgroups"),
    ({"hosts": [{"name": "h"}], "vms": [{"name": "a", "host": "h", "ips": ["10.0.0.300"]}]}, 4,
     "vms[0].ips[0]: '10.0.0.300' is not an IPv4 or IPv6 address"),
    ({"hosts": [{"name": "h"}], "vms": [{"name": "a", "host": "h", "macs": ["00:11:22"]}]}, 4,
     "vms[0].macs[0]: '00:11:22' is not a MAC address (aa:bb:cc:dd:ee:ff)"),
    ({"hosts": [{"name": "h"}], "vms": [{"name": "a", "host": "h", "attributes": {"k": 1}}]}, 4,
     "vms[0].attributes.k: Input should be a valid string"),
    ({"vm": []}, 1, "vm: unknown key"),
]  # fmt: skip


@pytest.mark.parametrize(("inv", "line", "message"), BAD)
@pytest.mark.parametrize("style", ["flow lines", "block"])
def test_bad_inventory_is_one_line_naming_file_line_and_key(
    tmp_path: Path, inv: Any, line: int, message: str, style: str
) -> None:
    path = tmp_path / "inv.yaml"
    text = flow_lines(inv) if style == "flow lines" else yaml.safe_dump(inv, sort_keys=False)
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_inventory(path, "inv")
    if style == "flow lines":
        assert str(err.value) == f"{path}:{line}: {message}"
    else:  # block style: the line of the deepest node the key path names
        assert str(err.value).startswith(f"{path}:") and str(err.value).endswith(message)
    assert "\n" not in str(err.value)


def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_inventory(path, "inv")


def test_new_vm_fields_are_read_validated_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "hosts:\n  - {name: esx1}\nvms:\n"
        '  - {name: web-01, host: esx1, ips: [10.0.0.10, "2001:DB8::1", 10.0.0.9, 10.0.0.9],'
        ' macs: ["00-50-56-AB-CD-EF"], tags: ["tier:web", env:prod], guest_os: ubuntu64Guest,'
        " attributes: {owner: team-a, cost: '42'}, folder: /dc1/vm/web, cluster: prod}\n"
    )
    (vm,) = load_inventory(path, "inv").vms
    assert vm.ips == ("10.0.0.9", "10.0.0.10", "2001:db8::1")
    assert vm.macs == ("00:50:56:ab:cd:ef",)
    assert vm.tags == ("env:prod", "tier:web")
    assert vm.attributes == (("cost", "42"), ("owner", "team-a"))
    assert (vm.guest_os, vm.folder, vm.cluster) == ("ubuntu64Guest", "/dc1/vm/web", "prod")


def test_a_one_line_edit_of_a_large_file_builds_one_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    inv = {"hosts": [{"name": f"h{i}"} for i in range(20)],
           "vms": [{"name": f"vm{i}", "host": f"h{i % 20}"} for i in range(2000)]}  # fmt: skip
    path.write_text(flow_lines(inv))
    reader = InventoryReader("inv")
    first = reader.read(path)
    assert reader.lines_built == 2020
    path.write_text(flow_lines(inv).replace("{host: h5, name: vm5}", "{host: h6, name: vm5}"))
    second = reader.read(path)
    assert reader.lines_built == 1
    assert [v.host for v in second.vms if v.name == "vm5"] == ["h6"]
    assert all(a is b for a, b in zip(first.vms, second.vms, strict=True) if a.name != "vm5")
    write(path, flow_lines(inv).replace("vms:\n", "vms: []\n"))
    with pytest.raises(ConfigError):  # items under "vms: []" are not YAML
        reader.read(path)


# ---- the fast reading equals the YAML loader's, on generated inventories -------------------

NAMES = st.sampled_from(["esx1", "esx2", "web-01", "db 02", "on", "no", "n1", "110", "yes-1", "~"])
IPS = st.sampled_from(["10.0.0.1", "2001:db8::1", "10.0.0.300", "fe80::1", "1.2.3", "0x10"])
FIELDS = {
    "name": NAMES, "host": NAMES,
    "power": st.sampled_from(["on", "off", "suspended", "maybe", "On"]),
    "portgroups": st.lists(st.sampled_from(["web", "tr", "nope"]), max_size=2),
    "ips": st.lists(IPS, max_size=2), "macs": st.lists(st.sampled_from(
        ["00:50:56:00:00:01", "00-50-56-00-00-02", "zz"]), max_size=2),
    "tags": st.lists(st.sampled_from(["tier:web", "env:prod", "x"]), max_size=2),
    "attributes": st.dictionaries(st.sampled_from(["owner", "1", "on"]), NAMES, max_size=2),
    "guest_os": NAMES, "folder": st.sampled_from(["/dc/vm", "a:b", ""]), "cluster": NAMES,
}  # fmt: skip
VMS = st.fixed_dictionaries({}, optional=FIELDS)
INVENTORIES = st.fixed_dictionaries({
    "hosts": st.lists(st.fixed_dictionaries({"name": NAMES}), max_size=3),
    "portgroups": st.just([{"name": "web", "vlan": 110}, {"name": "tr", "vlan": "200-210"}]),
    "vms": st.lists(VMS, max_size=4),
})  # fmt: skip


def _quoted_or_plain(inv: Any, draw_quotes: bool) -> str:
    text = flow_lines(inv)
    return text if draw_quotes else text.replace("'", "")


def _outcome(read: Any) -> Any:
    try:
        return read()
    except ConfigError as exc:
        return str(exc)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(INVENTORIES, st.booleans())
def test_fast_reading_equals_the_yaml_loaders(tmp_path: Path, inv: Any, quotes: bool) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(_quoted_or_plain(inv, quotes))
    fast = _outcome(lambda: InventoryReader("inv").read(path))
    slow = _outcome(lambda: InventoryReader("inv")._read_whole(path, read_text(path)))
    assert fast == slow


# ---- re-reading only the lines an edit changed equals reading the file afresh --------------

ITEM_LINES = {
    "hosts": st.sampled_from(["{name: esx1}", "{name: esx2, nics: [vmnic0]}", "{name: esx1}",
                              "{name: on}", "{name: 'esx3'}"]),
    "portgroups": st.sampled_from(["{name: web, vlan: 110}", "{name: tr, vlan: 200-210}",
                                   "{name: web, vlan: 0}", "{name: db, vlan: 30}"]),
    "vms": st.sampled_from(["{name: a, host: esx1}", "{name: b, host: esx2, portgroups: [web]}",
                            "{name: c, host: esx1, power: off, ips: [10.0.0.1]}",
                            "{name: a, host: nope}", "{name: d, host: esx1, ips: [1.2.3]}",
                            "{name: e, host: esx2, portgroups: [db]}", "{name: f, host: esx1"]),
}  # fmt: skip
EDITS = st.lists(st.tuples(
    st.sampled_from(["replace", "insert", "delete", "comment", "indent", "header"]),
    st.sampled_from(list(ITEM_LINES)), st.integers(0, 5), st.data()), max_size=8)  # fmt: skip
BASE = {"hosts": ["{name: esx1}", "{name: esx2}"], "portgroups": ["{name: web, vlan: 110}"],
        "vms": ["{name: a, host: esx1}", "{name: b, host: esx2, portgroups: [web]}"]}  # fmt: skip


def _render(doc: dict[str, list[str]], extra: list[str]) -> str:
    lines = [line for kind, items in doc.items() for line in (f"{kind}:", *items)]
    return "\n".join(lines + extra) + "\n"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(EDITS)
def test_a_reread_after_edits_equals_reading_the_file_afresh(tmp_path: Path, edits: Any) -> None:
    doc = {kind: [f"  - {item}" for item in items] for kind, items in BASE.items()}
    extra: list[str] = []
    path = tmp_path / "inv.yaml"
    kept = InventoryReader("inv")
    write(path, _render(doc, extra))
    kept.read(path)
    for op, kind, where, data in edits:
        items = doc[kind]
        at = min(where, len(items))
        line = "  - " + data.draw(ITEM_LINES[kind])
        if op == "replace" and items:
            items[min(at, len(items) - 1)] = line
        elif op == "insert":
            items.insert(at, line)
        elif op == "delete" and items:
            del items[min(at, len(items) - 1)]
        elif op == "comment":
            items.insert(at, "  # a comment")
        elif op == "indent":
            items.insert(at, "    - {name: z, host: esx1}")
        elif op == "header":
            extra = [] if extra else ["clusters: []"]
        write(path, _render(doc, extra))
        assert _outcome(lambda: kept.read(path)) == _outcome(
            lambda: InventoryReader("inv").read(path)
        )


# ---- lines of the README's VM shape (read by the line regex, no JSON) equal the loader's ----

PLAIN = st.sampled_from(["esx1", "esx2", "web-01", "db 02", "on", "110", "~", "yes-1", "-x",
                         "n1", "1.5", "web", "tr", "nope", "'esx1'", '"web"', "esx1 "])  # fmt: skip
POWERS = st.sampled_from(["on", "off", "suspended", "maybe", "On", "yes", "true", "OFF", '"on"'])


def _readme_vm(name: str, host: str, power: str | None, groups: list[str] | None) -> str:
    line = f"  - {{name: {name}, host: {host}"
    line += f", power: {power}" if power is not None else ""
    line += ", portgroups: [" + ", ".join(groups) + "]" if groups is not None else ""
    return line + "}"


README_VMS = st.lists(
    st.builds(
        _readme_vm, PLAIN, PLAIN, st.none() | POWERS, st.none() | st.lists(PLAIN, max_size=2)
    ),
    max_size=3,
)


def _readme_inventory(path: Path, vms: list[str]) -> None:
    # hosts and port groups also named as plain scalars YAML reads as something else
    hosts = "hosts:\n" + "".join(f"  - {{name: {h}}}\n" for h in ("esx1", "db 02", '"110"', '"on"'))
    groups = "portgroups:\n  - {name: web, vlan: 110}\n  - {name: '110', vlan: 200-210}\n"
    path.write_text(hosts + groups + "vms:\n" + "".join(f"{vm}\n" for vm in vms))


def _fast_and_slow(path: Path) -> tuple[Any, Any, bool]:
    reader = InventoryReader("inv")
    fast = _outcome(lambda: reader.read(path))
    slow = _outcome(lambda: InventoryReader("inv")._read_whole(path, read_text(path)))
    return fast, slow, reader._state is not None  # read line by line


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(README_VMS)
def test_vm_lines_of_the_readme_shape_read_as_the_yaml_loader_reads_them(
    tmp_path: Path, vms: list[str]
) -> None:
    _readme_inventory(tmp_path / "inv.yaml", vms)
    fast, slow, by_line = _fast_and_slow(tmp_path / "inv.yaml")
    assert fast == slow
    assert by_line == (not isinstance(fast, str))


@pytest.mark.parametrize(
    "vm",
    ["{name: vm, host: 110}", "{name: vm, host: on}", "{name: on, host: esx1}",
     "{name: 1.5, host: esx1}", "{name: -x, host: esx1}", "{name: vm, host: '110'}",
     "{name: vm, host: esx1, portgroups: [110]}", "{name: vm, host: esx1, portgroups: []}",
     "{name: vm, host: esx1, portgroups: ['110', web]}", "{name: vm, host: esx1, power: yes}",
     "{name: vm, host: esx1, power: true}", "{name: vm, host: esx1, power: maybe}",
     "{name: vm, host: esx1, power: \"on\"}", "{name: vm, host: db 02, power: OFF}",
     # not of the shape (read as JSON, then built as the shape's rows are, or one by one)
     "{host: esx1, name: vm, power: off}", "{name: vm, host: esx1, power: \"\"}",
     "{name: vm, host: esx1, portgroups: [\"\"]}", "{name: vm, host: esx1, portgroups: [\"web\"]}",
     "{name: \"\", host: esx1}", "{name: vm, host: esx1, power: [on]}",
     "{name: vm, host: esx1, portgroups: web}", "{name: vm, host: esx1, portgroups: [[web]]}",
     "{name: vm, host: \"esx1\", portgroups: [web, 1]}", "{name: vm, host: esx1, ips: [10.0.0.1]}",
     "{name: vm, host: esx1, portgroups: {web: x}}"],
)  # fmt: skip
def test_a_vm_line_reads_as_the_yaml_loader_reads_it(tmp_path: Path, vm: str) -> None:
    _readme_inventory(tmp_path / "inv.yaml", [f"  - {vm}", "  - {name: b, host: esx1}"])
    fast, slow, by_line = _fast_and_slow(tmp_path / "inv.yaml")
    assert fast == slow
    assert by_line == (not isinstance(fast, str))


def test_a_large_file_of_the_readme_shape_is_built_whole_with_shared_port_group_lists(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inv.yaml"
    lines = ["hosts:", *(f"  - {{name: h{i}, nics: [vmnic0]}}" for i in range(10)),
             "portgroups:", *(f"  - {{name: pg{i}, vlan: {100 + i}}}" for i in range(5)), "vms:",
             *(f"  - {{name: vm{i}, host: h{i % 10}, power: {('on', 'off')[i % 2]}, "
               f"portgroups: [pg{i % 5}, pg{(i + 1) % 5}]}}" for i in range(3000))]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    reader = InventoryReader("inv")
    parsed = reader.read(path)
    assert reader.lines_built == 3015
    assert parsed == InventoryReader("inv")._read_whole(path, read_text(path))
    assert parsed.vms[1].power is Power.OFF and parsed.vms[1].networks == ("pg1", "pg2")
    assert parsed.vms[0].networks is parsed.vms[5].networks  # one tuple per distinct list
    assert parsed.vms[0].host is parsed.vms[10].host


def test_a_line_of_two_mappings_is_refused_as_the_yaml_loader_refuses_it(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "hosts:\n  - {name: h}\nvms:\n  - {name: a, host: h}, {name: b, host: h}\n"
        "  - {name: c, host: h}\n"
    )
    with pytest.raises(ConfigError) as err:
        InventoryReader("inv").read(path)
    assert str(err.value).startswith(f"{path}:4:") and "invalid YAML" in str(err.value)
