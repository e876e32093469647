"""The Arista EOS driver: edge-port trunk VLANs through eAPI (JSON-RPC over HTTPS) with
pyeapi, one configuration session per plan.

- **Reads**: one eAPI request of ``show interfaces switchport``, ``show interfaces
  description`` and ``show vlan`` (JSON): every switchport's mode and allowed VLANs, every
  interface's description (where vmfabric's origin record lives, see ``trunkcli``) and the
  VLAN database. Ethernet and Port-Channel edge ports are alike. A trunk allowing ``ALL`` is
  *open* (``open_ports``); access, dot1q-tunnel and routed ports are never edited.
- **Writes**: one plan is one eAPI request: ``configure session vmfabric-<random>``,
  the plan's commands (``trunkcli.plan_commands``: missing VLANs created and named
  ``vmfabric-<id>``, ``switchport trunk allowed vlan add|remove``, the description tag,
  ``no vlan`` for VLANs vmfabric created that no port uses any more), ``commit``, and the
  three reads again, so the answer is the switch's state after the commit. eAPI stops at
  the first refused command; the session is then aborted (one more request) and nothing of
  the plan is applied. With ``config_session: false`` (an EOS without sessions, or a lab
  peer) the same commands run in plain ``configure`` mode: not atomic (see ``NOTES``).
- **Errors**: a refused command (``% Invalid input``, ``% Incomplete command``, any eAPI
  error code) is ``PermanentError`` carrying the command and the switch's own message;
  reaching the switch, TLS and credentials: ``httpapi``. The password is resolved from its
  reference when connecting and appears in no message or log.
- **Connections** are kept open (``httpapi.KeptConnection``); the runtime re-opens them
  with backoff after a TransientError. ``requests`` counts eAPI requests (benchmarks).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr
from pyeapi.eapilib import CommandError, EapiConnection

from vmfabric.config import SwitchConfig
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import DRIVERS
from vmfabric.targets.switchport.cliapi import HttpApiSwitch, HttpCliDriver
from vmfabric.targets.switchport.httpapi import KeptConnection, Reply, auth_error
from vmfabric.targets.switchport.trunkcli import RawSwitchport, SwitchView, parse_allowed

LOG = logging.getLogger(__name__)

READS = ["show interfaces switchport", "show interfaces description", "show vlan"]
MAX_DESCRIPTION = 240
SESSION_NOTES = (
    "Atomic: one configuration session per plan, opened and committed within one eAPI "
    "request, aborted on any refused command. EOS commits a session by replacing the "
    "running configuration with the session's copy, taken when the request starts: a "
    "person's commit landing during those milliseconds could be undone."
)
NOTES = (
    "config_session: false runs a plan in plain configure mode: EOS stops at the first "
    "refused command and keeps the commands before it, so earlier ports of the plan keep "
    "their change; within a port the VLAN commands come before the origin record, so a "
    "record never names a VLAN vmfabric did not add (a VLAN added without its record reads "
    "as static and is left alone). A re-run of the plan completes it."
)
_SHORT = {"et": "Ethernet", "po": "Port-Channel", "ma": "Management", "vl": "Vlan"}


def canonical(name: str) -> str:
    """EOS interface names in one form: ``Et1`` and ``ethernet1`` -> ``Ethernet1``,
    ``Po10`` and ``port-channel10`` -> ``Port-Channel10``."""
    match = re.fullmatch(r"([A-Za-z-]+?)\s*(\d[\d/.]*)", name.strip())
    if match is None:
        return name
    word, number = match.groups()
    lower = word.lower()
    for short, full in _SHORT.items():
        if lower == short or full.lower() == lower:
            return full + number
    return name


class EosSwitch(HttpApiSwitch):
    """An Arista EOS switch reached through eAPI."""

    driver: Literal["eos"]
    config_session: bool = Field(
        True,
        description="Apply each plan in a configuration session (atomic); false: "
        "plain configure mode, not atomic.",
    )

    api_path: ClassVar[str] = "/command-api"
    api_name: ClassVar[str] = "eAPI"


class _Eapi(EapiConnection):  # type: ignore[misc]
    """pyeapi's eAPI client (request building, error parsing, CommandError) over a kept
    connection instead of pyeapi's one connection per request."""

    def __init__(self, http: KeptConnection, username: str, password: SecretStr) -> None:
        super().__init__()
        self.http = http
        self.username = username
        self.authentication(username, password.get_secret_value())

    def send(self, data: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/json-rpc", self._auth[0]: self._auth[1]}
        reply = self.http.post("/command-api", data.encode(), headers)
        refused = auth_error(self.http.switch, self.http.url, self.username, reply)
        if refused is not None:
            raise refused
        decoded = _decode(self.http.switch, self.http.url, reply)
        if "error" in decoded:
            code, message, error, output = self._parse_error_message(decoded)
            raise CommandError(code, message, command_error=error, output=output)
        return decoded


def _decode(switch: str, url: str, reply: Reply) -> dict[str, Any]:
    try:
        decoded = json.loads(reply.body)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        raise PermanentError(f"switch {switch}: {url}: the answer is not eAPI JSON-RPC")
    return decoded


def refused(switch: str, commands: Sequence[str], exc: CommandError) -> PermanentError:
    """A refused command as one line: the command and the switch's own words."""
    output = exc.output if isinstance(exc.output, list) else []
    index = len(output) - 1 if output else -1
    command = commands[index] if 0 <= index < len(commands) else "?"
    errors = output[index].get("errors") if output and isinstance(output[index], dict) else None
    said = "; ".join(str(e) for e in errors) if errors else str(exc.error_text)
    return PermanentError(
        f"switch {switch}: EOS refused {command!r}: {said} (eAPI error {exc.error_code})"
    )


# ---- parsing (pure) -------------------------------------------------------------------------


def _switchport(info: Mapping[str, Any]) -> RawSwitchport:
    mode = str(info.get("mode", ""))
    kind: Literal["trunk", "access", "other"] = (
        "trunk" if mode == "trunk" else "access" if mode == "access" else "other"
    )
    allowed = parse_allowed(str(info.get("trunkAllowedVlans", "NONE")))
    access = info.get("accessVlanId")
    native = info.get("trunkingNativeVlanId")
    return RawSwitchport(
        mode=kind,
        allowed=allowed,
        access_vlan=int(access) if isinstance(access, int) else None,
        native_vlan=int(native) if isinstance(native, int) else None,
    )


def parse_view(switchports: Mapping[str, Any], descriptions: Mapping[str, Any],
               vlans: Mapping[str, Any]) -> SwitchView:  # fmt: skip
    """The JSON of ``READS`` (in that order) as a ``SwitchView``."""
    ports = {}
    for name, entry in switchports.get("switchports", {}).items():
        if entry.get("enabled", True) is False:
            continue  # not a switchport (routed): reported through its description only
        ports[canonical(name)] = _switchport(entry.get("switchportInfo", {}))
    texts = {
        canonical(name): str(entry.get("description", ""))
        for name, entry in descriptions.get("interfaceDescriptions", {}).items()
    }
    database = {int(k): str(v.get("name", "")) for k, v in vlans.get("vlans", {}).items()}
    return SwitchView(switchports=ports, descriptions=texts, vlans=database)


# ---- the driver ---------------------------------------------------------------------------


@DRIVERS.register("eos")
class EosDriver(HttpCliDriver):
    """One Arista switch's edge ports through eAPI. See the module docstring."""

    Options = EosSwitch
    capabilities = Capabilities(atomic=True, origin="target", notes=SESSION_NOTES)
    max_description = MAX_DESCRIPTION

    def __new__(cls, config: SwitchConfig) -> EosDriver:
        """``config_session: false`` makes an ``EosBatchDriver`` (its capabilities differ)."""
        if cls is EosDriver and isinstance(config, EosSwitch) and not config.config_session:
            return super().__new__(EosBatchDriver)
        return super().__new__(cls)

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, EosSwitch):
            raise ConfigError(f"switch {config.name}: not an eos switch entry")
        super().__init__(config)
        self.eos = config
        self._api: _Eapi | None = None

    canonical = staticmethod(canonical)

    def connected(self, http: KeptConnection, password: SecretStr) -> None:
        self._api = _Eapi(http, self.eos.username, password)

    def _run(self, commands: Sequence[str]) -> list[Any]:
        if self._http is None:
            self.connect()
        api = self._api
        if api is None:
            raise TransientError(f"switch {self.name}: connection closed")
        try:
            response = api.execute(list(commands), encoding="json")
        except CommandError as exc:
            raise refused(self.name, commands, exc) from None
        result: list[Any] = response["result"]
        return result

    def read_view(self) -> SwitchView:
        return parse_view(*self._run(READS)[-3:])

    def write_view(self, commands: list[str]) -> SwitchView:
        if not self.eos.config_session:
            return parse_view(*self._run(["enable", "configure", *commands, "end", *READS])[-3:])
        session = f"vmfabric-{uuid.uuid4().hex[:12]}"  # unique across restarts and hosts
        try:
            results = self._run(
                ["enable", f"configure session {session}", *commands, "commit", *READS]
            )
        except (PermanentError, TransientError):
            self._abort(session)
            raise
        return parse_view(*results[-3:])

    def _abort(self, session: str) -> None:
        """Drop the uncommitted session (best effort: the switch may be gone)."""
        try:
            self._run(["enable", f"configure session {session}", "abort"])
        except (PermanentError, TransientError) as exc:
            LOG.warning("switch %s: could not abort session %s: %s", self.name, session, exc)


class EosBatchDriver(EosDriver):
    """``config_session: false``: a plan is one request in plain configure mode (``NOTES``)."""

    capabilities = Capabilities(atomic=False, origin="target", notes=NOTES)
