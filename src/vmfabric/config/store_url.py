"""The ``store`` setting: which database URLs vmfabric accepts, judged without a database.

Accepted: ``sqlite:///PATH`` (a file, relative to the config file's folder),
``sqlite://`` or ``sqlite:///:memory:`` (memory), and ``postgresql[+DRIVER]://...`` with a
database name and no password (libpq reads ``PGPASSWORD`` or ``~/.pgpass``: secrets are
never written in the config). Whether the file's folder exists and can be written is a
question about this machine, answered by ``vmfabric.config.local``.
"""

from __future__ import annotations

import re
from typing import Any

_BACKENDS = ("sqlite", "postgresql")
_CREDENTIALS = re.compile(r"(://[^/@:]*):[^/@]*@")


def shown(url: str) -> str:
    """``url`` as an error may show it: any password replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1:***@", url)


def check_store_url(url: str) -> str:
    """Why ``url`` cannot be vmfabric's store, or ``""``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return (
            f"{shown(url)!r} is not a database URL (sqlite:///PATH, or "
            "postgresql://USER@HOST/DATABASE)"
        )
    backend = parsed.get_backend_name()
    if backend not in _BACKENDS:
        return f"{shown(url)!r}: database {backend!r} is not supported (sqlite or postgresql)"
    problem = _dialect_problem(parsed)
    if problem:
        return f"{shown(url)!r}: {problem}"
    if backend == "sqlite":
        return _sqlite_problem(parsed, url)
    return _postgresql_problem(parsed, url)


def _dialect_problem(parsed: Any) -> str:
    from sqlalchemy.exc import NoSuchModuleError

    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return f"unknown database driver {parsed.drivername!r}"
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        return f"its database driver is not installed ({exc.name})"
    return ""


def _sqlite_problem(parsed: Any, url: str) -> str:
    if parsed.host or parsed.username or parsed.port:
        return f"{url!r}: a SQLite URL names a file, not a server (sqlite:///PATH)"
    if parsed.database == "":
        return f"{url!r} names no file (sqlite:///vmfabric.db; sqlite:// is a memory store)"
    return ""


def _postgresql_problem(parsed: Any, url: str) -> str:
    if parsed.password is not None:
        return (
            f"{shown(url)!r}: a password in the store URL is refused: leave it out and let "
            "libpq read PGPASSWORD or ~/.pgpass (mode 0600)"
        )
    if not parsed.database:
        return f"{url!r} names no database (postgresql://USER@HOST/DATABASE)"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"{url!r}: port {parsed.port} is outside 1-65535"
    return ""
