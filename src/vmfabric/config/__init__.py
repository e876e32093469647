"""vmfabric.yaml as typed pydantic models, and loading with one-line errors.

Every field is documented once here; ``vmfabric config schema`` prints the JSON schema
made from these models. Secrets are references (``env:NAME`` or ``file:PATH``); the
resolved value lives only in memory, as a ``SecretStr``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from vmfabric.config import crosscheck
from vmfabric.config.api import ApiConfig
from vmfabric.config.groups import (
    AnyFirewall,
    GroupConfig,
    PolicyConfig,
    check_security,
    firewall_schema_type,
)
from vmfabric.config.local import SecretUnavailableError, check_local
from vmfabric.config.overlay import (
    FabricLink,
    OverlayConfig,
    PruningConfig,
    Vtep,
    check_fabric,
    check_fabric_ports,
)
from vmfabric.config.store_url import check_store_url
from vmfabric.config.yamlfile import load_yaml as load_yaml
from vmfabric.core.errors import ConfigError
from vmfabric.core.vlans import format_vlans, parse_vlans
from vmfabric.plugins import SWITCH_DRIVERS, switch_options

CONFIG_ENV = "VMFABRIC_CONFIG"
DEFAULT_CONFIG = "vmfabric.yaml"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
_TEXT = r"\S"  # not empty, not only blanks


def parse_duration(value: Any) -> float:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"`` or a number of seconds -> seconds.
    Negative, infinite and NaN durations are refused."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use 500ms, 30s, 5m, 1h or seconds)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is not a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as the shortest of ``500ms``, ``30s``, ``5m``, ``2h``, ``7d``."""
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def within(low: float, high: float) -> AfterValidator:
    """A validator keeping a duration between ``low`` and ``high`` seconds."""

    def check(seconds: float) -> float:
        if not low <= seconds <= high:
            raise ValueError(
                f"{format_duration(seconds)} is outside {format_duration(low)} to "
                f"{format_duration(high)}"
            )
        return seconds

    return AfterValidator(check)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return value


def _vlan_set(value: Any) -> frozenset[int]:
    if isinstance(value, frozenset | set):
        return frozenset(value)
    return parse_vlans(value if isinstance(value, int) else str(value))


Duration = Annotated[float, BeforeValidator(parse_duration)]
# Bounds of the periodic work of sessions: below 0.1 s it is a busy loop against a manager.
Period = Annotated[Duration, within(0.1, 7 * 86400.0)]
Number = Annotated[float, BeforeValidator(_not_bool)]
Count = Annotated[int, BeforeValidator(_not_bool)]
VlanRange = Annotated[
    frozenset[int], BeforeValidator(_vlan_set), PlainSerializer(format_vlans, return_type=str)
]
Name = Annotated[str, Field(pattern=_NAME, max_length=64)]
Text = Annotated[str, Field(pattern=_TEXT)]
Mode = Literal["enforce", "check"]


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _secret_ref(value: Any) -> str:
    text = str(value)
    kind, _, target = text.partition(":")
    if kind not in ("env", "file") or not target:
        raise ValueError(
            "literal passwords are refused: write env:VARIABLE (read from the environment) "
            "or file:/path/to/secret (a file of mode 0600)"
        )
    if kind == "env" and not _ENV_NAME.match(target):
        raise ValueError(f"{kind}:{target!r} does not name an environment variable")
    return text


SECRET_REF_CHECK = _secret_ref  # how vmfabric.config.local recognises a SecretRef field
SecretRef = Annotated[str, BeforeValidator(_secret_ref)]


def resolve_secret(ref: str, base: Path | None = None) -> SecretStr:
    """Read the secret a reference points to; an empty secret is refused. The value never
    appears in errors."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise SecretUnavailableError(f"environment variable {target} (from {ref}) is not set")
        if not value.strip():
            raise ConfigError(f"environment variable {target} (from {ref}) is empty")
        return SecretStr(value)
    path = secret_path(ref, base)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"secret file {path} has mode {stat.S_IMODE(mode):04o}; make it 0600 or stricter"
            )
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretUnavailableError(f"cannot read secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"secret file {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"secret file {path} is empty")
    return SecretStr(value)


def secret_path(ref: str, base: Path | None = None) -> Path:
    """The file a ``file:`` reference names, relative to ``base`` when not absolute."""
    path = Path(ref.partition(":")[2])
    return base / path if base is not None and not path.is_absolute() else path


def _path_text(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("the path is empty")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Model):
    """How desired state turns into switch changes."""

    prune_delay: Annotated[Duration, within(0, 7 * 86400.0)] = Field(
        30.0,
        description="Wait this long after a VLAN's last VM left a port before removing it "
        "(0 to 7d; 0 removes at once, so a vMotion may flap the VLAN).",
    )
    coalesce: Annotated[Duration, within(0, 5.0)] = Field(
        0.02,
        description="Changes arriving within this window go to a switch as one transaction "
        "(0 to 5s: every change waits this long).",
    )
    max_removals: Count = Field(
        50, ge=0, description="Hold a plan removing more (port, VLAN) memberships than this."
    )
    max_removal_share: Number = Field(
        0.5,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Hold a plan removing more than this share of a switch's "
        "dynamic (port, VLAN) memberships (applies from 10 dynamic memberships on; 0 to 1).",
    )
    retry_max: Annotated[Duration, within(1.0, 3600.0)] = Field(
        60.0,
        description="Longest wait between retries of a switch write (1s to 1h: retries start "
        "at 1s and double; a shorter cap would flood the log).",
    )


class _SessionBase(_Model):
    name: Name = Field(description="Session name, unique in the file.")
    autovlan: bool = Field(True, description="Provision VLANs on edge ports for this session.")
    allowed_vlans: VlanRange = Field(
        default=frozenset(range(1, 4095)),
        description="VLANs autovlan may add for this session, e.g. 2-1000,1002-4094.",
    )
    mode: Mode = Field("enforce", description="enforce: apply plans; check: record them only.")


class VcenterSession(_SessionBase):
    """A vCenter (or ESXi) monitoring session through the vSphere API."""

    kind: Literal["vcenter"]
    url: str = Field(description="https://vcenter.example.com/sdk")
    username: Text
    password: SecretRef = Field(description="env:VARIABLE or file:PATH (mode 0600), not empty.")
    verify_tls: bool = Field(True, description="Verify the server certificate (keep it on).")
    ca_file: Path | None = Field(
        None, description="CA bundle (PEM) to verify the server with; needs verify_tls."
    )
    audit_interval: Period = Field(600.0, description="Full inventory audit period (0.1s-7d).")
    hint_refresh: Period = Field(
        300.0, description="CDP/LLDP hint refresh period per host (0.1s-7d)."
    )
    tag_refresh: Duration = Field(
        60.0,
        description="Re-read VM tags (vSphere sends no event when a tag is attached) this "
        "often (0.1s-7d); 0 reads no tags.",
    )

    @field_validator("tag_refresh")
    @classmethod
    def _tag_refresh(cls, value: float) -> float:
        if value and not 0.1 <= value <= 7 * 86400.0:
            raise ValueError(f"{value:g} s is outside 0.1s-7d (0 reads no tags)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        problem = crosscheck.http_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _ca_needs_verify(self) -> VcenterSession:
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file is set but verify_tls is false: nothing would use it")
        return self


class LibvirtSession(_SessionBase):
    """KVM hypervisors through libvirt: one URI per hypervisor."""

    kind: Literal["libvirt"]
    uris: dict[Name, str] = Field(
        min_length=1,
        description="Hypervisor name -> libvirt URI (qemu+ssh://h/system, test:///path.xml).",
    )
    lldp_command: str | None = Field(
        None,
        description="Command printing `lldpcli -f json show neighbors` for a host; "
        "{host} is replaced by the hypervisor name.",
    )
    lldp_refresh: Period = Field(
        300.0, description="Re-read each hypervisor's LLDP neighbours this often (0.1s-7d)."
    )

    @field_validator("uris")
    @classmethod
    def _uris(cls, uris: dict[str, str]) -> dict[str, str]:
        problem = crosscheck.libvirt_uris_problem(uris)
        if problem:
            raise ValueError(problem)
        return uris

    @field_validator("lldp_command")
    @classmethod
    def _command(cls, command: str | None) -> str | None:
        if command is None:
            return None
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"cannot split {command!r} like a shell: {exc}") from None
        if not words:
            raise ValueError("the command is empty")
        return command


class StaticSession(_SessionBase):
    """An inventory file (hosts, port groups, VMs), reloaded when it changes."""

    kind: Literal["static"]
    path: Annotated[Path, BeforeValidator(_path_text)] = Field(
        description="The inventory file (YAML), relative to the config file's folder."
    )


SessionConfig = Annotated[
    VcenterSession | LibvirtSession | StaticSession, Field(discriminator="kind")
]


def _address(value: Any) -> Any:
    """An IP address (normalised: ``2001:DB8::1`` -> ``2001:db8::1``); empty means none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


class SwitchConfig(_Model):
    """A switch whose edge ports vmfabric manages: the keys every driver shares. Each driver
    registers a subclass with its own options as top-level keys (``ovsdb``, ``host``...);
    ``switch_model`` picks it by ``driver``, so unknown keys, missing required options and
    out-of-range values are refused by the driver's own model."""

    name: Name
    driver: str = Field(description="Driver name: ovs, fake, ...")
    aliases: list[Text] = Field(
        default_factory=list, description="Other names neighbours may report (CDP/LLDP)."
    )
    mgmt_address: Annotated[str | None, BeforeValidator(_address)] = Field(
        None, description="Management IP address, matched against neighbours' (CDP/LLDP)."
    )
    edge_ports: list[Text] = Field(
        description="The only ports vmfabric may write VM VLANs to (empty only on a switch "
        "with fabric_ports or a vtep)."
    )
    open_ports: Literal["keep", "close"] = Field(
        "keep",
        description="An edge port carrying every VLAN: keep it open and leave it alone, or "
        "close it to the VLANs that are needed.",
    )
    mode: Mode = Field("enforce", description="enforce: apply plans; check: record them only.")
    vtep: Vtep | None = Field(None, description="The switch's VXLAN tunnel endpoint (overlay).")
    fabric_ports: list[str] = Field(
        default_factory=list,
        description="Inter-switch trunks vmfabric may prune to the VLANs needed beyond them "
        "(opt-in: only these are written).",
    )

    @field_validator("edge_ports")
    @classmethod
    def _unique_ports(cls, ports: list[str]) -> list[str]:
        dup = _first_duplicate(ports)
        if dup is not None:
            raise ValueError(f"edge port {dup!r} is listed twice")
        return ports

    @field_validator("aliases")
    @classmethod
    def _unique_aliases(cls, aliases: list[str]) -> list[str]:
        dup = _first_duplicate(aliases)
        if dup is not None:
            raise ValueError(f"alias {dup!r} is listed twice")
        return aliases

    @field_validator("fabric_ports")
    @classmethod
    def _fabric_ports(cls, ports: list[str], info: ValidationInfo) -> list[str]:
        return check_fabric_ports(ports, info.data.get("edge_ports") or ())

    @model_validator(mode="after")
    def _manages_something(self) -> SwitchConfig:
        if not self.edge_ports and not self.fabric_ports and self.vtep is None:
            raise ValueError(
                f"{self.name} has no edge_ports (nor fabric_ports, nor a vtep): vmfabric "
                "would manage nothing on it"
            )
        return self

    def endpoint(self) -> str:
        """What identifies the device this entry writes (two entries must never share it):
        drivers override it (OVS: socket and bridge; EOS: host and port)."""
        return ""


def switch_model(driver: Any) -> type[SwitchConfig]:
    """The options model the driver named ``driver`` registered. ValueError if unknown."""
    if not isinstance(driver, str) or not driver:
        raise ValueError(f"driver {driver!r} is not a driver name")
    try:
        model: type[SwitchConfig] = switch_options(driver)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return model


def _switch(value: Any) -> Any:
    """Validate one ``switches[]`` entry with its driver's model (see ``switch_model``)."""
    if isinstance(value, SwitchConfig) or not isinstance(value, dict):
        return value
    if "options" in value:
        raise ValueError(
            "driver options are keys of the switch itself now (timeout: 1, not options: "
            "{timeout: 1}); see `vmfabric config schema`"
        )
    if "driver" not in value:
        return value  # the base model reports the missing key
    try:
        return switch_model(value["driver"]).model_validate(value)
    except ValidationError as exc:  # keep the key path of the driver's own model
        err = exc.errors(include_url=False)[0]
        sub = _loc(tuple(err["loc"]))
        raise PydanticCustomError(
            "switch_option", "{message}", {"sub": sub, "message": _message(err)}
        ) from None


AnySwitch = Annotated[SwitchConfig, BeforeValidator(_switch)]


def parse_switch(data: dict[str, Any], source: str = "switch") -> SwitchConfig:
    """One switch entry validated with its driver's model; ConfigError (one line)."""
    try:
        return _SwitchEntry.model_validate({"switch": data}).switch
    except ValidationError as exc:
        raise format_validation_error(exc, source, drop=1) from None


class _SwitchEntry(BaseModel):
    switch: AnySwitch


class LinkConfig(_Model):
    """Static wiring: host NIC -> switch port. Wins over discovery."""

    host: Text
    nic: Text
    switch: Text
    port: Text = Field(description="One of the switch's edge_ports.")
    session: str | None = Field(None, description="Only for hosts of this session.")


class Config(_Model):
    """The whole of vmfabric.yaml."""

    store: str = Field(
        "sqlite:///vmfabric.db",
        description="SQLAlchemy URL of the store: sqlite:///PATH (relative to the config "
        "file), sqlite:// (memory) or postgresql[+psycopg]://USER@HOST/DB (no password: "
        "libpq reads PGPASSWORD or ~/.pgpass).",
    )
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sessions: list[SessionConfig] = Field(default_factory=list)
    switches: list[AnySwitch] = Field(default_factory=list)
    links: list[LinkConfig] = Field(default_factory=list)
    groups: list[GroupConfig] = Field(default_factory=list, description="Security groups.")
    policies: list[PolicyConfig] = Field(default_factory=list, description="Ordered rules.")
    firewalls: list[AnyFirewall] = Field(default_factory=list, description="Group targets.")
    overlay: OverlayConfig | None = Field(None, description="VXLAN flood lists from placement.")
    fabric_links: list[FabricLink] = Field(
        default_factory=list, description="Static switch-to-switch links (VLAN pruning)."
    )
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    api: ApiConfig | None = Field(None, description="REST API, live events, web UI, metrics.")
    base_dir: Path = Field(Path("."), exclude=True, description="Folder of the config file.")

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        problem = check_store_url(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problem = crosscheck.first_problem(self)
        if problem:
            raise ValueError(problem)
        check_security(self.groups, self.policies, self.firewalls, {s.name for s in self.sessions})
        check_fabric(self.switches, self.fabric_links)
        return self

    def session(self, name: str) -> SessionConfig:
        for s in self.sessions:
            if s.name == name:
                return s
        raise ConfigError(f"no session named {name!r}")

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    def store_url(self) -> str:
        prefix = "sqlite:///"
        if self.store.startswith(prefix) and not self.store.startswith(prefix + "/"):
            rel = self.store[len(prefix) :]
            if rel and rel != ":memory:":
                return prefix + str(self.resolve(Path(rel)))
        return self.store


def json_schema() -> dict[str, Any]:
    """The JSON schema of vmfabric.yaml, with every known driver's options (a union on
    ``driver``) and every firewall kind's (a union on ``kind``), for `vmfabric config
    schema`."""
    models = tuple(switch_options(name) for name in SWITCH_DRIVERS.names())
    entry: Any = Annotated[Union[models], Field(discriminator="driver")]  # noqa: UP007
    firewall: Any = firewall_schema_type()
    full = create_model(
        "Config", __base__=Config, switches=(list[entry], Field(default_factory=list)),
        firewalls=(list[firewall], Field(default_factory=list)),
    )  # fmt: skip
    schema = full.model_json_schema(mode="validation")
    schema["properties"].pop("base_dir", None)  # set from the file's folder, never written
    return schema


def _first_duplicate(items: list[str]) -> str | None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def find_config(path: str | Path | None) -> Path:
    """The config file: ``-c FILE``, else ``$VMFABRIC_CONFIG``, else ``./vmfabric.yaml``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("vcenter", "libvirt", "static") and out.endswith("]"):
            continue  # pydantic's discriminator tag, not a key the user wrote
        elif part == "[key]":
            continue  # pydantic's mark for "the key itself is wrong"
        elif not part or not re.fullmatch(r"[^\s.\[\]]+", part):
            out += f"[{part!r}]"  # a key that would not read as one: quoted
        else:
            out += f".{part}" if out else str(part)
    return out


def format_validation_error(exc: ValidationError, source: str, drop: int = 0) -> ConfigError:
    """First error of a pydantic ValidationError as one line naming file and key path
    (without the first ``drop`` parts of the path)."""
    err = exc.errors(include_url=False)[0]
    loc = _loc(tuple(err["loc"])[drop:])
    ctx = err.get("ctx") or {}
    if err["type"] == "switch_option" and ctx.get("sub"):
        loc = f"{loc}.{ctx['sub']}" if loc else str(ctx["sub"])
    where = f"{source}: {loc}" if loc else source
    return ConfigError(_message(err), where)


def _message(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "string_pattern_mismatch":
        return _pattern_message(err)
    return str(err["msg"]).removeprefix("Value error, ")


def _pattern_message(err: ErrorDetails) -> str:
    pattern = (err.get("ctx") or {}).get("pattern")
    if pattern == _NAME:
        return (
            f"{err['input']!r} is not a name (letters, digits and _ . : -, starting with a "
            "letter or digit)"
        )
    if pattern == _TEXT:
        return "the value is blank"
    return str(err["msg"])


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate parsed YAML as a Config. Raises ConfigError (one line naming ``source``)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", source)
    if "base_dir" in data:
        raise ConfigError("unknown key (relative paths resolve against the file's folder)",
                          f"{source}: base_dir")  # fmt: skip
    base = base_dir or Path(".")
    if isinstance(data.get("switches"), list):
        data = {**data, "switches": [_anchor_secrets(sw, base) for sw in data["switches"]]}
    try:
        return Config.model_validate({**data, "base_dir": base})
    except ValidationError as exc:
        raise format_validation_error(exc, source) from None
    except RecursionError:
        raise ConfigError("nested too deeply", source) from None


def _anchor_secrets(entry: Any, base: Path) -> Any:
    """A switch entry with relative ``file:`` secret references made absolute against the
    config file's folder (drivers resolve them later, wherever vmfabric runs from)."""
    if not isinstance(entry, dict):
        return entry
    out = dict(entry)
    for key, value in entry.items():
        if isinstance(value, str) and value.startswith("file:"):
            path = Path(value.removeprefix("file:"))
            if value.removeprefix("file:") and not path.is_absolute():
                out[key] = f"file:{base / path}"
    return out


def load_config(
    path: str | Path | None = None, *, connect: bool = False, write: bool = False
) -> Config:
    """Find, read and validate the config file, and check it against this machine (see
    ``vmfabric.config.local``): ``connect`` for commands that log in to managers (every
    secret must resolve), ``write`` for commands that write the store. Raises ConfigError
    (one line naming the file and key path)."""
    found = find_config(path)
    config = parse_config(load_yaml(found), str(found), found.resolve().parent)
    check_local(config, str(found), connect=connect, write=write)
    return config
