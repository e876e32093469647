"""The corpus of bad configurations (tests/data/bad-configs/, format in its README) through
the real ``vmfabric`` command: every case is refused by ``config check`` with exit 2 and
exactly one line on stderr naming the file and what is wrong: no traceback, nothing on
stdout, no secret echoed. The defects issue 10 lists are also refused, the same way, by
every command that loads the config (``run``, ``sync``, ``show``).

The commands run as separate processes, a batch at a time (one interpreter start each is
most of the cost), for the cases this session selected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")
CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad-configs"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))
ENV_PREFIX = "VMF_CORPUS_"
CONFIG_CHECK = ("config", "check")
COMMANDS = {"run": ("run",), "sync": ("sync", "--timeout", "5"), "show": ("show", "vm")}
# The defects of issue 10, by case, and the commands that must refuse them besides
# `config check`: `show` judges what anyone can see; `run` and `sync` need every secret
# resolved and (without --dry-run) a store folder they can write.
EVERY_COMMAND = ("run", "sync", "show")
DEFECTS = {
    "ovs-without-ovsdb": EVERY_COMMAND,
    "ovs-misspelt-option": EVERY_COMMAND,
    "ovs-negative-timeout": EVERY_COMMAND,
    "unknown-driver": EVERY_COMMAND,
    "link-port-not-an-edge-port": EVERY_COMMAND,
    "link-same-nic-twice": EVERY_COMMAND,
    "switch-same-ovs-bridge-twice": EVERY_COMMAND,
    "yaml-duplicate-engine-key": EVERY_COMMAND,
    "engine-prune-delay-nan": EVERY_COMMAND,
    "engine-prune-delay-inf": EVERY_COMMAND,
    "engine-retry-max-zero": EVERY_COMMAND,
    "engine-coalesce-a-minute": EVERY_COMMAND,
    "store-unknown-scheme": EVERY_COMMAND,
    "store-postgresql-port-not-a-number": EVERY_COMMAND,
    "store-sqlite-folder-missing": EVERY_COMMAND,
    "store-sqlite-folder-not-writable": ("run", "sync"),
    "vcenter-ca-file-missing": EVERY_COMMAND,
    "vcenter-password-env-empty": EVERY_COMMAND,
    "vcenter-password-file-empty": EVERY_COMMAND,
    "vcenter-password-env-unset": ("run", "sync"),
}


@dataclass(frozen=True)
class Case:
    """One corpus file and what its header asks for."""

    name: str
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    never: tuple[str, ...] = ()


def read_case(name: str) -> Case:
    header = []
    for raw in (CORPUS / f"{name}.yaml").read_bytes().splitlines():
        if not raw.startswith(b"# "):
            break
        header.append(raw.decode("utf-8")[2:])
    assert header and header[0].startswith("expect: "), f"{name}: first line must be # expect:"
    env = dict(line[5:].partition("=")[::2] for line in header if line.startswith("env: "))
    never = tuple(line[7:] for line in header if line.startswith("never: "))
    return Case(name, header[0].removeprefix("expect: "), env, never)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the corpus with the file modes git cannot keep."""
    folder = tmp_path_factory.mktemp("corpus") / "bad-configs"
    shutil.copytree(CORPUS, folder)
    for secret in folder.glob("files/*.secret"):
        secret.chmod(0o600)
    for secret in folder.glob("files/*.open-secret"):
        secret.chmod(0o644)
    return folder


def vmfabric(
    corpus: Path, case: Case, command: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(case.env)
    argv = [VMFABRIC, *command, "-c", str(corpus / f"{case.name}.yaml")]
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=90, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:  # e.g. `run` accepted the config and started
        out = exc.stderr.decode() if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        return subprocess.CompletedProcess(argv, -9, "", f"timed out (still running)\n{out}")


Key = tuple[str, str]  # (case, command)
Done = subprocess.CompletedProcess[str]
BATCH = 8  # runs started together: a few per core, and a test's setup stays short


class Runs:
    """The (case, command) runs this session selected, started a batch at a time when a
    test asks for one that has not run yet: runs overlap, and no single test waits for
    more than one batch (the per-test timeout holds on a loaded machine)."""

    def __init__(self, corpus: Path, wanted: list[Key]) -> None:
        self.corpus = corpus
        self.pending = wanted
        self.done: dict[Key, Done] = {}

    def __getitem__(self, key: Key) -> Done:
        if key not in self.done:
            rest = [k for k in self.pending if k != key and k not in self.done]
            batch = [key, *rest[: BATCH - 1]]
            with ThreadPoolExecutor(max_workers=4) as pool:
                self.done.update(zip(batch, pool.map(self._run, batch), strict=True))
        return self.done[key]

    def _run(self, key: Key) -> Done:
        name, command = key
        argv = CONFIG_CHECK if command == "config check" else COMMANDS[command]
        return vmfabric(self.corpus, read_case(name), argv)


def _selected(request: pytest.FixtureRequest) -> Iterator[Key]:
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        mine = getattr(item, "module", None) is sys.modules[__name__]
        if mine and "name" in params and "command" in params:
            yield params["name"], params["command"]


@pytest.fixture(scope="module")
def runs(corpus: Path, request: pytest.FixtureRequest) -> Runs:
    return Runs(corpus, list(dict.fromkeys(_selected(request))))


def assert_refused(done: subprocess.CompletedProcess[str], case: Case, corpus: Path) -> None:
    shown = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 2, shown
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmfabric: error: "), shown
    assert case.expect in lines[0], f"expected {case.expect!r} in\n{lines[0]}"
    assert str(corpus) in lines[0], f"the error must name the file: {lines[0]}"
    assert "Traceback" not in done.stdout + done.stderr, shown
    for secret in case.never:
        assert secret not in done.stdout + done.stderr, f"{secret!r} was echoed"


@pytest.mark.parametrize("command", ["config check"])
@pytest.mark.parametrize("name", CASES)
def test_config_check_refuses_the_bad_config_in_one_line(
    runs: Runs, corpus: Path, name: str, command: str
) -> None:
    done = runs[(name, command)]
    assert_refused(done, read_case(name), corpus)
    assert done.stdout == "", "nothing may be reported as checked"


@pytest.mark.parametrize(("name", "command"), [(n, c) for n, cs in DEFECTS.items() for c in cs])
def test_every_command_that_loads_the_config_refuses_the_listed_defects(
    runs: Runs, corpus: Path, name: str, command: str
) -> None:
    assert_refused(runs[(name, command)], read_case(name), corpus)


def test_the_corpus_is_big_enough_and_every_case_names_its_error() -> None:
    assert len(CASES) >= 60
    assert set(DEFECTS) <= set(CASES)
    assert all(read_case(name).expect.strip() for name in CASES)
