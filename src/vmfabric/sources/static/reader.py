"""Reading an inventory file into model objects, again and again, cheaply.

``InventoryReader.read`` reads a file of one-line flow-mapping items (``flow``) and
builds each item's model object (``entries``); it remembers the object built for each
item line, so a re-read builds only the lines that changed: a one-line edit of a
100,000-VM file costs one line's parsing plus one pass of cheap checks (duplicate names,
references). A file of another shape is read whole by the YAML loader and the schema.

Errors are one line naming the file, the line and the key path, for example
``inv.yaml:12: vms[10].ips[0]: '10.0.0.300' is not an IPv4 or IPv6 address``; a file
that fails keeps the reader's memory of the last good one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Host, PortGroup, Vm
from vmfabric.sources.static.entries import (
    ENTRIES,
    FAST,
    InventoryFile,
    check_references,
    host_of,
    model_of,
    portgroup_of,
    vm_of,
)
from vmfabric.sources.static.flow import (
    KNOWN,
    LOADER,
    SLOW,
    Item,
    SlowError,
    load_flow,
    read_document,
)

KINDS = ("hosts", "portgroups", "vms")
Model = Host | PortGroup | Vm


@dataclass
class Parsed:
    """One reading of the file: the model objects in file order."""

    hosts: list[Host] = field(default_factory=list)
    portgroups: list[PortGroup] = field(default_factory=list)
    vms: list[Vm] = field(default_factory=list)

    def of(self, kind: str) -> list[Any]:
        out: list[Any] = getattr(self, kind)
        return out


def _keypath(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(exc: ValidationError) -> tuple[tuple[int | str, ...], str]:
    err = exc.errors(include_url=False)[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    return tuple(err["loc"]), message


def _where(path: Path, line: int | None, loc: tuple[int | str, ...]) -> str:
    place = f"{path}:{line}" if line else str(path)
    return f"{place}: {_keypath(loc)}" if loc else place


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", str(path)) from None


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    return ConfigError(f"invalid YAML: {problem}", where)


def line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest node of ``loc`` that exists in the YAML document."""
    try:
        node = yaml.compose(text, Loader=LOADER)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


class InventoryReader:
    """Reads one session's inventory file; remembers each item line's model object."""

    def __init__(self, session: str) -> None:
        self.session = session
        self._built: dict[tuple[str, str], Model] = {}
        self.lines_built = 0  # item lines built by the last read (the rest were remembered)

    def read(self, path: Path) -> Parsed:
        """The file's model objects; ConfigError (one line) when it is not valid."""
        text = read_text(path)
        doc = read_document(text, known=self._built)
        if doc is None or set(doc) - set(KINDS) or any(v is None for v in doc.values()):
            self._built = {}
            return self._read_whole(path, text)
        built: dict[tuple[str, str], Model] = {}
        parsed = Parsed()
        self.lines_built = 0
        for kind in KINDS:
            for index, item in enumerate(doc.get(kind) or ()):
                key = (kind, item.text)
                obj = self._built.get(key) if item.value is KNOWN else built.get(key)
                if obj is None:
                    obj = self._build(path, kind, index, item)
                    self.lines_built += 1
                built[key] = obj
                parsed.of(kind).append(obj)
        self._check(parsed, lambda loc: _item_line(doc, loc), path)
        self._built = built
        return parsed

    def _build(self, path: Path, kind: str, index: int, item: Item) -> Model:
        if item.value is not SLOW:
            try:
                return FAST[kind](self.session, item.value)
            except SlowError:
                pass  # not plainly valid: the YAML loader and the schema decide
        try:
            raw = load_flow(item.text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"invalid YAML: {problem}", f"{path}:{item.line}") from None
        try:
            entry = ENTRIES[kind].model_validate(raw)
        except ValidationError as exc:
            loc, message = _message(exc)
            raise ConfigError(message, _where(path, item.line, (kind, index, *loc))) from None
        return model_of(self.session, entry)

    def _read_whole(self, path: Path, text: str) -> Parsed:
        try:
            data = yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            raise _yaml_error(path, exc) from None
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError("the top level must be a mapping", str(path))
        try:
            inv = InventoryFile.model_validate(data)
        except ValidationError as exc:
            loc, message = _message(exc)
            raise ConfigError(message, _where(path, line_of(text, loc), loc)) from None
        parsed = Parsed(
            hosts=[host_of(self.session, h) for h in inv.hosts],
            portgroups=[portgroup_of(self.session, p) for p in inv.portgroups],
            vms=[vm_of(self.session, v) for v in inv.vms],
        )
        self._check(parsed, lambda loc: line_of(text, loc), path)
        return parsed

    @staticmethod
    def _check(parsed: Parsed, line: Any, path: Path) -> None:
        problem = check_references(parsed.hosts, parsed.portgroups, parsed.vms)
        if problem is not None:
            (kind, index), message = problem
            key, _, text = message.partition(": ")
            raise ConfigError(text, _where(path, line((kind, index, key)), (kind, index, key)))


def _item_line(doc: dict[str, list[Item] | None], loc: tuple[int | str, ...]) -> int | None:
    kind, index = loc[0], loc[1]
    items = doc.get(str(kind)) or []
    return items[index].line if isinstance(index, int) and index < len(items) else None
