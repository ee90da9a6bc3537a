"""Bounded BER (X.690) primitives: framing a byte stream into PDUs and normalizing lengths.

Z39.50 peers send each APDU as one BER value on the TCP stream; YAZ uses indefinite lengths
(`0x80 ... 00 00`) for large constructed values and inside OPAC records. asn1tools decodes the
value itself but cannot frame a stream and refuses indefinite lengths under `ANY`, so every
incoming PDU goes through `pdu_length` (where does it end?) and `to_definite` (re-encode with
definite lengths) first. Both walk the TLV tree without recursion and enforce the limits in
`BerLimits`, so hostile input costs bounded time and memory and raises `BerError`.
"""
from __future__ import annotations

from dataclasses import dataclass


class BerError(ValueError):
    """The bytes are not acceptable BER (malformed, or beyond a configured limit)."""


@dataclass(frozen=True)
class BerLimits:
    max_pdu_bytes: int = 16 * 1024 * 1024
    # Nesting depth of constructed values; an RPN tree of depth d nests about 3*d values.
    max_depth: int = 256


DEFAULT_LIMITS = BerLimits()


@dataclass(frozen=True)
class Header:
    tag_class: int      # 0 universal, 1 application, 2 context, 3 private
    constructed: bool
    tag_number: int
    identifier_length: int  # bytes of identifier octets
    header_length: int      # bytes of identifier + length octets
    length: int | None  # None: indefinite


def read_header(data: bytes | bytearray | memoryview, offset: int) -> Header | None:
    """The TLV header at `offset`, or None if `data` ends before the header does."""
    end = len(data)
    if offset >= end:
        return None
    first = data[offset]
    position = offset + 1
    tag_number = first & 0x1F
    if tag_number == 0x1F:
        tag_number = 0
        for count in range(5):
            if position >= end:
                return None
            byte = data[position]
            position += 1
            if count == 0 and byte == 0x80:
                raise BerError(f"offset {offset}: tag number with a leading zero octet")
            tag_number = (tag_number << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        else:
            raise BerError(f"offset {offset}: tag number too long")
    if position >= end:
        return None
    identifier_length = position - offset
    length_octet = data[position]
    position += 1
    length: int | None
    if length_octet < 0x80:
        length = length_octet
    elif length_octet == 0x80:
        if not first & 0x20:
            raise BerError(f"offset {offset}: indefinite length on a primitive value")
        length = None
    elif length_octet == 0xFF:
        raise BerError(f"offset {offset}: reserved length octet 0xFF")
    else:
        count = length_octet & 0x7F
        if count > 4:
            raise BerError(f"offset {offset}: length of {count} octets is beyond any allowed PDU size")
        if position + count > end:
            return None
        length = int.from_bytes(bytes(data[position:position + count]), "big")
        position += count
    return Header(first >> 6, bool(first & 0x20), tag_number, identifier_length, position - offset, length)


def pdu_length(data: bytes | bytearray | memoryview, limits: BerLimits = DEFAULT_LIMITS) -> int | None:
    """The byte length of the complete BER value at the start of `data`, or None if more bytes
    are needed. Raises `BerError` for malformed or oversized values."""
    header = read_header(data, 0)
    if header is None:
        return None
    if header.length is not None:
        total = header.header_length + header.length
        if total > limits.max_pdu_bytes:
            raise BerError(f"PDU of {total} bytes exceeds the limit of {limits.max_pdu_bytes}")
        return total if len(data) >= total else None
    return _walk(data, limits, rebuild=False)[0]


def to_definite(data: bytes | bytearray, limits: BerLimits = DEFAULT_LIMITS) -> bytes:
    """One complete BER value re-encoded with definite lengths only (unchanged if it has none
    indefinite). Checks nesting depth either way; raises `BerError` on anything malformed,
    including trailing bytes."""
    end, rebuilt = _walk(data, limits, rebuild=True)
    if end is None:
        raise BerError("the value is truncated")
    if end != len(data):
        raise BerError(f"{len(data) - end} bytes after the end of the value")
    return rebuilt if rebuilt is not None else bytes(data)


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _walk(data: bytes | bytearray | memoryview, limits: BerLimits, *, rebuild: bool) -> tuple[int | None, bytes | None]:
    """Iterative TLV walk of the value at offset 0. Returns (its end offset, or None if the
    data is truncated; the rebuilt bytes, or None unless `rebuild` and something was indefinite)."""
    view = memoryview(data)
    # Each open constructed value: (identifier bytes, end offset or None if indefinite, parts).
    stack: list[tuple[bytes, int | None, list[bytes]]] = []
    root: list[bytes] = []
    offset = 0
    any_indefinite = False
    while True:
        if stack:
            _, open_end, _ = stack[-1]
            closing = False
            if open_end is None:
                if offset + 2 <= len(view) and view[offset] == 0 and view[offset + 1] == 0:
                    offset += 2
                    closing = True
            elif offset == open_end:
                closing = True
            elif offset > open_end:
                raise BerError(f"offset {offset}: a value overruns its enclosing value")
            if closing:
                identifier, _, parts = stack.pop()
                if rebuild:
                    content = b"".join(parts)
                    (stack[-1][2] if stack else root).append(identifier + encode_length(len(content)) + content)
                if not stack:
                    break
                continue
        if offset > limits.max_pdu_bytes:
            raise BerError(f"PDU exceeds the limit of {limits.max_pdu_bytes} bytes")
        header = read_header(view, offset)
        if header is None:
            return None, None
        if header.tag_class == 0 and header.tag_number == 0:
            raise BerError(f"offset {offset}: end-of-contents where no indefinite value is open")
        identifier = bytes(view[offset:offset + header.identifier_length])
        value_start = offset + header.header_length
        end = None if header.length is None else value_start + header.length
        if end is not None:
            if end > limits.max_pdu_bytes:
                raise BerError(f"PDU exceeds the limit of {limits.max_pdu_bytes} bytes")
            if stack and stack[-1][1] is not None and end > stack[-1][1]:
                raise BerError(f"offset {offset}: a value overruns its enclosing value")
        if header.constructed:
            if len(stack) >= limits.max_depth:
                raise BerError(f"offset {offset}: nesting deeper than {limits.max_depth}")
            any_indefinite = any_indefinite or end is None
            stack.append((identifier, end, []))
            offset = value_start
            continue
        assert end is not None  # read_header rejects indefinite primitives
        if end > len(view):
            return None, None
        if rebuild:
            encoded = bytes(view[offset:end])
            (stack[-1][2] if stack else root).append(encoded)
        offset = end
        if not stack:
            break
    if not rebuild or not any_indefinite:
        return offset, None
    return offset, b"".join(root)
