"""Which schema a store has, and bringing it to this vmfabric's (Alembic, programmatically).

- ``revision(conn)`` reads the store's revision without importing Alembic (readers call it
  on every open): ``alembic_version`` when present; a wave-1 store, which had none, is
  ``LEGACY_REVISION`` by its ``meta.schema_version`` 1; an empty database is None.
- ``upgrade(conn, found)`` runs in the writer's transaction: an empty database gets the
  current tables and is stamped with the head revision; a wave-1 store is stamped
  ``LEGACY_REVISION`` and then upgraded through the migrations in ``migrations/versions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    inspect,
    select,
    text,
)

from vmfabric.core.errors import ConfigError
from vmfabric.store.schema import (
    HEAD_REVISION,
    LEGACY_REVISION,
    SCHEMA_VERSION,
    meta,
    metadata,
)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = "vmfabric.store:migrations"
_VERSION_KEY = "schema_version"
REVISIONS = (LEGACY_REVISION, HEAD_REVISION)
"""Every revision this vmfabric knows, oldest first (a test compares it with Alembic's)."""

# Alembic's own table, read (and for a new store made) without Alembic; not part of
# ``metadata``: Alembic owns it
_alembic_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),  # as Alembic makes it
)


def revision(conn: Connection, where: str) -> str | None:
    """The store's schema revision; None for a database with none of vmfabric's tables.
    A store of a schema version this vmfabric does not know is refused (ConfigError)."""
    tables = set(inspect(conn).get_table_names())
    if _alembic_version.name in tables:
        found = conn.execute(select(_alembic_version.c.version_num)).scalar_one_or_none()
        if found is not None:
            return str(found)
    if meta.name not in tables:
        return None
    stmt = select(meta.c.value).where(meta.c.key == _VERSION_KEY)
    version = conn.execute(stmt).scalar_one_or_none()
    if version == "1":
        return LEGACY_REVISION
    raise ConfigError(
        f"store {where}: schema version {version}, this vmfabric uses {SCHEMA_VERSION}"
    )


def is_older(found: str | None) -> bool:
    """Whether a store of revision ``found`` is one this vmfabric upgrades (or creates)."""
    return found is None or (found in REVISIONS and found != HEAD_REVISION)


def check_known(found: str | None, where: str) -> None:
    """Refuse a store written by a newer vmfabric (a revision this one does not know)."""
    if found is not None and found not in REVISIONS:
        raise ConfigError(
            f"store {where}: schema revision {found} is newer than this vmfabric's "
            f"({HEAD_REVISION}): use the vmfabric version that wrote it"
        )


_UPGRADE_LOCK = (0x766D6662, 3)  # "vmfb", 3: PostgreSQL advisory lock of schema upgrades


def serialize_upgrades(conn: Connection) -> None:
    """Make concurrent writers opening one server database upgrade it one at a time (the
    second then finds it current). SQLite's BEGIN IMMEDIATE already does."""
    if conn.dialect.name == "postgresql":
        key, number = _UPGRADE_LOCK
        conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": key, "b": number})


def upgrade(conn: Connection, found: str | None) -> None:
    """Bring the store on ``conn`` (inside a write transaction) to the head revision."""
    if found is None:
        metadata.create_all(conn)
        conn.execute(meta.insert().values(key=_VERSION_KEY, value=str(SCHEMA_VERSION)))
        _stamp_new(conn)
        return
    from alembic import command

    config = _config(conn)
    if found == LEGACY_REVISION and not _has_alembic_version(conn):
        command.stamp(config, LEGACY_REVISION)
    command.upgrade(config, HEAD_REVISION)


def _stamp_new(conn: Connection) -> None:
    """Stamp a store just created at the head revision as ``alembic stamp`` does (its
    table and row), without importing Alembic: 30 MB of a new controller's memory for
    one row. Upgrades of older stores still run through Alembic."""
    _alembic_version.create(conn)
    conn.execute(_alembic_version.insert().values(version_num=HEAD_REVISION))


def _has_alembic_version(conn: Connection) -> bool:
    return _alembic_version.name in set(inspect(conn).get_table_names())


def _config(conn: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = conn
    return config
