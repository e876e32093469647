"""Top-level commands: run, sync, approve, demo, config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

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
from vmfabric.config import Config, find_config, load_config
from vmfabric.config import json_schema as config_json_schema
from vmfabric.config import report as config_report
from vmfabric.core.errors import ConfigError, TransientError, VmfabricError
from vmfabric.core.model import Snapshot
from vmfabric.runtime import Controller, SyncResult, sync_once
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.control import RuntimeControl
from vmfabric.runtime.lease import Lease, controllers
from vmfabric.runtime.telemetry import Telemetry

log = logging.getLogger("vmfabric")
Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True, help="More logging (-vv).")]


def _guard(exc: VmfabricError) -> typer.Exit:
    return typer.Exit(fail(exc))


def run(config: ConfigOpt = None, verbose: Verbose = 0) -> None:
    """Run the controller in the foreground until Ctrl-C or SIGTERM; SIGHUP reloads the
    configuration (a bad file is refused and the running one stays in force). On
    PostgreSQL several can run: one leads, the others stand by and take over."""
    setup_logging(verbose)
    try:
        cfg, store = open_store(config, connect=True, write=True)
        lease = _lease(cfg)
    except VmfabricError as exc:
        raise _guard(exc) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bus = EventBus()

        def announce(info: dict[str, Any]) -> None:
            bus.publish("controller", info)

        lease.on_change = announce
        ctl = Controller(cfg, store, bus=bus, lease=lease)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(ctl, config)))
        telemetry = Telemetry(bus)
        api = None
        if cfg.api is not None:
            from vmfabric.api.server import start as start_api

            api = start_api(cfg, cfg.store_url(), bus, RuntimeControl(ctl), telemetry=telemetry)
            log.info("REST API and web UI on %s", api.url)
        try:
            await ctl.run(stop)
        finally:
            if api is not None:
                api.stop()
            telemetry.close()

    try:
        asyncio.run(main())
    except VmfabricError as exc:
        raise _guard(exc) from None
    finally:
        store.close()


@contextlib.contextmanager
def one_writer(cfg: Config) -> Iterator[None]:
    """Hold the fabric's writer role for a one-shot command: the SQLite lock, or on
    PostgreSQL the leader lease, refused at once while a controller leads."""
    if cfg.store_url().startswith("sqlite"):
        with controller_lock(cfg):
            yield
        return
    host, pid = socket.gethostname(), os.getpid()
    lease = Lease.for_store(cfg.store_url(), f"{host}:{pid}:sync", host, pid)
    try:
        if not lease.acquire(block=False):
            leaders = [c for c in controllers(cfg.store_url()) if c["role"] == "leader"]
            who = f"{leaders[0]['id']} (pid {leaders[0]['pid']})" if leaders else "another"
            raise TransientError(
                f"a vmfabric controller {who} leads this fabric; stop it, or use --dry-run"
            )
        yield
    finally:
        lease.release()


def _lease(cfg: Config) -> Lease:
    """This controller's claim on the store: on SQLite the file lock, refused at once
    while another controller holds it; on PostgreSQL a lease it waits for as standby."""
    host, pid = socket.gethostname(), os.getpid()
    lease = Lease.for_store(cfg.store_url(), f"{host}:{pid}", host, pid)
    if cfg.store_url().startswith("sqlite") and not lease.acquire(block=False):
        lease.release()
        with controller_lock(cfg):  # raises the one-line error naming the holder's PID
            pass
    return lease


async def _reload(ctl: Controller, path: Path | None) -> None:
    """SIGHUP: read the config file again and swap it in; a bad file changes nothing."""
    try:
        new = await asyncio.to_thread(load_config, path, connect=True, write=True)
        if new.store_url() != ctl.config.store_url():
            raise ConfigError("the store cannot change while running: restart instead")
    except VmfabricError as exc:
        log.error("reload refused, the running configuration stays in force: %s", exc)
        return
    await ctl.reload(new)


def _plan_rows(result: SyncResult) -> list[tuple[str, ...]]:
    return [(target, c.holder, c.action, c.member, c.reason) for target, c in result.planned()]


def sync(
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan, apply nothing.")
    ] = False,
    as_json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each session.")] = 30.0,
    verbose: Verbose = 0,
) -> None:
    """One full reconcile, the same step `run` takes: read every session and switch, print
    the plan, apply it (check mode, the guard and approvals behave as in `run`)."""
    setup_logging(verbose, quiet=True)
    try:
        cfg, store = open_sync_store(config, dry_run)
        try:
            with contextlib.nullcontext() if dry_run else one_writer(cfg):
                result = sync_once(cfg, None if dry_run else store, dry_run, timeout=timeout)
        finally:
            if store is not None:
                store.close()
    except VmfabricError as exc:
        raise _guard(exc) from None
    if as_json:
        print_json(result.to_json())
        return
    _print_sync(result)


def _print_sync(result: SyncResult) -> None:
    from rich.table import Table

    table = Table(box=None, header_style="bold", title="Plan", title_justify="left")
    for col in ("Switch", "Port", "Action", "VLAN", "Why"):
        table.add_column(col)
    for row in _plan_rows(result):
        table.add_row(*row)
    console.print(table if result.planned() else "Plan: nothing to change.")
    for step in result.steps:
        if step.guarded:
            console.print(
                f"held by the blast-radius guard on {step.target}: {step.guarded} "
                "(see `vmfabric show plan`)"
            )
        if step.plan.held:
            console.print(f"{step.target}: {len(step.plan.held)} removals wait (see --json)")
        if step.check and step.plan.changes:
            console.print(f"{step.target} is in check mode: nothing applied")
    if result.dry_run:
        console.print("dry run: nothing applied")
        return
    applied = [c for s in result.steps for c in s.applied]
    adds = sum(c.action == "add" for c in applied)
    removes = len(applied) - adds
    if applied:
        console.print(f"applied: +{adds} -{removes} (port, VLAN) memberships")
    elif result.planned():
        console.print("applied: nothing")


def approve(
    plan_id: Annotated[int, typer.Argument(help="Id from `vmfabric show plan`.")],
    config: ConfigOpt = None,
) -> None:
    """Approve a held plan: a running controller applies its removals; without one,
    `vmfabric sync` does."""
    try:
        cfg, store = open_store(config)
        try:
            store.approve_plan(plan_id, time.time())
        finally:
            store.close()
    except VmfabricError as exc:
        raise _guard(exc) from None
    if controller_running(cfg):
        console.print(f"plan {plan_id} approved: the running controller applies it")
    else:
        console.print(f"plan {plan_id} approved: no controller runs; `vmfabric sync` applies it")


def controller_running(cfg: Config) -> bool:
    """Whether a `vmfabric run` holds this fabric's writer lock (SQLite stores)."""
    try:
        with controller_lock(cfg):
            return False
    except TransientError:
        return True


def demo(
    keep_going: Annotated[bool, typer.Option(help="Pause between steps.")] = False,
    static: Annotated[
        bool, typer.Option("--static", help="The single-switch demo with a static inventory.")
    ] = False,
    overlay: Annotated[
        bool, typer.Option("--overlay", help="VXLAN flood lists on a routed (BGP) fabric.")
    ] = False,
) -> None:
    """Show vmfabric at work: a leaf-spine namespace lab, a vCenter simulator, real pings."""
    from vmfabric.demo import run_demo, run_static_demo

    try:
        if overlay:
            from vmfabric.demo_overlay import run_overlay_demo

            run_overlay_demo()
        elif static:
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
    """Check everything that can be checked offline, as `run` would need it: the file, its
    cross-references and driver options, the store's folder, secrets (set, not empty,
    mode 0600), CA files and static inventories. Prints one line per section."""
    try:
        cfg: Config = load_config(config, connect=True, write=True)
        inventories = _check_inventories(cfg, str(find_config(config)))
    except VmfabricError as exc:
        raise _guard(exc) from None
    for line in config_report.summary(cfg, inventories):
        console.print(line)
    console.print("config OK")


def _check_inventories(cfg: Config, source: str) -> dict[str, Snapshot]:
    """Each static session's inventory, read by the static source's own parser."""
    from vmfabric.sources.static import load_inventory

    found: dict[str, Snapshot] = {}
    for i, session in enumerate(cfg.sessions):
        if session.kind != "static":
            continue
        path = cfg.resolve(session.path)
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"inventory {path} {what}", f"{source}: sessions[{i}].path")
        found[session.name] = load_inventory(path, session.name)
    problem = config_report.inventory_link_problem(cfg, found)
    if problem is not None:
        raise ConfigError(problem[1], f"{source}: {problem[0]}")
    return found


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of vmfabric.yaml."""
    typer.echo(json.dumps(config_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("sync")(sync)
    app.command("approve")(approve)
    app.command("demo")(demo)
    app.add_typer(config_app, name="config")
