"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from vmfabric.config import Config, load_config
from vmfabric.core.errors import ConfigError, TransientError, VmfabricError
from vmfabric.store import Store

T = TypeVar("T")
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        help="Config file (default: $VMFABRIC_CONFIG, else ./vmfabric.yaml).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def open_store(
    config_path: Path | None, *, connect: bool = False, write: bool = False
) -> tuple[Config, Store]:
    """The config (checked for a command that ``connect``s to managers and ``write``s the
    store; see ``vmfabric.config.local``) and its store."""
    config = load_config(config_path, connect=connect, write=write)
    return config, Store(config.store_url())


@contextlib.contextmanager
def controller_lock(config: Config) -> Iterator[None]:
    """Hold the store's writer lock (``<store>.lock``, SQLite stores only) while a command
    writes switches: two writers against one fabric would undo each other's work. A busy
    lock is a TransientError naming the PID holding it."""
    url = config.store_url()
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        yield
        return
    path = Path(url.removeprefix("sqlite:///") + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise TransientError(
                f"a vmfabric controller (pid {holder}) already writes this fabric "
                f"(lock {path}); stop it, or use --dry-run"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def fail(exc: VmfabricError) -> int:
    """Write ``exc`` as one line on stderr; its exit code (2 bad input, 1 runtime)."""
    sys.stderr.write(f"vmfabric: error: {exc}\n")
    return 2 if isinstance(exc, ConfigError) else 1


def guarded(fn: Callable[[], T]) -> T:
    """Run ``fn``, turning a vmfabric error into one line and the matching exit."""
    try:
        return fn()
    except VmfabricError as exc:
        raise typer.Exit(fail(exc)) from None


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def setup_logging(verbose: int, quiet: bool = False) -> None:
    """Logging to stderr. vmfabric's own INFO lines show by default (what the controller
    does); ``quiet`` (one-shot commands, whose result is their output) shows only errors
    unless ``-v`` is given."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    default = logging.CRITICAL if quiet else logging.INFO
    logging.getLogger("vmfabric").setLevel(default if verbose == 0 else level)
