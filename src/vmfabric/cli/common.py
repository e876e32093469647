"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from vmfabric.config import Config, load_config
from vmfabric.store import Store

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


def open_store(config_path: Path | None) -> tuple[Config, Store]:
    config = load_config(config_path)
    return config, Store(config.store_url())


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("vmfabric").setLevel(logging.INFO if verbose == 0 else level)
