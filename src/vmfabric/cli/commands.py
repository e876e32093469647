"""Top-level commands: run, sync, approve, demo, config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Annotated

import typer

from vmfabric.cli.common import (
    ConfigOpt,
    JsonOpt,
    console,
    controller_lock,
    fail,
    open_store,
    open_sync_store,
    print_json,
    setup_logging,
)
from vmfabric.config import Config, load_config
from vmfabric.core.errors import VmfabricError
from vmfabric.core.model import PortPlan
from vmfabric.core.vlans import format_vlans
from vmfabric.runtime.controller import Controller, plan_json, sync_once

Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True, help="More logging (-vv).")]


def _guard(exc: VmfabricError) -> typer.Exit:
    return typer.Exit(fail(exc))


def run(config: ConfigOpt = None, verbose: Verbose = 0) -> None:
    """Run the controller in the foreground until Ctrl-C or SIGTERM."""
    setup_logging(verbose)
    try:
        cfg, store = open_store(config)
    except VmfabricError as exc:
        raise _guard(exc) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Controller(cfg, store).run(stop)

    try:
        with controller_lock(cfg):
            asyncio.run(main())
    except VmfabricError as exc:
        raise _guard(exc) from None
    finally:
        store.close()


def _plan_rows(ports: list[PortPlan]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for p in ports:
        for r in p.reasons:
            who = ", ".join(r.vms) or r.note
            pgs = ", ".join(r.portgroups)
            rows.append((p.switch, p.port, r.action, str(r.vlan), who, pgs))
    return rows


def sync(
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan, apply nothing.")
    ] = False,
    as_json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each session.")] = 30.0,
    verbose: Verbose = 0,
) -> None:
    """One full reconcile: read every session and switch, print the plan, apply it."""
    from rich.table import Table

    setup_logging(verbose, quiet=True)

    try:
        cfg, store = open_sync_store(config, dry_run)
        try:
            with contextlib.nullcontext() if dry_run else controller_lock(cfg):
                result = sync_once(cfg, None if dry_run else store, dry_run, timeout=timeout)
        finally:
            if store is not None:
                store.close()
    except VmfabricError as exc:
        raise _guard(exc) from None
    if as_json:
        out = plan_json(result.plan)
        out.update(held=plan_json(result.held)["ports"], guarded=result.guarded)
        out.update(applied=result.applied, dry_run=dry_run)
        print_json(out)
        return
    table = Table(box=None, header_style="bold", title="Plan", title_justify="left")
    for col in ("Switch", "Port", "Action", "VLAN", "VMs / why", "Port groups"):
        table.add_column(col)
    for row in _plan_rows(result.plan):
        table.add_row(*row)
    console.print(table if result.plan else "Plan: nothing to change.")
    for sw, why in result.guarded.items():
        console.print(f"held by the blast-radius guard on {sw}: {why} (see `vmfabric show plan`)")
    if dry_run:
        console.print("dry run: nothing applied")
    elif result.plan:
        adds = sum(len(p.add) for p in result.plan)
        removes = sum(len(p.remove) for p in result.plan)
        console.print(f"applied: +{adds} -{removes} (port, VLAN) memberships")


def approve(
    plan_id: Annotated[int, typer.Argument(help="Id from `vmfabric show plan`.")],
    config: ConfigOpt = None,
) -> None:
    """Approve a held plan; the running controller applies it."""
    try:
        _, store = open_store(config)
        try:
            store.approve_plan(plan_id, time.time())
        finally:
            store.close()
    except VmfabricError as exc:
        raise _guard(exc) from None
    console.print(f"plan {plan_id} approved: the controller applies it within a second")


def demo(
    keep_going: Annotated[bool, typer.Option(help="Pause between steps.")] = False,
    static: Annotated[
        bool, typer.Option("--static", help="The single-switch demo with a static inventory.")
    ] = False,
) -> None:
    """Show vmfabric at work: a leaf-spine namespace lab, a vCenter simulator, real pings."""
    from vmfabric.demo import run_demo, run_static_demo

    try:
        if static:
            run_static_demo(pause=keep_going)
        else:
            run_demo(pause=keep_going)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except VmfabricError as exc:
        raise _guard(exc) from None


config_app = typer.Typer(help="Check a config file or print its JSON schema.", no_args_is_help=True)


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the config file and summarise it."""
    try:
        cfg: Config = load_config(config)
    except VmfabricError as exc:
        raise _guard(exc) from None
    for s in cfg.sessions:
        console.print(f"session {s.name}: {s.kind}, allowed {format_vlans(s.allowed_vlans)}")
    for sw in cfg.switches:
        console.print(f"switch {sw.name}: {sw.driver}, edge ports {', '.join(sw.edge_ports)}")
    console.print("config OK")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of vmfabric.yaml."""
    typer.echo(json.dumps(Config.model_json_schema(mode="validation"), indent=2))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("sync")(sync)
    app.command("approve")(approve)
    app.command("demo")(demo)
    app.add_typer(config_app, name="config")
