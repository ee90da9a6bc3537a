"""Strict ISO 5426 (extended Latin for bibliographic use) to Unicode.

UNIMARC records name it in 100$a/26-29 (code `03`); Python has no codec for it. The table is
ISO 5426's, as YAZ's converter applies it (`yaz-iconv -f iso5426`). As in MARC-8, a diacritic
(0xC0-0xDF) precedes the letter it belongs to; Unicode puts the combining mark after it.
A byte outside the table is a `UnicodeDecodeError`, never a silently dropped character.
"""
from __future__ import annotations

import unicodedata

_SPACING = {
    0xA1: "\u00a1", 0xA2: "\u201e", 0xA3: "\u00a3", 0xA4: "\u0024", 0xA5: "\u00a5", 0xA6: "\u2020",
    0xA7: "\u00a7", 0xA8: "\u2032", 0xA9: "\u2018", 0xAA: "\u201c", 0xAB: "\u00ab", 0xAC: "\u266d",
    0xAD: "\u00a9", 0xAE: "\u2117", 0xAF: "\u00ae", 0xB0: "\u02bb", 0xB1: "\u02bc", 0xB2: "\u201a",
    0xB6: "\u2021", 0xB7: "\u00b7", 0xB8: "\u2033", 0xB9: "\u2019", 0xBA: "\u201d", 0xBB: "\u00bb",
    0xBC: "\u266f", 0xBD: "\u02b9", 0xBE: "\u02ba", 0xBF: "\u00bf",
    0xE1: "\u00c6", 0xE2: "\u0110", 0xE6: "\u0132", 0xE8: "\u0141", 0xE9: "\u00d8", 0xEA: "\u0152",
    0xEC: "\u00de", 0xF1: "\u00e6", 0xF2: "\u0111", 0xF3: "\u00f0", 0xF5: "\u0131", 0xF6: "\u0133",
    0xF8: "\u0142", 0xF9: "\u00f8", 0xFA: "\u0153", 0xFB: "\u00df", 0xFC: "\u00fe",
    # non-sorting markers (NSB / NSE), carried as the C1 controls UNIMARC's UTF-8 data uses
    0x88: "\u0098", 0x89: "\u009c",
}
_COMBINING = {
    0xC0: "\u0309", 0xC1: "\u0300", 0xC2: "\u0301", 0xC3: "\u0302", 0xC4: "\u0303", 0xC5: "\u0304",
    0xC6: "\u0306", 0xC7: "\u0307", 0xC8: "\u0308", 0xC9: "\u0308", 0xCA: "\u030a", 0xCB: "\u0315",
    0xCC: "\u0313", 0xCD: "\u030b", 0xCE: "\u031b", 0xCF: "\u030c", 0xD0: "\u0327", 0xD1: "\u031c",
    0xD2: "\u0326", 0xD3: "\u0328", 0xD4: "\u0325", 0xD5: "\u032e", 0xD6: "\u0323", 0xD7: "\u0324",
    0xD8: "\u0332", 0xD9: "\u0333", 0xDA: "\u0329", 0xDB: "\u032d", 0xDD: "\u0360",
}


def decode_iso5426(data: bytes) -> str:
    """ISO 5426 bytes as NFC Unicode; `UnicodeDecodeError` at the first byte outside the table."""
    out: list[str] = []
    pending: list[str] = []
    for position, byte in enumerate(data):
        if 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        elif byte in _COMBINING:
            pending.append(_COMBINING[byte])
            continue
        elif byte in _SPACING:
            out.append(_SPACING[byte])
        elif byte < 0x20:
            continue  # C0 controls carry no text
        else:
            raise UnicodeDecodeError("iso5426", data, position, position + 1, f"byte 0x{byte:02x} is not an ISO 5426 character")
        if pending:
            out.extend(pending)
            pending.clear()
    out.extend(pending)
    return unicodedata.normalize("NFC", "".join(out))
