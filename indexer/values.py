"""The values a union record or an item holds in an index, as `indexer.query` defines them
("The values a record holds in an index"): what every store indexes, so that every store
answers a query the same way.
"""
from __future__ import annotations

import re
from typing import Any

from indexer.analysis import year_of
from indexer.indexes import IndexDefinition, IndexType
from indexer.model import UnionRecord
from indexer.query import Facet, FacetRequest, FacetValue

_INTEGER = re.compile(r"^[+-]?\d+$")
# Both stores keep numbers as signed 64-bit integers (SQLite INTEGER, Elasticsearch long).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def record_values(record: UnionRecord, definition: IndexDefinition) -> list[str]:
    """The record's values in a record-level index: its own, then those of the indexes it
    copies from (`anywhere`), the record id for `id`; each once, in that order."""
    values = list(record.fields.get(definition.name, ()))
    for source in definition.copy_from:
        values.extend(record.fields.get(source, ()))
    if definition.name == "id":
        values.append(record.id)
    return list(dict.fromkeys(values))


def item_value(item: Any, definition: IndexDefinition) -> str | None:
    """An item's value in an item-level index (the attribute of that name; an enum's value),
    None when it has none."""
    value = getattr(item, definition.name, None)
    text = getattr(value, "value", value)
    return text if isinstance(text, str) and text else None


def numeric_value(definition: IndexDefinition, value: str) -> int | None:
    """A value of a number or date index as the integer it is indexed under (a date: its
    year), None when it has none or it is beyond 64 bits."""
    if definition.type is IndexType.DATE:
        number = year_of(value)
    elif _INTEGER.match(text := value.strip()):
        # Without leading zeros, and more digits than any 64-bit number has is not indexed:
        # int() refuses thousands of digits.
        sign, digits = ("-", text[1:]) if text[0] == "-" else ("", text.lstrip("+"))
        digits = digits.lstrip("0") or "0"
        number = int(sign + digits) if len(digits) <= 19 else None
    else:
        return None
    return number if number is not None and INT64_MIN <= number <= INT64_MAX else None


def facet_value(definition: IndexDefinition, value: str) -> str | None:
    """A value as its facet shows it: a number index's integer, else the value as stored."""
    if definition.numeric:
        number = numeric_value(definition, value)
        return None if number is None else str(number)
    return value


def ordered_facet(definition: IndexDefinition, request: FacetRequest, counts: dict[str, int]) -> Facet:
    """The facet of value counts as the request orders and limits it: by count (then value) or
    by value, numbers as numbers."""

    def value_order(value: str) -> tuple[Any, ...]:
        return (int(value), value) if definition.numeric else (value,)

    if request.order == "value":
        ordered = sorted(counts, key=value_order)
    else:
        ordered = sorted(counts, key=lambda v: (-counts[v], *value_order(v)))
    return Facet(request.index, tuple(FacetValue(v, counts[v]) for v in ordered[: max(request.limit, 0)]))
