"""The Cumulus Linux driver: edge-port VLANs through the NVUE REST API, one revision per plan.

This module owns two things:

1. **NVUE port semantics, pure** (``port_state``, ``render_patch``). A port's VLANs follow from
   its configuration under ``interface <port> bridge domain <bridge>`` (option ``bridge``,
   default ``br_default``):

   - ACCESS: ``access <vlan>`` is set, or the port is not in the bridge. Never written.
   - OPEN: in the bridge with no ``vlan`` list (or ``all``): NVUE then gives the port every
     VLAN of the bridge. Left alone unless ``open_ports: close``.
   - TRUNK: a ``vlan`` list (ids or ranges such as ``10-20``).
   - MISSING: not a port of the switch (``GET /interface`` does not list it).

   The trap is NVUE's: a trunk whose last listed VLAN is unset falls back to *every* VLAN of
   the bridge. vmfabric keeps such a port *closed* on the placeholder ``closed_vlan``
   (default 4094, reserved for this: it is never reported and carries nothing else), and
   drops the placeholder when a VLAN arrives. A VLAN added to a port must be a VLAN of the
   bridge, so vmfabric adds missing ones to ``bridge domain <bridge> vlan``; it never
   removes bridge VLANs (NVUE keeps no note of who added one; a bridge VLAN no trunk lists
   carries nothing on trunk ports).

   **Origin record** (``origin: target``): in the port's ``description``, as a suffix
   ``[vmfabric:110,120]`` after the text a person wrote (``targets.switchport.trunkcli``, as
   eos and nxos do): NVUE offers no other per-port note, and this one survives a lost store.

2. **The driver** (``CumulusDriver``, registered as ``cumulus``): one HTTP client per switch
   with a kept-alive connection. An apply reads the applied configuration, and when there is
   something to change: ``POST /revision``; one root ``PATCH ?rev=`` carrying every port's
   change (``null`` unsets a VLAN); ``PATCH /revision/<id>`` ``state: apply`` with
   ``ays_yes``; then it polls the revision until ``applied``. Until the apply is requested,
   any error deletes the revision; an apply NVUE refuses (``invalid``, ``apply_fail``) leaves
   the applied configuration as it was and is a PermanentError carrying NVUE's issue
   messages. Patches name single VLAN keys, so a person's edit of other VLANs survives.

Options (model ``CumulusSwitch``): ``host``, ``port`` (8765), ``transport`` (https; http for
labs), ``username``, ``password`` (env:/file: reference), ``verify_tls`` (true), ``ca_file``,
``timeout`` (per request), ``apply_timeout`` (how long an apply may take), ``bridge``,
``closed_vlan``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from vmfabric.config import SecretRef, SwitchConfig, resolve_secret
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortMode, PortState
from vmfabric.core.vlans import format_vlans, parse_vlans
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import DRIVERS, PortWrite, SwitchPortDriver
from vmfabric.targets.switchport.trunkcli import join_description, split_description

Tree = dict[str, Any]
APPLY = {"state": "apply", "auto-prompt": {"ays": "ays_yes"}}
_WAITING = ("apply", "applying")
_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class CumulusSwitch(SwitchConfig):
    """A Cumulus Linux switch reached through the NVUE REST API."""

    driver: Literal["cumulus"]
    host: str = Field(min_length=1, description="Management address or name.")
    port: int = Field(8765, ge=1, le=65535, description="NVUE REST API port.")
    transport: Literal["https", "http"] = Field("https", description="http only in a lab.")
    username: str = Field(min_length=1, description="An NVUE user allowed to apply revisions.")
    password: SecretRef = Field(description="env:NAME or file:PATH; never written anywhere.")
    verify_tls: bool = Field(True, description="Verify the switch's certificate.")
    ca_file: Path | None = Field(None, description="CA bundle for the switch's certificate.")
    timeout: float = Field(
        30.0, gt=0, le=3600, allow_inf_nan=False, description="Seconds per request."
    )
    apply_timeout: float = Field(
        120.0, gt=0, le=3600, allow_inf_nan=False, description="Seconds an apply may take."
    )
    bridge: str = Field("br_default", min_length=1, description="The VLAN-aware bridge domain.")
    closed_vlan: int = Field(
        4094, ge=1, le=4094, description="Reserved VLAN keeping an emptied trunk closed."
    )

    def endpoint(self) -> str:
        return f"NVUE {self.transport}://{self.host}:{self.port}"


# ---- NVUE port semantics, pure ------------------------------------------------------------


def key_ids(keys: Any) -> frozenset[int]:
    """VLAN ids of NVUE ``vlan`` keys (``"10"``, ``"10-20"``); ``all`` and junk are skipped."""
    ids: set[int] = set()
    for key in keys or ():
        try:
            ids |= parse_vlans(str(key))
        except ValueError:
            continue
    return frozenset(ids)


def _domain(interface: Tree | None, bridge: str) -> Tree | None:
    if interface is None:
        return None
    found = interface.get("bridge", {}).get("domain", {}).get(bridge)
    return found if isinstance(found, dict) else None


def port_state(
    switch: str, name: str, interface: Tree | None, *, exists: bool, bridge: str, closed_vlan: int
) -> PortState:
    """A port's state from its applied NVUE configuration (None: not configured)."""
    domain = _domain(interface, bridge)
    if domain is None:
        return PortState(switch, name, PortMode.ACCESS if exists else PortMode.MISSING)
    if "access" in domain:
        return PortState(switch, name, PortMode.ACCESS, frozenset({int(domain["access"])}))
    keys = domain.get("vlan")
    if not keys or "all" in keys:
        return PortState(switch, name, PortMode.OPEN)
    vlans = key_ids(keys) - {closed_vlan}
    _, record = split_description((interface or {}).get("description") or "")
    return PortState(switch, name, PortMode.TRUNK, vlans, record & vlans)


def _vlan_ops(keys: Mapping[str, Any], write: PortWrite, closed_vlan: int) -> dict[str, Any]:
    """The ``vlan`` keys to set ({}) and unset (None) for one write."""
    after = {str(k) for k in keys} if not write.narrow else set()
    ops: dict[str, Any] = {"all": None} if "all" in keys else {}
    for key in [k for k in after if key_ids([k]) & write.remove]:
        ops[key] = None
        after.discard(key)
        for part in filter(None, format_vlans(key_ids([key]) - write.remove).split(",")):
            ops[part] = {}
            after.add(part)
    for vlan in sorted(write.add):
        if str(vlan) not in after:
            ops[str(vlan)] = {}
            after.add(str(vlan))
    closed = str(closed_vlan)
    if key_ids(after) - {closed_vlan}:
        if closed in after:
            ops[closed] = None
    elif closed not in after:
        ops[closed] = {}
    return ops


def render_patch(
    interfaces: Mapping[str, Tree],
    bridge_vlans: frozenset[int],
    writes: Sequence[PortWrite],
    bridge: str,
    closed_vlan: int,
) -> Tree:
    """One root PATCH applying ``writes``: VLAN keys, descriptions, missing bridge VLANs."""
    ports: Tree = {}
    needed: set[int] = set()
    for write in writes:
        interface = interfaces.get(write.port, {})
        keys = (_domain(interface, bridge) or {}).get("vlan") or {}
        ops = _vlan_ops(keys, write, closed_vlan)
        needed |= {int(k) for k, v in ops.items() if v is not None and k.isdigit()}
        port: Tree = {"bridge": {"domain": {bridge: {"vlan": ops}}}}
        if write.record is not None:
            text, _ = split_description(interface.get("description") or "")
            port["description"] = join_description(text, write.record) or None
        ports[write.port] = port
    patch: Tree = {"interface": ports}
    missing = sorted(needed - bridge_vlans)
    if missing:
        patch["bridge"] = {"domain": {bridge: {"vlan": {str(v): {} for v in missing}}}}
    return patch


def issues(revision: Tree) -> str:
    """NVUE's issue messages of a revision, as one line."""
    found = revision.get("transition", {}).get("issue") or {}
    messages = [str(i.get("message", i)) for i in found.values()] if isinstance(found, dict) else []
    return "; ".join(" ".join(m.split()) for m in messages) or "no reason given"


# ---- the driver ---------------------------------------------------------------------------


@DRIVERS.register("cumulus")
class CumulusDriver(SwitchPortDriver):
    """One Cumulus switch over one kept-alive NVUE REST session. See the module docstring.

    ``requests`` counts HTTP requests and ``logins`` HTTP clients opened."""

    Options = CumulusSwitch
    capabilities = Capabilities(
        atomic=True, origin="target", notes="one NVUE revision per plan, deleted on any error"
    )

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, CumulusSwitch):
            raise ConfigError(f"switch {config.name}: not a cumulus switch entry")
        super().__init__(config)
        self.options = config
        self.requests = 0
        self.logins = 0
        self._client: httpx.Client | None = None
        self._interfaces: dict[str, Tree] = {}

    # ---- session -----------------------------------------------------------------------

    def _where(self) -> str:
        return f"switch {self.name}: {self.options.endpoint()}"

    def _verify(self) -> ssl.SSLContext | bool:
        opts = self.options
        if opts.transport == "http" or not opts.verify_tls:
            return False
        try:
            return ssl.create_default_context(cafile=str(opts.ca_file) if opts.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"switch {self.name}: ca_file {opts.ca_file}: {exc}") from None

    def connect(self) -> None:
        if self._client is not None:
            return
        opts = self.options
        password = resolve_secret(opts.password)
        verify = self._verify()
        # a request's headers and body are two writes: without TCP_NODELAY the body waits for
        # the switch's delayed ACK (tens of ms per request on a kept connection)
        transport = httpx.HTTPTransport(verify=verify, socket_options=_NODELAY)
        self._client = httpx.Client(
            base_url=f"{opts.transport}://{opts.host}:{opts.port}/nvue_v1",
            auth=(opts.username, password.get_secret_value()),
            verify=verify,
            transport=transport,
            timeout=opts.timeout,
            headers={"Content-Type": "application/json"},
        )
        self.logins += 1

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        """One request; the answer's JSON. Errors become the vmfabric error to act on."""
        self.connect()
        assert self._client is not None
        self.requests += 1
        try:
            answer = self._client.request(method, path, json=body)
        except httpx.TimeoutException:
            raise TransientError(
                f"{self._where()}: no answer within {self.options.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if answer.status_code == 404 and missing_ok:
            return None
        if answer.status_code == 401:
            user = self.options.username
            raise PermanentError(f"{self._where()}: login as {user!r} refused (check the password)")
        if answer.status_code >= 400:
            raise PermanentError(f"{self._where()}: {method} {path} refused: {_detail(answer)}")
        return answer.json() if answer.content else None

    def _transport_error(self, exc: httpx.HTTPError) -> Exception:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__context__ or cause.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message
            return PermanentError(
                f"{self._where()}: TLS certificate not trusted ({why}); set ca_file"
            )
        if isinstance(cause, ssl.SSLError):
            return PermanentError(f"{self._where()}: TLS failed: {cause.reason or cause}")
        self.close()
        return TransientError(
            f"{self._where()}: cannot connect: {' '.join(str(exc).split()) or type(exc).__name__}"
        )

    # ---- reads and writes ------------------------------------------------------------

    def read_raw(self, ports: Sequence[str]) -> dict[str, PortState]:
        self._interfaces = self._call("GET", "/interface?rev=applied", missing_ok=True) or {}
        exists = set(self._interfaces)
        if not set(ports) <= exists:
            exists |= set(self._call("GET", "/interface") or {})
        return {p: self._state(p, p in exists) for p in ports}

    def _state(self, port: str, exists: bool) -> PortState:
        opts = self.options
        interface = self._interfaces.get(port)
        return port_state(
            self.name,
            port,
            interface,
            exists=exists,
            bridge=opts.bridge,
            closed_vlan=opts.closed_vlan,
        )

    def write(self, writes: Sequence[PortWrite], before: Mapping[str, PortState]) -> None:
        opts = self.options
        path = f"/bridge/domain/{quote(opts.bridge, safe='')}/vlan?rev=applied"
        bridge_vlans = key_ids(self._call("GET", path, missing_ok=True) or {})
        patch = render_patch(self._interfaces, bridge_vlans, writes, opts.bridge, opts.closed_vlan)
        created = self._call("POST", "/revision") or {}
        revision = quote(next(iter(created)), safe="")
        try:
            self._call("PATCH", f"/?rev={revision}", patch)
            self._call("PATCH", f"/revision/{revision}", APPLY)
        except BaseException:
            self._drop(revision)
            raise
        self._await_applied(revision)

    def _drop(self, revision: str) -> None:
        # a revision nobody applied changes nothing; NVUE keeps it until deleted
        with contextlib.suppress(PermanentError, TransientError):
            self._call("DELETE", f"/revision/{revision}", missing_ok=True)

    def _await_applied(self, revision: str) -> None:
        deadline = time.monotonic() + self.options.apply_timeout
        pause = 0.005
        while True:
            state = self._call("GET", f"/revision/{revision}") or {}
            if state.get("state") == "applied":
                return
            if state.get("state") not in _WAITING:
                self._drop(revision)
                raise PermanentError(
                    f"{self._where()}: apply refused ({state.get('state')}): {issues(state)}"
                )
            if time.monotonic() > deadline:
                waited = self.options.apply_timeout
                raise TransientError(
                    f"{self._where()}: revision still {state.get('state')} after {waited:g}s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _detail(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}"
    if isinstance(body, dict):
        return " ".join(str(body.get("detail") or body.get("title") or body).split())
    return f"HTTP {answer.status_code}"
