"""A small PAN-OS XML API peer: the subset vmfabric's panos target uses, and nothing more.

No PAN-OS simulator exists. This peer answers as the PAN-OS XML API documents it (PAN-OS
and Panorama API guide; the api-lab "Register and Unregister - DAG objects" page) and as
pan-os-python's own code and tests expect it:

- ``POST /api/`` (form or query string), the API key in ``key``; a wrong key is HTTP 403
  with ``<response status="error" code="403"><result><msg>Invalid Credential</msg>...``;
- ``type=op``, ``cmd=<show><system><info/></system></show>``: ``sw-version``, ``model``,
  ``serial``, ``app-version``, ``multi-vsys``;
- ``type=op``, ``cmd=<show><object><registered-ip>`` with ``<limit>``, ``<start-point>``
  (1-based paging), an optional ``<tag><entry name=.../></tag>`` or ``<ip>`` filter:
  ``<result><entry ip=".." from_agent="0" persistent="1"><tag><member>..`` and ``<count>``;
- ``type=user-id``, ``cmd=<uid-message>`` with ``<register>``/``<unregister>`` entries:
  each entry applied on its own; a duplicate tag or a missing one is reported per entry
  (``... already exists, ignore`` / ``... does not exist, ignore unreg``) in a
  ``uid-response`` with ``status="error"``, the others still applied; at most 32 tags
  per address, 127 characters per tag; an address may be a host, a network or a range.

Faults for tests: ``freeze()`` (requests hang until ``thaw()``), ``stop()``; counters of
uid-messages and op commands received. Served over HTTPS with a self-signed certificate
made by ``openssl`` (its path is ``cert``, for the client's CA bundle).
"""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

MAX_TAGS = 32
MAX_TAG_LEN = 127


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key)."""
    cert, key = directory / "peer.crt", directory / "peer.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class PanosPeer:
    """See the module docstring. ``registered``: address -> tags, as the firewall holds."""

    def __init__(self, directory: Path, api_key: str, version: str = "10.2.4") -> None:
        self.api_key = api_key
        self.version = version
        self.registered: dict[str, set[str]] = {}
        self.uid_messages = 0
        self.ops = 0
        self.lock = threading.Lock()
        self._thawed = threading.Event()
        self._thawed.set()
        self.cert, key = make_cert(directory)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def stop(self) -> None:
        self._thawed.set()
        self.server.shutdown()
        self.server.server_close()

    def tagged(self, tag: str) -> set[str]:
        with self.lock:
            return {ip for ip, tags in self.registered.items() if tag in tags}

    # ---- the API ---------------------------------------------------------------------------

    def answer(self, params: dict[str, str]) -> tuple[int, str]:
        self._thawed.wait()
        if params.get("key") != self.api_key:
            return 403, _error("Invalid Credential", code="403")
        kind, cmd = params.get("type"), params.get("cmd", "")
        try:
            root = ET.fromstring(cmd)  # noqa: S314 (a test peer on loopback, its own client)
        except ET.ParseError:
            return 200, _error("Malformed Request")
        with self.lock:
            if kind == "op":
                self.ops += 1
                return 200, self._op(root)
            if kind == "user-id":
                self.uid_messages += 1
                return 200, self._uid(root)
        return 200, _error(f'Illegal value for parameter "type" [{kind}].')

    def _op(self, root: ET.Element) -> str:
        if root.find("./system/info") is not None:
            return (
                '<response status="success"><result><system><hostname>peer</hostname>'
                f"<sw-version>{self.version}</sw-version><model>PA-VM</model>"
                "<serial>007200000000001</serial><app-version>8700-8000</app-version>"
                "<multi-vsys>off</multi-vsys></system></result></response>"
            )
        query = root.find("./object/registered-ip")
        if query is None:
            return _error("Invalid syntax.")
        return self._registered(query)

    def _registered(self, query: ET.Element) -> str:
        tag_filter = query.find("./tag/entry")
        ip_filter = query.findtext("./ip")
        rows = sorted(self.registered.items(), key=lambda kv: _ip_key(kv[0]))
        rows = [(ip, tags) for ip, tags in rows if tags]
        if tag_filter is not None:
            rows = [(ip, t) for ip, t in rows if tag_filter.get("name") in t]
        if ip_filter:
            rows = [(ip, t) for ip, t in rows if ip == ip_filter]
        total = len(rows)
        start = int(query.findtext("./start-point") or 1)
        limit = int(query.findtext("./limit") or 500)
        page = rows[start - 1 : start - 1 + limit]
        out = ['<response status="success"><result>']
        for ip, tags in page:
            members = "".join(f"<member>{_esc(t)}</member>" for t in sorted(tags))
            out.append(
                f'<entry ip="{ip}" from_agent="0" persistent="1"><tag>{members}</tag></entry>'
            )
        out.append(f"<count>{total}</count></result></response>")
        return "".join(out)

    def _uid(self, root: ET.Element) -> str:
        payload = root.find("./payload")
        if root.findtext("./type") != "update" or payload is None:
            return _error("Invalid uid-message")
        errors: dict[str, list[tuple[str, str]]] = {}
        for action in ("register", "unregister"):
            for entry in payload.findall(f"./{action}/entry"):
                problem = self._entry(action, entry)
                if problem:
                    errors.setdefault(action, []).append((entry.get("ip", ""), problem))
        if not errors:
            return '<response status="success"><result><uid-response><version>2.0</version>' \
                   "<payload/></uid-response></result></response>"  # fmt: skip
        body = "".join(
            f"<{action}>"
            + "".join(f'<entry ip="{ip}" message="{_esc(msg)}"/>' for ip, msg in items)
            + f"</{action}>"
            for action, items in errors.items()
        )
        return (
            '<response status="error"><msg><line><uid-response><version>2.0</version>'
            f"<payload>{body}</payload></uid-response></line></msg></response>"
        )

    def _entry(self, action: str, entry: ET.Element) -> str:
        ip = entry.get("ip", "")
        if not _valid(ip):
            return f"ip {ip} is invalid"
        tags = [m.text or "" for m in entry.findall("./tag/member")]
        have = self.registered.setdefault(ip, set())
        problems = []
        for tag in tags:
            if action == "register":
                if len(tag) > MAX_TAG_LEN:
                    problems.append(f"tag {tag[:20]}... is longer than {MAX_TAG_LEN}")
                elif tag in have:
                    problems.append(f"tag {tag} already exists, ignore")
                elif len(have) >= MAX_TAGS:
                    problems.append(f"ip {ip} already has {MAX_TAGS} tags")
                else:
                    have.add(tag)
            elif tag in have:
                have.discard(tag)
            else:
                problems.append(f"tag {tag} does not exist, ignore unreg")
        if not have:
            del self.registered[ip]
        return "; ".join(problems)


def _valid(ip: str) -> bool:
    try:
        if "-" in ip:
            lo, hi = (ipaddress.ip_address(x) for x in ip.split("-", 1))
            return lo.version == hi.version and int(lo) <= int(hi)
        ipaddress.ip_network(ip, strict=False)
        return True
    except ValueError:
        return False


def _ip_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_network(ip.split("-", maxsplit=1)[0], strict=False).network_address
    return (addr.version, int(addr))


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _error(msg: str, code: str = "") -> str:
    attr = f' code="{code}"' if code else ""
    return f'<response status="error"{attr}><result><msg>{_esc(msg)}</msg></result></response>'


def _handler(peer: PanosPeer) -> Any:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, body: bytes) -> None:
            if not self.path.startswith("/api/"):
                self.send_error(404)
                return
            query = self.path.partition("?")[2]
            params = {k: v[0] for k, v in parse_qs(query).items()}
            params.update({k: v[0] for k, v in parse_qs(body.decode()).items()})
            status, text = peer.answer(params)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length))

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
