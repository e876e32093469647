"""The whole ``vmfabric`` command line: every command group (``show`` of one of its own
views starts without it: see ``vmfabric.cli.main``)."""

from __future__ import annotations

import typer

from vmfabric.cli import api, commands, groups, lab, show  # noqa: F401 (groups: show group|policy)
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
api.register(app, show.app)
