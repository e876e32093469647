"""A fast reader for inventory files written as one flow mapping per line.

Generated inventories look like this (the README's format)::

    hosts:
      - {name: esx01, nics: [vmnic0, vmnic1]}
    vms:
      - {name: web-01, host: esx01, power: on, portgroups: [web], ips: [10.0.110.11]}

libyaml takes about 10 s for 100,000 such lines (a node, then a Python object, per token).
``read_sections`` reads a document made only of top-level section keys and one-line
flow-mapping items itself: one regular expression (``LINE``) classifies every line. A
line of the README's VM shape (``{name: .., host: .., power: .., portgroups: [..]}``, in
that order, power and port groups optional, every value a plain scalar) has its values
captured by that same expression: ``entries.fast_vms`` builds a whole section of them at
once, with no further parsing. Any other item is read by ``items_of``: a few passes quote
every plain scalar (constant replacements, no Python call per scalar), and
``json.loads`` reads the result at C speed. JSON cannot tell a quoted ``"on"`` from a
plain ``on`` (which YAML reads as True), and a captured value is plain: ``reading`` gives
YAML's reading of a plain scalar, and the caller (``entries``) accepts a string only when
both readings lead to the same result (``power: on`` and ``power: "on"`` are both on),
else asks the YAML loader.

What this reader cannot read exactly as the YAML loader would is left to the loader, per
line (``Item.value`` is ``SLOW``) or for the whole document (``read_sections`` returns
None): backslashes, single quotes, colons or ``#`` in plain scalars, a quoted string
holding a delimiter, anchors, aliases, tags, multi-line flows, block mappings, tabs.
``tests/unit/test_static_flow.py`` and ``test_static_source.py`` check equality with the
YAML loader on generated documents (JSON-read lines, captured VM lines, whole files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import yaml

from vmfabric.config.yamlfile import StrictLoader

SLOW: Any = object()  # an item value the YAML loader must read
KNOWN: Any = object()  # an item the caller has read before

# Line breaks str.split("\n") misses, a byte-order mark, tabs, and what YAML refuses to read
_ODD = re.compile(
    "[\x85\u2028\u2029\ufeff\t]|\r(?!\n)"
    "|[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_ODD_ASCII = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")
# Quoting: every pass starts with a literal delimiter (fast to find) and replaces it with
# itself and quotes, a constant. A plain scalar starts after "[", "{", ", " or ": " and ends
# right before ", ", ": ", "]" or "}"; a ", " or ": " between two plain scalars closes one
# and opens the next in one pass. Anything else leaves a scalar unquoted (JSON then fails
# and the line goes to the YAML loader). "<" and "=" (YAML's merge and value keys) never
# start one: JSON would silently drop a duplicate key's value the loader refuses.
_BODY = r"[^,\[\]{}#:\"'\\\n]*+"
_LAST = r"[^\s,\[\]{}\"':\\]"  # a plain scalar's last character
# A plain scalar: its first character, its body and its last character
_PLAIN = r"(?:[^\s\"'\-?:,\[\]{}#&*!|>%@`\\<=]|-(?![ ,\]}]))" + _BODY + f"(?<={_LAST})"
# A plain scalar ahead that an end pass will close, and (a quote a previous pass put
# there, then) a delimiter. A quote in the file there would be a quoted string holding a
# delimiter: ``_UNSAFE_QUOTES`` sent such lines away.
_START = "(?=" + _PLAIN + r'"?(?:, |: |\]|\}))'
# The README's VM line, ``{name: web-01, host: esx01, power: on, portgroups: [web, db]}``
# (power and port groups optional), every value a plain scalar: the line regex captures
# its fields, so that such a line needs no quoting and no JSON (``entries.fast_vms``).
_VM_SHAPE = (
    rf"name: ({_PLAIN}), host: ({_PLAIN})(?:, power: ({_PLAIN}))?"
    rf"(?:, portgroups: \[((?:{_PLAIN}(?:, {_PLAIN})*)?)\])?\}}"
)
_TRAIL = r"(?: +#.*)? *"  # what may follow an item's flow text on its line
# Every line is an item, a section key (possibly "key: []") or blank/comment. An item's
# flow text is the same whether or not the line is of the VM shape (the shape holds no
# "}" before its last).
LINE = re.compile(
    rf"^(?:( *)- +(\{{(?:{_VM_SHAPE}|.*?\}})){_TRAIL}"
    r"|([A-Za-z_][A-Za-z0-9_]*): *(\[\])? *(?:#.*)?| *(?:#.*)?)\r?$",
    re.M,
)
# The fields of a line's match (``LINE.findall``, ``match.groups()``), "" when absent:
# an item's indentation and flow text, the VM shape's name, host, power and port groups
# (the text between the brackets), a section's key and its "[]".
INDENT, FLOW, NAME, HOST, POWER, PORTGROUPS, SECTION, EMPTY = range(8)
Row = tuple[str, ...]


def _passes() -> list[tuple[re.Pattern[str], str]]:
    both = [(d, f"(?<={_LAST}{d}){_START}", f'"{d}"') for d in (", ", ": ")]
    start = [(d, _START, f'{d}"') for d in (", ", ": ", "{", "[")]
    end = [(d, f"(?<={_LAST}{re.escape(d)})", f'"{d}') for d in (", ", ": ", "]", "}")]
    return [(re.compile(re.escape(d) + look), text) for d, look, text in (*both, *start, *end)]


_PASSES = _passes()
# A double-quoted string holding a delimiter (or left open): the passes could quote inside it
_UNSAFE_QUOTES = re.compile(r'(?:[^"]*"[^"]*")*[^"]*"[^"]*(?:[,\[\]{}]|: |$)')
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_BOOL = {k: True for k in ("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")}
_BOOL.update({k: False for k in ("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")})
_WORDS: dict[str, Any] = {**_BOOL, "null": None, "Null": None, "NULL": None}
_RESOLVER: Any = yaml.resolver.Resolver()
_STR, _BOOL_TAG, _NULL, _INT = (f"tag:yaml.org,2002:{t}" for t in ("str", "bool", "null", "int"))
# First characters of every plain scalar YAML may read as something else than a string
SPECIAL_FIRST = frozenset("0123456789+-.yYnNtTfFoO~")
_READINGS: dict[str, Any] = {}


class SlowError(ValueError):
    """This value must be read by the YAML loader."""


class Item(NamedTuple):
    """One item: its 1-based line number, its flow-mapping text and its value (``SLOW``
    when the YAML loader must read it, ``KNOWN`` when the caller has read it before)."""

    line: int
    text: str
    value: Any


Document = dict[str, list[Item] | None]  # a section without items (nor "[]") is None


def reading(text: str) -> Any:
    """YAML's reading of ``text`` as a plain scalar: the str itself, a bool, None, a decimal
    int, or ``SLOW`` (floats, dates, other integer forms: the loader's to read)."""
    first = text[:1]
    if first not in SPECIAL_FIRST:
        return text
    if first.isalpha():  # y, n, t, f, o: only whole words are bools or null
        return _WORDS.get(text, text)
    found = _READINGS.get(text, _READINGS)
    if found is _READINGS:
        if len(_READINGS) >= 10_000:  # unique names (1-web, 2-web...) are not kept
            _READINGS.clear()
        found = _READINGS[text] = _resolve(text)
    return found


def _resolve(text: str) -> Any:
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
    if tag == _STR:
        return text
    if tag == _BOOL_TAG:
        return _BOOL[text]
    if tag == _NULL:
        return None
    if tag == _INT and _DECIMAL.fullmatch(text):
        return int(text)
    return SLOW


def to_json(flow: str) -> str:
    """Flow text with every plain scalar quoted (see ``_PASSES``)."""
    for pattern, replacement in _PASSES:
        flow = pattern.sub(replacement, flow)
    return flow


def _values(flows: list[str]) -> list[Any]:
    """The JSON values of ``flows`` (``SLOW`` for each that JSON cannot read as one value);
    ``DuplicateKeyInFlow`` when one gives a key twice.

    The lines of one mapping each (one "{", so one "}": the last) are read at once: every
    "{" there is closed by its own line's last "}" or JSON fails, so each line is one
    value. Such a line holds one ": " per key (no plain nor JSON-read quoted scalar holds
    one): a value with fewer keys gives one twice. Other lines (``{a: 1}, {b: 2}``, nested
    mappings) are read one by one, refusing duplicate keys as they are read."""
    texts = to_json("\n".join(flows)).split("\n") if flows else []
    flat = [k for k, n in enumerate(map(str.count, flows, repeat("{"))) if n == 1]
    values: list[Any] = list(texts)
    if len(flat) < len(flows):
        for k in set(range(len(flows))).difference(flat):
            values[k] = _value(texts[k])
    try:
        found = json.loads("[" + ",".join([texts[k] for k in flat]) + "]")
    except ValueError:
        found = [_value(texts[k]) for k in flat]  # some line JSON cannot read
    for k, value in zip(flat, found, strict=True):
        if value is not SLOW and len(value) != flows[k].count(": "):
            raise DuplicateKeyInFlow
        values[k] = value
    return values


def _value(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError:
        return SLOW  # the YAML loader reads it (and says what is wrong)


class DuplicateKeyInFlow(Exception):  # noqa: N818 (a signal to the reader, not an error)
    """A flow line gives a key twice: the whole document goes to the YAML loader, which
    refuses it with the key's line, column and path, as for any duplicate key."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; ``DuplicateKeyInFlow`` for a key given twice."""
    found = dict(pairs)
    if len(found) != len(pairs):
        raise DuplicateKeyInFlow
    return found


class Section(NamedTuple):
    """One section of a document read by ``read_sections``: its key's line index, and
    its items' line indexes (0-based) and rows (their lines' ``LINE`` fields)."""

    header: int
    lines: Sequence[int]
    rows: list[Row]


def read_sections(text: str) -> dict[str, Section | None] | None:
    """The sections of a document made of one-line flow-mapping items (a section without
    items nor "[]" is None); None when the document has any other shape (the YAML loader
    must read it whole). Nothing is read from the items' flow text yet: see ``items_of``
    and the VM shape's fields (``LINE``)."""
    if odd(text) or "&" in text or "*" in text or "!" in text:
        return None  # characters YAML refuses, odd line breaks, tabs; anchors, aliases, tags
    lines = LINE.findall(text)
    if len(lines) != text.count("\n") + 1:
        return None  # a line of another shape
    heads = [n for n, line in enumerate(lines) if line[SECTION]]
    if any(line[FLOW] for line in lines[: heads[0] if heads else len(lines)]):
        return None  # an item outside a section
    sections: dict[str, Section | None] = {}
    for head, end in zip(heads, [*heads[1:], len(lines)], strict=True):
        key, brackets = lines[head][SECTION], lines[head][EMPTY]
        section = _section(lines, head, end)
        if key in sections or section is None or (brackets and section.rows):
            return None  # a key used twice (the loader decides), items that do not line up
            # or follow "key: []"
        sections[key] = section if section.rows or brackets else None
    return sections


def _section(lines: list[Row], head: int, end: int) -> Section | None:
    block = lines[head + 1 : end]
    rows = [line for line in block if line[FLOW]]
    if len({row[INDENT] for row in rows}) > 1:
        return None  # items that do not line up
    if len(rows) == len(block):
        return Section(head, range(head + 1, end), rows)
    return Section(head, [n for n, line in enumerate(block, head + 1) if line[FLOW]], rows)


def read_document(text: str, known: Container[tuple[str, str]] = ()) -> Document | None:
    """Sections of one-line flow-mapping items, with line numbers, all read (as JSON);
    None when the document has any other shape (the YAML loader must read it whole).
    Items whose (section, flow text) is in ``known`` are not read again: their value is
    ``KNOWN``."""
    sections = read_sections(text)
    if sections is None:
        return None
    try:
        return {key: _items(key, section, known) for key, section in sections.items()}
    except DuplicateKeyInFlow:
        return None  # a key given twice: the loader reads it whole (and refuses it)


def _items(
    key: str, section: Section | None, known: Container[tuple[str, str]]
) -> list[Item] | None:
    if section is None:
        return None
    lines = [n + 1 for n in section.lines]
    return items_of(key, list(zip(lines, [row[FLOW] for row in section.rows], strict=True)), known)


def odd(text: str) -> bool:
    """Whether ``text`` holds what this reader leaves to the YAML loader whole."""
    if not text.isascii():
        return bool(_ODD.search(text))
    if "\r" in text:
        return bool(_ODD_ASCII.search(text))
    return not text.replace("\n", "").isprintable()


def items_of(
    section: str, entries: list[tuple[int, str]], known: Container[tuple[str, str]]
) -> list[Item]:
    """Items of (line number, flow text) ``entries``, each read (``values_of``) unless its
    (section, flow text) is in ``known``: its value is then ``KNOWN``."""
    flows = [flow for _, flow in entries]
    is_known = [(section, flow) in known for flow in flows] if known else [False] * len(flows)
    values = iter(values_of([flow for flow, k in zip(flows, is_known, strict=True) if not k]))
    return [
        Item(n, flow, KNOWN if k else next(values))
        for (n, flow), k in zip(entries, is_known, strict=True)
    ]


def values_of(flows: list[str]) -> list[Any]:
    """The value of each flow text as JSON reads it, or ``SLOW`` (the YAML loader's to
    read); ``DuplicateKeyInFlow`` when one gives a key twice."""
    states = list(map(_readable, flows))
    values = iter(_values([flow for flow, s in zip(flows, states, strict=True) if s is None]))
    return [next(values) if s is None else s for s in states]


def _readable(flow: str) -> Any:
    """None when JSON may read ``flow``, else ``SLOW``."""
    if "\\" in flow or "'" in flow:
        return SLOW
    return SLOW if '"' in flow and _UNSAFE_QUOTES.match(flow) else None


def load_flow(text: str) -> Any:
    """The value of one item's flow text through the YAML loader."""
    return yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader


LOADER: Any = StrictLoader  # libyaml's safe loader that refuses duplicate keys
