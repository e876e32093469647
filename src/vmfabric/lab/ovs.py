"""A private Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) for labs and tests.

``OvsInstance`` owns one pair of OVS daemons: their private directory (database, sockets,
pidfiles, logs) and a network namespace of their own, in which both run. The userspace
datapath leaves tap devices behind in the namespace its daemon ran in; a namespace per
instance makes them vanish with the namespace and keeps two instances from colliding.
Veth ends attached as switch ports therefore live in that namespace too
(``add_edge_port`` does this).

Lifecycle: ``start()`` (or ``with OvsInstance(...) as ovs:``) and ``stop()``. ``stop`` kills
both daemons by the PIDs in their pidfiles (after checking the PID is still the daemon
this instance started), deletes the namespace and the directory, and is safe to call
twice; a ``start`` that fails halfway cleans up the same way before raising.

``vsctl`` shells out to ``ovs-vsctl`` for test and lab setup only; vmfabric itself talks
OVSDB through ``vmfabric.targets.switchport.ovs``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from vmfabric.core.errors import PermanentError
from vmfabric.lab import netns as nsx

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovsdb-server", "ovs-vswitchd")


def ovs_installed() -> bool:
    """True if the OVS daemons and tools needed by ``OvsInstance`` are on this machine."""
    tools = ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool", "ip")
    return all(shutil.which(t) for t in tools) and SCHEMA.exists()


def unique_name(prefix: str = "vfo") -> str:
    """``prefix`` plus 6 random hex digits: short enough to build link names from."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def _vlan_list(vlans: set[int] | frozenset[int] | list[int]) -> str:
    return ",".join(str(v) for v in sorted(vlans))


class OvsInstance:
    """One private OVS in its own namespace ``name`` and directory. See the module docstring."""

    def __init__(self, name: str | None = None, parent_dir: str | None = None) -> None:
        self.name = nsx.check_netns_name(name or unique_name())
        self.netns = self.name
        self._parent_dir = parent_dir
        self.dir: Path | None = None
        self._pids: dict[str, int] = {}
        self._netns_made = False

    # ---- paths -------------------------------------------------------------------------

    def _path(self, leaf: str) -> Path:
        if self.dir is None:
            raise PermanentError(f"OVS instance {self.name} is not started")
        return self.dir / leaf

    @property
    def db_url(self) -> str:
        """OVSDB endpoint for clients: ``unix:/tmp/.../db.sock``."""
        return f"unix:{self._path('db.sock')}"

    def _env(self) -> dict[str, str]:
        d = str(self._path(""))
        return {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}

    def _run(self, argv: list[str], in_ns: bool = False, timeout: float = 20.0) -> str:
        full = nsx.in_netns(self.netns if in_ns else None, argv)
        try:
            done = subprocess.run(
                full,
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PermanentError(f"OVS {self.name}: {argv[0]}: no answer in {timeout:g}s") from None
        if done.returncode != 0:
            first = (done.stderr.strip() or "failed").splitlines()[-1]
            raise PermanentError(f"OVS {self.name}: {' '.join(argv[:3])}...: {first}")
        return done.stdout

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> OvsInstance:
        """Create namespace and directory, start both daemons. Cleans up if anything fails."""
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self._parent_dir))
            nsx.add_netns(self.netns)
            self._netns_made = True
            self._run(["ovsdb-tool", "create", str(self._path("conf.db")), str(SCHEMA)])
            self.start_ovsdb()
            self.vsctl("--no-wait", "init")
            self._start_daemon("ovs-vswitchd", [self.db_url])
        except BaseException:
            self.stop()
            raise
        return self

    def start_ovsdb(self) -> None:
        """(Re)start ovsdb-server on this instance's database and socket."""
        self._start_daemon(
            "ovsdb-server", [f"--remote=punix:{self._path('db.sock')}", str(self._path("conf.db"))]
        )

    def _start_daemon(self, daemon: str, args: list[str]) -> None:
        argv = [
            daemon,
            *args,
            f"--pidfile={self._path(daemon + '.pid')}",
            "--detach",
            "--no-chdir",
            f"--log-file={self._path(daemon + '.log')}",
            "-vconsole:off",
            f"--unixctl={self._path(daemon + '.ctl')}",
        ]
        self._run(argv, in_ns=True)
        self._pids[daemon] = self._read_pid(daemon)

    def _read_pid(self, daemon: str) -> int:
        text = self._path(daemon + ".pid").read_text(encoding="ascii").strip()
        return int(text)

    def _is_ours(self, pid: int) -> bool:
        """True if ``pid`` is alive and is a daemon started for this instance's directory."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self._path("")).encode() in cmdline

    def kill_daemon(self, daemon: str, sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
        """Stop ``daemon`` (``ovsdb-server``/``ovs-vswitchd``) by PID; SIGKILL after ``wait``."""
        pid = self._pids.pop(daemon, None)
        if pid is None and self.dir is not None and self._path(daemon + ".pid").exists():
            pid = self._read_pid(daemon)
        if pid is None or not self._is_ours(pid):
            return
        started = _start_time(pid)
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        # until it is gone or a zombie: an exiting daemon's cmdline is empty before its
        # threads are torn down, so the cmdline alone says "gone" too early
        while _alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid, started) and self._is_ours(pid):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid, started) and time.monotonic() < deadline + 5:
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill both daemons, delete namespace and directory. Safe to call twice."""
        errors: list[str] = []
        for daemon in reversed(DAEMONS):
            try:
                self.kill_daemon(daemon)
            except (OSError, ValueError) as exc:
                errors.append(f"{daemon}: {exc}")
        if self._netns_made:
            nsx.delete_netns(self.netns)
            self._netns_made = False
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if errors:
            raise PermanentError(f"OVS {self.name}: stop: {'; '.join(errors)}")

    def __enter__(self) -> OvsInstance:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def pid(self, daemon: str) -> int | None:
        """PID of a running daemon of this instance, or None."""
        pid = self._pids.get(daemon)
        return pid if pid is not None and self._is_ours(pid) else None

    # ---- setup helpers (tests and lab only) ------------------------------------------------

    def vsctl(self, *args: str) -> str:
        """Run ``ovs-vsctl --db=<this instance>`` with ``args``; return its output, stripped."""
        return self._run(["ovs-vsctl", f"--db={self.db_url}", "--timeout=10", *args]).strip()

    def appctl(self, daemon: str, *args: str) -> str:
        """Run ``ovs-appctl`` against one of this instance's daemons."""
        return self._run(["ovs-appctl", "-t", str(self._path(daemon + ".ctl")), *args]).strip()

    def settle(self) -> None:
        """Wait until ovs-vswitchd has revalidated its datapath flows (after a config change,
        before checking that traffic is now dropped)."""
        self.appctl("ovs-vswitchd", "revalidator/wait")

    def add_bridge(self, name: str) -> str:
        """Add bridge ``name`` with the userspace (netdev) datapath; return the name."""
        nsx.check_link_name(name)
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")
        return name

    def add_edge_port(
        self,
        bridge: str,
        port: str,
        *,
        trunks: set[int] | frozenset[int] | list[int] | None = None,
        tag: int | None = None,
        peer: str | None = None,
        peer_netns: str | None = None,
    ) -> str:
        """Add veth ``port`` to ``bridge``; return its peer's name.

        The switch end lives in this instance's namespace; the peer (default ``port`` +
        ``p``, so keep ``port`` at most 14 characters) stays in this namespace too unless
        ``peer_netns`` names another one. Both ends are brought up. With neither ``tag``
        nor ``trunks`` the port carries every VLAN (OVS's default).
        """
        peer = peer or f"{port}p"
        nsx.add_veth(port, peer, netns=self.netns, peer_netns=peer_netns or self.netns)
        nsx.set_up(port, self.netns)
        nsx.set_up(peer, peer_netns or self.netns)
        settings = []
        if tag is not None:
            settings.append(f"tag={tag}")
        if trunks:
            settings.append(f"trunks={_vlan_list(set(trunks))}")
        self.vsctl("add-port", bridge, port, *settings)
        return peer


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name, or None when there is no PID."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def _start_time(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def _alive(pid: int, started: str) -> bool:
    """The process that had start time ``started`` runs (not gone, not a zombie)."""
    fields = _stat(pid)
    if not fields or len(fields) <= 19 or fields[19] != started:
        return False
    return fields[0] not in ("Z", "X")
