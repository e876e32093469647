"""README "Safety", Secrets: a known password, used by the controller and the CLI against
the real vCenter simulator (a good login and a refused one), never appears in logs,
exceptions, any ``show --json`` output, the SQLite files or the audit log; the store file
has mode 0600; a literal password and a readable secret file are refused without echoing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controller import wait_for
from support.vcsim_fixtures import VcsimFactory
from vmfabric.config import load_config
from vmfabric.lab.vcsim import Vcsim, VcsimControl
from vmfabric.runtime import Controller
from vmfabric.store import Store
from vmfabric.targets.switchport.fake import FakeDriver

pytestmark = pytest.mark.integration

SECRET = "Zq8-vmfabric-S3cret-4711"
SHOWS = [
    ("show", "session"), ("show", "vm"), ("show", "host"), ("show", "interface"),
    ("show", "vlan"), ("show", "plan"), ("show", "audit"),
]  # fmt: skip


def write_config(tmp: Path, sim: Vcsim) -> Path:
    """Session ``vc`` logs in (env: secret); ``refused`` sends the same password as a user
    the simulator does not know (file: secret), so it fails to log in."""
    secret_file = tmp / "vc.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    common = {"kind": "vcenter", "url": sim.url, "verify_tls": False}
    cfg = {
        "store": "sqlite:///vmfabric.db",
        "engine": {"prune_delay": "1s", "coalesce": "10ms"},
        "sessions": [
            {"name": "vc", "username": sim.username, "password": "env:VMF_SECRET", **common},
            {"name": "refused", "username": "nobody", "password": f"file:{secret_file}", **common},
        ],
        "switches": [{"name": "leaf1", "driver": "fake", "edge_ports": ["e1"]}],
        "links": [{"host": "hv1", "nic": "vmnic1", "switch": "leaf1", "port": "e1"}],
    }
    path = tmp / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_controller(path: Path, body: Callable[[Controller, FakeDriver], None]) -> list[Any]:
    """Run the controller in a thread until ``body`` returns; what it raised, if anything."""
    config = load_config(path)
    driver = FakeDriver(config.switches[0])
    store = Store(config.store_url())
    ctl = Controller(config, store, drivers={"leaf1": driver})
    loop, stop = asyncio.new_event_loop(), asyncio.Event()
    raised: list[Any] = []

    def main() -> None:
        try:
            loop.run_until_complete(ctl.run(stop))
        except BaseException as exc:  # examined by the test
            raised.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        body(ctl, driver)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        store.close()
        loop.close()
    raised.append(repr(ctl.intake.status))  # the sessions' last statuses, errors included
    return raised


def cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VMF_SECRET": SECRET}
    argv = [sys.executable, "-m", "vmfabric", *args, "-c", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)


def run_cli_controller(path: Path, seconds: float) -> str:
    """``vmfabric run -vv`` for ``seconds``, then SIGTERM; its whole output."""
    env = {**os.environ, "VMF_SECRET": SECRET}
    argv = [sys.executable, "-m", "vmfabric", "run", "-vv", "-c", str(path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        time.sleep(seconds)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    return out.decode(errors="replace")


def test_the_password_never_leaks(
    vcsim_factory: VcsimFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("VMF_SECRET", SECRET)
    sim = vcsim_factory(host_names=("hv1", "hv2"), vms=0, password=SECRET)
    with VcsimControl.of(sim) as control:
        control.add_dvportgroup("web", vlan=110)
        control.create_vm("web-01", "hv1", "web")
    path = write_config(tmp_path, sim)

    def scenario(ctl: Controller, driver: FakeDriver) -> None:
        wait_for(lambda: driver.ports["e1"].trunks == {110}, 20, "VLAN 110 from vCenter")
        wait_for(lambda: refused_error(ctl) != "", 20, "the refused login reported")

    leaks = run_controller(path, scenario)
    outputs = {" ".join(args): cli(path, *args, "--json") for args in SHOWS}
    outputs["config check"] = cli(path, "config", "check")
    outputs["sync"] = cli(path, "sync", "--dry-run", "--json", "--timeout", "10")
    outputs["run"] = subprocess.CompletedProcess([], 0, run_cli_controller(path, 4.0), "")

    assert "login failed" in str(leaks), "the refused session must report its failure"
    assert "web-01" in outputs["show vm"].stdout, "the CLI must have read the store"
    assert "login failed" in outputs["sync"].stderr, "sync must have tried the refused login"
    assert SECRET not in caplog.text, "password in the controller's log"
    assert SECRET not in str(leaks), "password in an exception or session status"
    for name, done in outputs.items():
        assert SECRET not in done.stdout + done.stderr, f"password in `vmfabric {name}` output"
    for db in tmp_path.glob("vmfabric.db*"):
        assert SECRET.encode() not in db.read_bytes(), f"password in {db.name}"
    store_mode = stat.S_IMODE((tmp_path / "vmfabric.db").stat().st_mode)
    assert store_mode == 0o600, f"store file mode {store_mode:04o}"


def refused_error(ctl: Controller) -> str:
    found = [s for s in ctl.store.show_sessions() if s["name"] == "refused"]
    return str(found[0]["last_error"] or "") if found else ""


def test_literal_password_and_open_secret_file_are_refused_without_echo(tmp_path: Path) -> None:
    literal = {"sessions": [{"name": "vc", "kind": "vcenter", "url": "http://127.0.0.1:1/sdk",
                             "username": "u", "password": SECRET}]}  # fmt: skip
    path = tmp_path / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(literal))
    refused = cli(path, "config", "check")
    assert refused.returncode == 2 and "literal passwords are refused" in refused.stderr
    assert SECRET not in refused.stdout + refused.stderr

    secret_file = tmp_path / "open.secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    literal["sessions"][0]["password"] = f"file:{secret_file}"
    literal["store"] = "sqlite:///vmfabric.db"  # type: ignore[assignment]
    path.write_text(yaml.safe_dump(literal))
    open_file = cli(path, "sync", "--dry-run", "--timeout", "5")
    assert open_file.returncode == 2, open_file.stdout + open_file.stderr  # bad input
    assert "mode 0644" in open_file.stderr
    assert SECRET not in open_file.stdout + open_file.stderr
