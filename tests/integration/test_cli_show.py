"""``vmfabric show`` through the real command: it never writes the store (wave 1 truncated
a running writer's WAL when the store file had been deleted), a missing store is one
error, tables and JSON carry ISO 8601 times only, switches not ``ok`` are marked, and
``sync --dry-run`` works on a read-only store."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.store_data import NOW, fill, port_states, url_of
from vmfabric.cli import main
from vmfabric.store import AuditEntry, Store

pytestmark = pytest.mark.integration
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")
EPOCH = re.compile(r"\b1[0-9]{9}(\.[0-9]+)?\b")  # seconds since 1970 (2001-2286)


def vmfabric(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [VMFABRIC, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def one_line_error(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmfabric: error: "), done.stderr
    assert text in lines[0], lines[0]


def write_config(folder: Path, **extra: object) -> Path:
    path = folder / "vmfabric.yaml"
    path.write_text(yaml.safe_dump({"store": "sqlite:///vmfabric.db", **extra}))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- show never writes the store ---------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from vmfabric import views
    from vmfabric.store import Store
    from support.store_data import NOW, fill
    store = Store(sys.argv[1])
    fill(store)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            if line.strip() == "read":
                print(len(views.vms(store)), flush=True)
            else:
                store.set_switch_status("leaf1", "ok", now=NOW)
                print("written", flush=True)
        except Exception as exc:
            print(type(exc).__name__, str(exc).replace("\\n", " "), flush=True)
""")


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding the store open for writing (WAL), driven over stdin."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    url = url_of(tmp_path / "vmfabric.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def ask(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(what + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def test_show_after_the_store_file_was_deleted_leaves_the_writers_wal_alone(
    tmp_path: Path, writer: subprocess.Popen[str]
) -> None:
    """Wave 1: `show` created an empty store in its place and truncated the writer's WAL
    on close; every later `show` failed (disk I/O error) and so did the writer."""
    config = write_config(tmp_path)
    db, wal = tmp_path / "vmfabric.db", tmp_path / "vmfabric.db-wal"
    assert ask(writer, "read") == "4"
    db.unlink()
    before = digest(wal)
    for _ in range(2):
        one_line_error(vmfabric("show", "vm", "-c", str(config)), 1, "does not exist: start")
    assert not db.exists(), "show must not create a store"
    assert digest(wal) == before, "show must not touch the writer's WAL"
    assert ask(writer, "read") == "4", "the writer still reads what it wrote"
    assert ask(writer, "write").startswith("StoreReplacedError store ")


def test_no_show_command_changes_the_store(
    tmp_path: Path, writer: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert ask(writer, "write") == "written"
    files = [tmp_path / f"vmfabric.db{suffix}" for suffix in ("", "-wal")]
    before = [digest(f) for f in files]
    for args in (["session"], ["vm"], ["vm", "web-01", "--detail"], ["host"], ["interface"],
                 ["vlan"], ["switch"], ["plan"], ["audit"]):  # fmt: skip
        for as_json in ([], ["--json"]):
            assert show(config, capsys, *args, *as_json)
    assert [digest(f) for f in files] == before
    assert ask(writer, "read") == "4"


def test_show_without_a_store_is_one_error_and_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    one_line_error(vmfabric("show", "session", "-c", str(config)), 1, "vmfabric.db does not exist")
    assert sorted(os.listdir(tmp_path)) == ["vmfabric.yaml"]


# ---- what show prints --------------------------------------------------------------------


@pytest.fixture
def shown(tmp_path: Path) -> Path:
    """A store with inventory, ports, an unreachable switch, plans and audit entries;
    returns the config file."""
    with Store(url_of(tmp_path / "vmfabric.db")) as store:
        fill(store)
        store.set_port_states(port_states(), NOW)
        store.set_switch_status("leaf1", "unreachable", "timed out", now=NOW, driver="ovs")
        store.set_switch_status("leaf2", "ok", now=NOW, driver="fake", pending=0)
        doc = {"ports": [{"port": "p1", "add": [], "remove": [110, 120]},
                         {"port": "p2", "add": [130], "remove": []}]}  # fmt: skip
        store.save_plan("leaf1", "held", doc, "guard: 2 removals", NOW, sessions=["lab"])
        plan_id = store.begin_apply("leaf2", {"ports": []}, [], NOW)
        entry = AuditEntry.switchport(NOW + 0.25, "leaf2", "p10", 5, "add", "web-01", "lab")
        store.finish_apply(plan_id, [entry], NOW + 1)
    return write_config(tmp_path)


def show(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``vmfabric show ARGS`` in this process; its stdout (exit 0 required)."""
    with pytest.raises(SystemExit) as done:
        main(["show", *args, "-c", str(config)])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    return out


def test_no_table_or_json_shows_an_epoch(shown: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["session"], ["vm", "--detail"], ["switch"], ["plan"], ["plan", "1"],
                 ["audit"], ["interface"]):  # fmt: skip
        for as_json in ([], ["--json"]):
            out = show(shown, capsys, *args, *as_json)
            assert not EPOCH.search(out), (args, as_json, out)
    assert "2023-11-14T22:13:20Z" in show(shown, capsys, "plan")
    assert "2023-11-14T22:13:20.250Z" in show(shown, capsys, "audit")


def test_show_switch_table_and_json(shown: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = show(shown, capsys, "switch").splitlines()
    assert lines[0].split() == ["Switch", "Driver", "State", "Last", "apply", "Pending",
                                "Held", "plans", "Last", "error"]  # fmt: skip
    assert lines[1].split() == ["leaf1", "ovs", "unreachable", "-", "1", "timed", "out"]
    assert lines[2].split() == ["leaf2", "fake", "ok", "2023-11-14T22:13:21Z", "0"]
    data = json.loads(show(shown, capsys, "switch", "--json"))
    assert [(s["name"], s["state"], s["held_plans"]) for s in data] == [
        ("leaf1", "unreachable", [1]),
        ("leaf2", "ok", []),
    ]


def test_show_interface_marks_ports_of_a_switch_not_ok(
    shown: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = show(shown, capsys, "interface")
    rows = {tuple(line.split()[:2]) for line in out.splitlines()}
    assert {("leaf1!", "p1"), ("leaf1!", "p2"), ("leaf2", "p10")} <= rows
    assert "! = switch not ok" in out
    [one] = json.loads(show(shown, capsys, "interface", "leaf2:p10", "--json"))
    assert (one["port"], one["switch_state"]) == ("p10", "ok")
    assert "! = switch not ok" not in show(shown, capsys, "interface", "p10")


def test_show_plan_lists_ports_and_vlans(shown: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = show(shown, capsys, "plan").splitlines()
    assert lines[1].split()[:5] == ["1", "leaf1", "held", "p1,p2", "110,120,130"]
    assert lines[2].split()[:3] == ["2", "leaf2", "applied"]
    detail = show(shown, capsys, "plan", "1")
    assert "Plan 1: switch leaf1, held" in detail
    assert [line.split() for line in detail.splitlines()[-3:]] == [
        ["Port", "Add", "Remove"], ["p1", "110,120"], ["p2", "130"],
    ]  # fmt: skip


def test_show_vlan_and_vm_details(shown: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = show(shown, capsys, "vlan", "110").splitlines()
    assert lines[1].split() == ["leaf1", "110", "p1*,", "p11"]
    detail = show(shown, capsys, "vm", "web-01", "--detail")
    expected = ("10.0.110.11, 2001:db8::11", "env:prod, tier:web", "00:50:56:aa:bb:01",
                "owner=team-a", "ubuntu64Guest", "/dc1/vm/web", "Cluster:       prod")  # fmt: skip
    for text in expected:
        assert text in detail
    [vm] = json.loads(show(shown, capsys, "vm", "web-01", "--json"))
    assert (vm["ips"], vm["tags"]) == (["10.0.110.11", "2001:db8::11"], ["env:prod", "tier:web"])


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["vm", "nope"], "no VM named 'nope'"),
        (["interface", "e9"], "no interface named 'e9'"),
        (["vlan", "999"], "no VLAN 999 on any switch port"),
        (["plan", "42"], "no plan 42"),
        (["session", "nope"], "no session named 'nope'"),
    ],
)
def test_show_of_something_unknown_is_bad_input(shown: Path, args: list[str], text: str) -> None:
    one_line_error(vmfabric("show", *args, "-c", str(shown)), 2, text)


# ---- sync --dry-run records nothing ------------------------------------------------------


def dry_run_lab(folder: Path) -> Path:
    (folder / "inv.yaml").write_text(yaml.safe_dump({
        "hosts": [{"name": "esx1", "nics": ["vmnic0"]}],
        "portgroups": [{"name": "web", "vlan": 110}],
        "vms": [{"name": "web-01", "host": "esx1", "portgroups": ["web"]}],
    }))  # fmt: skip
    return write_config(
        folder,
        sessions=[{"name": "inv", "kind": "static", "path": "inv.yaml"}],
        switches=[{"name": "leaf1", "driver": "fake", "edge_ports": ["e1"]}],
        links=[{"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "e1"}],
    )


def test_sync_dry_run_without_a_store_creates_none(tmp_path: Path) -> None:
    config = dry_run_lab(tmp_path)
    done = vmfabric("sync", "--dry-run", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ports"][0]["add"] == [110]
    assert not (tmp_path / "vmfabric.db").exists()


def test_sync_dry_run_works_on_a_read_only_store(tmp_path: Path) -> None:
    """A read-only mount (root writes through file modes, so a mode 0400 file proves
    nothing here): the dry run reads the store and records nothing."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    folder = tmp_path / "ro"
    folder.mkdir()
    config = dry_run_lab(folder)
    assert vmfabric("sync", "--dry-run", "-c", str(config)).returncode == 0
    with Store(url_of(folder / "vmfabric.db")) as store:  # a store, closed cleanly
        store.set_switch_status("leaf1", "ok", now=NOW)
    (folder / "vmfabric.db").chmod(0o400)
    listing = sorted(os.listdir(folder))
    before = digest(folder / "vmfabric.db")
    command = f'mount --bind -o ro {folder} {folder} && exec "$0" "$@"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command, VMFABRIC, "sync", "--dry-run", "--json",
         "-c", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["dry_run"], out["applied"], out["ports"][0]["add"]) == (True, False, [110])
    assert digest(folder / "vmfabric.db") == before
    assert sorted(os.listdir(folder)) == listing
