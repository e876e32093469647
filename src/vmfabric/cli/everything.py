"""The whole ``vmfabric`` command line: every command group and ``--version`` (``show``
of one of its own views starts without it: see ``vmfabric.cli.main``)."""

from __future__ import annotations

from typing import Annotated

import typer

from vmfabric import __version__
from vmfabric.cli import commands, groups, lab, show  # noqa: F401 (groups adds show group|policy)
from vmfabric.cli import overlay as _overlay  # noqa: F401 (adds show vxlan, show fabric-trunk)

app = typer.Typer(
    name="vmfabric",
    help="Keep switch edge-port VLANs in step with where virtual machines run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(show.app, name="show")
app.add_typer(lab.app, name="lab", help="Build a leaf/spine lab in network namespaces.")
commands.register(app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vmfabric {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Keep switch edge-port VLANs in step with where virtual machines run."""
