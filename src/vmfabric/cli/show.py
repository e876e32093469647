"""``vmfabric show ...``: read the store and render EOS-like tables, or JSON.

The store is written by ``vmfabric run`` (or ``sync``), so these commands work while the
controller runs in another process. The JSON keys are the public contract of DESIGN.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vmfabric.cli.common import ConfigOpt, JsonOpt, console, fail, guarded, open_store, print_json
from vmfabric.core.errors import ConfigError
from vmfabric.core.vlans import format_vlans
from vmfabric.store import Store

app = typer.Typer(
    help="Show sessions, VMs, hosts, interfaces, VLANs and plans.", no_args_is_help=True
)
DYNAMIC_NOTE = "* = dynamically added by vmfabric (removed when no VM needs it)"


def _query(config: Path | None, fn: Callable[[Store], Any]) -> Any:
    def read() -> Any:
        _, store = open_store(config)
        try:
            return fn(store)
        finally:
            store.close()

    return guarded(read)


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _marked(vlans: Iterable[int], dynamic: Iterable[int]) -> str:
    dyn = set(dynamic)
    return ",".join(f"{v}*" if v in dyn else str(v) for v in sorted(vlans))


@app.command("session")
def session(
    name: Annotated[str | None, typer.Argument(help="One session.")] = None,
    autovlan: Annotated[
        bool, typer.Option("--autovlan", help="Allowed and provisioned VLANs.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Monitoring sessions: state, version, counts, last update and error."""
    if autovlan:
        if name is None:
            raise typer.BadParameter("--autovlan needs a session NAME")
        data = _query(config, lambda s: s.session_autovlan(name))
        if as_json:
            print_json(data)
            return
        console.print(f"Session {data['name']}: allowed VLANs {data['allowed_vlans']}")
        prov = [(p["switch"], p["port"], format_vlans(p["vlans"])) for p in data["provisioned"]]
        console.print(_table("Provisioned VLANs", ["Switch", "Port", "VLANs"], prov))
        return
    data = _query(config, lambda s: s.show_sessions(name))
    if name is not None and not data:
        raise typer.Exit(_not_found("session", name))
    if as_json:
        print_json(data)
        return
    rows = [
        (d["name"], d["kind"], d["state"] + ("" if d["in_sync"] else " (not in sync)"),
         d["version"], d["hosts"], d["vms"], "on" if d["autovlan"] else "off",
         d["allowed_vlans"], d["mode"], d["last_update"], d["last_error"])
        for d in data
    ]  # fmt: skip
    cols = ["Session", "Kind", "State", "Version", "Hosts", "VMs", "Autovlan", "Allowed",
            "Mode", "Last update", "Last error"]  # fmt: skip
    console.print(_table("Sessions", cols, rows))
    for d in data:
        for w in d["warnings"]:
            console.print(f"warning: session {d['name']}: {w}")
        if d["held_plans"]:
            console.print(f"session {d['name']}: plans held for approval: see `vmfabric show plan`")


def _not_found(what: str, name: str) -> int:
    return fail(ConfigError(f"no {what} named {name!r}"))


def _networks(vm: dict[str, Any]) -> str:
    return ", ".join(
        f"{n['portgroup']}({n['vlan'] if n['vlan'] is not None else '-'})" for n in vm["networks"]
    )


def _attachments(vm: dict[str, Any]) -> str:
    return ", ".join(f"{a['switch']} {a['port']}" for a in vm["attachments"])


@app.command("vm")
def vm(
    name: Annotated[str | None, typer.Argument(help="One VM.")] = None,
    detail: Annotated[bool, typer.Option("--detail", help="Everything known of each VM.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where each VM is: host, power state, port groups with VLANs, switch ports."""
    data = _query(config, lambda s: s.show_vms(name))
    if name is not None and not data:
        raise typer.Exit(_not_found("VM", name))
    if as_json:
        print_json(data)
        return
    if not detail:
        rows = [
            (d["name"], d["session"], d["host"], d["power_state"], _networks(d), _attachments(d))
            for d in data
        ]
        console.print(
            _table(
                "VMs", ["VM", "Session", "Host", "Power", "Networks (VLAN)", "Switch ports"], rows
            )
        )
        return
    for d in data:
        console.print(f"[bold]VM {d['name']}[/bold] (session {d['session']}, id {d['id']})")
        console.print(f"  Host:         {d['host']}")
        console.print(f"  Power state:  {d['power_state']}")
        for n in d["networks"]:
            vid = n["vlan"] if n["vlan"] is not None else "none"
            console.print(f"  Port group:   {n['portgroup']}, VLAN {vid}")
        console.print(f"  Reachable via: {_attachments(d) or 'no known switch port'}")
        if d["carriage"] == "all-uplinks":
            console.print(
                "  Note: the virtual switch's NICs are unknown; every uplink of the host "
                "is assumed to carry its port groups"
            )


@app.command("host")
def host(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Hypervisors and where their NICs land (source cdp, lldp or static)."""
    data = _query(config, lambda s: s.show_hosts())
    if as_json:
        print_json(data)
        return
    rows: list[tuple[Any, ...]] = []
    for d in data:
        for u in d["uplinks"]:
            rows.append(
                (d["name"], d["session"], d["vms"], u["nic"], u["switch"], u["port"], u["source"])
            )
        for n in d["neighbors"]:
            if not n["matched"]:
                who = f"{n['system_name'] or n['chassis_id']} (unmatched)"
                rows.append(
                    (d["name"], d["session"], d["vms"], n["nic"], who, n["port_id"], n["protocol"])
                )
        if not d["uplinks"] and not any(not n["matched"] for n in d["neighbors"]):
            rows.append((d["name"], d["session"], d["vms"], "-", "no uplink known", "", ""))
    console.print(
        _table("Hosts", ["Host", "Session", "VMs", "NIC", "Switch", "Port", "Source"], rows)
    )


@app.command("interface")
def interface(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Edge ports: the hosts behind them and their VLANs (dynamic ones marked *)."""
    data = _query(config, lambda s: s.show_interfaces())
    if as_json:
        print_json(data)
        return
    rows = [
        (
            d["switch"],
            d["port"],
            d["mode"],
            ", ".join(d["hosts"]),
            _marked(d["vlans"], d["dynamic_vlans"]),
        )
        for d in data
    ]
    console.print(_table("Interfaces", ["Switch", "Port", "Mode", "Hosts", "VLANs"], rows))
    console.print(DYNAMIC_NOTE)


@app.command("vlan")
def vlan(
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Only VLANs vmfabric added.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """VLANs per switch and the edge ports carrying them (dynamic ones marked *)."""
    data = _query(config, lambda s: s.show_vlans(dynamic))
    if as_json:
        print_json(data)
        return
    rows = [
        (
            d["switch"],
            d["vlan"],
            ", ".join(f"{p}*" if p in d["dynamic_ports"] else p for p in d["ports"]),
        )
        for d in data
    ]
    console.print(_table("VLANs", ["Switch", "VLAN", "Ports"], rows))
    console.print(DYNAMIC_NOTE)


@app.command("plan")
def plan(
    status: Annotated[str | None, typer.Option(help="held, check, approved, applied...")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plans held by the blast-radius guard, or recorded in check mode."""
    data = _query(config, lambda s: s.plans(status))
    if as_json:
        print_json(data)
        return
    rows = []
    for d in data:
        ports = d["plan"]["ports"]
        adds = sum(len(p["add"]) for p in ports)
        removes = sum(len(p["remove"]) for p in ports)
        rows.append(
            (d["id"], d["switch"], d["status"], d["created"], f"+{adds} -{removes}", d["reason"])
        )
    console.print(_table("Plans", ["Id", "Switch", "Status", "Created", "Changes", "Reason"], rows))


@app.command("audit")
def audit(
    limit: Annotated[int, typer.Option(help="Most recent entries.")] = 50,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: every VLAN vmfabric added or removed, when and why."""
    data = _query(config, lambda s: s.audit(limit))
    if as_json:
        print_json(data)
        return
    rows = [
        (_iso(d["time"]), d["switch"], d["port"], d["vlan"], d["action"], d["reason"]) for d in data
    ]
    console.print(_table("Audit log", ["Time", "Switch", "Port", "VLAN", "Action", "Reason"], rows))
