"""``vmfabric show vxlan`` and ``show fabric-trunk``: the overlay and fabric pruning, as
vmfabric computes them from the inventory ``run`` recorded (thin: one runtime call each).

``show vxlan [--json] [--live]``: per VNI, its VTEPs, the VMs behind each and the flood
list each VTEP should hold; ``--live`` also reads every VTEP's flood lists back from the
VTEP itself (``programmed``, ``in_sync``).

``show fabric-trunk [--json] [--live]``: per inter-switch link, the VLANs it must carry,
why (the switches behind which VMs need each), the ``keep_vlans``, which ends vmfabric
writes; ``--live`` also reads what each fabric port carries now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vmfabric.cli.common import (
    ConfigOpt,
    JsonOpt,
    console,
    guarded,
    open_store,
    print_json,
    write,
)
from vmfabric.cli.common import table as render_table
from vmfabric.cli.show import app
from vmfabric.core.vlans import format_vlans
from vmfabric.runtime import overlay


def _vxlan_rows(config_path: Path | None, live: bool) -> list[dict[str, Any]]:
    config, store = open_store(config_path, readonly=True)
    try:
        inventory = overlay.stored_inventory(config, store)
    finally:
        store.close()
    return overlay.vxlan_view(config, inventory, overlay.read_vteps(config) if live else None)


@app.command("vxlan")
def vxlan(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    live: Annotated[
        bool, typer.Option("--live", help="Also read each VTEP's flood lists back from it.")
    ] = False,
) -> None:
    """VXLAN segments: per VNI, the VTEPs with a VM of it, the VMs, the flood lists."""
    rows = guarded(lambda: _vxlan_rows(config, live))
    if as_json:
        print_json(rows)
        return
    columns = ["VNI", "VLAN", "VTEP", "Address", "VMs", "Floods to"]
    if live:
        columns.append("Programmed")
    table = []
    for row in rows:
        for i, vtep in enumerate(row["vteps"]):
            line = [
                str(row["vni"]) if i == 0 else "",
                str(row["vlan"] or "") if i == 0 else "",
                vtep["switch"],
                vtep["address"],
                ", ".join(vtep["vms"]),
                ", ".join(vtep["flood"]) or "- (no other VTEP)",
            ]
            if live:
                line.append(_programmed(vtep))
            table.append(line)
    write(render_table(columns, table))
    if not rows:
        console.print("no VNI has a VM behind a VTEP (is overlay: configured?)")


def _programmed(vtep: dict[str, Any]) -> str:
    if "programmed" not in vtep:
        return "unreadable"
    text = ", ".join(vtep["programmed"]) or "-"
    return text if vtep["in_sync"] else f"{text} (differs)"


def _trunk_rows(config_path: Path | None, live: bool) -> list[dict[str, Any]]:
    config, store = open_store(config_path, readonly=True)
    try:
        inventory = overlay.stored_inventory(config, store)
    finally:
        store.close()
    ports = overlay.read_fabric_ports(config) if live else None
    return overlay.fabric_trunk_view(config, inventory, ports)


@app.command("fabric-trunk")
def fabric_trunk(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    live: Annotated[
        bool, typer.Option("--live", help="Also read what each fabric port carries now.")
    ] = False,
) -> None:
    """Inter-switch links: the VLANs each must carry and the switches that need them."""
    rows = guarded(lambda: _trunk_rows(config, live))
    if as_json:
        print_json(rows)
        return
    columns = ["Link", "VLANs", "Why (needed behind)", "Written"]
    if live:
        columns.append("Carries now")
    table = []
    for row in rows:
        why = "; ".join(f"{v}: {', '.join(s)}" for v, s in row["why"].items())
        vlans = format_vlans(frozenset(row["vlans"]) | frozenset(row["keep"])) or "-"
        written = ", ".join(f"{e['switch']}:{e['port']}" for e in row["ends"] if e["managed"])
        line = [row["link"], vlans, why or "no VM needs a VLAN across it", written or "-"]
        if live:
            line.append("; ".join(_carries(e) for e in row["ends"]))
        table.append(line)
    write(render_table(columns, table))
    if not rows:
        console.print("no fabric_links with fabric_ports configured")


def _carries(end: dict[str, Any]) -> str:
    carries = end.get("carries")
    if carries is None:
        return f"{end['port']}: unread"
    text = "all" if carries == "all" else format_vlans(frozenset(carries)) or "none"
    return f"{end['switch']}:{end['port']} {text}"
