"""``vmfabric show vxlan`` and ``show fabric-trunk``: the overlay and fabric pruning, as
vmfabric computes them from the inventory ``run`` recorded (thin: one runtime call each).

``show vxlan [--json] [--live]``: per VNI, its VTEPs, the VMs behind each and the flood
list each VTEP should hold; ``--live`` also reads every VTEP's flood lists back from the
VTEP itself (``programmed``, ``in_sync``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vmfabric.cli.common import ConfigOpt, JsonOpt, console, guarded, open_store, print_json
from vmfabric.cli.show import _table, app
from vmfabric.runtime import overlay


def _vxlan_rows(config_path: Path | None, live: bool) -> list[dict[str, Any]]:
    config, store = open_store(config_path)
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
    console.print(_table("VXLAN segments", columns, table))
    if not rows:
        console.print("no VNI has a VM behind a VTEP (is overlay: configured?)")


def _programmed(vtep: dict[str, Any]) -> str:
    if "programmed" not in vtep:
        return "unreadable"
    text = ", ".join(vtep["programmed"]) or "-"
    return text if vtep["in_sync"] else f"{text} (differs)"
