"""ISO 2709 (MARC exchange format), written from MARC-in-JSON.

Lengths and offsets count bytes of the chosen encoding (UTF-8 unless told otherwise, e.g.
GBK or GB18030 for a Z39.50 association that negotiated it). For MARC21 leader/09 says `a`
(UCS) in UTF-8 and is blank otherwise. For UNIMARC the leader has no encoding position (the
character set is in 100$a, left as the record gives it), so the leader is left as given apart
from the computed lengths. A character the encoding lacks is written as the MARC 21 lossless
numeric character reference `&#xHHHH;`, never dropped and never an error.
"""
from __future__ import annotations

import codecs
from typing import Any

from protocols.records.marcjson import indicator, leader

FIELD_TERMINATOR = b"\x1e"
RECORD_TERMINATOR = b"\x1d"
SUBFIELD_DELIMITER = b"\x1f"
MAX_RECORD_LENGTH = 99999


class RecordTooLong(ValueError):
    """The record does not fit the five-digit length of ISO 2709."""


def to_iso2709(record: dict[str, Any], *, unimarc: bool = False, encoding: str = "utf-8") -> bytes:
    """`encoding` is a Python codec name; LookupError if Python does not know it."""
    codec = codecs.lookup(encoding).name
    utf8 = codec == "utf-8"

    def encode(text: str) -> bytes:
        return text.encode("utf-8") if utf8 else _encode_with_references(text, codec)

    directory = bytearray()
    data = bytearray()
    # The walk of `marcjson.fields`, inlined, and each field encoded at once: per-value objects
    # and encodes were most of the time of writing a record.
    for entry in record.get("fields", ()):
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        for tag, content in entry.items():
            tag = str(tag)
            if not isinstance(content, dict):
                body = encode(("" if content is None else str(content)) + "\x1e")
            else:
                parts = [indicator(content.get("ind1")), indicator(content.get("ind2"))]
                one_byte_codes = True
                for sub in content.get("subfields", ()):
                    if isinstance(sub, dict):
                        for code, value in sub.items():
                            first = str(code)[:1]
                            one_byte_codes = one_byte_codes and first.isascii()
                            parts.append(f"\x1f{first}{value}")
                parts.append("\x1e")
                if one_byte_codes:
                    body = encode("".join(parts))
                else:  # a code whose first character is not one byte: its first byte, as ISO 2709 has room for
                    body = encode(parts[0] + parts[1]) + b"".join(
                        SUBFIELD_DELIMITER + encode(str(code))[:1] + encode(str(value))
                        for sub in content.get("subfields", ()) if isinstance(sub, dict)
                        for code, value in sub.items()) + FIELD_TERMINATOR
            if len(body) > 9999 or len(data) > 99999:
                raise RecordTooLong(f"field {tag} does not fit ISO 2709 directory limits")
            directory += (tag + "000")[:3].encode("ascii", "replace") + b"%04d%05d" % (len(body), len(data))
            data += body
    directory += FIELD_TERMINATOR
    base = 24 + len(directory)
    total = base + len(data) + 1
    if total > MAX_RECORD_LENGTH:
        raise RecordTooLong(f"record of {total} bytes exceeds {MAX_RECORD_LENGTH}")
    head = list(leader(record))
    head[0:5] = f"{total:05d}"
    if not unimarc:
        head[9] = "a" if utf8 else " "
    head[10:12] = "22"
    head[12:17] = f"{base:05d}"
    head[20:24] = "4500"
    return "".join(head).encode("ascii", "replace") + bytes(directory) + bytes(data) + RECORD_TERMINATOR


def _encode_with_references(text: str, codec: str) -> bytes:
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        out = bytearray()
        for character in text:
            try:
                out += character.encode(codec)
            except UnicodeEncodeError:
                out += b"&#x%04X;" % ord(character)
        return bytes(out)
