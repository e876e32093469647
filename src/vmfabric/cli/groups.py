"""``vmfabric show group [NAME]`` and ``vmfabric show policy``: security groups and rules.

Membership is computed from the configuration and the inventory the store holds (written
by ``vmfabric run``), with the same pure engine the controller runs, so these commands
work while the controller runs in another process and never write anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vmfabric.cli.common import (
    ConfigOpt,
    JsonOpt,
    console,
    fail,
    guarded,
    open_store,
    print_json,
    table,
    write,
)
from vmfabric.cli.show import app
from vmfabric.config import Config
from vmfabric.core.errors import ConfigError
from vmfabric.intents.groups import GroupsIntent
from vmfabric.inventory.index import Inventory
from vmfabric.runtime.groups import build_intent, group_view, policy_view


def _load(config_path: Path | None) -> tuple[Config, GroupsIntent, Inventory]:
    config, store = open_store(config_path, readonly=True)
    try:
        names = [s.name for s in config.sessions]
        inventory = Inventory(names)
        delta = inventory.apply([store.snapshot(n) for n in names], 0.0)
    finally:
        store.close()
    intent = build_intent(config)
    intent.update(inventory, delta, 0.0)
    return config, intent, inventory


@app.command("group")
def group(
    name: Annotated[str | None, typer.Argument(help="One group.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Security groups: members, their addresses, and why each matches."""
    _, intent, inventory = guarded(lambda: _load(config))
    data = group_view(intent, inventory, name)
    if name is not None and not data:
        raise typer.Exit(fail(ConfigError(f"no group named {name!r}")))
    if as_json:
        print_json(data)
        return
    for d in data:
        console.print(f"[bold]Group {d['name']}[/bold]: {len(d['members'])} VMs, "
                      f"{len(d['addresses'])} addresses")  # fmt: skip
        rows = [(m["vm"], m["session"], ", ".join(m["addresses"]) or "-", m["why"])
                for m in d["members"]]  # fmt: skip
        if d["static"]:
            rows.append(("(static)", "", ", ".join(d["static"]), "addresses:"))
        write(table(["VM", "Session", "Addresses", "Why"], rows))
        for w in d["warnings"]:
            console.print(f"warning: group {d['name']}: {w}")


def _side(items: list[dict[str, Any]]) -> str:
    return ", ".join(
        i["group"] if i["members"] is None else f"{i['group']}({i['members']})" for i in items
    )


@app.command("policy")
def policy(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Policy rules in order, with the member counts of their groups."""
    cfg, intent, _ = guarded(lambda: _load(config))
    data = policy_view(cfg, intent)
    if as_json:
        print_json(data)
        return
    rows = [
        (d["order"], d["name"], _side(d["source"]), _side(d["destination"]),
         ", ".join(d["service"]), d["action"], ", ".join(d["applied_to"]) or "-",
         ", ".join(d["firewalls"]))
        for d in data
    ]  # fmt: skip
    cols = ["#", "Rule", "Source (VMs)", "Destination (VMs)", "Service", "Action",
            "Applied to", "Firewalls"]  # fmt: skip
    write(table(cols, rows))
