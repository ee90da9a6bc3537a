"""ISO 2709 (MARC exchange format) in UTF-8, written from MARC-in-JSON.

Lengths and offsets count bytes of the UTF-8 encoding; leader/09 is set to `a` (UCS) for
MARC21. For UNIMARC the leader has no encoding position (the character set is in 100$a), so
the leader is left as given apart from the computed lengths.
"""
from __future__ import annotations

from typing import Any

from protocols.records.marcjson import ControlField, fields, leader

FIELD_TERMINATOR = b"\x1e"
RECORD_TERMINATOR = b"\x1d"
SUBFIELD_DELIMITER = b"\x1f"
MAX_RECORD_LENGTH = 99999


class RecordTooLong(ValueError):
    """The record does not fit the five-digit length of ISO 2709."""


def to_iso2709(record: dict[str, Any], *, unimarc: bool = False) -> bytes:
    directory = bytearray()
    data = bytearray()
    for field in fields(record):
        if isinstance(field, ControlField):
            body = field.value.encode("utf-8") + FIELD_TERMINATOR
        else:
            parts = [(field.ind1 + field.ind2).encode("utf-8")]
            for code, value in field.subfields:
                parts.append(SUBFIELD_DELIMITER + code.encode("utf-8")[:1] + value.encode("utf-8"))
            body = b"".join(parts) + FIELD_TERMINATOR
        tag = (field.tag + "000")[:3].encode("ascii", "replace")
        if len(body) > 9999 or len(data) > 99999:
            raise RecordTooLong(f"field {field.tag} does not fit ISO 2709 directory limits")
        directory += tag + b"%04d%05d" % (len(body), len(data))
        data += body
    directory += FIELD_TERMINATOR
    base = 24 + len(directory)
    total = base + len(data) + 1
    if total > MAX_RECORD_LENGTH:
        raise RecordTooLong(f"record of {total} bytes exceeds {MAX_RECORD_LENGTH}")
    head = list(leader(record))
    head[0:5] = f"{total:05d}"
    if not unimarc:
        head[9] = "a"
    head[10:12] = "22"
    head[12:17] = f"{base:05d}"
    head[20:24] = "4500"
    return "".join(head).encode("ascii", "replace") + bytes(directory) + bytes(data) + RECORD_TERMINATOR
