"""The state store on real SQLite files: round trips, the `show --json` contract, WAL
sharing between processes, file modes, failures as StoreError, and bulk speed."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.store_data import (
    ALL,
    NOW,
    esx01,
    esx02,
    fill,
    lldp,
    port_states,
    portgroups,
    postgres_url,
    url_of,
    vms,
)
from vmfabric import views
from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.core.model import (
    Host,
    HostRemoved,
    HostUpsert,
    Nic,
    PortGroup,
    PortGroupRemoved,
    PortGroupUpsert,
    Power,
    Uplink,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.store import AuditEntry, Store, StoreError, StoreReplacedError
from vmfabric.store.schema import metadata

__all__ = ["postgres_url"]  # a fixture, imported to be used here


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "vmfabric.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store(url_of(db_path))
    yield opened
    opened.close()


# ---- the file: mode, WAL, sharing --------------------------------------------------------


def test_db_file_and_its_wal_files_are_created_mode_0600(store: Store, db_path: Path) -> None:
    fill(store)
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    Store(url_of(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_sqlite_file_is_in_wal_mode(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_memory_store_round_trips() -> None:
    with Store("sqlite://") as mem:
        fill(mem)
        assert [v["name"] for v in views.vms(mem)] == ["loose-01", "trunker", "web-01", "web-02"]


def test_second_store_reads_while_first_is_open_and_writing(store: Store, db_path: Path) -> None:
    fill(store)
    reader = Store(url_of(db_path))
    try:
        assert len(views.vms(reader)) == 4
        store.apply_changes([VmRemoved("lab", "vm-1")], NOW + 1)
        assert len(views.vms(reader)) == 3
    finally:
        reader.close()
    assert len(views.vms(store)) == 3


def test_another_process_reads_while_the_writer_is_open(store: Store, db_path: Path) -> None:
    fill(store)
    script = textwrap.dedent(f"""
        from vmfabric import views
        from vmfabric.store import Store
        s = Store({url_of(db_path)!r}, readonly=True)
        print(",".join(v["name"] for v in views.vms(s)))
        s.close()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "loose-01,trunker,web-01,web-02"


def test_readers_never_see_half_a_replace(store: Store, db_path: Path) -> None:
    """Each show is one snapshot: VM rows and their network rows always agree."""
    versions = [
        [Vm("lab", f"vm-{i}", f"{tag}-{i}", "esx01", Power.ON, (net,)) for i in range(1500)]
        for tag, net in (("a", "web"), ("b", "db"))
    ]
    store.replace_inventory("lab", [esx01()], portgroups(), versions[0], NOW)
    replaced = [0]
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            inventory = versions[(replaced[0] + 1) % 2]
            store.replace_inventory("lab", [esx01()], portgroups(), inventory, NOW)
            replaced[0] += 1

    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 30
    with Store(url_of(db_path)) as reader, ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(writer)
        try:
            while replaced[0] < 12 and time.monotonic() < deadline:
                shown = views.vms(reader)
                pairs = {(v["name"][0], v["networks"][0]["portgroup"]) for v in shown}
                assert len(shown) == 1500
                assert pairs in ({("a", "web")}, {("b", "db")}), pairs
                seen |= pairs
        finally:
            stop.set()
            running.result(timeout=60)
    assert seen == {("a", "web"), ("b", "db")}


# ---- readers: they never write -----------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_reader_changes_neither_the_file_nor_the_wal_nor_side_file_modes(
    store: Store, db_path: Path
) -> None:
    fill(store)
    side = [Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]
    for path in side:
        path.chmod(0o640)  # a reader must leave modes alone (wave 1 chmodded them)
    before = (digest(db_path), digest(side[0]), sorted(os.listdir(db_path.parent)))
    with Store(url_of(db_path), readonly=True) as reader:
        assert len(views.vms(reader)) == 4
        assert views.sessions(reader)[0]["vms"] == 4
    assert (digest(db_path), digest(side[0]), sorted(os.listdir(db_path.parent))) == before
    assert [stat.S_IMODE(p.stat().st_mode) for p in side] == [0o640, 0o640]
    store.apply_changes([VmRemoved("lab", "vm-1")], NOW)  # the writer goes on
    assert len(views.vms(store)) == 3


def test_a_reader_of_a_missing_store_is_one_error_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "vmfabric.db"
    with pytest.raises(StoreError, match="does not exist: start `vmfabric run`") as caught:
        Store(url_of(path), readonly=True)
    assert_one_line_naming(caught.value, path)
    assert os.listdir(tmp_path) == []


def test_a_reader_refuses_every_write(store: Store, db_path: Path) -> None:
    fill(store)
    with Store(url_of(db_path), readonly=True) as reader:
        writes: list[Callable[[], object]] = [
            lambda: reader.set_session("x", "static", "", True, ALL, "enforce"),
            lambda: reader.set_switch_status("leaf1", "ok", now=NOW),
            lambda: reader.record_audit([]),
            lambda: reader.save_plan("leaf1", "held", {}, "", NOW),
            lambda: reader.set_origins("leaf1", "p1", ["110"]),
        ]
        for write in writes:
            with pytest.raises(StoreError, match="opened read-only"):
                write()
    assert views.switches(store) == []


def test_a_reader_of_an_empty_database_tells_to_start_run_once(tmp_path: Path) -> None:
    path = tmp_path / "vmfabric.db"
    sqlite3.connect(path).close()
    with pytest.raises(StoreError, match="has no vmfabric tables yet: start `vmfabric run`"):
        Store(url_of(path), readonly=True)
    assert sqlite3.connect(path).execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


# ---- the writer notices a deleted or replaced file ------------------------------------------


def test_a_deleted_store_file_is_noticed_before_the_next_write(store: Store, db_path: Path) -> None:
    fill(store)
    store.check_same()
    db_path.unlink()
    with pytest.raises(StoreReplacedError, match="was deleted while in use"):
        store.check_same()
    with pytest.raises(StoreReplacedError):
        store.set_switch_status("leaf1", "ok", now=NOW)
    assert not db_path.exists(), "the write must not recreate the file"


def test_a_replaced_store_file_is_noticed(store: Store, db_path: Path, tmp_path: Path) -> None:
    fill(store)
    other = tmp_path / "other.db"
    Store(url_of(other)).close()
    other.replace(db_path)
    with pytest.raises(StoreReplacedError, match="was replaced while in use"):
        store.check_same()
    assert isinstance(StoreReplacedError("x"), StoreError)


def test_check_same_is_a_no_op_for_memory_and_readers(store: Store, db_path: Path) -> None:
    with Store("sqlite://") as mem:
        mem.check_same()
    with Store(url_of(db_path), readonly=True) as reader:
        db_path.unlink()
        reader.check_same()


def test_no_column_can_hold_a_secret() -> None:
    names = {c.name for t in metadata.tables.values() for c in t.columns}
    assert not {n for n in names if any(w in n for w in ("password", "secret", "token"))}


# ---- sessions ----------------------------------------------------------------------------


def test_session_config_and_status_round_trip(store: Store) -> None:
    fill(store)
    store.set_session_status(
        "lab",
        "disconnected",
        in_sync=False,
        error="connection\nrefused",
        version="8.0",
        warnings=["no DVS members"],
        now=NOW + 5,
    )
    [row] = views.sessions(store, "lab")
    assert row == {
        "name": "lab",
        "kind": "static",
        "url": "file:lab.yaml",
        "state": "disconnected",
        "hosts": 2,
        "vms": 4,
        "autovlan": True,
        "allowed_vlans": "1-4094",
        "last_update": "2023-11-14T22:13:25Z",
        "last_error": "connection refused",
        "in_sync": False,
        "version": "8.0",
        "mode": "enforce",
        "warnings": ["no DVS members"],
        "held_plans": [],
    }


def test_set_session_again_updates_config_and_keeps_status(store: Store) -> None:
    fill(store)
    store.set_session_status("lab", "connected", in_sync=True, now=NOW)
    store.set_session(
        "lab", "vcenter", "https://vc/sdk", False, frozenset({10, 11, 12, 20}), "check"
    )
    [row] = views.sessions(store)
    assert (row["kind"], row["url"], row["autovlan"], row["allowed_vlans"], row["mode"]) == (
        "vcenter",
        "https://vc/sdk",
        False,
        "10-12,20",
        "check",
    )
    assert (row["state"], row["in_sync"], row["last_error"]) == ("connected", True, None)


def test_new_session_is_connecting_and_never_updated(store: Store) -> None:
    store.set_session("b", "libvirt", "qemu:///system", True, ALL, "enforce")
    assert views.sessions(store, "b")[0]["state"] == "connecting"
    assert views.sessions(store, "b")[0]["last_update"] is None
    assert views.sessions(store, "nope") == []


def test_session_state_and_mode_are_checked(store: Store) -> None:
    with pytest.raises(ValueError, match="session mode"):
        store.set_session("lab", "static", "", True, ALL, "sometimes")
    with pytest.raises(ValueError, match="session state"):
        store.set_session_status("lab", "asleep", in_sync=False, now=NOW)


def test_forget_sessions_except_drops_their_inventory(store: Store) -> None:
    fill(store, "lab")
    fill(store, "old")
    store.apply_changes([PortGroupUpsert(PortGroup("orphan", "web", frozenset({5})))], NOW)
    store.forget_sessions_except(["lab"])
    assert store.snapshot("orphan").portgroups == ()
    assert [s["name"] for s in views.sessions(store)] == ["lab"]
    assert {v["session"] for v in views.vms(store)} == {"lab"}
    assert {h["session"] for h in views.hosts(store)} == {"lab"}


# ---- inventory ---------------------------------------------------------------------------


def test_snapshot_round_trips_the_domain_types(store: Store) -> None:
    fill(store)
    snap = store.snapshot("lab")
    assert snap.hosts == (esx01(), esx02())  # Host holds a dict: compare in key order
    assert set(snap.portgroups) == set(portgroups())
    assert set(snap.vms) == set(vms())


def test_replace_inventory_really_replaces(store: Store) -> None:
    fill(store)
    fill(store, "other")
    store.replace_inventory("lab", [esx02()], portgroups()[:1], vms()[1:2], NOW + 60)
    snap = store.snapshot("lab")
    assert ([h.name for h in snap.hosts], [v.id for v in snap.vms]) == (["esx02"], ["vm-2"])
    assert [p.name for p in snap.portgroups] == ["web"]
    assert len(store.snapshot("other").vms) == 4
    assert views.sessions(store, "lab")[0]["last_update"] == "2023-11-14T22:14:20Z"


def test_replace_inventory_keeps_the_last_of_duplicate_keys(store: Store) -> None:
    first, second = vms()[0], Vm("lab", "vm-1", "renamed", "esx01", Power.OFF)
    store.replace_inventory("lab", [], [], [first, second], NOW)
    assert store.snapshot("lab").vms == (second,)


def test_replace_inventory_refuses_objects_of_another_session(store: Store) -> None:
    with pytest.raises(ValueError, match="not of session"):
        store.replace_inventory("lab", [esx01("other")], [], [], NOW)


def test_apply_changes_upserts_and_deletes(store: Store) -> None:
    fill(store)
    moved = Vm("lab", "vm-1", "web-01", "esx02", Power.ON, ("web",))
    new_vm = Vm("lab", "vm-9", "new", "esx03", Power.SUSPENDED)
    esx03 = Host("lab", "esx03", uplinks=(Uplink("eth0", "leaf3", "p3", "static"),))
    new_pg = PortGroup("lab", "web", frozenset({111}), vswitch="dvs")
    store.apply_changes(
        [
            VmUpsert(moved),
            VmUpsert(new_vm),
            VmRemoved("lab", "vm-2"),
            HostUpsert(esx03),
            HostRemoved("lab", "esx02"),
            PortGroupUpsert(new_pg),
            PortGroupRemoved("lab", "db"),
        ],
        NOW + 30,
    )
    snap = store.snapshot("lab")
    assert {v.id: v for v in snap.vms} == {
        "vm-1": moved,
        "vm-3": vms()[2],
        "vm-4": vms()[3],
        "vm-9": new_vm,
    }
    assert [h.name for h in snap.hosts] == ["esx01", "esx03"]
    assert {p.name: p for p in snap.portgroups}["web"] == new_pg
    assert "db" not in {p.name for p in snap.portgroups}
    assert views.sessions(store, "lab")[0]["last_update"] == "2023-11-14T22:13:50Z"


def test_apply_changes_last_change_of_an_object_wins(store: Store) -> None:
    fill(store)
    again = Vm("lab", "vm-1", "web-01", "esx01", Power.OFF)
    store.apply_changes([VmRemoved("lab", "vm-1"), VmUpsert(again)], NOW)
    store.apply_changes([VmUpsert(again), VmRemoved("lab", "vm-4")], NOW)
    ids = {v.id: v for v in store.snapshot("lab").vms}
    assert ids["vm-1"] == again
    assert "vm-4" not in ids


# ---- plans -------------------------------------------------------------------------------


def test_plans_round_trip_and_status_changes(store: Store) -> None:
    body = {"ports": [{"port": "p1", "add": [], "remove": [110, 120]}]}
    held = store.save_plan(
        "leaf1", "held", body, "removes 80% of dynamic VLANs", NOW, sessions=["lab"]
    )
    check = store.save_plan("leaf2", "check", {"ports": []}, "check mode", NOW + 1)
    assert held != check
    assert store.plan(held) == {
        "id": held,
        "target": "leaf1",
        "switch": "leaf1",
        "status": "held",
        "created": NOW,
        "updated": NOW,
        "reason": "removes 80% of dynamic VLANs",
        "sessions": ["lab"],
        "plan": body,
    }
    assert [p["id"] for p in store.plans()] == [held, check]
    assert [p["id"] for p in store.plans("check")] == [check]
    assert store.plan(999) is None
    approved = store.approve_plan(held, NOW + 2)
    assert (approved["id"], approved["status"], approved["updated"]) == (held, "approved", NOW + 2)
    assert store.pending_approvals() == [held]
    assert [p["id"] for p in store.approved_plans("leaf1")] == [held]
    assert store.approved_plans("leaf2") == []
    store.set_plan_status(held, "applied", NOW + 3)
    assert store.pending_approvals() == []
    assert store.plan(held)["updated"] == NOW + 3  # type: ignore[index]


def test_plan_status_errors(store: Store) -> None:
    plan_id = store.save_plan("leaf1", "check", {}, "", NOW)
    with pytest.raises(ConfigError, match="not held"):
        store.approve_plan(plan_id, NOW)
    with pytest.raises(ConfigError, match="no plan 42"):
        store.set_plan_status(42, "applied", NOW)
    with pytest.raises(ConfigError, match="no plan 42"):
        store.approve_plan(42, NOW)
    assert store.audit() == [], "a refused approval is not audited"
    with pytest.raises(ValueError, match="plan status"):
        store.save_plan("leaf1", "maybe", {}, "", NOW)
    with pytest.raises(ValueError, match="JSON"):
        store.save_plan("leaf1", "held", {"x": object()}, "", NOW)


# ---- failures ----------------------------------------------------------------------------


def assert_one_line_naming(err: StoreError, path: Path) -> None:
    text = str(err)
    assert isinstance(err, TransientError)
    assert str(path) in text
    assert "\n" not in text


def test_read_only_database_raises_store_error(store: Store, db_path: Path) -> None:
    # Tests run as root, where chmod 0400 does not stop writes; a read-only open does.
    fill(store)
    reader = Store(f"sqlite:///file:{db_path}?mode=ro&uri=true")
    try:
        assert len(views.vms(reader)) == 4
        with pytest.raises(StoreError, match="readonly") as caught:
            reader.set_session("x", "static", "", True, ALL, "enforce")
        assert_one_line_naming(caught.value, db_path)
    finally:
        reader.close()


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root writes through file modes; the "
    "read-only mount and mode=ro tests cover this case as root",
)
def test_read_only_file_and_folder_raise_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    db = folder / "vmfabric.db"
    with Store(url_of(db)) as first:
        fill(first)
    db.chmod(0o400)
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError) as caught, Store(url_of(db)) as again:
            again.set_session("x", "static", "", True, ALL, "enforce")
        assert_one_line_naming(caught.value, db)
    finally:
        folder.chmod(0o700)
        db.chmod(0o600)


def test_locked_database_raises_store_error(store: Store, db_path: Path) -> None:
    other = Store(url_of(db_path), busy_timeout=0.2)
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked") as caught:
            other.set_switch_status("leaf1", "ok", now=NOW)
        assert time.monotonic() - started < 3
        assert_one_line_naming(caught.value, db_path)
        assert views.sessions(other) == []  # readers are not blocked by the writer (WAL)
    finally:
        raw.execute("ROLLBACK")
        raw.close()
        other.close()


def test_a_reader_opens_the_store_while_the_writer_holds_the_lock(
    store: Store, db_path: Path
) -> None:
    fill(store)
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        with Store(url_of(db_path), busy_timeout=0.2, readonly=True) as reader:
            assert len(views.vms(reader)) == 4
    finally:
        raw.execute("ROLLBACK")
        raw.close()


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_a_store_of_a_newer_schema_is_refused(store: Store, db_path: Path, readonly: bool) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(ConfigError, match="schema revision 0099 is newer than this vmfabric"):
        Store(url_of(db_path), readonly=readonly)


def test_a_store_of_an_unknown_schema_version_is_refused(store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("DROP TABLE alembic_version")
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version 99, this vmfabric uses 2"):
        Store(url_of(db_path))


@pytest.mark.parametrize("memory", [True, False], ids=["memory", "file"])
def test_threads_may_share_one_store(memory: bool, db_path: Path) -> None:
    shared = Store("sqlite://" if memory else url_of(db_path))

    def work(worker: int) -> None:
        for i in range(25):
            vm = Vm("lab", f"vm-{worker}-{i}", f"vm-{worker}-{i}", "esx01", Power.ON, ("web",))
            shared.apply_changes([VmUpsert(vm)], NOW)
            views.sessions(shared)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(work, range(4)))
        assert len(views.vms(shared)) == 100
    finally:
        shared.close()


def test_missing_directory_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "vmfabric.db"
    with pytest.raises(StoreError, match="cannot create") as caught:
        Store(url_of(path))
    assert_one_line_naming(caught.value, path)


def test_not_a_url_raises_store_error() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        Store("no url at all")


def test_postgresql_url_takes_no_sqlite_path_and_hides_the_password() -> None:
    # No server listens on port 1: without the driver the URL is refused as bad input,
    # with it connecting fails as a StoreError; neither message shows the password.
    url = "postgresql+psycopg://vmfabric:s3cret@127.0.0.1:1/vmfabric"
    with pytest.raises(
        (ConfigError, StoreError), match=re.escape("127.0.0.1:1/vmfabric")
    ) as caught:
        Store(url)
    assert "s3cret" not in str(caught.value)
    assert os.path.exists("127.0.0.1:1") is False


FAILING_SCRIPT = """
import sys, time
from vmfabric.core.model import Power, Vm
from vmfabric.store import Store, StoreError
try:
    store = Store(sys.argv[1])
    many = [Vm("lab", f"vm-{i}", f"vm-{i}", "esx", Power.ON, ("web", "db")) for i in range(20000)]
    store.set_session("x", "static", "", True, frozenset({1}), "enforce")
    store.replace_inventory("lab", [], [], many, 0.0)
except StoreError as err:
    print(err)
    sys.exit(0)
sys.exit(1)
"""


def run_in_mount_namespace(mount: str, db: Path) -> str:
    """Run FAILING_SCRIPT on ``db`` in a private mount namespace after ``mount``."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("unshare -m is not permitted here")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = f'{mount} && exec "$0" -c "$1" "$2"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command, sys.executable, FAILING_SCRIPT, url_of(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_read_only_filesystem_raises_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "vmfabric.db"
    with Store(url_of(db)) as first:
        fill(first)
    message = run_in_mount_namespace(f"mount --bind -o ro {folder} {folder}", db)
    assert message.startswith(f"store {db}: ")
    assert message.endswith("(read-only file system)")


def test_full_disk_raises_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    db = folder / "vmfabric.db"
    message = run_in_mount_namespace(f"mount -t tmpfs -o size=256k tmpfs {folder}", db)
    assert message.startswith(f"store {db}: ")
    assert "full" in message


# ---- bulk --------------------------------------------------------------------------------


def big_inventory(
    n_hosts: int = 250, n_vms: int = 10_000
) -> tuple[list[Host], list[PortGroup], list[Vm]]:
    hosts = [
        Host(
            "big",
            f"esx{h:03}",
            nics=(
                Nic("vmnic0", lldp(f"leaf{h % 8}", f"p{h}")),
                Nic("vmnic1", lldp(f"leaf{h % 8 + 8}", f"p{h}")),
            ),
            vswitch_nics={"dvs": frozenset({"vmnic0", "vmnic1"})},
            uplinks=(
                Uplink("vmnic0", f"leaf{h % 8}", f"p{h}", "lldp"),
                Uplink("vmnic1", f"leaf{h % 8 + 8}", f"p{h}", "lldp"),
            ),
        )
        for h in range(n_hosts)
    ]
    pgs = [PortGroup("big", f"pg{i}", frozenset({100 + i}), vswitch="dvs") for i in range(200)]
    many = [
        Vm(
            "big",
            f"vm-{i}",
            f"vm{i:05}",
            f"esx{i % n_hosts:03}",
            Power.ON,
            (f"pg{i % 200}", f"pg{(i * 7) % 200}"),
        )
        for i in range(n_vms)
    ]
    return hosts, pgs, many


def test_bulk_10000_vms_replace_and_show(store: Store) -> None:
    """Correct at scale (the timings are bench/showvm.py's: tests do not time)."""
    hosts, pgs, many = big_inventory()
    store.set_session("big", "vcenter", "https://vc/sdk", True, ALL, "enforce")
    store.replace_inventory("big", hosts, pgs, many, NOW)
    store.replace_inventory("big", hosts, pgs, many, NOW)
    shown = views.vms(store)
    assert len(shown) == 10_000
    assert [v["name"] for v in shown[:2]] == ["vm00000", "vm00001"]
    assert shown[0]["attachments"] == [
        {"switch": "leaf0", "port": "p0"},
        {"switch": "leaf8", "port": "p0"},
    ]
    assert shown[7]["networks"] == [
        {"portgroup": "pg7", "vlan": 107},
        {"portgroup": "pg49", "vlan": 149},
    ]
    assert views.sessions(store, "big")[0]["vms"] == 10_000


# ---- PostgreSQL: the same calls give the same answers ------------------------------------


def exercise(store: Store) -> dict[str, object]:
    """Every write, then every read, the same way on any database."""
    fill(store, "lab")
    fill(store, "old")
    store.forget_sessions_except(["lab"])
    store.set_session_status("lab", "connected", in_sync=True, version="8", now=NOW)
    store.apply_changes([VmRemoved("lab", "vm-4"), HostUpsert(esx02()), VmUpsert(vms()[3])], NOW)
    store.set_port_states(port_states(), NOW)
    store.set_switch_status("leaf1", "error", "refused", now=NOW, driver="ovs", pending=2)
    store.record_audit([AuditEntry.switchport(NOW, "leaf1", "p1", 110, "add", "web-01", "lab")])
    held = store.save_plan("leaf1", "held", {"ports": [1, 2]}, "guard", NOW, sessions=["lab"])
    store.approve_plan(held, NOW)
    entry = AuditEntry(NOW, "addrset", "fw1", "web_v4", "10.0.0.1", "add", "group web", "lab")
    applying = store.begin_apply("fw1", {"holders": []}, [entry], NOW, sessions=["lab"])
    store.finish_apply(applying, [entry], NOW + 1, origins={"web_v4": {"10.0.0.1"}})
    gone = store.begin_apply("leaf1", {"ports": []}, [], NOW)
    added = AuditEntry.switchport(NOW, "leaf2", "p3", 130, "add", "VMs db-01", "lab")
    derived = store.begin_apply("leaf2", None, [added], NOW, sessions=["lab"])  # doc: derived
    store.finish_apply(derived, [added], NOW + 1)
    store.expire_plans("leaf1", [], NOW)
    return {
        "sessions": views.sessions(store),
        "autovlan": views.session_autovlan(store, "lab"),
        "vms": views.vms(store, detail=True),
        "vm_named": views.vms(store, "web-01"),  # a bound parameter on the driver's cursor
        "hosts": views.hosts(store),
        "interfaces": views.interfaces(store),
        "vlans": views.vlans(store),
        "switches": views.switches(store),
        "audit": views.audit(store),
        "plans": views.plans(store),
        "pending": store.pending_approvals(),
        "unconfirmed": store.unconfirmed("leaf1") == [(gone, [])],
        "origins": store.origins("fw1"),
        "snapshot": repr(store.snapshot("lab")),
    }


@pytest.mark.integration
def test_postgresql_gives_the_same_answers_as_sqlite(postgres_url: str, tmp_path: Path) -> None:
    with Store(url_of(tmp_path / "same.db")) as lite:
        expected = exercise(lite)
    with pytest.raises(StoreError, match="has no vmfabric tables yet: start `vmfabric run`"):
        Store(postgres_url, readonly=True)
    with Store(postgres_url) as server:
        got = exercise(server)
        hosts, pgs, many = big_inventory(n_vms=2000)
        server.replace_inventory("big", hosts, pgs, many, NOW)
        assert len(views.vms(server)) == 2004
    with Store(postgres_url, readonly=True) as reader:
        assert views.audit(reader) == expected["audit"]
        with pytest.raises(StoreError, match="opened read-only"):
            reader.set_switch_status("leaf1", "ok", now=NOW)
        with reader._read() as conn:  # the server refuses writes too
            assert conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
    assert got == expected
    assert [v["name"] for v in expected["vm_named"]] == ["web-01"]  # type: ignore[attr-defined]
    assert expected["pending"] == [1]
    assert expected["unconfirmed"] is True
