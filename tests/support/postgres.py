"""A throwaway PostgreSQL server on a unix socket, for tests and benchmarks (needs root:
the server runs as the ``postgres`` user, as LAB-NOTES.md describes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _bin_path() -> str:
    """Debian keeps initdb/pg_ctl under /usr/lib/postgresql/N/bin, off the PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return ":".join([os.environ.get("PATH", ""), *(str(p) for p in found)])


def _as_postgres(*command: str) -> None:
    env = {**os.environ, "PATH": _bin_path()}
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *command],
        check=True,
        capture_output=True,
        timeout=120,
        env=env,
    )


def missing() -> str | None:
    """Why no server can be started here, or None."""
    path = _bin_path()
    if not (shutil.which("initdb", path=path) and shutil.which("pg_ctl", path=path)):
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if not shutil.which("runuser"):
        return "runuser is not installed"
    if os.geteuid() != 0:
        return "starts PostgreSQL as the postgres user, which needs root"
    return None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a private server; yield its SQLAlchemy URL; stop it and remove its files."""
    folder = Path(tempfile.mkdtemp(prefix="vmfabric-pg-"))
    shutil.chown(folder, "postgres")
    data = folder / "data"
    try:
        _as_postgres("initdb", "-D", str(data), "-A", "trust", "-U", "vmfabric", "--no-sync")
        options = f"-k {folder} -c listen_addresses='' -F"
        _as_postgres("pg_ctl", "-D", str(data), "-o", options, "-w", "-l", f"{folder}/log", "start")
        try:
            yield f"postgresql+psycopg://vmfabric@/postgres?host={folder}"
        finally:
            _as_postgres("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
