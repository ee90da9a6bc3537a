"""Walking MARC-in-JSON (the shape of pymarc's `Record.as_dict()`).

    {"leader": "01234nam a2200289 a 4500",
     "fields": [{"001": "123"}, {"245": {"ind1": "1", "ind2": "0", "subfields": [{"a": "Title"}]}}]}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator


@dataclass(frozen=True)
class ControlField:
    tag: str
    value: str


@dataclass(frozen=True)
class DataField:
    tag: str
    ind1: str
    ind2: str
    subfields: tuple[tuple[str, str], ...]


MarcField = ControlField | DataField


def fields(record: dict[str, Any]) -> Iterator[MarcField]:
    """Every field in order; malformed entries (not one tag per dict) are skipped."""
    for entry in record.get("fields", ()):
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        ((tag, body),) = entry.items()
        if isinstance(body, dict):
            subfields = tuple(
                (str(code), str(value))
                for sub in body.get("subfields", ())
                if isinstance(sub, dict)
                for code, value in sub.items()
            )
            yield DataField(str(tag), indicator(body.get("ind1")), indicator(body.get("ind2")), subfields)
        else:
            yield ControlField(str(tag), "" if body is None else str(body))


def indicator(value: Any) -> str:
    text = " " if value is None else str(value)
    return (text or " ")[0]


def leader(record: dict[str, Any]) -> str:
    """The leader padded or cut to 24 characters."""
    text = str(record.get("leader") or "")
    return (text + " " * 24)[:24]
