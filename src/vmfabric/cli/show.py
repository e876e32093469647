"""``vmfabric show ...``: render the views (``vmfabric.views``) as EOS-like tables, or JSON.

Every command opens the store read-only: it works while the controller runs in another
process and never writes the store (a missing store is an error, not a new empty one).
``--json`` prints exactly the view's documents, the contract of docs/json.md.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from vmfabric import views
from vmfabric.cli.common import ConfigOpt, JsonOpt, fail, guarded, open_store, print_json, table
from vmfabric.cli.common import write as out
from vmfabric.core.errors import ConfigError
from vmfabric.core.vlans import format_vlans
from vmfabric.store import PLAN_STATUSES, Store

app = typer.Typer(
    help="Show sessions, VMs, hosts, interfaces, VLANs, switches, plans and the audit log.",
    no_args_is_help=True,
    add_completion=False,
)
DYNAMIC_NOTE = "* = dynamically added by vmfabric (removed when no VM needs it)"
STALE_NOTE = "! = switch not ok (unreachable or error): VLANs as last read; see `show switch`"
T = TypeVar("T")


@app.callback()
def _show(ctx: typer.Context) -> None:
    """Show sessions, VMs, hosts, interfaces, VLANs, switches, plans and the audit log."""
    # A show builds and prints its answer: meanwhile the cyclic garbage collector would
    # only rescan the growing heap (a third of `show vm`'s time at 100,000 VMs).
    if gc.isenabled():
        gc.disable()
        ctx.call_on_close(gc.enable)


def _query(config: Path | None, fn: Callable[[Store], T]) -> T:
    def read() -> T:
        _, store = open_store(config, readonly=True)
        try:
            return fn(store)
        finally:
            store.close()

    return guarded(read)


def _missing(what: str) -> typer.Exit:
    return typer.Exit(fail(ConfigError(f"no {what}")))


def _marked(vlans: Iterable[int], dynamic: Iterable[int]) -> str:
    dyn = set(dynamic)
    return ",".join(f"{v}*" if v in dyn else str(v) for v in sorted(vlans))


def _few(names: Sequence[str], most: int = 4) -> str:
    shown = ",".join(names[:most])
    return shown + (f",+{len(names) - most}" if len(names) > most else "")


# ---- session ---------------------------------------------------------------------------


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
        _session_autovlan(_query(config, lambda s: views.session_autovlan(s, name)), as_json)
        return
    data = _query(config, lambda s: views.sessions(s, name))
    if name is not None and not data:
        raise _missing(f"session named {name!r}")
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
    out(table(cols, rows))
    for d in data:
        for w in d["warnings"]:
            out(f"warning: session {d['name']}: {w}\n")
        if d["held_plans"]:
            held = ", ".join(map(str, d["held_plans"]))
            out(f"session {d['name']}: plans held for approval: {held} (`vmfabric show plan`)\n")


def _session_autovlan(data: views.SessionAutovlanView, as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    out(f"Session {data['name']}: allowed VLANs {data['allowed_vlans']}\n")
    prov = [(p["switch"], p["port"], format_vlans(p["vlans"])) for p in data["provisioned"]]
    out(table(["Switch", "Port", "Provisioned VLANs"], prov))


# ---- vm --------------------------------------------------------------------------------


def _networks(vm: views.VmView) -> str:
    return ", ".join(
        [f"{n['portgroup']}({'-' if n['vlan'] is None else n['vlan']})" for n in vm["networks"]]
    )


def _attachments(vm: views.VmView) -> str:
    return ", ".join([f"{a['switch']} {a['port']}" for a in vm["attachments"]])


class _Once:
    """A view's list formatted once: the VM view shares one list among VMs alike, and
    100,000 VMs sit on a few thousand (host, port groups)."""

    def __init__(self) -> None:
        self._text: dict[int, str] = {}

    def __call__(self, vm: views.VmView, key: str, fmt: Callable[[views.VmView], str]) -> str:
        found = self._text.get(id(vm[key]))  # type: ignore[literal-required]
        if found is None:
            found = self._text[id(vm[key])] = fmt(vm)  # type: ignore[literal-required]
        return found


def _attributes(vm: views.VmView) -> str:
    return ", ".join(f"{k}={v}" for k, v in vm.get("attributes", {}).items())


def _vm_detail(d: views.VmView) -> str:
    lines = [
        f"VM {d['name']} (session {d['session']}, id {d['id']})",
        f"  Host:          {d['host']}",
        f"  Power state:   {d['power_state']}",
        *(
            f"  Port group:    {n['portgroup']}, VLAN {'none' if n['vlan'] is None else n['vlan']}"
            for n in d["networks"]
        ),
        f"  Reachable via: {_attachments(d) or 'no known switch port'}",
        f"  Addresses:     {', '.join(d['ips']) or '-'}",
        f"  MACs:          {', '.join(d.get('macs', [])) or '-'}",
        f"  Tags:          {', '.join(d['tags']) or '-'}",
        f"  Attributes:    {_attributes(d) or '-'}",
        f"  Guest OS:      {d.get('guest_os') or '-'}",
        f"  Folder:        {d.get('folder') or '-'}",
        f"  Cluster:       {d.get('cluster') or '-'}",
    ]
    if d["carriage"] == "all-uplinks":
        lines.append(
            "  Note: the virtual switch's NICs are unknown; every uplink of the host "
            "is assumed to carry its port groups"
        )
    return "\n".join(lines) + "\n"


@app.command("vm")
def vm(
    name: Annotated[str | None, typer.Argument(help="One VM.")] = None,
    detail: Annotated[bool, typer.Option("--detail", help="Everything known of each VM.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where each VM is: host, power state, port groups with VLANs, switch ports."""
    data = _query(config, lambda s: views.vms(s, name, detail=detail))
    if name is not None and not data:
        raise _missing(f"VM named {name!r}")
    if as_json:
        print_json(data)
    elif detail:
        out("".join(_vm_detail(d) for d in data))
    else:
        once = _Once()
        rows = [
            (d["name"], d["session"], d["host"], d["power_state"],
             once(d, "networks", _networks), once(d, "attachments", _attachments))
            for d in data
        ]  # fmt: skip
        cols = ["VM", "Session", "Host", "Power", "Networks (VLAN)", "Switch ports"]
        out(table(cols, rows))


# ---- host ------------------------------------------------------------------------------


def _host_rows(d: views.HostView) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        (d["name"], d["session"], d["vms"], u["nic"], u["switch"], u["port"], u["source"])
        for u in d["uplinks"]
    ]
    unmatched = [n for n in d["neighbors"] if not n["matched"]]
    for n in unmatched:
        who = f"{n['system_name'] or n['chassis_id']} (unmatched)"
        rows.append((d["name"], d["session"], d["vms"], n["nic"], who, n["port_id"], n["protocol"]))
    if not rows:
        rows.append((d["name"], d["session"], d["vms"], "-", "no uplink known", "", ""))
    return rows


@app.command("host")
def host(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Hypervisors and where their NICs land (source cdp, lldp or static)."""
    data = _query(config, views.hosts)
    if as_json:
        print_json(data)
        return
    rows = [r for d in data for r in _host_rows(d)]
    out(table(["Host", "Session", "VMs", "NIC", "Switch", "Port", "Source"], rows))


# ---- interface / vlan / switch ---------------------------------------------------------


@app.command("interface")
def interface(
    port: Annotated[str | None, typer.Argument(help="One port: NAME or SWITCH:NAME.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Switch ports: the hosts behind them and their VLANs (dynamic ones marked *)."""
    data = _query(config, lambda s: views.interfaces(s, port))
    if port is not None and not data:
        raise _missing(f"interface named {port!r}")
    if as_json:
        print_json(data)
        return
    stale = {d["switch"] for d in data if d["switch_state"] not in (None, "ok")}
    rows = [
        (d["switch"] + ("!" if d["switch"] in stale else ""), d["port"], d["mode"],
         ", ".join(d["hosts"]), _marked(d["vlans"], d["dynamic_vlans"]))
        for d in data
    ]  # fmt: skip
    out(table(["Switch", "Port", "Mode", "Hosts", "VLANs"], rows))
    out(DYNAMIC_NOTE + "\n" + (STALE_NOTE + "\n" if stale else ""))


@app.command("vlan")
def vlan(
    vlan_id: Annotated[
        int | None, typer.Argument(metavar="ID", help="One VLAN.", min=1, max=4094)
    ] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Only VLANs vmfabric added.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """VLANs per switch and the ports carrying them (dynamic ones marked *)."""
    data = _query(config, lambda s: views.vlans(s, vlan_id, dynamic))
    if vlan_id is not None and not data:
        raise _missing(f"VLAN {vlan_id} on any switch port")
    if as_json:
        print_json(data)
        return
    rows = [
        (d["switch"], d["vlan"],
         ", ".join(f"{p}*" if p in d["dynamic_ports"] else p for p in d["ports"]))
        for d in data
    ]  # fmt: skip
    out(table(["Switch", "VLAN", "Ports"], rows))
    out(DYNAMIC_NOTE + "\n")


@app.command("switch")
def switch(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Switches: driver, state (ok, unreachable, error), last apply, pending, held plans."""
    data = _query(config, views.switches)
    if as_json:
        print_json(data)
        return
    rows = [
        (d["name"], d["driver"], d["state"], d["last_apply"],
         "-" if d["pending"] is None else d["pending"],
         ",".join(map(str, d["held_plans"])), d["last_error"])
        for d in data
    ]  # fmt: skip
    cols = ["Switch", "Driver", "State", "Last apply", "Pending", "Held plans", "Last error"]
    out(table(cols, rows))


# ---- plan / audit ----------------------------------------------------------------------


def _plan_detail(d: views.PlanView) -> str:
    head = [
        f"Plan {d['id']}: switch {d['switch']}, {d['status']}",
        f"  Created: {d['created']}, updated {d['updated']}",
        f"  Reason:  {d['reason'] or '-'}",
        f"  Sessions: {', '.join(d['sessions']) or '-'}",
    ]
    rows = [(p["port"], format_vlans(p["add"]), format_vlans(p["remove"])) for p in d["ports"]]
    return "\n".join(head) + "\n" + table(["Port", "Add", "Remove"], rows)


def _status(value: str | None) -> str | None:
    if value is not None and value not in PLAN_STATUSES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(sorted(PLAN_STATUSES))}")
    return value


@app.command("plan")
def plan(
    plan_id: Annotated[int | None, typer.Argument(metavar="ID", help="One plan.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="held, approved, applying, applied, failed, expired or check.", callback=_status
        ),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plans: held by the guard, approved, applied or failed, or recorded in check mode."""
    data = _query(config, lambda s: views.plans(s, plan_id, status))
    if plan_id is not None and not data:
        raise _missing(f"plan {plan_id}" + (f" with status {status}" if status else ""))
    if as_json:
        print_json(data)
    elif plan_id is not None:
        out(_plan_detail(data[0]))
    else:
        rows = [
            (d["id"], d["switch"], d["status"], _few([p["port"] for p in d["ports"]]),
             format_vlans(d["vlans"]), d["created"], d["reason"])
            for d in data
        ]  # fmt: skip
        out(table(["Id", "Switch", "Status", "Ports", "VLANs", "Created", "Reason"], rows))


def _audit_rows(data: list[views.AuditView]) -> tuple[list[str], list[tuple[Any, ...]]]:
    ports_only = all(d["kind"] in ("switchport", "approval") for d in data)
    if ports_only:
        cols = ["Time", "Switch", "Port", "VLAN", "Action", "Plan", "Reason"]
        return cols, [
            (d["time"], d["target"], d["holder"], d.get("vlan", ""), d["action"], d["plan"],
             d["reason"])
            for d in data
        ]  # fmt: skip
    cols = ["Time", "Kind", "Target", "Holder", "Member", "Action", "Plan", "Reason"]
    return cols, [
        (d["time"], d["kind"], d["target"], d["holder"], d["member"], d["action"], d["plan"],
         d["reason"])
        for d in data
    ]  # fmt: skip


@app.command("audit")
def audit(
    limit: Annotated[int, typer.Option(help="Most recent entries.", min=0)] = 50,
    switch_name: Annotated[
        str | None, typer.Option("--switch", help="Only this switch (or target).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: every change vmfabric made and every approval, when and why."""
    data = _query(config, lambda s: views.audit(s, limit, switch_name))
    if as_json:
        print_json(data)
        return
    cols, rows = _audit_rows(data)
    out(table(cols, rows))
