"""Opening the store's database: URL handling, file mode, SQLite settings and error mapping.

This module owns everything that depends on the database engine rather than on the
tables. For SQLite files a writer creates the file with mode 0600 before SQLAlchemy opens
it, turns on WAL (so ``vmfabric show`` reads while ``run`` writes) with a busy timeout, and
makes every transaction explicit: reads ``BEGIN`` (one consistent snapshot per query),
writes ``BEGIN IMMEDIATE`` (take the write lock up front, so the busy timeout applies
instead of a deadlock on lock upgrade).

A reader (``readonly``) never writes the store: SQLite opens the file with ``mode=ro`` (a
missing file is an error, not a new empty store) and ``query_only``, sets no journal mode
and changes no file mode; a read-only connection never checkpoints or truncates the
writer's WAL when it closes. Beside a store with no writer, SQLite may leave the empty
WAL and WAL-index files every reader needs. In a folder it cannot write, where the WAL
index cannot be created, it reads the file as immutable (no writer can run there).
PostgreSQL readers run ``READ ONLY`` transactions. Database failures become one-line
``StoreError`` naming the store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from vmfabric.core.errors import ConfigError, TransientError

_WRITE = "vmfabric_write"
_SIDE_FILES = ("-wal", "-shm")


class StoreError(TransientError):
    """The store could not be read or written (locked, read-only, disk full, gone)."""


class StoreReplacedError(StoreError):
    """The store's file was deleted or replaced while a writer had it open: what it
    writes now is lost (the writer must reopen the store, or stop)."""


Identity = tuple[int, int]


def identity(path: str) -> Identity | None:
    """(st_dev, st_ino) of the file at ``path``, None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL, refusing nonsense with a StoreError naming it."""
    try:
        return make_url(url)
    except exc.ArgumentError:
        raise StoreError(f"store {url!r}: not a database URL") from None


def sqlite_file(url: URL) -> str | None:
    """The file path of a SQLite file database, or None (memory, or not SQLite)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if _is_uri(url):
        database = database.removeprefix("file:")
        if url.query.get("mode") == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    return database


def single_connection(url: URL) -> bool:
    """Whether every user of the Store shares one connection (SQLite in memory)."""
    return url.get_backend_name() == "sqlite" and sqlite_file(url) is None


def describe(url: URL) -> str:
    """How error messages name the store: its file, or its URL without the password."""
    if url.get_backend_name() == "sqlite":
        return sqlite_file(url) or "sqlite://(memory)"
    return url.render_as_string(hide_password=True)


def _is_uri(url: URL) -> bool:
    return str(url.query.get("uri", "")).lower() in ("true", "1")


def _readonly(url: URL) -> bool:
    return _is_uri(url) and url.query.get("mode") == "ro"


def create_private_file(path: str) -> None:
    """Create the database file with mode 0600 unless it exists (never widen a mode)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as err:
        raise StoreError(f"store {path}: cannot create the database file: {err.strerror}") from None
    os.close(fd)


def restrict_side_files(path: str) -> None:
    """Make the WAL and shared-memory files 0600 too (best effort: they may be another
    user's, or already gone)."""
    for suffix in _SIDE_FILES:
        with contextlib.suppress(OSError):
            os.chmod(path + suffix, 0o600)


def open_engine(url: URL, busy_timeout: float, *, readonly: bool = False) -> Engine:
    """An Engine for ``url``, with the SQLite settings described above when it is SQLite."""
    if url.get_backend_name() != "sqlite":
        return _server_engine(url)
    path = sqlite_file(url)
    if path is not None and readonly:
        url = reader_url(url, path)
    elif path is not None and not _readonly(url):
        create_private_file(path)
    args: dict[str, Any] = {"connect_args": {"timeout": busy_timeout}}
    if path is None:
        args = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(url, json_serializer=to_json_text, **args)
    _install_sqlite_hooks(engine, None if readonly else path, busy_timeout, readonly=readonly)
    return engine


def reader_url(url: URL, path: str) -> URL:
    """The URL opening SQLite file ``path`` read-only (see the module docstring); a
    StoreError when the file does not exist."""
    if not os.path.exists(path):
        raise StoreError(
            f"store {path} does not exist: start `vmfabric run` (or `vmfabric sync`) once "
            "to create it, or check the store setting"
        )
    query = {"mode": "ro", "uri": "true"}
    if _cannot_index(path):
        query["immutable"] = "1"
    return url.set(database=f"file:{_uri_path(path)}", query=query)


def _cannot_index(path: str) -> bool:
    """Whether a reader can neither find nor create the WAL index beside ``path``."""
    if os.path.exists(path + "-shm"):
        return False
    folder = os.path.dirname(os.path.abspath(path))
    return not os.access(folder, os.W_OK)


def _uri_path(path: str) -> str:
    """``path`` for a SQLite URI filename (``?`` and ``#`` would end the path)."""
    return os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def to_json_text(value: Any) -> str:
    """How JSON columns are written: an empty list without an encoder call (most of a
    VM's lists are empty), the rest by pydantic-core's encoder (a 100,000-VM inventory
    writes half a million JSON values)."""
    if isinstance(value, list) and not value:
        return "[]"
    return to_json(value).decode()


def _server_engine(url: URL) -> Engine:
    try:
        return create_engine(url, pool_pre_ping=True, json_serializer=to_json_text)
    except ImportError as err:
        missing = f"its database driver is not installed ({err.name})"
        raise ConfigError(f"store {describe(url)}: {missing}") from None


def _install_sqlite_hooks(
    engine: Engine, path: str | None, busy_timeout: float, *, readonly: bool
) -> None:
    """``path``: the file of a writer (WAL and side-file modes are set), else None."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun explicitly below
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if readonly:
            cursor.execute("PRAGMA query_only = 1")
        elif path is not None:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            restrict_side_files(path)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _reason(err: exc.SQLAlchemyError) -> str:
    cause = getattr(err, "orig", None) or err
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _file_hint(path: str | None) -> str:
    """Why a SQLite file may not be writable, when the file system says so."""
    if path is None:
        return ""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return " (read-only file system)"
    except OSError:
        return " (its folder is not accessible)"
    return ""


@contextlib.contextmanager
def store_errors(where: str, path: str | None = None) -> Iterator[None]:
    """Turn database failures into a one-line StoreError naming ``where`` (and, for a
    SQLite ``path``, a read-only file system).

    Integrity errors are bugs (the store deduplicates its inputs), so they pass through.
    """
    try:
        yield
    except exc.IntegrityError:
        raise
    except (exc.DBAPIError, exc.TimeoutError) as err:
        raise StoreError(f"store {where}: {_reason(err)}{_file_hint(path)}") from err


@contextlib.contextmanager
def transaction(
    engine: Engine, where: str, *, write: bool, path: str | None = None
) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back if it raises.

    Reads on a server database run REPEATABLE READ, so a query's statements see one
    snapshot as they do on SQLite."""
    with store_errors(where, path), engine.connect() as conn:
        if write:
            conn.execution_options(**{_WRITE: True})
        elif engine.dialect.name != "sqlite":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn
