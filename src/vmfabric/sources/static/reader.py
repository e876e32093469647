"""Reading an inventory file into model objects, again and again, cheaply.

``InventoryReader.read`` reads a file of one-line flow-mapping items (``flow``) and
builds each item's model object (``entries``: the README's VM lines a section at a time,
other items one by one); it remembers the object built for each item line (its last
state: the text, and per section the items' lines, flow texts and objects), so a
re-read builds only the lines that changed: a one-line edit of a
100,000-VM file costs one line's parsing plus one pass of cheap checks (duplicate names,
references). A file of another shape is read whole by the YAML loader and the schema.

Errors are one line naming the file, the line and the key path, for example
``inv.yaml:12: vms[10].ips[0]: '10.0.0.300' is not an IPv4 or IPv6 address``; a file
that fails keeps the reader's memory of the last good one.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vmfabric.config.yamlfile import DuplicateKeyError
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Host, PortGroup, Vm
from vmfabric.sources.static.entries import (
    ENTRIES,
    FAST,
    FAST_ROWS,
    FAST_VALUES,
    InventoryFile,
    check_references,
    host_of,
    model_of,
    portgroup_of,
    vm_of,
)
from vmfabric.sources.static.flow import (
    FLOW,
    INDENT,
    LINE,
    LOADER,
    SECTION,
    SLOW,
    DuplicateKeyInFlow,
    Item,
    Section,
    SlowError,
    load_flow,
    odd,
    read_sections,
    values_of,
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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", str(path)) from None


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


@dataclass
class _Section:
    """One section of the last good flow-lines file: its header's line index, its items'
    line indexes (0-based), flow texts and model objects, and the items' indentation."""

    header: int
    indent: str
    lines: Sequence[int]
    flows: list[str]
    objects: list[Model]

    def known(self) -> dict[str, Model]:
        return dict(zip(self.flows, self.objects, strict=True))


@dataclass
class _State:
    """The last good flow-lines file, to re-read only the lines an edit changed (its text
    as one string: 100,000 line strings kept would cost twice its size)."""

    text: str
    sections: dict[str, _Section]

    def lines(self) -> list[str]:
        return self.text.split("\n")

    def parsed(self) -> Parsed:
        out = Parsed()
        for kind, section in self.sections.items():
            out.of(kind).extend(section.objects)
        return out


class InventoryReader:
    """Reads one session's inventory file; remembers the last good one line by line.

    A re-read compares the new text with the last good one line by line: when the lines
    that changed are items (or blanks and comments) of one section, only they are read,
    and spliced in; otherwise the file is read again, each item line that is the same
    text as before reusing its model object."""

    def __init__(self, session: str) -> None:
        self.session = session
        self._state: _State | None = None
        self.lines_built = 0  # item lines built by the last read (the rest were remembered)

    def read(self, path: Path) -> Parsed:
        """The file's model objects; ConfigError (one line) when it is not valid."""
        text = read_text(path)
        try:
            if self._state is not None:
                spliced = self._splice(path, text)
                if spliced is not None:
                    return spliced
            sections = read_sections(text)
            if sections is not None and not set(sections) - set(KINDS):
                found = {k: s for k, s in sections.items() if s is not None}
                if len(found) == len(sections):
                    return self._read_items(path, text, found)
        except (DuplicateKeyInFlow, ConfigError):
            pass  # an invalid file is reported as the whole reading reports it
        self._state = None
        return self._read_whole(path, text)

    def _read_items(self, path: Path, text: str, found: dict[str, Section]) -> Parsed:
        before = self._state.sections if self._state is not None else {}
        sections = {}
        self.lines_built = 0
        for kind, section in found.items():
            flows = [row[FLOW] for row in section.rows]
            old = before.get(kind)
            objects = self._objects(path, kind, section, flows, known=old.known() if old else {})
            indent = section.rows[0][INDENT] if section.rows else ""
            sections[kind] = _Section(section.header, indent, section.lines, flows, objects)
        candidate = _State(text, sections)
        parsed = candidate.parsed()
        self._check(parsed, lambda loc: _state_line(candidate, loc), path)
        self._state = candidate
        return parsed

    def _objects(self, path: Path, kind: str, section: Section, flows: list[str], *,
                 known: dict[str, Model], offset: int = 0) -> list[Model]:  # fmt: skip
        """The model objects of a section's items (from ``offset`` in the section): those
        of the same text as in ``known``, then the VM shape's rows at once, then the rest
        one by one."""
        rows = section.rows
        found: list[Model | None] = [known.get(flow) for flow in flows] if known else []
        todo = [k for k, obj in enumerate(found) if obj is None] if known else None
        if todo is not None:
            rows = [rows[k] for k in todo]
        fast = FAST_ROWS.get(kind)
        built: list[Model | None] = list(fast(self.session, rows)) if fast else [None] * len(rows)
        if todo is None:
            found = built
        else:
            for k, obj in zip(todo, built, strict=True):
                found[k] = obj
        self.lines_built += len(rows)
        left = [k for k, obj in enumerate(found) if obj is None]
        values = values_of([flows[k] for k in left])
        by_values = FAST_VALUES.get(kind)
        built = list(by_values(self.session, values)) if by_values else [None] * len(left)
        for k, value, obj in zip(left, values, built, strict=True):
            found[k] = obj or self._build(
                path, kind, offset + k, Item(section.lines[k] + 1, flows[k], value)
            )
        return found  # type: ignore[return-value]  # no None left

    # -- an edit of a few lines

    def _splice(self, path: Path, text: str) -> Parsed | None:
        """The file with only its changed lines read; None when the change is not a few
        items of one section (the caller reads the file again)."""
        state = self._state
        assert state is not None
        old, new = state.lines(), text.split("\n")
        first, old_end, new_end = _changed(old, new)
        if first == old_end == new_end or first == len(old) == len(new):
            return state.parsed()  # nothing changed (a comment, or nothing at all)
        region = _region_items(new[first:new_end], first)
        kind = _section_at(state, first, old_end)
        if region is None or kind is None or not _only_items(old[first:old_end]):
            return None
        section = state.sections[kind]
        if not section.flows:
            return None  # "key: []" or a section gaining its first items: read it whole
        if any(row[INDENT] != section.indent for row in region.rows):
            return None  # items that do not line up: the YAML loader says what is wrong
        lo, hi = bisect_left(section.lines, first), bisect_left(section.lines, old_end)
        if len(section.flows) - (hi - lo) + len(region.rows) == 0:
            return None  # a section left without items is null in YAML: read it whole
        flows = [row[FLOW] for row in region.rows]
        self.lines_built = 0
        objects = self._objects(
            path, kind, region, flows, known=_reusable(section, flows), offset=lo
        )
        delta = new_end - old_end
        sections = {
            name: _shifted(sec, first, delta) if name != kind else _Section(
                sec.header, sec.indent, _spliced_lines(sec.lines, lo, hi, region.lines, delta),
                [*sec.flows[:lo], *flows, *sec.flows[hi:]],
                [*sec.objects[:lo], *objects, *sec.objects[hi:]],
            )
            for name, sec in state.sections.items()
        }  # fmt: skip
        candidate = _State(text, sections)
        parsed = candidate.parsed()
        self._check(parsed, lambda loc: _state_line(candidate, loc), path)
        self._state = candidate
        return parsed

    def _build(self, path: Path, kind: str, index: int, item: Item) -> Model:
        if item.value is not SLOW:
            try:
                return FAST[kind](self.session, item.value)
            except SlowError:
                pass  # not plainly valid: the YAML loader and the schema decide
        try:
            raw = load_flow(item.text)
        except DuplicateKeyError:
            raise DuplicateKeyInFlow from None  # refused by the whole document's reading
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


def _state_line(state: _State, loc: tuple[int | str, ...]) -> int | None:
    section = state.sections.get(str(loc[0]))
    index = loc[1]
    if section is None or not isinstance(index, int) or index >= len(section.lines):
        return None
    return section.lines[index] + 1


def _changed(old: list[str], new: list[str]) -> tuple[int, int, int]:
    """(first changed line, end of the changed lines in ``old``, in ``new``)."""
    limit = min(len(old), len(new))
    first = 0
    while first < limit and old[first] == new[first]:
        first += 1
    tail = 0
    while tail < limit - first and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return first, len(old) - tail, len(new) - tail


def _region_items(lines: list[str], first: int) -> Section | None:
    """The items among ``lines`` (line ``first`` onwards), as a section's; None when one
    of them is neither an item nor blank or a comment."""
    text = "\n".join(lines)
    if odd(text) or "&" in text or "*" in text or "!" in text:
        return None
    numbers, rows = [], []
    for k, line in enumerate(lines):
        match = LINE.fullmatch(line)
        if match is None or match.group(SECTION + 1):
            return None
        if match.group(FLOW + 1):
            numbers.append(first + k)
            rows.append(match.groups(""))
    return Section(-1, numbers, rows)


def _only_items(lines: list[str]) -> bool:
    return all(
        (m := LINE.fullmatch(line)) is not None and not m.group(SECTION + 1) for line in lines
    )


def _reusable(section: _Section, flows: list[str]) -> dict[str, Model]:
    """The objects of ``section``'s items whose flow text is one of ``flows``."""
    if len(flows) > 16:
        return section.known()
    out = {}
    for flow in flows:
        with suppress(ValueError):  # not found: a new line
            out[flow] = section.objects[section.flows.index(flow)]
    return out


def _spliced_lines(lines: Sequence[int], lo: int, hi: int, region: Sequence[int],
                   delta: int) -> Sequence[int]:  # fmt: skip
    """A section's item line indexes, items ``lo`` to ``hi`` replaced by ``region``'s."""
    if not delta and list(lines[lo:hi]) == list(region):
        return lines  # lines replaced one for one
    return [*lines[:lo], *region, *(n + delta for n in lines[hi:])]


def _section_at(state: _State, first: int, end: int) -> str | None:
    """The section whose items' lines hold lines ``first`` to ``end``, if one does."""
    found = None
    for kind, section in state.sections.items():
        if section.header < first and (
            found is None or section.header > state.sections[found].header
        ):
            found = kind
    if found is None:
        return None
    header = state.sections[found].header
    later = [s.header for s in state.sections.values() if s.header > header]
    return found if not later or end <= min(later) else None


def _shifted(section: _Section, first: int, delta: int) -> _Section:
    if not delta or section.header < first:
        return section
    return _Section(section.header + delta, section.indent,
                    [n + delta for n in section.lines], section.flows, section.objects)  # fmt: skip
