"""The Cisco NX-OS driver: edge-port trunk VLANs through NX-API (JSON-RPC over HTTPS),
atomic through a named checkpoint and rollback.

- **Reads**: one NX-API request of ``show interface switchport``, ``show interface
  description`` and ``show vlan brief`` (JSON bodies, ``TABLE_*``/``ROW_*`` as NX-OS
  prints them; a single row comes as an object, several as a list). A trunk allowing
  ``1-4094`` is *open*; access and routed ports are never edited; Ethernet and
  port-channel edge ports are alike. The origin record is the description tag of
  ``trunkcli`` (NX-OS descriptions hold 254 characters).
- **Writes**: one plan is one request: ``checkpoint vmfabric-<random>``, the plan's
  commands (``trunkcli.plan_commands``), ``no checkpoint``, and the reads again. When any
  command is refused, a second request rolls the running configuration back to the
  checkpoint (``rollback running-config checkpoint``) and deletes it, so nothing of the
  plan stays. ``NOTES`` says what that cannot cover. With ``checkpoint: false`` the
  commands run without one (``NxosBatchDriver``): not atomic.
- **Errors**: a JSON-RPC error object (``-32602 Invalid params`` with ``data.msg`` "%
  Invalid command at '^' marker.", and the like) is ``PermanentError`` carrying the
  command and the switch's own message; reaching the switch, TLS and credentials:
  ``httpapi``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from vmfabric.config import SwitchConfig
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import DRIVERS
from vmfabric.targets.switchport.cliapi import HttpApiSwitch, HttpCliDriver
from vmfabric.targets.switchport.httpapi import KeptConnection, auth_error
from vmfabric.targets.switchport.trunkcli import RawSwitchport, SwitchView, parse_allowed

LOG = logging.getLogger(__name__)

READS = ["show interface switchport", "show interface description", "show vlan brief"]
NOTES = (
    "Atomic through a checkpoint: a refused command rolls the switch back in a second "
    "request. If the switch becomes unreachable between the two, the partial change stays "
    "until the next apply, which reads it and completes the plan (add/remove commands are "
    "safe to repeat); the checkpoint named vmfabric-* is then left behind. checkpoint: false "
    "sends the plan without one: NX-API stops at the first refused command and keeps those "
    "before it; within a port the VLAN commands come before the origin record, so a record "
    "never names a VLAN vmfabric did not add."
)


def canonical(name: str) -> str:
    """NX-OS interface names in one form: ``Eth1/1`` -> ``Ethernet1/1``, ``Po10`` and
    ``Port-Channel10`` -> ``port-channel10``, ``vlan10`` -> ``Vlan10``."""
    match = re.fullmatch(r"([A-Za-z-]+?)\s*(\d[\d/.]*)", name.strip())
    if match is None:
        return name
    word, number = match.group(1).lower(), match.group(2)
    if len(word) >= 2 and "ethernet".startswith(word):
        return "Ethernet" + number
    if word in ("po", "port-channel", "portchannel"):
        return "port-channel" + number
    if word in ("vl", "vlan"):
        return "Vlan" + number
    return name


class NxosSwitch(HttpApiSwitch):
    """A Cisco NX-OS switch reached through NX-API (``feature nxapi``)."""

    driver: Literal["nxos"]
    checkpoint: bool = Field(
        True, description="Make each plan atomic with a checkpoint and rollback; false: "
        "no checkpoint, not atomic.",
    )  # fmt: skip

    api_path: ClassVar[str] = "/ins"
    api_name: ClassVar[str] = "NX-API"


# ---- parsing (pure) -------------------------------------------------------------------------


def rows(body: Mapping[str, Any] | None, table: str, row: str) -> list[Mapping[str, Any]]:
    """The rows of an NX-API table: one row comes as an object, several as a list."""
    found = ((body or {}).get(table) or {}).get(row)
    if found is None:
        return []
    return list(found) if isinstance(found, list) else [found]


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _switchport(entry: Mapping[str, Any]) -> RawSwitchport:
    mode = str(entry.get("oper_mode") or entry.get("mode") or "")
    kind: Literal["trunk", "access", "other"] = (
        "trunk" if mode == "trunk" else "access" if mode == "access" else "other"
    )
    return RawSwitchport(
        mode=kind,
        allowed=parse_allowed(str(entry.get("trunk_vlans", "none"))),
        access_vlan=_int(entry.get("access_vlan")),
        native_vlan=_int(entry.get("native_vlan")),
    )


def parse_view(switchports: Mapping[str, Any] | None, descriptions: Mapping[str, Any] | None,
               vlans: Mapping[str, Any] | None) -> SwitchView:  # fmt: skip
    """The bodies of ``READS`` (in that order) as a ``SwitchView``."""
    ports = {}
    for entry in rows(switchports, "TABLE_interface", "ROW_interface"):
        if str(entry.get("switchport", "Enabled")).lower() != "enabled":
            continue  # a routed port: reported through its description only
        ports[canonical(str(entry["interface"]))] = _switchport(entry)
    texts = {}
    for entry in rows(descriptions, "TABLE_interface", "ROW_interface"):
        desc = str(entry.get("desc", "") or "")
        texts[canonical(str(entry["interface"]))] = "" if desc == "--" else desc
    database = {}
    for entry in rows(vlans, "TABLE_vlanbriefxbrief", "ROW_vlanbriefxbrief"):
        vlan = _int(entry.get("vlanshowbr-vlanid"))
        if vlan is not None:
            database[vlan] = str(entry.get("vlanshowbr-vlanname", ""))
    return SwitchView(switchports=ports, descriptions=texts, vlans=database)


def request_body(commands: Sequence[str]) -> bytes:
    """An NX-API JSON-RPC batch: one ``cli`` call per command, ids from 1."""
    return json.dumps([
        {"jsonrpc": "2.0", "method": "cli", "params": {"cmd": c, "version": 1}, "id": i}
        for i, c in enumerate(commands, start=1)
    ]).encode()  # fmt: skip


def results(switch: str, commands: Sequence[str], answer: Any) -> list[Any]:
    """The ``body`` of each command's result; PermanentError for the first error object,
    naming the command and carrying the switch's message."""
    items = answer if isinstance(answer, list) else [answer]
    out: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            raise PermanentError(f"switch {switch}: NX-API answered something unexpected")
        error = item.get("error")
        if error is not None:
            raise refused(switch, commands, item, error)
        result = item.get("result")
        out.append(result.get("body") if isinstance(result, dict) else None)
    return out


def refused(switch: str, commands: Sequence[str], item: Mapping[str, Any],
            error: Mapping[str, Any]) -> PermanentError:  # fmt: skip
    index = _int(item.get("id"))
    command = commands[index - 1] if index is not None and 0 < index <= len(commands) else "?"
    data = error.get("data")
    said = str(data.get("msg", "")) if isinstance(data, dict) else ""
    said = " ".join(said.split()) or str(error.get("message", "refused"))
    return PermanentError(
        f"switch {switch}: NX-OS refused {command!r}: {said} (NX-API error {error.get('code')})"
    )


# ---- the driver ---------------------------------------------------------------------------


@DRIVERS.register("nxos")
class NxosDriver(HttpCliDriver):
    """One NX-OS switch's edge ports through NX-API. See the module docstring."""

    Options = NxosSwitch
    capabilities = Capabilities(atomic=True, origin="target", notes=NOTES)
    max_description = 254

    def __new__(cls, config: SwitchConfig) -> NxosDriver:
        """``checkpoint: false`` makes an ``NxosBatchDriver`` (its capabilities differ)."""
        if cls is NxosDriver and isinstance(config, NxosSwitch) and not config.checkpoint:
            return super().__new__(NxosBatchDriver)
        return super().__new__(cls)

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, NxosSwitch):
            raise ConfigError(f"switch {config.name}: not an nxos switch entry")
        super().__init__(config)
        self.nxos = config
        self._auth = ""

    canonical = staticmethod(canonical)

    def connected(self, http: KeptConnection, password: SecretStr) -> None:
        token = f"{self.nxos.username}:{password.get_secret_value()}".encode()
        self._auth = "Basic " + base64.b64encode(token).decode()

    def _run(self, commands: Sequence[str]) -> list[Any]:
        headers = {"Content-Type": "application/json-rpc", "Authorization": self._auth}
        if self._http is None:
            self.connect()
            headers["Authorization"] = self._auth
        reply = self.post(request_body(commands), headers)
        http = self._http
        url = http.url if http is not None else self.nxos.url()
        denied = auth_error(self.name, url, self.nxos.username, reply)
        if denied is not None:
            raise denied
        try:
            answer = json.loads(reply.body)
        except ValueError:
            raise PermanentError(f"switch {self.name}: {url}: the answer is not JSON-RPC") from None
        return results(self.name, commands, answer)

    def read_view(self) -> SwitchView:
        return parse_view(*self._run(READS)[-3:])

    def write_view(self, commands: list[str]) -> SwitchView:
        if not self.nxos.checkpoint:
            return parse_view(*self._run([*commands, *READS])[-3:])
        checkpoint = f"vmfabric-{uuid.uuid4().hex[:12]}"
        try:
            answer = self._run(
                [f"checkpoint {checkpoint}", *commands, f"no checkpoint {checkpoint}", *READS]
            )
        except (PermanentError, TransientError):
            self._rollback(checkpoint)  # also when unsure whether a timed-out request ran
            raise
        return parse_view(*answer[-3:])

    def _rollback(self, checkpoint: str) -> None:
        """Back to the checkpoint, then delete it (best effort: the switch may be gone)."""
        try:
            self._run([f"rollback running-config checkpoint {checkpoint}",
                       f"no checkpoint {checkpoint}"])  # fmt: skip
        except (PermanentError, TransientError) as exc:
            LOG.warning("switch %s: rollback to %s failed: %s", self.name, checkpoint, exc)


class NxosBatchDriver(NxosDriver):
    """``checkpoint: false``: a plan is one request without a checkpoint (``NOTES``)."""

    capabilities = Capabilities(atomic=False, origin="target", notes=NOTES)
