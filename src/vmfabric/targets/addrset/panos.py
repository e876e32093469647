"""``kind: panos``: group members as User-ID registered-ip tags on a Palo Alto firewall or
Panorama, through pan-os-python.

Each group is a tag, ``<tag_prefix><group>`` (default prefix ``vmf-``); each address in the
group is registered with that tag. Dynamic address groups on the firewall then match the
tags (``'vmf-web'``), with no commit. vmfabric's record of what it registered is the tags
with its prefix on the firewall itself (origin on the target): tags without the prefix
are never read or written.

- ``read()`` lists the registered addresses with the prefix (``show object registered-ip``,
  paged by pan-os-python).
- ``apply()`` sends the plan's registers and unregisters as uid-messages of at most
  ``batch_size`` entries (pan-os-python's ``batch_start``/``batch_end``), then reads back.
  One uid-message is applied by the firewall entry by entry, so a plan larger than one
  batch is not atomic; a failed batch leaves earlier ones applied, and the next read
  shows exactly what is there.
- On start the reconcile loop's first read -> plan -> apply is the audit: a diff against
  what the firewall holds (as ``audit_registered_ip`` does), never a re-registration of
  everything, and still subject to removal safety and the guard.

Least privilege: an admin role whose XML API allows only *User-ID Agent* and
*Operational Requests* (no web UI, CLI, configuration or commit).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from vmfabric.config.groups import PanosFirewall
from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.targets.addrset.base import MemberChange, State, normalize
from vmfabric.targets.base import Capabilities


def _panos() -> tuple[Any, Any]:
    from panos import errors
    from panos.firewall import Firewall

    return Firewall, errors


class PanosDriver:
    capabilities = Capabilities(
        atomic=False,
        origin="target",
        notes="one uid-message per batch_size entries; each entry applied on its own",
    )

    def __init__(self, config: PanosFirewall, api_key: SecretStr) -> None:
        self.config = config
        self.prefix = config.tag_prefix
        self._key = api_key
        self._fw: Any = None
        self._state: dict[str, frozenset[str]] = {}
        self.messages = 0  # uid-messages sent (batches), for tests and figures

    def _context(self) -> ssl.SSLContext:
        if not self.config.verify_tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        cafile = str(self.config.ca_file) if self.config.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def connect(self) -> None:
        firewall, _ = _panos()
        fw = firewall(
            self.config.host,
            api_key=self._key.get_secret_value(),
            port=self.config.port,
            vsys=self.config.vsys,
            timeout=int(max(1, self.config.timeout)),
        )
        fw.xapi.ssl_context = self._context()
        fw.userid.prefix = self.prefix
        self._fw = fw
        self._call(fw.refresh_system_info)

    def close(self) -> None:
        self._fw = None

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        _, errors = _panos()
        try:
            return fn(*args, **kwargs)
        except errors.PanDeviceError as exc:
            text = _text(exc)
            if "code: 403" in text or "Invalid Credential" in text:
                raise PermanentError(f"{self.config.name}: the API key was refused") from None
            if isinstance(exc, errors.PanURLError | errors.PanConnectionTimeout):
                raise TransientError(f"{self.config.name}: {text}") from None
            if "timed out" in text or "URLError" in text:
                raise TransientError(f"{self.config.name}: {text}") from None
            raise PermanentError(f"{self.config.name}: the firewall refused: {text}") from None
        except (OSError, TimeoutError) as exc:
            raise TransientError(f"{self.config.name}: {exc}") from None

    def _device(self) -> Any:
        if self._fw is None:
            self.connect()
        return self._fw

    def read(self) -> State:
        fw = self._device()
        found = self._call(fw.userid.get_registered_ip, prefix=self.prefix)
        out: dict[str, set[str]] = {}
        for ip, tags in found.items():
            for tag in tags:
                if tag.startswith(self.prefix):
                    out.setdefault(tag[len(self.prefix) :], set()).add(normalize(ip))
        self._state = {g: frozenset(m) for g, m in out.items()}
        return self._state

    def apply(self, changes: Sequence[MemberChange]) -> State:
        todo = [
            c for c in changes if (c.member in self._state.get(c.holder, ())) != (c.action == "add")
        ]
        fw = self._device()
        for start in range(0, len(todo), self.config.batch_size):
            self._send(fw, todo[start : start + self.config.batch_size])
        return self.read()

    def _send(self, fw: Any, batch: Sequence[MemberChange]) -> None:
        register: dict[str, list[str]] = {}
        unregister: dict[str, list[str]] = {}
        for c in batch:
            (register if c.action == "add" else unregister).setdefault(c.member, []).append(
                c.holder
            )
        uid = fw.userid
        uid.batch_start()
        for ip, groups in sorted(unregister.items()):
            uid.unregister(ip, sorted(groups))
        for ip, groups in sorted(register.items()):
            uid.register(ip, sorted(groups))
        self._call(uid.batch_end)
        self.messages += 1


def _text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
