"""``vmfabric api-token`` (a fresh random token for ``api.token``), ``vmfabric show
controller`` (the controllers running on the store: leader or standby) and ``vmfabric
--version``."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from vmfabric import __version__
from vmfabric.cli.common import ConfigOpt, JsonOpt, console, guarded, print_json, table, write
from vmfabric.config import load_config
from vmfabric.runtime.lease import controllers

TOKEN_BYTES = 32


def api_token() -> None:
    """Print a fresh random API token (put it where api.token points, e.g. a 0600 file)."""
    typer.echo(secrets.token_urlsafe(TOKEN_BYTES))


def show_controller(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Controllers running on this store: the leader applies, standbys wait."""
    data = guarded(lambda: controllers(load_config(config).store_url()))
    if as_json:
        print_json(data)
        return
    rows = [(d["id"], d["host"], d["pid"], d["role"], d["since"]) for d in data]
    write(table(["Id", "Host", "PID", "Role", "Since"], rows))
    if not data:
        console.print("no controller runs on this store")


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"vmfabric {__version__}")
        raise typer.Exit()


def options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print it."),
    ] = False,
) -> None:
    """Keep switch edge-port VLANs in step with where virtual machines run."""


def register(app: typer.Typer, show: typer.Typer) -> None:
    app.callback()(options)
    app.command("api-token")(api_token)
    show.command("controller")(show_controller)
