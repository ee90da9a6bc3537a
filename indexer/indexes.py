"""The index table (`config/indexes.yaml`) as typed values.

One table says, for every search index: its canonical name (what stores and the canonical
query model use), its type, whether it lives on the record or on each item, its CQL names and
Bib-1 use attributes, and where its values come from in MARC21 and UNIMARC/CNMARC records.
Protocols, extraction and stores all read this table; nothing repeats it in code.

MARC source specs (strings in the YAML):
  `245abnp`        subfields a, b, n, p of every 245, joined by a space (case matters: `200A`)
  `245`            all subfields of 245
  `880[245]ab`     880 fields linked (by $6) to 245: alternate-script titles
  `084a(2=clc)`    084 $a, only in fields whose $2 is `clc`
  `008/07-10`      characters 7..10 (inclusive) of a control field; `LDR/06` the leader
  `100a/26-29`     characters 26..29 of subfield a of 100 (UNIMARC coded data)
"""
from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from indexer.analysis import exact_key, normalize_isbn, normalize_issn, year_of


class IndexType(str, enum.Enum):
    TEXT = "text"
    KEYWORD = "keyword"
    NUMBER = "number"
    DATE = "date"  # stored and compared as a year (integer)


class IndexLevel(str, enum.Enum):
    RECORD = "record"
    ITEM = "item"


class Normalizer(str, enum.Enum):
    NONE = "none"
    ISBN = "isbn"            # any ISBN form -> ISBN-13; invalid ones are dropped
    ISSN = "issn"            # NNNN-NNNN with a valid check digit
    YEAR = "year"            # the first plausible year
    LANGUAGE = "language"    # three-letter code, lower case
    CLASS_TOP = "class_top"  # the top level of a classification: CLC letter, DDC hundreds
    CLASS_NUMBER = "class_number"  # a class number without segmentation marks: LC's DDC `620/.0023` -> `620.0023`


_SPEC = re.compile(
    r"^(?P<tag>LDR|\d{3})"
    r"(?:\[(?P<link>\d{3})\])?"
    r"(?:/(?P<start>\d+)(?:-(?P<end>\d+))?)?"
    r"(?P<subfields>[0-9A-Za-z]*)"
    r"(?:/(?P<sub_start>\d+)(?:-(?P<sub_end>\d+))?)?"
    r"(?:\((?P<cond_code>[0-9A-Za-z])=(?P<cond_value>[^)]+)\))?$"
)


class IndexTableError(ValueError):
    """A problem in the index table, with the key path of the offending value and, when it was
    read from a file, that file's line and column (1-based)."""

    def __init__(self, path: str, message: str, *, file: str = "", line: int = 0, column: int = 0):
        where = f"{file}:{line}:{column}: " if file else ""
        super().__init__(f"{where}{path}: {message}")
        self.path = path
        self.message = message
        self.file = file
        self.line = line
        self.column = column


@dataclass(frozen=True)
class FieldSource:
    tag: str
    subfields: str = ""                      # empty: all subfields (data fields) / whole field (control)
    linked_tag: str | None = None            # for 880: the tag the alternate-script field stands for
    positions: tuple[int, int] | None = None  # control field / leader character range, inclusive
    subfield_positions: tuple[int, int] | None = None  # character range inside the (first) subfield
    condition: tuple[str, str] | None = None  # (subfield code, value) the field must have

    @classmethod
    def parse(cls, spec: str, path: str = "") -> "FieldSource":
        match = _SPEC.match(spec.strip())
        if match is None:
            raise IndexTableError(path, f"bad MARC source {spec!r} (expected e.g. 245abnp, 008/07-10, 880[245]a)")
        tag = match.group("tag")
        positions = None
        if match.group("start") is not None:
            start = int(match.group("start"))
            end = int(match.group("end") or start)
            if end < start:
                raise IndexTableError(path, f"bad character range in {spec!r}")
            positions = (start, end)
        sub_positions = None
        if match.group("sub_start") is not None:
            start = int(match.group("sub_start"))
            end = int(match.group("sub_end") or start)
            if end < start:
                raise IndexTableError(path, f"bad character range in {spec!r}")
            sub_positions = (start, end)
        condition = None
        if match.group("cond_code"):
            condition = (match.group("cond_code"), match.group("cond_value"))
        return cls(
            tag=tag,
            subfields=match.group("subfields"),
            linked_tag=match.group("link"),
            positions=positions,
            subfield_positions=sub_positions,
            condition=condition,
        )

    @property
    def is_control(self) -> bool:
        return self.tag == "LDR" or self.tag < "010"


@dataclass(frozen=True)
class IndexDefinition:
    name: str
    type: IndexType
    level: IndexLevel = IndexLevel.RECORD
    title: str = ""
    cql: tuple[str, ...] = ()          # qualified CQL names, e.g. ("dc.title",)
    bib1: tuple[int, ...] = ()         # Bib-1 use attributes
    marc21: tuple[FieldSource, ...] = ()
    unimarc: tuple[FieldSource, ...] = ()
    cnmarc: tuple[FieldSource, ...] = ()  # defaults to the UNIMARC sources
    copy_from: tuple[str, ...] = ()    # also holds every value of these indexes (e.g. `anywhere`)
    normalizer: Normalizer = Normalizer.NONE
    # Value map applied after extraction (e.g. leader codes to material types); unmapped values are dropped
    # when `value_map_strict`, kept otherwise.
    value_map: dict[str, str] = field(default_factory=dict)
    value_map_strict: bool = False
    single: bool = False               # keep only the first value
    sortable: bool = False
    scannable: bool = False
    facet: bool = False

    def sources(self, marc_format: str) -> tuple[FieldSource, ...]:
        if marc_format == "marc21":
            return self.marc21
        if marc_format == "cnmarc" and self.cnmarc:
            return self.cnmarc
        return self.unimarc

    def normalize_value(self, value: str) -> str | None:
        """A raw extracted value as stored in this index, or None if it is not a valid value."""
        value = value.strip()
        if not value:
            return None
        if self.normalizer is Normalizer.ISBN:
            return normalize_isbn(value)
        if self.normalizer is Normalizer.ISSN:
            return normalize_issn(value)
        if self.normalizer is Normalizer.YEAR:
            year = year_of(value)
            return str(year) if year is not None else None
        if self.normalizer is Normalizer.LANGUAGE:
            code = value.strip().lower()[:3]
            return code if re.fullmatch(r"[a-z]{3}", code) else None
        if self.normalizer is Normalizer.CLASS_TOP:
            return class_top(value)
        if self.normalizer is Normalizer.CLASS_NUMBER:
            return class_number(value)
        if self.value_map:
            mapped = self.value_map.get(value)
            if mapped is None:
                return None if self.value_map_strict else value
            return mapped
        return value

    def query_key(self, term: str) -> str:
        """A query term of a keyword/number/date index normalized the way stored values are.

        Terms that the normalizer rejects (an ISBN with a bad check digit) fall back to their
        exact_key, so they simply match nothing rather than everything.
        """
        if self.normalizer in (Normalizer.ISBN, Normalizer.ISSN) and not any(c in term for c in "*?"):
            normalized = self.normalize_value(term)
            if normalized is not None:
                return exact_key(normalized)
        if self.normalizer is Normalizer.CLASS_NUMBER:
            return exact_key(class_number(term) or term)
        return exact_key(term)

    @functools.cached_property  # asked for every value a store writes
    def numeric(self) -> bool:
        return self.type in (IndexType.NUMBER, IndexType.DATE)


def class_number(value: str) -> str | None:
    """Drops the segmentation marks (`/`, `'`) that the Library of Congress and others put into
    DDC numbers, so that `620/.0023` is found as `620.0023`."""
    stripped = re.sub(r"[/'\u2032]", "", value).strip()
    return stripped or None


def class_top(value: str) -> str | None:
    """CLC `I247.5` -> `I`, `TP311` -> `T` (CLC top level is the first letter); DDC `025.04` -> `000`."""
    value = value.strip().upper()
    if not value:
        return None
    if value[0].isalpha():
        return value[0]
    digits = re.match(r"^(\d{1,3})", value)
    if digits:
        return f"{int(digits.group(1).ljust(3, '0')) // 100 * 100:03d}"
    return None


@dataclass(frozen=True)
class IndexTable:
    indexes: tuple[IndexDefinition, ...]
    context_sets: dict[str, str]          # CQL prefix -> context set URI
    unprefixed_order: tuple[str, ...]     # prefixes tried, in order, for an index without one
    default_index: str                    # canonical index for cql.serverChoice / a bare term
    _by_name: dict[str, IndexDefinition] = field(default_factory=dict, compare=False, repr=False)
    _by_cql: dict[str, IndexDefinition] = field(default_factory=dict, compare=False, repr=False)
    _by_bib1: dict[int, IndexDefinition] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for definition in self.indexes:
            self._by_name[definition.name] = definition
            for name in definition.cql:
                self._by_cql[name.lower()] = definition
            for use in definition.bib1:
                self._by_bib1.setdefault(use, definition)

    def __getitem__(self, name: str) -> IndexDefinition:
        return self._by_name[name]

    def get(self, name: str) -> IndexDefinition | None:
        return self._by_name.get(name)

    def __iter__(self):
        return iter(self.indexes)

    def by_cql(self, name: str) -> IndexDefinition | None:
        """Resolve a CQL index name (`dc.title`, or unprefixed `title`) to its definition."""
        lowered = name.lower()
        if "." in lowered:
            return self._by_cql.get(lowered)
        for prefix in self.unprefixed_order:
            found = self._by_cql.get(f"{prefix}.{lowered}")
            if found is not None:
                return found
        return self._by_name.get(lowered)

    def by_bib1(self, use: int) -> IndexDefinition | None:
        return self._by_bib1.get(use)

    def record_indexes(self) -> Iterable[IndexDefinition]:
        return (d for d in self.indexes if d.level is IndexLevel.RECORD)

    def item_indexes(self) -> Iterable[IndexDefinition]:
        return (d for d in self.indexes if d.level is IndexLevel.ITEM)

    @classmethod
    def from_data(cls, data: Any) -> "IndexTable":
        """Build and validate from the parsed YAML; errors name the key path."""
        if not isinstance(data, dict):
            raise IndexTableError("", "the index table must be a mapping")
        known_top = {"context_sets", "unprefixed_order", "default_index", "indexes", "value_maps"}
        for key in data:
            if key not in known_top:
                raise IndexTableError(str(key), f"unknown key (expected one of {', '.join(sorted(known_top))})")
        context_sets = data.get("context_sets") or {}
        if not isinstance(context_sets, dict) or not context_sets:
            raise IndexTableError("context_sets", "must map CQL prefixes to context set URIs")
        raw_indexes = data.get("indexes")
        if not isinstance(raw_indexes, list) or not raw_indexes:
            raise IndexTableError("indexes", "must be a non-empty list")
        definitions = [_definition(entry, f"indexes[{n}]", context_sets) for n, entry in enumerate(raw_indexes)]
        seen: dict[str, str] = {}
        cql_seen: dict[str, str] = {}
        for n, definition in enumerate(definitions):
            if definition.name in seen:
                raise IndexTableError(f"indexes[{n}].name", f"duplicate index name {definition.name!r}")
            seen[definition.name] = definition.name
            for name in definition.cql:
                if name.lower() in cql_seen:
                    raise IndexTableError(f"indexes[{n}].cql", f"CQL name {name!r} already used by {cql_seen[name.lower()]!r}")
                cql_seen[name.lower()] = definition.name
        bib1_seen: dict[int, str] = {}
        for n, definition in enumerate(definitions):
            for m, use in enumerate(definition.bib1):
                if use in bib1_seen:
                    raise IndexTableError(f"indexes[{n}].bib1[{m}]",
                                          f"Bib-1 use {use} already maps to {bib1_seen[use]!r}")
                bib1_seen[use] = definition.name
        for n, definition in enumerate(definitions):
            for source in definition.copy_from:
                if source not in seen:
                    raise IndexTableError(f"indexes[{n}].copy_from", f"unknown index {source!r}")
        default_index = str(data.get("default_index", "anywhere"))
        if default_index not in seen:
            raise IndexTableError("default_index", f"unknown index {default_index!r}")
        order = tuple(data.get("unprefixed_order") or context_sets.keys())
        for prefix in order:
            if prefix not in context_sets:
                raise IndexTableError("unprefixed_order", f"unknown context set prefix {prefix!r}")
        return cls(tuple(definitions), dict(context_sets), order, default_index)


_DEFINITION_KEYS = {
    "name", "type", "level", "title", "cql", "bib1", "marc21", "unimarc", "cnmarc", "copy_from",
    "normalizer", "value_map", "value_map_strict", "single", "sortable", "scannable", "facet",
}


def _definition(entry: Any, path: str, context_sets: dict[str, str]) -> IndexDefinition:
    if not isinstance(entry, dict):
        raise IndexTableError(path, "each index must be a mapping")
    for key in entry:
        if key not in _DEFINITION_KEYS:
            raise IndexTableError(f"{path}.{key}", "unknown key")
    name = entry.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise IndexTableError(f"{path}.name", "required: lower-case letters, digits and _")

    def enum_value(key: str, kind: type[enum.Enum], default: Any) -> Any:
        raw = entry.get(key, default.value if isinstance(default, enum.Enum) else default)
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)  # type: ignore[attr-defined]
            raise IndexTableError(f"{path}.{key}", f"{raw!r} is not one of {allowed}") from None

    def string_list(key: str) -> list[str]:
        raw = entry.get(key) or []
        if not isinstance(raw, list) or not all(isinstance(v, (str, int)) for v in raw):
            raise IndexTableError(f"{path}.{key}", "must be a list")
        return [str(v) for v in raw]

    for cql_name in string_list("cql"):
        prefix = cql_name.split(".", 1)[0] if "." in cql_name else ""
        if prefix not in context_sets:
            raise IndexTableError(f"{path}.cql", f"{cql_name!r}: prefix {prefix!r} is not a declared context set")
    bib1 = []
    for n, use in enumerate(entry.get("bib1") or []):
        if not isinstance(use, int) or use <= 0:
            raise IndexTableError(f"{path}.bib1[{n}]", "must be a positive integer")
        bib1.append(use)
    sources = {
        key: tuple(FieldSource.parse(spec, f"{path}.{key}[{n}]") for n, spec in enumerate(string_list(key)))
        for key in ("marc21", "unimarc", "cnmarc")
    }
    value_map = entry.get("value_map") or {}
    if not isinstance(value_map, dict):
        raise IndexTableError(f"{path}.value_map", "must be a mapping")
    return IndexDefinition(
        name=name,
        type=enum_value("type", IndexType, IndexType.TEXT),
        level=enum_value("level", IndexLevel, IndexLevel.RECORD),
        title=str(entry.get("title", "")),
        cql=tuple(string_list("cql")),
        bib1=tuple(bib1),
        marc21=sources["marc21"],
        unimarc=sources["unimarc"],
        cnmarc=sources["cnmarc"],
        copy_from=tuple(string_list("copy_from")),
        normalizer=enum_value("normalizer", Normalizer, Normalizer.NONE),
        value_map={str(k): str(v) for k, v in value_map.items()},
        value_map_strict=bool(entry.get("value_map_strict", False)),
        single=bool(entry.get("single", False)),
        sortable=bool(entry.get("sortable", False)),
        scannable=bool(entry.get("scannable", False)),
        facet=bool(entry.get("facet", False)),
    )


DEFAULT_INDEX_TABLE = Path(__file__).resolve().parent.parent / "config" / "indexes.yaml"


def load_index_table(path: Path | str = DEFAULT_INDEX_TABLE) -> IndexTable:
    """Parse and validate an index table file; every error names file:line:column and the key path."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise IndexTableError("", f"YAML syntax: {error.problem or error}", file=str(path), line=line,
                              column=column) from None
    try:
        return IndexTable.from_data(data)
    except IndexTableError as error:
        line, column = _position_of(yaml.compose(text), error.path)
        raise IndexTableError(error.path, error.message, file=str(path), line=line, column=column) from None


def _position_of(node: Any, path: str) -> tuple[int, int]:
    """1-based line and column of the YAML node at a key path like `indexes[3].bib1[0]` (the
    deepest node that exists on the way)."""
    import yaml

    mark = node.start_mark if node is not None else None
    for step in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if isinstance(node, yaml.SequenceNode) and step.startswith("["):
            index = int(step[1:-1])
            if index >= len(node.value):
                break
            node = node.value[index]
            mark = node.start_mark
        elif isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == step), None)
            if found is None:
                break
            key, node = found
            mark = node.start_mark if not isinstance(node, yaml.ScalarNode) or node.value else key.start_mark
        else:
            break
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
