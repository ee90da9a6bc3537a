"""SUTRS (simple unstructured text record syntax): the MARC record as readable lines."""
from __future__ import annotations

from typing import Any

from protocols.records.marcjson import ControlField, fields, leader


def to_sutrs(record: dict[str, Any]) -> str:
    """One line per field, in the layout of yaz-marcdump's line format."""
    lines = [leader(record)]
    for field in fields(record):
        if isinstance(field, ControlField):
            lines.append(f"{field.tag} {field.value}")
        else:
            subfields = " ".join(f"${code} {value}" for code, value in field.subfields)
            lines.append(f"{field.tag} {field.ind1}{field.ind2} {subfields}")
    return "\n".join(lines) + "\n"
