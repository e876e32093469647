"""A small NVUE REST API peer (NVIDIA Cumulus Linux 5.x), written here from NVIDIA's published
API shapes, because no stateful NVUE peer exists to run: name tests using it for what it is.

What it models (``/nvue_v1``, HTTP Basic auth, HTTPS or HTTP, JSON):

- configuration trees ``interface`` and ``bridge``, shaped as ``nv config show -o json``:
  ``interface.<swpN>.bridge.domain.<br>.vlan.<"10" | "10-20">: {}`` (a trunk's VLANs; none
  listed: every VLAN of the bridge), ``...<br>.access: N``, ``interface.<swpN>.description``,
  ``bridge.domain.<br>.vlan.<id>: {}``;
- ``GET <path>?rev=applied|operational|<revision>`` (operational, the default, also lists
  every physical port ``swp1..N``); 404 for a path that is not there;
- ``POST /revision`` creates a revision ``changeset/<user>/<time>_<id>`` in state ``pending``;
  ``PATCH <path>?rev=<revision>`` merges a body into it (``null`` unsets, as NVUE's "PATCH
  replaces or unsets"); ``DELETE <path>?rev=<revision>`` unsets a subtree;
- ``PATCH /revision/<id>`` with ``{"state": "apply", "auto-prompt": {"ays": "ays_yes"}}``
  answers at once; the revision then goes ``applying`` -> ``applied`` (or ``invalid`` with
  ``transition.issue`` messages, or ``ays_fail`` without ``ays_yes``) in the background, as a
  real apply does: a client polls ``GET /revision/<id>``; ``DELETE /revision/<id>`` drops a
  pending revision;
- a revision keeps its operations and replays them on the applied configuration at apply
  time (concurrent revisions merge as NVUE's changesets do, a modelling choice of this peer);
- validation: a trunk or access VLAN of a port must be a VLAN of its bridge domain.

Test controls, next to the ``--state`` file (which keeps the applied configuration across a
restart): ``STATE.refuse`` (VLAN ids an apply refuses: injected), ``STATE.stall`` (``apply``:
stop answering the apply request, after touching ``STATE.stalled``), ``STATE.writes``
(revisions created), ``STATE.connections`` (TCP connections accepted).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = "/nvue_v1"
Tree = dict[str, Any]


def merge(target: Tree, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` unsets, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key, {}), value)
    return result


def nest(path: list[str], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def lookup(tree: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            raise KeyError("/".join(path))
        tree = tree[key]
    return tree


def vlan_ids(keys: Any) -> set[int]:
    ids: set[int] = set()
    for key in keys or {}:
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", str(key))
        if match:
            lo = int(match.group(1))
            ids.update(range(lo, int(match.group(2) or lo) + 1))
    return ids


def problems(config: Tree, refused: set[int]) -> list[str]:
    """Why ``config`` cannot be applied (empty: it can)."""
    found = []
    domains = config.get("bridge", {}).get("domain", {})
    for name, interface in sorted(config.get("interface", {}).items()):
        for br, port in sorted(interface.get("bridge", {}).get("domain", {}).items()):
            bridge = vlan_ids(domains.get(br, {}).get("vlan"))
            wanted = vlan_ids(port.get("vlan"))
            if "access" in port:
                wanted.add(int(port["access"]))
            for vlan in sorted(wanted - bridge):
                found.append(f"interface {name}: VLAN {vlan} is not a VLAN of bridge domain {br}")
            for vlan in sorted(wanted & refused):
                found.append(
                    f"interface {name}: VLAN {vlan} is reserved (injected by the test peer)"
                )
    return found


class Switch:
    """The switch's configuration, its revisions and the test controls."""

    def __init__(self, state: Path, ports: int, bridge: str) -> None:
        self.state = state
        self.ports = [f"swp{i}" for i in range(1, ports + 1)]
        self.lock = threading.Lock()
        self.revisions: dict[str, dict[str, Any]] = {}
        if state.exists():
            self.applied: Tree = json.loads(state.read_text(encoding="utf-8"))
        else:
            self.applied = {"bridge": {"domain": {bridge: {"type": "vlan-aware", "untagged": 1}}}}
            self.save()

    # ---- test controls ---------------------------------------------------------------------

    def control(self, suffix: str) -> str:
        path = self.state.with_name(self.state.name + suffix)
        return path.read_text(encoding="utf-8").strip() if path.exists() else ""

    def bump(self, suffix: str) -> None:
        path = self.state.with_name(self.state.name + suffix)
        with self.lock:
            count = int(self.control(suffix) or 0) + 1
            tmp = path.with_suffix(".tmp" + suffix)
            tmp.write_text(str(count), encoding="utf-8")
            os.replace(tmp, path)

    def save(self) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.applied, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state)

    # ---- views -----------------------------------------------------------------------------

    def view(self, rev: str) -> Tree:
        if rev == "applied":
            return copy.deepcopy(self.applied)
        if rev in self.revisions:
            return self.replay(self.revisions[rev]["ops"])
        operational = copy.deepcopy(self.applied)
        interfaces = operational.setdefault("interface", {})
        for port in self.ports:
            interfaces[port] = merge(
                {"type": "swp", "link": {"state": "up"}}, interfaces.get(port, {})
            )
        return operational

    def replay(self, ops: list[tuple[list[str], Any]]) -> Tree:
        config = copy.deepcopy(self.applied)
        for path, patch in ops:
            config = merge(config, nest(path, patch))
        return config

    # ---- revisions -------------------------------------------------------------------------

    def create(self, user: str) -> str:
        stamp = time.strftime("%Y-%m-%d_%H.%M.%S", time.gmtime())
        rev = f"changeset/{user}/{stamp}_{secrets.token_hex(2).upper()}"
        self.revisions[rev] = {"ops": [], "state": "pending", "issue": {}}
        self.bump(".writes")
        return rev

    def apply(self, rev: str, body: Tree) -> None:
        revision = self.revisions[rev]
        if body.get("auto-prompt", {}).get("ays") != "ays_yes":
            revision["state"] = "ays_fail"
            return
        revision["state"] = "applying"
        threading.Thread(target=self._finish, args=(rev,), daemon=True).start()

    def _finish(self, rev: str) -> None:
        time.sleep(0.01)  # a real apply takes a while; clients poll
        revision = self.revisions[rev]
        with self.lock:
            config = self.replay(revision["ops"])
            refused = {int(v) for v in self.control(".refuse").split()}
            issues = problems(config, refused)
            if issues:
                revision["issue"] = {
                    str(i): {"message": m, "severity": "error"} for i, m in enumerate(issues)
                }
                revision["state"] = "invalid"
                return
            self.applied = config
            self.save()
            revision["state"] = "applied"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    switch: Switch
    user: str
    password: str

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle holds the body until
        # the client's delayed ACK of the headers (40 ms a request on a kept connection)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.switch.bump(".connections")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: HTTPStatus, detail: str) -> None:
        self.reply(status, {"status": status.value, "title": status.phrase, "detail": detail})

    def authorized(self) -> bool:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if self.headers.get("Authorization") == f"Basic {expected}":
            return True
        self.error(HTTPStatus.UNAUTHORIZED, "authentication failed")
        return False

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null") if length else None

    def target(self) -> tuple[list[str], str]:
        url = urlsplit(self.path)
        path = url.path[len(PREFIX) :] if url.path.startswith(PREFIX) else None
        if path is None:
            raise KeyError(url.path)
        rev = parse_qs(url.query).get("rev", ["operational"])[0]
        return [unquote(p) for p in path.strip("/").split("/") if p], rev

    def handle_one(self, method: str) -> None:
        body = self.body() if method in ("PATCH", "POST") else None
        if not self.authorized():
            return
        try:
            path, rev = self.target()
            if path[:1] == ["revision"]:
                self.revision(method, "/".join(path[1:]), body)
            else:
                self.config(method, path, rev, body)
        except KeyError as exc:
            self.error(HTTPStatus.NOT_FOUND, f"{exc.args[0]} not found")

    def revision(self, method: str, rev: str, body: Any) -> None:
        switch = self.switch
        if method == "POST" and not rev:
            new = switch.create(self.user)
            self.reply(
                200, {new: {"state": "pending", "transition": {"issue": {}, "progress": ""}}}
            )
            return
        if method == "GET" and not rev:
            self.reply(200, {k: {"state": v["state"]} for k, v in switch.revisions.items()})
            return
        revision = switch.revisions[rev]
        if method == "PATCH":
            if switch.control(".stall") == "apply":
                switch.state.with_name(switch.state.name + ".stalled").touch()
                time.sleep(3600)  # stop answering: the test kills the peer here
            switch.apply(rev, body or {})
            self.reply(
                200,
                {"state": (body or {}).get("state"), "transition": {"issue": {}, "progress": ""}},
            )
        elif method == "DELETE":
            if revision["state"] in ("applying", "applied"):
                self.error(HTTPStatus.CONFLICT, f"revision {rev} is {revision['state']}")
                return
            del switch.revisions[rev]
            self.reply(200, {})
        else:
            self.reply(
                200,
                {
                    "state": revision["state"],
                    "transition": {"issue": revision["issue"], "progress": ""},
                },
            )

    def config(self, method: str, path: list[str], rev: str, body: Any) -> None:
        switch = self.switch
        if method == "GET":
            self.reply(200, lookup(switch.view(rev), path))
            return
        revision = switch.revisions[rev]
        if revision["state"] != "pending":
            self.error(HTTPStatus.CONFLICT, f"revision {rev} is {revision['state']}")
            return
        patch = None if method == "DELETE" else body
        if path and patch is None:
            revision["ops"].append((path[:-1], {path[-1]: None}))
        else:
            revision["ops"].append((path, patch))
        self.reply(200, lookup(switch.replay(revision["ops"]), path) if method == "PATCH" else {})

    def do_GET(self) -> None:
        self.handle_one("GET")

    def do_POST(self) -> None:
        self.handle_one("POST")

    def do_PATCH(self) -> None:
        self.handle_one("PATCH")

    def do_DELETE(self) -> None:
        self.handle_one("DELETE")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True)
    parser.add_argument("--ports", type=int, default=6)
    parser.add_argument("--bridge", default="br_default")
    parser.add_argument("--username", default="cumulus")
    parser.add_argument("--cert", default="", help="PEM certificate: serve HTTPS")
    parser.add_argument("--key", default="")
    args = parser.parse_args(argv)
    Handler.switch = Switch(Path(args.state), args.ports, args.bridge)
    Handler.user = args.username
    Handler.password = os.environ.get("PEER_PASSWORD", "")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


# ---- the test side -----------------------------------------------------------------------


@dataclass
class NvuePeer:
    """One NVUE peer process: ``start()`` waits for it to listen, ``stop()`` kills it by PID.
    The password goes through the environment, never argv."""

    workdir: Path
    password: str = "vmf-nvue-pw"
    username: str = "cumulus"
    ports: int = 6
    tls: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS
    port: int = 0
    process: subprocess.Popen[str] | None = None

    @property
    def state(self) -> Path:
        return self.workdir / "nvue-state.json"

    def _control(self, suffix: str) -> Path:
        return self.state.with_name(self.state.name + suffix)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{PREFIX}"

    def start(self, timeout: float = 30.0) -> NvuePeer:
        argv = [sys.executable, "-m", "support.peers.nvue", "--state", str(self.state),
                "--ports", str(self.ports), "--username", self.username]  # fmt: skip
        if self.tls:
            argv += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        self._control(".stalled").unlink(missing_ok=True)
        env = {**os.environ, "PEER_PASSWORD": self.password}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])
        log = open(self.workdir / "nvue.log", "a", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        log.close()
        self.port = read_ready(self.process, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def refuse(self, *vlans: int) -> None:
        self._control(".refuse").write_text("\n".join(map(str, vlans)), encoding="utf-8")

    def stall_at(self, operation: str) -> None:
        self._control(".stalled").unlink(missing_ok=True)
        self._control(".stall").write_text(operation, encoding="utf-8")

    def wait_stalled(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._control(".stalled").exists():
            if time.monotonic() > deadline:
                raise AssertionError("the NVUE peer never reached the stall")
            time.sleep(0.02)

    def counter(self, suffix: str) -> int:
        path = self._control(suffix)
        return int(path.read_text(encoding="utf-8") or 0) if path.exists() else 0

    def writes(self) -> int:
        """Revisions created (a configuration transaction each)."""
        return self.counter(".writes")

    def connections(self) -> int:
        return self.counter(".connections")

    def applied(self) -> Tree:
        """The applied configuration, from the peer's state file (not through HTTP)."""
        config: Tree = json.loads(self.state.read_text(encoding="utf-8"))
        return config

    def set_applied(self, config: Tree) -> None:
        """Replace the applied configuration as ``nv config replace`` + apply would, via the
        API (a person's revision): the peer validates it."""
        person = PersonClient(self)
        person.replace(config)


class PersonClient:
    """A person's NVUE session (urllib, not the driver's HTTP stack)."""

    def __init__(self, peer: NvuePeer) -> None:
        self.peer = peer
        token = base64.b64encode(f"{peer.username}:{peer.password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self.context = ssl.create_default_context(cafile=str(peer.tls[0])) if peer.tls else None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        url = self.peer.url + path  # http(s) to the peer on 127.0.0.1
        request = urllib.request.Request(url, data, self.headers, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=30, context=self.context) as answer:  # noqa: S310
            return json.loads(answer.read() or b"null")

    def change(self, *patches: Tree) -> None:
        """One revision: root PATCHes (null unsets) in order, apply, wait until applied."""
        rev = next(iter(self.call("POST", "/revision")))
        quoted = urllib.parse.quote(rev, safe="")
        for patch in patches:
            self.call("PATCH", f"/?rev={quoted}", patch)
        self.call(
            "PATCH", f"/revision/{quoted}", {"state": "apply", "auto-prompt": {"ays": "ays_yes"}}
        )
        deadline = time.monotonic() + 30
        while (state := self.call("GET", f"/revision/{quoted}")["state"]) != "applied":
            assert state in ("apply", "applying") and time.monotonic() < deadline, state
            time.sleep(0.01)

    def replace(self, config: Tree) -> None:
        current = self.call("GET", "/?rev=applied")
        unset = {key: None for key in current}
        self.change(merge(unset, config))


def read_ready(process: subprocess.Popen[str], timeout: float) -> int:
    """The port from a child's ``READY <port>`` line."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    deadline, buffer = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        buffer += process.stdout.readline() or ""
        match = re.search(r"READY (\d+)", buffer)
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"peer exited with {process.returncode}")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    raise RuntimeError(f"peer not ready in {timeout}s")


if __name__ == "__main__":
    main()
