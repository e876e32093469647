"""The ``vmfabric`` command: thin handlers that parse, call one function and render.

Errors are one line on stderr naming what and where; exit 2 for bad input (config,
arguments, inventory files), 1 for runtime failures (a switch or manager unreachable).
Argument errors (an unknown option, a missing argument, a bad value) are bad input too:
one line, not click's framed box. ``vmfabric.cli.everything`` assembles the commands.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, cast

import typer

from vmfabric.cli.common import fail
from vmfabric.core.errors import ConfigError, VmfabricError, one_line


class _ClickError(Protocol):
    """What click's exceptions offer (typer ships its own copy of click since 0.2x, so
    the classes are found through typer's BadParameter rather than imported)."""

    ctx: Any
    exit_code: int

    def format_message(self) -> str: ...


def _click_class(name: str) -> type[Exception]:
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


CLICK_ERROR = _click_class("ClickException")
USAGE_ERROR = _click_class("UsageError")


def usage_error(exc: _ClickError) -> ConfigError:
    """A click usage error as one line naming the command ("show vm: No such option...")."""
    message = one_line(exc.format_message()).rstrip(".")
    command = exc.ctx.command_path.split(" ", 1)[1:] if exc.ctx is not None else []
    return ConfigError(message, where=command[0] if command else "")


def _click_failure(exc: Exception) -> int:
    """Print a click error (help for a command given no arguments) and its exit code."""
    error = cast(_ClickError, exc)
    if type(exc).__name__ == "NoArgsIsHelpError" and error.ctx is not None:
        typer.echo(error.ctx.get_help())
        return 0
    if isinstance(exc, USAGE_ERROR):
        return fail(usage_error(error))
    sys.stderr.write(f"vmfabric: error: {one_line(error.format_message())}\n")
    return error.exit_code


# the commands of vmfabric.cli.show itself (others, such as show group, join it elsewhere)
SHOW_VIEWS = frozenset({"session", "vm", "host", "interface", "vlan", "switch", "plan", "audit"})


def _app_for(args: list[str]) -> tuple[typer.Typer, list[str], str]:
    """The app to run ``args``: for a view of ``vmfabric.cli.show``, that app alone (it
    starts faster without the runtime and the lab), else the whole command line."""
    if args[:1] == ["show"] and args[1:2] and args[1] in SHOW_VIEWS:
        from vmfabric.cli.show import app as show_app

        return show_app, args[1:], "vmfabric show"
    from vmfabric.cli.everything import app

    return app, args, "vmfabric"


def __getattr__(name: str) -> Any:
    """``vmfabric.cli.app``: the whole command line, imported when first asked for."""
    if name == "app":
        from vmfabric.cli.everything import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> Any:
    """The console script: exit 0 on success, 1 runtime failure, 2 bad input."""
    app, args, name = _app_for(sys.argv[1:] if argv is None else list(argv))
    try:
        code = app(args=args, prog_name=name, standalone_mode=False)
    except CLICK_ERROR as exc:
        code = _click_failure(exc)
    except typer.Abort:
        sys.stderr.write("vmfabric: error: aborted\n")
        code = 1
    except VmfabricError as exc:
        code = fail(exc)
    sys.exit(code if isinstance(code, int) else 0)
