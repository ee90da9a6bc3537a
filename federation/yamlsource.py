"""YAML loading that remembers where every value came from.

PyYAML's `safe_load` throws the source positions away, so a rule-set validator could only say
*what* is wrong, never *where*. Here the document is composed into PyYAML's node graph (which
carries marks), then turned into plain Python values (dict, list, str, int, float, bool, None)
together with a table from key path to (line, column), both 1-based. Duplicate mapping keys,
which PyYAML silently resolves to the last value, are reported as problems.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """`libraries[3].barcode_ranges[0]` style rendering of a key path."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(document)"


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass
class YamlDocument:
    """A parsed YAML document: its plain value and the source position of every node in it."""

    file: str
    value: Any
    positions: dict[KeyPath, Position] = field(default_factory=dict)
    # Positions of the keys themselves (for "unknown key" messages, which should point at the key).
    key_positions: dict[KeyPath, Position] = field(default_factory=dict)
    # (path of the repeated key, position of the repetition, position of the first occurrence)
    duplicate_keys: list[tuple[KeyPath, Position, Position]] = field(default_factory=list)

    def key_position(self, path: KeyPath) -> Position:
        """Where the key of `path` is written; for list items and absent keys, see `value_position`."""
        return self.key_positions.get(path) or self.value_position(path)

    def value_position(self, path: KeyPath) -> Position:
        """Where the value at `path` starts; the nearest enclosing node if the path itself is absent."""
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.positions:
                return self.positions[path[:cut]]
        return Position(1, 1)


class YamlSyntaxError(ValueError):
    """The text is not YAML; carries the 1-based position PyYAML reported."""

    def __init__(self, file: str, line: int, column: int, message: str):
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column
        self.message = message


def _mark_position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


# Aliases let a few lines expand into a huge tree ("billion laughs"); a rule set never needs this many nodes.
MAX_NODES = 200_000


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, document: YamlDocument):
        self.loader = loader
        self.document = document
        self.active: set[int] = set()   # ids of the collection nodes being converted (alias cycles)
        self.count = 0

    def convert(self, node: Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"more than {MAX_NODES} values (aliases expanding too far?)", node.start_mark)
        self.document.positions[path] = _mark_position(node)
        if isinstance(node, (MappingNode, SequenceNode)):
            if id(node) in self.active:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{format_path(path)}: an alias refers to a value that contains it", node.start_mark)
            self.active.add(id(node))
            try:
                return self._collection(node, path)
            finally:
                self.active.discard(id(node))
        if isinstance(node, ScalarNode):
            return self.loader.construct_object(node, deep=True)
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node.id}", node.start_mark)

    def _collection(self, node: MappingNode | SequenceNode, path: KeyPath) -> Any:
        if isinstance(node, MappingNode):
            explicit_count = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
            self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys: merged pairs first, then explicit ones
            merged_count = len(node.value) - explicit_count
            result: dict[Any, Any] = {}
            first_seen: dict[Any, Position] = {}
            for index, (key_node, value_node) in enumerate(node.value):
                key = self._scalar_key(key_node, path)
                child = (*path, key)
                key_position = _mark_position(key_node)
                if index >= merged_count:
                    # A key written twice is a mistake; a written key overriding a merged one is not.
                    if key in first_seen:
                        self.document.duplicate_keys.append((child, key_position, first_seen[key]))
                        continue
                    first_seen[key] = key_position
                self.document.key_positions[child] = key_position
                result[key] = self.convert(value_node, child)
            return result
        return [self.convert(item, (*path, index)) for index, item in enumerate(node.value)]

    def _scalar_key(self, key_node: Node, path: KeyPath) -> Any:
        if not isinstance(key_node, ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"{format_path(path)}: mapping keys must be plain scalars", key_node.start_mark
            )
        key = self.loader.construct_object(key_node, deep=True)
        # Keys like `905` or `yes` resolve to int/bool; the rule set always means the text.
        return key if isinstance(key, str) else str(key_node.value)


def parse_yaml(text: str, file: str = "<string>") -> YamlDocument:
    """Parse one YAML document; raises YamlSyntaxError with the line and column of a syntax error."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        document = YamlDocument(file=file, value=None)
        if node is not None:
            document.value = _Converter(loader, document).convert(node, ())
        return document
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = " ".join(part for part in (error.context, error.problem) if part) or "invalid YAML"
        raise YamlSyntaxError(file, line, column, message) from None
    except yaml.YAMLError as error:
        raise YamlSyntaxError(file, 1, 1, str(error)) from None
    except RecursionError:
        raise YamlSyntaxError(file, 1, 1, "values nested too deeply") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> YamlDocument:
    """Read and parse a YAML file (UTF-8); raises YamlSyntaxError or OSError."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise YamlSyntaxError(str(source), 1, 1, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    return parse_yaml(text, str(source))
