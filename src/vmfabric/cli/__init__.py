"""The ``vmfabric`` command: thin handlers that parse, call one function and render.

Errors are one line on stderr naming what and where; exit 2 for bad input (config,
arguments, inventory files), 1 for runtime failures (a switch or manager unreachable).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from vmfabric.cli import api, commands, groups, lab, show  # noqa: F401 (groups: show group|policy)
from vmfabric.cli import overlay as _overlay  # noqa: F401 (adds show vxlan, show fabric-trunk)
from vmfabric.cli.common import fail
from vmfabric.core.errors import VmfabricError

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
api.register(app, show.app)


def main(argv: list[str] | None = None) -> Any:
    try:
        return app(args=argv, standalone_mode=True)
    except VmfabricError as exc:
        sys.exit(fail(exc))
