"""The fast reader of one-line flow mappings reads exactly what the YAML loader reads, or
leaves the line (or the document) to the loader: generated lines, compared with libyaml."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vmfabric.sources.static.flow import (
    FLOW,
    HOST,
    KNOWN,
    LOADER,
    NAME,
    PORTGROUPS,
    POWER,
    SLOW,
    Section,
    read_document,
    read_sections,
    reading,
    to_json,
)

# Characters chosen to hit YAML's corners: indicators, quotes, colons, comments, spaces,
# resolver first characters (digits, signs, dots, y/n/t/f/o, ~), non-ASCII.
ALPHABET = st.sampled_from(list("aZ09-_.:/#@&*!%|>'\" ,+~<=yYnNtTfFoOé\\"))
WORDS = st.sampled_from(["on", "Off", "yes", "NO", "null", "~", "110", "0x1F", "010", "1:20",
                         "1e3", "1.5", ".inf", "2001-12-14", "200-210", "10.0.0.1", "<<", "=",
                         "tier:web", "web-01", "a b", "-5", "- x", "", "true"])  # fmt: skip
SCALARS = st.one_of(WORDS, st.text(ALPHABET, min_size=0, max_size=8))


def _scalar(text: str) -> st.SearchStrategy[str]:
    quoted = '"' + text.replace("\\", "").replace('"', "") + '"'
    return st.sampled_from([text, quoted, f"'{text}'"])


def _flow_value(depth: int) -> st.SearchStrategy[str]:
    leaf = SCALARS.flatmap(_scalar)
    if depth == 0:
        return leaf
    inner = _flow_value(depth - 1)
    seq = st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
    mapping = st.lists(st.tuples(leaf, inner), max_size=3).map(
        lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
    )
    return st.one_of(leaf, seq, mapping)


LINES = st.lists(st.tuples(SCALARS.flatmap(_scalar), _flow_value(1)), max_size=4).map(
    lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
)


def _yaml(text: str) -> Any:
    try:
        return ("ok", yaml.load(text, Loader=LOADER))  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return ("error", None)


def same(fast: Any, loaded: Any) -> bool:
    """Whether the fast value is the loader's, up to how each string was written: JSON
    keeps ``on`` a string where YAML reads a plain ``on`` as True (the caller settles that,
    see ``entries``)."""
    if isinstance(fast, dict) and isinstance(loaded, dict):
        if len(fast) != len(loaded):
            return False
        pairs = [(k, v, next((lk for lk in loaded if same(k, lk)), SLOW)) for k, v in fast.items()]
        return all(lk is not SLOW and same(v, loaded[lk]) for k, v, lk in pairs)
    if isinstance(fast, list) and isinstance(loaded, list):
        return len(fast) == len(loaded) and all(map(same, fast, loaded))
    if isinstance(fast, str):
        plain = reading(fast)
        return (fast == loaded and type(loaded) is str) or (
            plain == loaded and type(plain) is type(loaded)
        )
    return False


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *keys(v))]
    if isinstance(value, list):
        return [s for v in value for s in keys(v)]
    return []


@settings(max_examples=3000, deadline=None)
@given(LINES)
def test_a_line_the_fast_reader_reads_is_what_the_yaml_loader_reads(line: str) -> None:
    document = f"vms:\n  - {line}\n"
    doc = read_document(document)
    if doc is None:
        return  # left to the loader whole
    (item,) = doc["vms"] or []
    if (
        item.value is SLOW
        or any(reading(s) is SLOW for s in strings(item.value))
        or any(reading(k) != k for k in keys(item.value))
    ):
        return  # left to the loader by the caller: a float, a date, a key YAML may not
        # read as a string (JSON merges a plain `on` key with a quoted "on")
    status, loaded = _yaml(document)
    assert status == "ok", (line, to_json(line))
    assert same(item.value, loaded["vms"][0]), (line, to_json(line), item.value, loaded)


def test_known_lines_are_not_read_again_and_documents_of_another_shape_are_refused() -> None:
    text = "hosts:\n  - {name: a}\nvms:\n  - {name: v, host: a}\n"
    doc = read_document(text, known={("vms", "{name: v, host: a}")})
    assert doc is not None and doc["vms"] is not None and doc["vms"][0].value is KNOWN
    assert doc["hosts"] is not None and doc["hosts"][0].value == {"name": "a"}
    assert read_document("vms:\n  - name: v\n    host: a\n") is None  # block mappings
    assert read_document("vms:\n  - {name: v}\n   - {name: w}\n") is None  # misaligned
    assert read_document("vms:\n  - {name: &x v}\n") is None  # anchors
    assert read_document("vms:\n\t- {name: v}\n") is None  # tabs
    assert read_document("vms: []\nhosts:\n") == {"vms": [], "hosts": None}


def _vm_line(values: list[str], power: bool, groups: list[str] | None) -> str:
    name, host, state = values
    fields = [f"name: {name}", f"host: {host}", *([f"power: {state}"] if power else [])]
    if groups is not None:
        fields.append("portgroups: [" + ", ".join(groups) + "]")
    return "{" + ", ".join(fields) + "}"


VM_LINES = st.builds(
    _vm_line,
    st.lists(SCALARS.flatmap(_scalar), min_size=3, max_size=3),
    st.booleans(),
    st.none() | st.lists(SCALARS.flatmap(_scalar), max_size=3),
)


def _agrees(text: str, loaded: Any) -> bool:
    """Whether ``reading`` of a captured field is the loader's value (or leaves it to the
    loader: ``SLOW``)."""
    value = reading(text)
    return value is SLOW or (type(value), value) == (type(loaded), loaded)


@settings(max_examples=3000, deadline=None)
@given(VM_LINES)
def test_the_vm_shape_captures_the_values_the_yaml_loader_reads(line: str) -> None:
    document = f"vms:\n  - {line}\n"
    sections = read_sections(document)
    if sections is None:
        return  # left to the loader whole
    (row,) = (sections["vms"] or Section(0, [], [])).rows
    assert row[FLOW] == line  # the flow text, whether or not the line is of the shape
    if not row[NAME]:
        return  # not of the shape: read as JSON (the test above) or by the loader
    status, loaded = _yaml(document)
    assert status == "ok", line
    (vm,) = loaded["vms"]
    assert set(vm) <= {"name", "host", "power", "portgroups"} and {"name", "host"} <= set(vm)
    assert ("power" in vm) == bool(row[POWER])
    assert ("portgroups" in vm) == (", portgroups: [" in line)
    assert _agrees(row[NAME], vm["name"]) and _agrees(row[HOST], vm["host"]), line
    assert not row[POWER] or _agrees(row[POWER], vm["power"]), line
    groups = row[PORTGROUPS].split(", ") if row[PORTGROUPS] else []
    assert len(groups) == len(vm.get("portgroups") or [])
    assert all(map(_agrees, groups, vm.get("portgroups") or [])), line


def test_an_item_line_is_the_same_item_with_or_without_the_vm_shape() -> None:
    text = (
        "hosts:\n  - {name: h1, nics: [vmnic0]}\n\nvms:\n"
        "  - {name: a, host: h1, power: on, portgroups: [web, db]}  # a comment\n"
        "  - {name: b, host: h1}\n  - {name: c, host: h1, ips: [10.0.0.1]}\n"
        "  - {name: 'd', host: h1}\n  - {name: e, host: h1}, {name: f}\n"
    )
    sections = read_sections(text)
    assert sections is not None and sections["vms"] is not None
    vms = sections["vms"]
    assert list(vms.lines) == [4, 5, 6, 7, 8]
    assert [row[NAME] for row in vms.rows] == ["a", "b", "", "", ""]
    assert [row[PORTGROUPS] for row in vms.rows][:2] == ["web, db", ""]
    assert vms.rows[4][FLOW] == "{name: e, host: h1}, {name: f}"


def test_a_line_of_two_mappings_or_a_mapping_across_lines_is_left_to_the_loader() -> None:
    doc = read_document("vms:\n  - {name: a}, {name: b}\n  - {name: c}\n")
    assert doc is not None and [item.value for item in doc["vms"] or []] == [SLOW, {"name": "c"}]
    doc = read_document("vms:\n  - {a: [{b: 1}\n  - {c: 1}]}\n  - {d: {e: 1}}\n")
    assert doc is not None
    assert [item.value for item in doc["vms"] or []] == [SLOW, SLOW, {"d": {"e": "1"}}]
    assert read_document("vms:\n  - {d: {e: 1, e: 2}}\n") is None  # the loader refuses it
    assert read_document("vms:\n  - {d: 1, d: 1}\n") is None


def test_reading_a_plain_word_is_the_yaml_loaders() -> None:
    words = ["y", "Y", "n", "N", "o", "t", "f", "yes", "yES", "YES", "No", "nO", "true",
             "tRUE", "on", "oN", "ON", "Off", "OFf", "null", "Null", "NULL", "nuLL", "none",
             "nginx", "~", "0", "010", "1.5", "-", "-1", ".inf", "2001-12-14", "+1",
             "0x1F"]  # fmt: skip
    for word in words:
        loaded = yaml.load(f"[{word}]", Loader=LOADER)[0]  # noqa: S506 - a safe loader
        value = reading(word)
        assert value is SLOW or (type(value), value) == (type(loaded), loaded), word
