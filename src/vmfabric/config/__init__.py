"""vmfabric.yaml as typed pydantic models, and loading with one-line errors.

Every field is documented once here; ``vmfabric config schema`` prints the JSON schema
made from these models. Secrets are references (``env:NAME`` or ``file:PATH``); the
resolved value lives only in memory, as a ``SecretStr``.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
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

from vmfabric.config.api import ApiConfig
from vmfabric.config.groups import (
    AnyFirewall,
    GroupConfig,
    PolicyConfig,
    check_security,
    firewall_schema_type,
)
from vmfabric.config.overlay import (
    FabricLink,
    OverlayConfig,
    PruningConfig,
    Vtep,
    check_fabric,
    check_fabric_ports,
)
from vmfabric.core.errors import ConfigError
from vmfabric.core.vlans import format_vlans, parse_vlans
from vmfabric.plugins import SWITCH_DRIVERS, switch_options

CONFIG_ENV = "VMFABRIC_CONFIG"
# libyaml's safe loader when PyYAML was built with it (about 10x faster on big inventories)
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DEFAULT_CONFIG = "vmfabric.yaml"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


def parse_duration(value: Any) -> float:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use 500ms, 30s, 5m, 1h or seconds)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return seconds


def _vlan_set(value: Any) -> frozenset[int]:
    if isinstance(value, frozenset | set):
        return frozenset(value)
    return parse_vlans(value if isinstance(value, int) else str(value))


Duration = Annotated[float, BeforeValidator(parse_duration)]
VlanRange = Annotated[
    frozenset[int], BeforeValidator(_vlan_set), PlainSerializer(format_vlans, return_type=str)
]
Name = Annotated[str, Field(pattern=_NAME, max_length=64)]
Mode = Literal["enforce", "check"]


def _secret_ref(value: Any) -> str:
    text = str(value)
    if not text.startswith(("env:", "file:")) or len(text) <= len("file:"):
        raise ValueError(
            "literal passwords are refused: write env:VARIABLE (read from the environment) "
            "or file:/path/to/secret (a file of mode 0600)"
        )
    return text


SecretRef = Annotated[str, BeforeValidator(_secret_ref)]


def resolve_secret(ref: str, base: Path | None = None) -> SecretStr:
    """Read the secret a reference points to. The value never appears in errors."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise ConfigError(f"environment variable {target} (from {ref}) is not set")
        return SecretStr(value)
    path = Path(target)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"secret file {path} has mode {stat.S_IMODE(mode):04o}; make it 0600 or stricter"
            )
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Model):
    """How desired state turns into switch changes."""

    prune_delay: Duration = Field(
        30.0, description="Wait this long after a VLAN's last VM left a port before removing it."
    )
    coalesce: Duration = Field(
        0.02, description="Changes arriving within this window go to a switch as one transaction."
    )
    max_removals: int = Field(
        50, ge=0, description="Hold a plan removing more (port, VLAN) memberships than this."
    )
    max_removal_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Hold a plan removing more than this share of a switch's "
        "dynamic (port, VLAN) memberships (applies from 10 dynamic memberships on).",
    )
    retry_max: Duration = Field(60.0, description="Longest wait between retries of a switch write.")


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
    username: str
    password: SecretRef
    verify_tls: bool = Field(True, description="Verify the server certificate (keep it on).")
    ca_file: Path | None = Field(None, description="CA bundle to verify the server with.")
    audit_interval: Duration = Field(600.0, description="Full inventory audit period.")
    hint_refresh: Duration = Field(300.0, description="CDP/LLDP hint refresh period per host.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class LibvirtSession(_SessionBase):
    """KVM hypervisors through libvirt: one URI per hypervisor."""

    kind: Literal["libvirt"]
    uris: dict[str, str] = Field(
        description="Hypervisor name -> libvirt URI (qemu+ssh://h/system, test:///path.xml)."
    )
    lldp_command: str | None = Field(
        None,
        description="Command printing `lldpcli -f json show neighbors` for a host; "
        "{host} is replaced by the hypervisor name.",
    )
    lldp_refresh: Duration = Field(
        300.0, description="Re-read each hypervisor's LLDP neighbours this often."
    )


class StaticSession(_SessionBase):
    """An inventory file (hosts, port groups, VMs), reloaded when it changes."""

    kind: Literal["static"]
    path: Path


SessionConfig = Annotated[
    VcenterSession | LibvirtSession | StaticSession, Field(discriminator="kind")
]


class SwitchConfig(_Model):
    """A switch whose edge ports vmfabric manages: the keys every driver shares. Each driver
    registers a subclass with its own options as top-level keys (``ovsdb``, ``host``...);
    ``switch_model`` picks it by ``driver``, so unknown keys, missing required options and
    out-of-range values are refused by the driver's own model."""

    name: Name
    driver: str = Field(description="Driver name: ovs, fake, ...")
    aliases: list[str] = Field(
        default_factory=list, description="Other names neighbours may report (CDP/LLDP)."
    )
    mgmt_address: str | None = Field(None, description="Management address for matching.")
    edge_ports: list[str] = Field(description="The only ports vmfabric may write.")
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

    @field_validator("fabric_ports")
    @classmethod
    def _fabric_ports(cls, ports: list[str], info: ValidationInfo) -> list[str]:
        return check_fabric_ports(ports, info.data.get("edge_ports") or ())

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

    host: str
    nic: str
    switch: str
    port: str
    session: str | None = Field(None, description="Only for hosts of this session.")


class Config(_Model):
    """The whole of vmfabric.yaml."""

    store: str = Field("sqlite:///vmfabric.db", description="SQLAlchemy URL of the store.")
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

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        for what, names in (
            ("session", [s.name for s in self.sessions]),
            ("switch", [s.name for s in self.switches]),
        ):
            dup = _first_duplicate(names)
            if dup is not None:
                raise ValueError(f"{what} name {dup!r} is used twice")
        switches = {s.name: s for s in self.switches}
        sessions = {s.name for s in self.sessions}
        for i, link in enumerate(self.links):
            if link.switch not in switches:
                raise ValueError(f"links[{i}]: switch {link.switch!r} is not configured")
            if link.session is not None and link.session not in sessions:
                raise ValueError(f"links[{i}]: session {link.session!r} is not configured")
        check_security(self.groups, self.policies, self.firewalls, sessions)
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
    return full.model_json_schema(mode="validation")


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
    return str(err["msg"]).removeprefix("Value error, ")


def load_yaml(path: Path) -> Any:
    """Read a YAML file; errors become one-line ConfigErrors with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", str(path)) from None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", where) from None


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", source)
    base = base_dir or Path(".")
    if isinstance(data.get("switches"), list):
        data = {**data, "switches": [_anchor_secrets(sw, base) for sw in data["switches"]]}
    try:
        return Config.model_validate({**data, "base_dir": base})
    except ValidationError as exc:
        raise format_validation_error(exc, source) from None


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


def load_config(path: str | Path | None = None) -> Config:
    """Find, read and validate the config file. Raises ConfigError (one line)."""
    found = find_config(path)
    return parse_config(load_yaml(found), str(found), found.resolve().parent)
