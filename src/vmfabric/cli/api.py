"""``vmfabric api-token`` (a fresh random token for ``api.token``) and ``vmfabric show
controller`` (the controllers running on the store: leader or standby)."""

from __future__ import annotations

import secrets

import typer

from vmfabric.cli.common import ConfigOpt, JsonOpt, console, guarded, print_json
from vmfabric.cli.show import _table
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
    console.print(_table("Controllers", ["Id", "Host", "PID", "Role", "Since"], rows))
    if not data:
        console.print("no controller runs on this store")


def register(app: typer.Typer, show: typer.Typer) -> None:
    app.command("api-token")(api_token)
    show.command("controller")(show_controller)
