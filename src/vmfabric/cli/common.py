"""Options and helpers shared by the CLI commands: opening the store (writers and
read-only readers), the writer lock, one-line errors, JSON and plain tables."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic_core import to_json
from rich.console import Console

from vmfabric.config import Config, load_config
from vmfabric.core.errors import ConfigError, TransientError, VmfabricError
from vmfabric.store import Store, StoreError

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
    config_path: Path | None,
    *,
    readonly: bool = False,
    connect: bool = False,
    write: bool = False,
) -> tuple[Config, Store]:
    """The config (checked for a command that ``connect``s to managers and ``write``s the
    store; see ``vmfabric.config.local``) and its store: a writer (creates or upgrades the
    store), or with ``readonly`` a reader that never writes it (``show``)."""
    config = load_config(config_path, connect=connect, write=write)
    return config, Store(config.store_url(), readonly=readonly)


def open_sync_store(config_path: Path | None, dry_run: bool) -> tuple[Config, Store | None]:
    """``sync``'s store: a writer, or for ``--dry-run`` a reader of the store if there is
    one (a dry run records nothing, so it works on a read-only store or none at all)."""
    if not dry_run:
        return open_store(config_path, connect=True, write=True)
    config = load_config(config_path, connect=True)
    try:
        return config, Store(config.store_url(), readonly=True)
    except StoreError:
        return config, None


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


LONG_LIST = 100


def json_text(data: Any) -> str:
    """``data`` as JSON (UTF-8 as it is) by pydantic-core's encoder, five times faster
    than the json module's: indented, or for a list longer than LONG_LIST one compact
    element per line (half the bytes of 100,000 indented VMs)."""
    if isinstance(data, list) and len(data) > LONG_LIST:
        items = b",\n  ".join(to_json(item, fallback=str) for item in data)
        return f"[\n  {items.decode()}\n]"
    return to_json(data, indent=2, fallback=str).decode()


def print_json(data: Any) -> None:
    write(json_text(data) + "\n")


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain table as EOS prints one: a header, then columns padded to their widest
    cell and two spaces apart (None is an empty cell)."""
    cells = [list(columns), *([("" if v is None else str(v)) for v in row] for row in rows)]
    widths = [max(map(len, column)) for column in zip(*cells, strict=True)]
    line = "  ".join([*(f"{{:<{w}}}" for w in widths[:-1]), "{}"])
    return "".join(line.format(*row).rstrip() + "\n" for row in cells)


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
