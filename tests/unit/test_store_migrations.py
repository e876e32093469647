"""Schema migrations: a wave-1 store (schema version 1, frozen as DDL in tests/data/store)
upgrades when a writer opens it, keeping its rows, on SQLite and PostgreSQL; the migrated
schema equals a new store's; readers never upgrade."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text

from support.store_data import DATA, NOW, postgres_url, url_of
from vmfabric import views
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Power, Vm
from vmfabric.store import Store, StoreError, migrate
from vmfabric.store.schema import HEAD_REVISION, LEGACY_REVISION, metadata

__all__ = ["postgres_url"]  # a fixture, imported to be used here

WAVE1_ROWS = [
    "INSERT INTO meta VALUES ('schema_version', '1')",
    "INSERT INTO sessions VALUES ('lab', 'static', 'inv.yaml', true, '1-4094', 'enforce',"
    " 'connected', true, '', '', '[]', 1700000000.0)",
    "INSERT INTO hosts VALUES ('lab', 'esx01', '{}')",
    "INSERT INTO host_uplinks VALUES ('lab', 'esx01', 0, 'vmnic0', 'leaf1', 'p1', 'static')",
    "INSERT INTO portgroups VALUES ('lab', 'web', '110', '', '')",
    "INSERT INTO portgroups VALUES ('lab', 'db', '120', '', '')",
    "INSERT INTO vms VALUES ('lab', 'vm-1', 'web-01', 'esx01', 'poweredOn')",
    "INSERT INTO vms VALUES ('lab', 'vm-2', 'idle', 'esx01', 'poweredOff')",
    "INSERT INTO vm_networks VALUES ('lab', 'vm-1', 0, 'web')",
    "INSERT INTO vm_networks VALUES ('lab', 'vm-1', 1, 'db')",
    "INSERT INTO port_states VALUES ('leaf1', 'p1', 'trunk', '1,110,120', '110,120', 1.0)",
    "INSERT INTO switches VALUES ('leaf1', 'ok', '', 1700000001.0)",
    "INSERT INTO audit_log (time, switch, port, vlan, action, reason, session)"
    " VALUES (1700000002.5, 'leaf1', 'p1', 110, 'add', 'VMs web-01 (port group web)', 'lab')",
    "INSERT INTO audit_log (time, switch, port, vlan, action, reason, session)"
    " VALUES (1700000003.0, 'leaf1', 'p1', 120, 'add', 'VMs web-01 (port group db)', 'lab')",
    "INSERT INTO plans (switch, status, created, updated, reason, sessions, plan) VALUES"
    " ('leaf1', 'held', 1.0, 1.0, 'guard', '[\"lab\"]',"
    ' \'{"ports": [{"port": "p1", "add": [], "remove": [110]}]}\')',
    "INSERT INTO plans (switch, status, created, updated, reason, sessions, plan) VALUES"
    " ('leaf1', 'superseded', 2.0, 2.0, 'old', '[]', '{\"ports\": []}')",
]


def wave1_statements(dialect: str) -> list[str]:
    """The frozen wave-1 DDL of ``dialect``, one statement each."""
    ddl = (DATA / f"wave1-{dialect}.sql").read_text(encoding="utf-8")
    code = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    return [s.strip() for s in code.split(";\n") if s.strip().rstrip(";")]


def make_wave1_store(url: str) -> None:
    """A store exactly as wave 1 left it: its DDL and a few rows of every table."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in [*wave1_statements(dialect), *WAVE1_ROWS]:
            conn.execute(text(statement.rstrip(";")))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def wave1_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = url_of(tmp_path / "wave1.db")
    else:
        url = request.getfixturevalue("postgres_url")
    make_wave1_store(url)
    yield url


def columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {c["name"] for c in inspect(conn).get_columns(table)}
    engine.dispose()
    return found


def schema_differences(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate finds between the database and schema.py."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if "alembic_version" not in str(d)]


@pytest.mark.integration
def test_a_wave1_store_upgrades_keeping_its_rows(wave1_url: str) -> None:
    with Store(wave1_url) as store:
        snap = store.snapshot("lab")
        vm_rows = views.vms(store, detail=True)
        audit = views.audit(store)
        plans = views.plans(store)
        switches = views.switches(store)
        sessions = views.sessions(store)
    assert {v.id: v for v in snap.vms} == {
        "vm-1": Vm("lab", "vm-1", "web-01", "esx01", Power.ON, ("web", "db")),
        "vm-2": Vm("lab", "vm-2", "idle", "esx01", Power.OFF),
    }
    web = next(v for v in vm_rows if v["name"] == "web-01")
    assert web["networks"] == [{"portgroup": "web", "vlan": 110}, {"portgroup": "db", "vlan": 120}]
    assert web["attachments"] == [{"switch": "leaf1", "port": "p1"}]
    assert (web["ips"], web["tags"], web.get("guest_os")) == ([], [], "")
    assert [(a["kind"], a["switch"], a["port"], a["vlan"], a["plan"]) for a in audit] == [
        ("switchport", "leaf1", "p1", 120, None),
        ("switchport", "leaf1", "p1", 110, None),
    ]
    assert audit[1]["time"] == "2023-11-14T22:13:22.500Z"
    assert [(p["target"], p["status"], p["vlans"]) for p in plans] == [
        ("leaf1", "held", [110]),
        ("leaf1", "expired", []),  # wave 1's superseded
    ]
    assert switches[0] | {"updated": None} == {
        "name": "leaf1", "driver": "", "state": "ok", "last_error": None, "last_apply": None,
        "pending": None, "held_plans": [1], "updated": None,
    }  # fmt: skip
    assert sessions[0]["held_plans"] == [1]
    assert {"networks", "ips", "macs", "tags", "attributes", "guest_os", "folder", "cluster"} <= (
        columns(wave1_url, "vms")
    )
    assert {"kind", "target", "holder", "member", "plan"} <= columns(wave1_url, "audit_log")
    assert "origins" in inspect(create_engine(wave1_url)).get_table_names()


@pytest.mark.integration
def test_a_migrated_store_has_exactly_the_schema_of_a_new_one(wave1_url: str) -> None:
    Store(wave1_url).close()
    engine = create_engine(wave1_url)
    with engine.connect() as conn:
        assert schema_differences(conn) == []
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        meta = conn.execute(text("SELECT value FROM meta")).scalar_one()
    engine.dispose()
    assert (version, meta) == (HEAD_REVISION, "2")


@pytest.mark.integration
def test_the_upgraded_store_takes_the_new_writes(wave1_url: str) -> None:
    """Ids go on after the wave-1 rows (PostgreSQL's sequences survive the migration)."""
    from vmfabric.store import AuditEntry

    with Store(wave1_url) as store:
        plan_id = store.save_plan("leaf1", "check", {"ports": []}, "check", NOW)
        store.record_audit([AuditEntry(NOW, "addrset", "fw1", "web_v4", "10.0.0.1", "add")])
        store.set_origins("fw1", "web_v4", ["10.0.0.1"])
        audit = views.audit(store, 1)
    assert plan_id == 3
    assert (audit[0]["id"], audit[0]["member"]) == (3, "10.0.0.1")


def test_a_new_store_has_the_head_revision_and_no_differences(tmp_path: Path) -> None:
    with Store(url_of(tmp_path / "new.db")):
        pass
    engine = create_engine(url_of(tmp_path / "new.db"))
    with engine.connect() as conn:
        assert schema_differences(conn) == []
        assert migrate.revision(conn, "new.db") == HEAD_REVISION
    engine.dispose()


def test_the_migrations_from_nothing_give_the_schema_too(tmp_path: Path) -> None:
    """Revision 0001 creates the wave-1 tables: the scripts alone build the whole schema."""
    from alembic import command

    engine = create_engine(url_of(tmp_path / "scripts.db"))
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", migrate.MIGRATIONS)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with engine.connect() as conn:
        assert schema_differences(conn) == []
    engine.dispose()


def test_known_revisions_are_the_migration_scripts() -> None:
    config = Config()
    config.set_main_option("script_location", migrate.MIGRATIONS)
    script = ScriptDirectory.from_config(config)
    walked = [r.revision for r in script.walk_revisions()]
    assert script.get_heads() == [HEAD_REVISION]
    assert tuple(reversed(walked)) == migrate.REVISIONS
    assert migrate.REVISIONS[0] == LEGACY_REVISION


def test_a_reader_refuses_a_wave1_store_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "wave1.db"
    make_wave1_store(url_of(path))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    message = "has schema revision 0001, older than this vmfabric's (0002): start `vmfabric run`"
    with pytest.raises(StoreError, match=re.escape(message)):
        Store(url_of(path), readonly=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == ["wave1.db"]
    with sqlite3.connect(path) as raw:
        found = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alembic_version" not in found


def test_a_failed_upgrade_leaves_the_wave1_store_untouched(tmp_path: Path) -> None:
    """The upgrade is one transaction: a failure half way changes nothing."""
    path = tmp_path / "wave1.db"
    make_wave1_store(url_of(path))
    with sqlite3.connect(path) as raw:  # origins exists: 0002 fails at its CREATE TABLE
        raw.execute("CREATE TABLE origins (x INTEGER)")
        before = list(raw.iterdump())
    with pytest.raises(Exception, match="origins"):
        Store(url_of(path))
    with sqlite3.connect(path) as raw:
        assert list(raw.iterdump()) == before  # tables, indexes and rows


def test_an_old_meta_version_without_alembic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    make_wave1_store(url_of(path))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '0'")
    with pytest.raises(ConfigError, match="schema version 0, this vmfabric uses 2"):
        Store(url_of(path))


@pytest.mark.integration
def test_writers_opening_a_wave1_store_at_once_upgrade_it_once(wave1_url: str) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        stores = list(pool.map(lambda _: Store(wave1_url), range(3)))
    try:
        assert [len(views.audit(s)) for s in stores] == [2, 2, 2]
    finally:
        for store in stores:
            store.close()
