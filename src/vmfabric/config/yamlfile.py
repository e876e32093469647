"""Reading YAML files (the config and static inventories) strictly, with one-line errors.

PyYAML keeps the last of two equal keys in a mapping without a word, so a file that sets
``prune_delay`` twice runs with whichever came last. ``StrictLoader`` refuses that: it is
libyaml's safe loader (``CSafeLoader``, about 10x faster on big inventories) when PyYAML
was built with it, else the pure-Python safe loader, with a duplicate check in
``construct_mapping``. The check costs one length comparison per mapping unless a merge
key (``<<: *defaults``) is present; keys a merge brings in may be overridden, as YAML
intends, but two explicit equal keys may not.

Aliases of aliases can make a short file expand to billions of nodes; such a file is
refused before anything walks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vmfabric.core.errors import ConfigError

_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"
# A file whose aliases expand to more nodes than this many per node written is refused.
_MAX_EXPANSION = 100
_MIN_EXPANDED = 100_000
_HUGE = 10**12


class DuplicateKeyError(yaml.MarkedYAMLError):
    """Two explicit keys of one mapping are equal; ``keys`` is the second one's key path."""

    keys = ""


class StrictLoader(_BASE):  # type: ignore[misc]
    """A safe loader that refuses duplicate keys (see the module docstring)."""

    _root: Node | None = None

    def construct_document(self, node: Node) -> Any:
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node: Node, deep: bool = False) -> Any:
        if not isinstance(node, MappingNode):
            return super().construct_mapping(node, deep=deep)
        explicit = [key for key, _ in node.value]
        merged = any(key.tag == _MERGE for key in explicit)
        mapping = super().construct_mapping(node, deep=deep)
        if merged or len(mapping) != len(explicit):
            self._refuse_duplicates([k for k in explicit if k.tag != _MERGE])
        return mapping

    def _refuse_duplicates(self, keys: list[Node]) -> None:
        first: dict[Any, Node] = {}
        for key_node in keys:
            try:
                key = self.construct_object(key_node)
                hash(key)
            except (TypeError, yaml.YAMLError):
                continue  # an unhashable key: the constructor reports it
            if key in first:
                where = first[key].start_mark
                error = DuplicateKeyError(
                    problem=f"duplicate key {key!r} (first on line {where.line + 1}): "
                    "one of the two would be ignored",
                    problem_mark=key_node.start_mark,
                )
                error.keys = key_path(self._root, key_node)
                raise error
            first[key] = key_node


def key_path(root: Node | None, target: Node) -> str:
    """The key path (``switches[0].name``) of the key node ``target`` below ``root``."""
    stack: list[tuple[Node, str]] = [(root, "")] if root is not None else []
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for child, child_path, key in _children(node, path):
            if key is target:
                return child_path
            stack.append((child, child_path))
    return ""


def _children(node: Node, path: str) -> list[tuple[Node, str, Node | None]]:
    if isinstance(node, MappingNode):
        out = []
        for key, value in node.value:
            name = str(key.value) if isinstance(key, ScalarNode) else "?"
            out.append((value, f"{path}.{name}" if path else name, key))
        return out
    if isinstance(node, SequenceNode):
        return [(item, f"{path}[{i}]", None) for i, item in enumerate(node.value)]
    return []


def _nodes_below(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: Node) -> tuple[int, int]:
    """(nodes written, nodes once every alias is expanded) of the document ``root``;
    expanded is -1 when a node contains itself."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            busy.discard(id(node))
            below = sum(sizes[id(n)] for n in _nodes_below(node))
            sizes[id(node)] = min(_HUGE, 1 + below)
        elif id(node) in busy:
            return len(sizes), -1
        elif id(node) not in sizes:
            busy.add(id(node))
            stack.append((node, True))
            stack.extend((n, False) for n in _nodes_below(node))
    return len(sizes), sizes[id(root)]


def _document(loader: Any, text: str, where: str) -> Node | None:
    """The document's node; refuses aliases that expand past the limits above."""
    node: Node | None = loader.get_single_node()
    if node is None or "*" not in text:  # no alias: nothing can expand
        return node
    written, expanded = expanded_size(node)
    if expanded < 0:
        raise ConfigError("invalid YAML: an alias refers to a node that contains it", where)
    if expanded > max(_MIN_EXPANDED, _MAX_EXPANSION * written):
        raise ConfigError(f"invalid YAML: its aliases expand {written} nodes to {expanded}", where)
    return node


def load_yaml(path: Path) -> Any:
    """Read a YAML file; errors become one-line ConfigErrors naming the file, line and
    column (and the key path of a duplicate key)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", str(path)) from None
    except UnicodeDecodeError as exc:
        problem = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(f"not UTF-8 text ({problem})", str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", str(path)) from None
    loader = StrictLoader(text)
    try:
        node = _document(loader, text, str(path))
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path) from None
    except RecursionError:
        raise ConfigError("invalid YAML: exceeded the maximum nesting depth", str(path)) from None
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError, path: Path) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    if isinstance(exc, DuplicateKeyError):
        return ConfigError(str(problem), f"{where}: {exc.keys}" if exc.keys else where)
    return ConfigError(f"invalid YAML: {problem}", where)
