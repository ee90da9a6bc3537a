"""Strict MARC-8 to Unicode (with LC's numeric character references).

pymarc's converter replaces a character it cannot map with a space and prints a warning to
stderr, which would put silently damaged text into the union catalogue. This one uses the
same LC mapping tables (`pymarc.marc8_mapping`) but raises `UnicodeDecodeError` with the
byte position and the character set at the first byte sequence it cannot map.

See https://www.loc.gov/marc/specifications/speccharmarc8.html
"""
from __future__ import annotations

import re
import unicodedata

from pymarc import marc8_mapping

_ESC = 0x1B
# Characters outside the MARC-8 repertoire, written as numeric character references (LC's
# lossless conversion, https://www.loc.gov/marc/specifications/speccharconversion.html).
_NCR = re.compile(r"&#x([0-9A-Fa-f]{1,6});")
_BASIC_LATIN = 0x42   # 'B'
_ANSEL = 0x45         # 'E'
_EACC = 0x31          # '1': the only multibyte set (East Asian, three bytes per character)
_C1_CONTROLS = frozenset((0x88, 0x89, 0x8D, 0x8E))
_G0_DESIGNATORS = b"(,"
_G1_DESIGNATORS = b")-"
_CHARSET_NAMES = {
    0x42: "Basic Latin", 0x45: "ANSEL", 0x31: "EACC", 0x32: "Basic Hebrew", 0x33: "Basic Arabic",
    0x34: "Extended Arabic", 0x4E: "Basic Cyrillic", 0x51: "Extended Cyrillic", 0x53: "Basic Greek",
    0x62: "Subscripts", 0x67: "Greek symbols", 0x70: "Superscripts",
}


def _charset_name(code: int) -> str:
    return _CHARSET_NAMES.get(code, f"0x{code:02x}")


def decode_marc8(data: bytes) -> str:
    """MARC-8 bytes as NFC Unicode; `UnicodeDecodeError` on an escape or character it cannot map."""
    g0, g1 = _BASIC_LATIN, _ANSEL
    out: list[str] = []
    pending_combining: list[str] = []
    pos = 0
    size = len(data)

    def fail(start: int, end: int, reason: str) -> UnicodeDecodeError:
        return UnicodeDecodeError("marc-8", data, start, end, reason)

    while pos < size:
        byte = data[pos]
        if byte == _ESC:
            start = pos
            pos += 1
            multibyte = pos < size and data[pos] == 0x24  # '$'
            if multibyte:
                pos += 1
            if pos >= size:
                raise fail(start, size, "incomplete escape sequence")
            designator = data[pos]
            if designator in _G0_DESIGNATORS or designator in _G1_DESIGNATORS:
                if pos + 1 >= size:
                    raise fail(start, size, "incomplete escape sequence")
                final = data[pos + 1]
                pos += 2
                target_g0 = designator in _G0_DESIGNATORS
            elif multibyte:
                final = designator  # ESC $ 1: EACC into G0
                pos += 1
                target_g0 = True
            else:
                final = designator  # technique 1 (ESC g, ESC b, ESC p, ESC s)
                pos += 1
                target_g0 = True
                if final == 0x73:  # 's': back to Basic Latin
                    final = _BASIC_LATIN
            if final not in marc8_mapping.CODESETS:
                raise fail(start, pos, f"escape to unknown character set 0x{final:02x}")
            if target_g0:
                g0 = final
            else:
                g1 = final
            continue

        if g0 == _EACC and 0x21 <= byte <= 0x7E:
            if pos + 3 > size:
                raise fail(pos, size, "truncated three-byte EACC character")
            code = int.from_bytes(data[pos:pos + 3], "big")
            width = 3
            charset = g0
        elif byte < 0x20:
            pos += 1  # control characters carry no text
            continue
        elif byte == 0x20:
            out.append(" ")
            out.extend(pending_combining)
            pending_combining.clear()
            pos += 1
            continue
        elif byte in _C1_CONTROLS:
            pos += 1  # non-sort markers and joiners: no text of their own
            continue
        elif 0x80 <= byte <= 0xA0:
            raise fail(pos, pos + 1, f"byte 0x{byte:02x} is not a MARC-8 character")
        else:
            code, width = byte, 1
            charset = g1 if byte > 0x7F else g0

        mapped = marc8_mapping.CODESETS[charset].get(code)
        if mapped is None:
            odd = marc8_mapping.ODD_MAP.get(code)
            if odd is None:
                raise fail(pos, pos + width, f"no character 0x{code:x} in MARC-8 set {_charset_name(charset)}")
            out.append(chr(odd))
            pos += width
            continue
        value, combining = mapped
        if combining:
            pending_combining.append(chr(value))
        else:
            out.append(chr(value))
            out.extend(pending_combining)
            pending_combining.clear()
        pos += width
    out.extend(pending_combining)
    text = "".join(out)
    if "&#x" in text:
        text = _NCR.sub(_ncr_char, text)
    return unicodedata.normalize("NFC", text)


def _ncr_char(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else match.group(0)
