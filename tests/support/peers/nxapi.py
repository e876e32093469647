"""An NX-OS peer written here, because no stateful NX-API simulator exists: an HTTP(S)
server on 127.0.0.1 answering NX-API JSON-RPC (``POST /ins``, ``application/json-rpc``)
and keeping VLAN, trunk and description state. Run as a program (``python -m
support.peers.nxapi --ports Ethernet1/1,port-channel10``); it prints ``READY <port>``.

Shapes follow what Cisco publishes for NX-API and what public captures show:

- a request is one JSON-RPC object or a list of them, each ``{"method": "cli", "params":
  {"cmd": ..., "version": 1}, "id": n}``; the answer has the same form, a ``result`` of
  ``{"body": {...}}`` for a show command and ``null`` for a configuration command, or an
  ``error`` object ``{"code": -32602, "message": "Invalid params", "data": {"msg": "%
  Invalid command at '^' marker.\\n"}}``;
- ``show interface switchport`` (``TABLE_interface``/``ROW_interface`` with ``interface``,
  ``switchport``, ``oper_mode``, ``access_vlan``, ``native_vlan``, ``trunk_vlans``),
  ``show interface description`` (``interface``, ``type``, ``desc``) and ``show vlan brief``
  (``TABLE_vlanbriefxbrief``/``ROW_vlanbriefxbrief``, as napalm's recorded NX-OS output);
  a single row is an object, several a list;
- configuration commands are accepted without ``configure terminal`` (NX-API runs them in
  configuration mode), ``checkpoint NAME``, ``no checkpoint NAME`` and ``rollback
  running-config checkpoint NAME`` restore state as NX-OS's checkpoints do.

Assumed where no public source says (and so only as faithful as the assumption): a batch
stops at the first refused command and answers only up to it; exec and configuration
commands may be mixed in one batch.

Test controls under ``/peer/`` (not NX-API): ``state``, ``stats``, ``reset``, ``fail`` (the
next configuration request is refused at its N-th ``interface`` command) and ``delay``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import socket
import ssl
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INVALID = "% Invalid command at '^' marker.\n"


@dataclass
class Iface:
    name: str
    switchport: bool = True
    mode: str = "access"
    access: int = 1
    native: int = 1
    allowed: list[int] | None = None  # None: 1-4094
    desc: str = ""
    mtu: int = 1500
    svi: bool = False


@dataclass
class Config:
    ifaces: dict[str, Iface] = field(default_factory=dict)
    vlans: dict[int, str] = field(default_factory=lambda: {1: "default"})


class RefusedError(Exception):
    def __init__(self, msg: str = INVALID) -> None:
        super().__init__(msg)
        self.msg = msg


def vlan_list(text: str) -> list[int]:
    out: set[int] = set()
    for item in text.split(","):
        lo, _, hi = item.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise RefusedError()
        first, last = int(lo), int(hi or lo)
        if not 1 <= first <= last <= 4094:
            raise RefusedError("% Invalid VLAN range\n")
        out.update(range(first, last + 1))
    return sorted(out)


def ranges(vlans: list[int] | None) -> str:
    if vlans is None:
        return "1-4094"
    if not vlans:
        return "none"
    parts: list[str] = []
    start = prev = vlans[0]
    for vlan in [*vlans[1:], -1]:
        if vlan == prev + 1:
            prev = vlan
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = vlan
    return ",".join(parts)


def table(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """NX-OS's table shape: one row is an object, several a list."""
    row = name.replace("TABLE_", "ROW_")
    return {name: {row: rows[0] if len(rows) == 1 else rows}}


class Switch:
    """The running configuration, checkpoints, a CLI context per request, counters."""

    def __init__(self, ports: list[str]) -> None:
        self.port_names = ports
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.running = Config({p: Iface(p) for p in self.port_names})
        self.checkpoints: dict[str, Config] = {}
        self.requests = 0
        self.config_requests = 0
        self.fail_at: int | None = None
        self.delay = 0.0

    # ---- show commands -----------------------------------------------------------------

    def show(self, words: list[str]) -> dict[str, Any]:
        ifaces = sorted(self.running.ifaces.values(), key=lambda i: i.name)
        if words == ["interface", "switchport"]:
            return table("TABLE_interface", [self._switchport(i) for i in ifaces if not i.svi])
        if words == ["interface", "description"]:
            return table("TABLE_interface", [
                {"interface": i.name, "type": "eth", "speed": "10G", **(
                    {"desc": i.desc} if i.desc else {})} for i in ifaces])  # fmt: skip
        if words == ["vlan", "brief"]:
            return table("TABLE_vlanbriefxbrief", [
                {"vlanshowbr-vlanid": str(v), "vlanshowbr-vlanid-utf": str(v),
                 "vlanshowbr-vlanname": name, "vlanshowbr-vlanstate": "active",
                 "vlanshowbr-shutstate": "noshutdown"}
                for v, name in sorted(self.running.vlans.items())])  # fmt: skip
        if words == ["version"]:
            return {"chassis_id": "Nexus9000 nxapi-peer", "nxos_ver_str": "10.99(1)"}
        raise RefusedError()

    @staticmethod
    def _switchport(iface: Iface) -> dict[str, Any]:
        return {
            "interface": iface.name,
            "switchport": "Enabled" if iface.switchport else "Disabled",
            "switchport_monitor": "Not enabled",
            "oper_mode": iface.mode,
            "access_vlan": iface.access,
            "native_vlan": iface.native,
            "trunk_vlans": ranges(iface.allowed),
        }


class Session:
    """One request's CLI: its context (config, interface, vlan) and commands."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.iface: Iface | None = None
        self.vlan: int | None = None

    @property
    def config(self) -> Config:
        return self.switch.running

    def run(self, cmd: str) -> dict[str, Any] | None:
        words = cmd.split()
        if not words:
            return None
        head = words[0].lower()
        if head == "show":
            return self.switch.show([w.lower() for w in words[1:]])
        if head in ("checkpoint", "rollback") or words[:2] == ["no", "checkpoint"]:
            self._checkpoint(words)
            return None
        self._configure(words)
        return None

    def _checkpoint(self, words: list[str]) -> None:
        points = self.switch.checkpoints
        if words[0] == "checkpoint" and len(words) == 2:
            if words[1] in points:
                raise RefusedError("% Checkpoint name is already in use\n")
            points[words[1]] = copy.deepcopy(self.config)
        elif words[:2] == ["no", "checkpoint"] and len(words) == 3:
            if points.pop(words[2], None) is None:
                raise RefusedError(f"% Checkpoint {words[2]} does not exist\n")
        elif words[:3] == ["rollback", "running-config", "checkpoint"] and len(words) == 4:
            if words[3] not in points:
                raise RefusedError(f"% Checkpoint {words[3]} does not exist\n")
            self.switch.running = copy.deepcopy(points[words[3]])
            self.iface, self.vlan = None, None
        else:
            raise RefusedError()

    def _configure(self, words: list[str]) -> None:
        lower = [w.lower() for w in words]
        if lower in (["configure", "terminal"], ["conf", "t"], ["end"], ["exit"]):
            self.iface, self.vlan = None, None
        elif lower[0] == "interface" and len(words) == 2:
            self._enter_interface(words[1])
        elif lower[0] == "vlan" and len(words) == 2:
            for vlan in vlan_list(words[1]):
                self.config.vlans.setdefault(vlan, f"VLAN{vlan:04d}")
            self.iface, self.vlan = None, vlan_list(words[1])[0]
        elif lower[:2] == ["no", "vlan"] and len(words) == 3:
            for vlan in vlan_list(words[2]):
                self.config.vlans.pop(vlan, None)
        elif lower[0] == "name" and self.vlan is not None and len(words) == 2:
            self.config.vlans[self.vlan] = words[1][:32]
        elif self.iface is not None:
            InterfaceCommands(self.iface).run(words)
        else:
            raise RefusedError()

    def _enter_interface(self, name: str) -> None:
        iface = self.config.ifaces.get(name)
        if iface is None and name.lower().startswith("vlan") and name[4:].isdigit():
            iface = self.config.ifaces[name] = Iface(f"Vlan{name[4:]}", switchport=False,
                                                      svi=True)  # fmt: skip
        if iface is None:
            raise RefusedError("% Invalid interface format at '^' marker.\n")
        self.iface, self.vlan = iface, None


class InterfaceCommands:
    """Commands in interface configuration mode."""

    def __init__(self, iface: Iface) -> None:
        self.iface = iface

    def run(self, words: list[str]) -> None:
        lower = [w.lower() for w in words]
        if lower[0] == "description" and len(words) > 1:
            self.iface.desc = " ".join(words[1:])[:254]
        elif lower == ["no", "description"]:
            self.iface.desc = ""
        elif lower[0] == "mtu" and len(words) == 2 and words[1].isdigit():
            self.iface.mtu = int(words[1])
        elif lower in (["switchport"], ["no", "switchport"]):
            self.iface.switchport = lower == ["switchport"]
        elif lower[0] == "switchport" and self.iface.switchport:
            self._switchport(lower[1:])
        else:
            raise RefusedError()

    def _switchport(self, words: list[str]) -> None:
        if len(words) == 2 and words[0] == "mode" and words[1] in ("access", "trunk"):
            self.iface.mode = words[1]
        elif len(words) == 3 and words[:2] == ["access", "vlan"]:
            self.iface.access = vlan_list(words[2])[0]
        elif len(words) == 4 and words[:3] == ["trunk", "native", "vlan"]:
            self.iface.native = vlan_list(words[3])[0]
        elif words[:3] == ["trunk", "allowed", "vlan"] and len(words) > 3:
            self._allowed(words[3:])
        else:
            raise RefusedError()

    def _allowed(self, words: list[str]) -> None:
        current = self.iface.allowed
        if words == ["all"]:
            self.iface.allowed = None
        elif words == ["none"]:
            self.iface.allowed = []
        elif len(words) == 2 and words[0] in ("add", "remove"):
            base = set(range(1, 4095)) if current is None else set(current)
            vlans = set(vlan_list(words[1]))
            after = base | vlans if words[0] == "add" else base - vlans
            self.iface.allowed = None if after >= set(range(1, 4095)) else sorted(after)
        elif len(words) == 1:
            self.iface.allowed = vlan_list(words[0])
        else:
            raise RefusedError()


SWITCH: Switch
USERS: dict[str, str] = {}


def is_config(cmd: str) -> bool:
    return not cmd.lower().startswith("show")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per answer: headers and body apart meet Nagle and delayed ACK

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="nxapi"')
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        what = self.path.removeprefix("/peer/")
        with SWITCH.lock:
            if what == "state":
                body = {"ifaces": {n: asdict(i) for n, i in SWITCH.running.ifaces.items()},
                        "vlans": {str(v): n for v, n in SWITCH.running.vlans.items()},
                        "checkpoints": sorted(SWITCH.checkpoints)}  # fmt: skip
            elif what == "stats":
                body = {"requests": SWITCH.requests, "config_requests": SWITCH.config_requests}
            else:
                self._send(404, b"{}")
                return
        self._send(200, json.dumps(body).encode())

    def do_POST(self) -> None:
        if self.path.startswith("/peer/"):
            self._control(self.path.removeprefix("/peer/"), json.loads(self._body() or b"{}"))
            return
        data = self._body()
        if self.path != "/ins":
            self._send(404, b"")
            return
        if not self._authorized():
            self._send(401, b"<html>401 Authorization Required</html>", "text/html")
            return
        if SWITCH.delay:
            time.sleep(SWITCH.delay)
        self._send(200, json.dumps(answer(json.loads(data))).encode(), "application/json-rpc")

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return bool(user) and USERS.get(user) == password

    def _control(self, what: str, body: dict[str, Any]) -> None:
        with SWITCH.lock:
            if what == "reset":
                SWITCH.reset()
            elif what == "fail":
                SWITCH.fail_at = int(body["interface"])
            elif what == "delay":
                SWITCH.delay = float(body["seconds"])
            else:
                self._send(404, b"{}")
                return
        self._send(200, b"{}")


def answer(request: Any) -> Any:
    """Run one JSON-RPC request (an object or a batch) under the switch's lock."""
    calls = request if isinstance(request, list) else [request]
    cmds = [str(c.get("params", {}).get("cmd", "")) for c in calls]
    with SWITCH.lock:
        SWITCH.requests += 1
        fail = _fault(cmds)
        session, out = Session(SWITCH), []
        for index, call in enumerate(calls):
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call.get("id")}
            try:
                if index == fail:
                    raise RefusedError()
                body = session.run(cmds[index])
                reply["result"] = {"body": body} if body is not None else None
            except RefusedError as exc:
                reply["error"] = {"code": -32602, "message": "Invalid params",
                                  "data": {"msg": exc.msg}}  # fmt: skip
                out.append(reply)
                break
            out.append(reply)
    return out if isinstance(request, list) else out[0]


def _fault(cmds: list[str]) -> int | None:
    if not any(is_config(c) for c in cmds):
        return None
    SWITCH.config_requests += 1
    nth, SWITCH.fail_at = SWITCH.fail_at, None
    interfaces = [i for i, c in enumerate(cmds) if c.lower().startswith("interface ")]
    return interfaces[nth - 1] if nth is not None and len(interfaces) >= nth else None


def main(argv: list[str]) -> None:
    global SWITCH  # one switch per process
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", required=True)
    parser.add_argument("--users", default="admin:admin")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args(argv)
    SWITCH = Switch(args.ports.split(","))
    USERS.update(u.split(":", 1) for u in args.users.split(","))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
