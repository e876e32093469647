"""The ``vmfabric`` command: thin handlers that parse, call one function and render.

Errors are one line on stderr naming what and where; exit 2 for bad input (config,
arguments, inventory files), 1 for runtime failures (a switch or manager unreachable).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from vmfabric.cli import commands, show
from vmfabric.errors import ConfigError, VmfabricError

T = TypeVar("T")

app = typer.Typer(
    name="vmfabric",
    help="Keep switch edge-port VLANs in step with where virtual machines run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(show.app, name="show")
commands.register(app)


def _mount_lab() -> None:
    try:
        from vmfabric.cli import lab
    except ImportError:  # the lab builder is optional at install time
        return
    app.add_typer(lab.app, name="lab", help="Build a leaf/spine lab in network namespaces.")


_mount_lab()


def fail(exc: VmfabricError) -> int:
    code = 2 if isinstance(exc, ConfigError) else 1
    sys.stderr.write(f"vmfabric: error: {exc}\n")
    return code


def guarded(fn: Callable[[], T]) -> T:
    """Run ``fn`` turning vmfabric errors into one line and an exit code."""
    try:
        return fn()
    except VmfabricError as exc:
        raise typer.Exit(fail(exc)) from None


def main(argv: list[str] | None = None) -> Any:
    try:
        return app(args=argv, standalone_mode=True)
    except VmfabricError as exc:
        sys.exit(fail(exc))
