"""Streaming MARC readers: ISO 2709, MARCXML in any namespace, MARC-in-JSON.

`read_records(source)` yields one `ReadResult` per record in input order, holding either a
pymarc `Record` or an `error` that says why the record could not be read, always with the raw
bytes and the position, so the caller can quarantine exactly that record and go on. Memory
stays flat: ISO 2709 is read in chunks, XML with `iterparse` (each record element freed when
done), JSON incrementally. Gzip input is recognised by its magic number.

Format (MARC21 / UNIMARC / CNMARC) and encoding are taken as given, else detected per record:
- format: MARC21 has 245 or a 40-character 008; UNIMARC has 200 and a 100$a that starts with
  an 8-digit date; a UNIMARC record with CNMARC markers (690 CLC, 905 holdings, 801$a CN,
  Chinese character set in 100$a) is CNMARC. The leader shape decides when fields do not.
- encoding (ISO 2709 only; XML and JSON are Unicode by construction): MARC21 leader/09 `a` is
  UTF-8, blank is MARC-8; UNIMARC 100$a/26-29 names the character sets (`50` ISO 10646,
  `03` ISO 5426, `20` GB 2312 and its supersets). A record whose bytes contradict the label is decoded with
  the alternative only if that decodes cleanly (the mislabelled MARC-8 records real exports
  contain); otherwise it is an error naming the field and byte. Text is never guessed into
  mojibake: GB18030 is only tried when the label, the format or (MARC21) the language says
  Chinese, or when given.
"""
from __future__ import annotations

import codecs
import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from lxml import etree
from pymarc import Field, Indicators, Leader, Record, Subfield

from indexer.iso5426 import decode_iso5426
from indexer.marc8 import decode_marc8
from indexer.model import MarcFormat

RECORD_TERMINATOR = 0x1D
FIELD_TERMINATOR = 0x1E
SUBFIELD_DELIMITER = 0x1F
_CHUNK = 1 << 16
# Far beyond any real record (ISO 2709 caps them at 99,999 bytes; oversize exports reach a few
# hundred KB): input without a terminator for this long is reported in pieces of this size.
_MAX_UNTERMINATED = 1 << 24
# Bytes some exports put between records: line breaks, padding, DOS end-of-file, stray terminators.
_BETWEEN_RECORDS = b"\r\n\x00 \x1a\x1d"

UTF8 = "utf-8"
MARC8 = "marc-8"
GB18030 = "gb18030"
ISO5426 = "iso5426"

_ENCODING_ALIASES = {
    "utf8": UTF8, "utf-8": UTF8, "unicode": UTF8,
    "marc8": MARC8, "marc-8": MARC8, "ansel": MARC8,
    "gb18030": GB18030, "gbk": "gbk", "gb2312": "gbk", "cp936": "gbk",
    "iso5426": ISO5426, "iso-5426": ISO5426, "iso_5426": ISO5426,
}


class MarcReadError(ValueError):
    """A record that cannot be read, with the reason (and its format, once that is known)."""

    def __init__(self, message: str, marc_format: MarcFormat | None = None):
        super().__init__(message)
        self.format = marc_format


@dataclass(frozen=True)
class ReadResult:
    record: Record | None
    format: MarcFormat | None
    encoding: str
    position: int   # 1-based record number in the input
    offset: int     # byte offset (ISO 2709) or line number (XML, JSON) where the record starts
    raw: bytes
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_format(value: MarcFormat | str) -> MarcFormat:
    """`marc21`, `UNIMARC`, `cnmarc` (any case) as a MarcFormat; ValueError naming the choices."""
    if isinstance(value, MarcFormat):
        return value
    try:
        return MarcFormat(value.strip().lower())
    except ValueError:
        choices = ", ".join(f.value for f in MarcFormat)
        raise ValueError(f"unknown MARC format {value!r} (use {choices})") from None


def normalize_encoding(name: str) -> str:
    """A user's encoding name as this module reports it; unknown names must be Python codecs."""
    lowered = name.strip().lower()
    if lowered in _ENCODING_ALIASES:
        return _ENCODING_ALIASES[lowered]
    try:
        return codecs.lookup(lowered).name
    except LookupError:
        raise ValueError(f"unknown character encoding {name!r} (use utf-8, marc-8, gbk, gb18030 or iso5426)") from None


def _decoder(encoding: str) -> Callable[[bytes], str]:
    if encoding == MARC8:
        return decode_marc8
    if encoding == ISO5426:
        return decode_iso5426
    if encoding == "gbk":
        # GBK data is a subset of GB18030; decoding with the superset reads every GBK export.
        return lambda data: data.decode(GB18030)
    return lambda data: data.decode(encoding)


# -- entry point ---------------------------------------------------------------------------


def read_records(
    source: str | Path | BinaryIO,
    *,
    format: MarcFormat | str | None = None,
    encoding: str | None = None,
) -> Iterator[ReadResult]:
    """Every record of an ISO 2709, MARCXML or MARC-in-JSON file (optionally gzipped), in order."""
    given_format = parse_format(format) if format is not None else None
    given_encoding = normalize_encoding(encoding) if encoding else None
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield from _read_stream(handle, given_format, given_encoding)
    else:
        yield from _read_stream(source, given_format, given_encoding)


def _read_stream(stream: BinaryIO, fmt: MarcFormat | None, encoding: str | None) -> Iterator[ReadResult]:
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
    head = buffered.peek(2)[:2]  # type: ignore[union-attr]
    if head == b"\x1f\x8b":
        buffered = io.BufferedReader(gzip.GzipFile(fileobj=buffered))  # type: ignore[arg-type]
    kind = _sniff(buffered)
    if kind == "xml":
        yield from _read_xml(buffered, fmt)
    elif kind == "json":
        yield from _read_json(buffered, fmt)
    else:
        yield from _read_iso2709(buffered, fmt, encoding)


def _sniff(stream: BinaryIO) -> str:
    head = stream.peek(4096)[:4096]  # type: ignore[attr-defined]
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<"):
        return "xml"
    if text.startswith((b"{", b"[")):
        return "json"
    return "iso2709"


# -- ISO 2709 ------------------------------------------------------------------------------


def _iso2709_chunks(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(byte offset, raw record) pairs, resynchronising on the record terminator.

    A record is taken by its leader length when the byte there is the record terminator;
    otherwise (wrong length, record over 99,999 bytes, garbage) up to the next terminator.
    Line breaks and padding between records are skipped.
    """
    buffer = bytearray()
    base = 0          # stream offset of buffer[0]
    eof = False

    def fill() -> bool:
        nonlocal eof
        if eof:
            return False
        data = stream.read(_CHUNK)
        if not data:
            eof = True
            return False
        buffer.extend(data)
        return True

    while True:
        start = 0
        while True:
            while start < len(buffer) and buffer[start] in _BETWEEN_RECORDS:
                start += 1
            if start < len(buffer) or not fill():
                break
        if start:
            del buffer[:start]
            base += start
        if not buffer:
            return
        while len(buffer) < 5 and fill():
            pass
        declared = bytes(buffer[:5])
        length = int(declared) if declared.isdigit() else 0
        if length >= 25:
            while len(buffer) < length and fill():
                pass
            # A record never holds a terminator inside: a length that reaches past one is wrong.
            if (
                len(buffer) >= length
                and buffer[length - 1] == RECORD_TERMINATOR
                and buffer.find(RECORD_TERMINATOR, 0, length - 1) < 0
            ):
                yield base, bytes(buffer[:length])
                del buffer[:length]
                base += length
                continue
        search_from = 0
        while True:
            end = buffer.find(RECORD_TERMINATOR, search_from)
            if end >= 0 or len(buffer) >= _MAX_UNTERMINATED:
                break
            search_from = len(buffer)
            if not fill():
                break
        if end >= _MAX_UNTERMINATED:
            end = -1
        cut = end + 1 if end >= 0 else min(len(buffer), _MAX_UNTERMINATED)
        inner = _embedded_record_start(buffer, cut) if end >= 0 else None
        if inner is not None:
            # A truncated record followed by a whole one: report them separately.
            yield base, bytes(buffer[:inner])
            del buffer[:inner]
            base += inner
            cut -= inner
        yield base, bytes(buffer[:cut])
        del buffer[:cut]
        base += cut


_LEADER_START = re.compile(rb"\d{5}[a-z ][a-z][a-z0-9 ]")


def _embedded_record_start(buffer: bytearray, cut: int) -> int | None:
    """The start of a whole record that ends exactly at `cut`, inside a chunk whose own length is wrong."""
    for match in _LEADER_START.finditer(buffer, 1, cut - 24):
        start = match.start()
        if start + int(buffer[start:start + 5]) == cut:
            return start
    return None


def _read_iso2709(stream: BinaryIO, fmt: MarcFormat | None, encoding: str | None) -> Iterator[ReadResult]:
    for position, (offset, raw) in enumerate(_iso2709_chunks(stream), start=1):
        try:
            record, detected_format, used_encoding = parse_iso2709(raw, fmt, encoding)
        except MarcReadError as error:
            yield ReadResult(None, error.format or fmt, encoding or "", position, offset, raw, str(error))
            continue
        yield ReadResult(record, detected_format, used_encoding, position, offset, raw)


@dataclass(frozen=True)
class _RawField:
    tag: str
    data: bytes


def _split_iso2709(raw: bytes) -> tuple[str, list[_RawField]]:
    """Leader and undecoded fields of one ISO 2709 record; `MarcReadError` on a broken structure."""
    if len(raw) < 25:
        raise MarcReadError(f"record of {len(raw)} bytes is shorter than a leader and a directory")
    if raw[-1] != RECORD_TERMINATOR:
        raise MarcReadError("record does not end with the record terminator (0x1D): input truncated")
    try:
        leader = raw[:24].decode("ascii")
    except UnicodeDecodeError:
        raise MarcReadError(f"leader is not ASCII: {raw[:24]!r}") from None
    length_width = int(leader[20]) if leader[20].isdigit() and leader[20] != "0" else 4
    start_width = int(leader[21]) if leader[21].isdigit() and leader[21] != "0" else 5
    entry_width = 3 + length_width + start_width + (int(leader[22]) if leader[22].isdigit() else 0)

    directory_end = raw.find(bytes([FIELD_TERMINATOR]), 24)
    if directory_end < 0:
        raise MarcReadError("no field terminator after the directory")
    declared_base = leader[12:17]
    base_address = int(declared_base) if declared_base.isdigit() else -1
    if base_address != directory_end + 1:
        # The first field terminator ends the directory; trust it over a wrong base address
        # only if the directory then has a whole number of entries.
        if (directory_end - 24) % entry_width:
            raise MarcReadError(
                f"base address {declared_base!r} does not match the directory end at byte {directory_end + 1}"
            )
        base_address = directory_end + 1
    directory = raw[24:directory_end]
    if len(directory) % entry_width:
        raise MarcReadError(f"directory of {len(directory)} bytes is not a whole number of {entry_width}-byte entries")
    data_area = raw[base_address:-1]

    entries: list[tuple[str, int, int]] = []
    for n in range(0, len(directory), entry_width):
        entry = directory[n:n + entry_width]
        tag_bytes = entry[:3]
        length_bytes = entry[3:3 + length_width]
        start_bytes = entry[3 + length_width:3 + length_width + start_width]
        if not (length_bytes.isdigit() and start_bytes.isdigit()):
            raise MarcReadError(f"directory entry {n // entry_width + 1} is not numeric: {entry!r}")
        try:
            tag = tag_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise MarcReadError(f"directory entry {n // entry_width + 1} has a non-ASCII tag {tag_bytes!r}") from None
        if not tag.isalnum():
            raise MarcReadError(f"directory entry {n // entry_width + 1} has an invalid tag {tag!r}")
        entries.append((tag, int(length_bytes), int(start_bytes)))

    by_directory = _fields_by_directory(entries, data_area)
    length_agrees = leader[:5].isdigit() and int(leader[:5]) == len(raw)
    if by_directory is not None and length_agrees:
        return leader, by_directory
    # The directory's lengths or offsets are wrong (a field over 9,999 bytes, a record over
    # 99,999 bytes): the field terminators still separate the fields, in directory order.
    pieces = data_area.split(bytes([FIELD_TERMINATOR]))
    if pieces and pieces[-1] == b"":
        pieces.pop()
    if len(pieces) == len(entries):
        length_modulus = 10 ** length_width
        in_directory_order = list(range(len(entries)))
        by_start = sorted(in_directory_order, key=lambda i: entries[i][2])
        for order in (in_directory_order, by_start):
            # Each piece must have its entry's length (modulo the width of the length digits).
            if all((len(piece) + 1) % length_modulus == entries[i][1] % length_modulus for piece, i in zip(pieces, order)):
                fields = [_RawField("", b"")] * len(entries)
                for piece, index in zip(pieces, order):
                    fields[index] = _RawField(entries[index][0], piece)
                return leader, fields
    if by_directory is not None:
        return leader, by_directory
    if len(pieces) == len(entries):
        raise MarcReadError("the directory's field lengths and offsets do not match the fields in the data area")
    raise MarcReadError(
        f"directory lists {len(entries)} fields but the data area holds {len(pieces)}, "
        "and the directory's lengths/offsets do not fit the data"
    )


def _fields_by_directory(entries: list[tuple[str, int, int]], data_area: bytes) -> list[_RawField] | None:
    """Fields as the directory places them, or None if an entry does not frame a whole field."""
    fields = []
    for tag, length, start in entries:
        data = data_area[start:start + length]
        if (
            length == 0
            or start + length > len(data_area)
            or data[-1] != FIELD_TERMINATOR
            or (start > 0 and data_area[start - 1] != FIELD_TERMINATOR)
        ):
            return None
        fields.append(_RawField(tag, data[:-1]))
    return fields


def _is_control_tag(tag: str) -> bool:
    return tag.isdigit() and tag < "010"


def _unimarc_charsets(fields: list[_RawField]) -> str:
    """UNIMARC 100$a/26-29 (two G0/G1 character set codes), or '' if absent."""
    for field in fields:
        if field.tag == "100":
            for chunk in field.data[2:].split(bytes([SUBFIELD_DELIMITER]))[1:]:
                if chunk[:1] == b"a":
                    return chunk[1:][26:30].decode("ascii", "replace")
    return ""


def detect_format_from_tags(tags: set[str], leader: str, unimarc_100a: str | None, marc21_008: str | None,
                            cn_markers: bool) -> MarcFormat:
    """MARC21 / UNIMARC / CNMARC from a record's shape (see the module docstring)."""
    unimarc_100 = bool(unimarc_100a and re.match(r"^\d{8}[a-z]", unimarc_100a))
    marc21_score = ("245" in tags) * 2 + (marc21_008 is not None and len(marc21_008) == 40) + ("260" in tags or "264" in tags)
    unimarc_score = ("200" in tags) * 2 + unimarc_100 + ("210" in tags or "214" in tags)
    if unimarc_score == marc21_score:
        # Leader: MARC21 ends its entry map with "4500"; UNIMARC leaves 23 blank and 18 in " i".
        unimarc_score += leader[20:24] != "4500"
    if unimarc_score > marc21_score:
        return MarcFormat.CNMARC if cn_markers else MarcFormat.UNIMARC
    return MarcFormat.MARC21


def _chinese_charsets(charsets: str) -> bool:
    return "20" in (charsets[0:2], charsets[2:4])


def _cn_markers(tags: set[str], subfield_values: Callable[[str, str], list[str]], charsets: str) -> bool:
    if tags & {"690", "905", "906", "091", "092"}:
        return True
    if any(v.strip().upper().startswith("CN") for v in subfield_values("801", "a")):
        return True
    return _chinese_charsets(charsets)


def _raw_subfield_values(fields: list[_RawField], tag: str, code: str) -> list[str]:
    values = []
    for field in fields:
        if field.tag == tag:
            for chunk in field.data[2:].split(bytes([SUBFIELD_DELIMITER]))[1:]:
                if chunk[:1] == code.encode():
                    values.append(chunk[1:].decode("ascii", "replace"))
    return values


def parse_iso2709(
    raw: bytes, fmt: MarcFormat | None = None, encoding: str | None = None
) -> tuple[Record, MarcFormat, str]:
    """One ISO 2709 record -> (pymarc Record, format, encoding used); `MarcReadError` with the reason."""
    leader, fields = _split_iso2709(raw)
    tags = {f.tag for f in fields}
    if fmt is None:
        charsets = _unimarc_charsets(fields)
        control_008 = next((f.data for f in fields if f.tag == "008"), None)
        unimarc_100a = (_raw_subfield_values(fields, "100", "a") or [None])[0]
        fmt = detect_format_from_tags(
            tags, leader, unimarc_100a,
            control_008.decode("ascii", "replace") if control_008 is not None else None,
            _cn_markers(tags, lambda t, c: _raw_subfield_values(fields, t, c), charsets),
        )
    candidates = _encoding_candidates(leader, fields, fmt, encoding)
    failures: list[str] = []
    for candidate in candidates:
        try:
            return _build_record(leader, fields, _decoder(candidate)), fmt, candidate
        except _FieldDecodeError as error:
            failures.append(f"as {candidate}: {error}")
        except MarcReadError as error:
            raise MarcReadError(str(error), fmt) from None
    raise MarcReadError("cannot decode the record " + "; ".join(failures), fmt)


def _encoding_candidates(leader: str, fields: list[_RawField], fmt: MarcFormat, given: str | None) -> list[str]:
    if given is not None:
        return [given]
    if fmt is MarcFormat.MARC21:
        if any(b"\x1b" in f.data for f in fields):
            # MARC-8 escape sequences, whatever the leader says; never text in UTF-8 (where they
            # would decode "successfully" into control-character garbage).
            return [MARC8]
        if leader[9] == "a" or not all(f.data.isascii() for f in fields):
            # Non-ASCII MARC-8 text is practically never valid UTF-8, so a record that decodes
            # as UTF-8 is UTF-8 even when leader/09 is blank (a common export mistake).
            candidates = [UTF8, MARC8]
            if _marc21_language(fields) in _CJK_LANGUAGES:
                # Without escapes MARC-8 has no CJK, so Chinese text that is neither UTF-8 nor
                # MARC-8 (romanization with diacritics) is a GBK/GB18030 export.
                candidates.append(GB18030)
            return candidates
        return [MARC8]
    charsets = _unimarc_charsets(fields)
    if _chinese_charsets(charsets) or fmt is MarcFormat.CNMARC:
        return [UTF8, GB18030]
    if "03" in (charsets[0:2], charsets[2:4]):
        return [UTF8, ISO5426]  # exports converted to UTF-8 often keep the old label
    return [UTF8]


_CJK_LANGUAGES = frozenset({"chi", "zho"})


def _marc21_language(fields: list[_RawField]) -> str:
    for field in fields:
        if field.tag == "008":
            return field.data[35:38].decode("ascii", "replace")
    return ""


class _FieldDecodeError(Exception):
    pass


def _new_record(leader: str) -> Record:
    record = Record()
    record.leader = Leader(leader)  # as given: pymarc's constructor would rewrite positions 10-11 and 20-23
    return record


def _build_record(leader: str, fields: list[_RawField], decode: Callable[[bytes], str]) -> Record:
    record = _new_record(leader)
    for field in fields:
        try:
            record.add_field(_build_field(field, decode))
        except UnicodeDecodeError as error:
            bad = error.object[error.start:error.end]
            raise _FieldDecodeError(
                f"field {field.tag}: byte {error.start} of the field ({bad.hex(' ')}): {error.reason}"
            ) from None
    return record


def _build_field(field: _RawField, decode: Callable[[bytes], str]) -> Field:
    if _is_control_tag(field.tag):
        # Kept as in the file even when an export (danMARC) puts subfield delimiters in 00X fields.
        text = "\x1f".join(decode(part) for part in field.data.split(bytes([SUBFIELD_DELIMITER])))
        return Field(tag=field.tag, data=text)
    if len(field.data) < 2:
        raise MarcReadError(f"field {field.tag} is shorter than its two indicators")
    indicators = Indicators(*(_indicator(field.tag, b) for b in field.data[:2]))
    body = field.data[2:]
    chunks = body.split(bytes([SUBFIELD_DELIMITER]))
    if chunks[0].strip():
        raise MarcReadError(f"field {field.tag}: data {chunks[0][:20]!r} before the first subfield")
    for chunk in chunks[1:]:
        if chunk and not (0x21 <= chunk[0] <= 0x7E):
            raise MarcReadError(f"field {field.tag}: subfield code 0x{chunk[0]:02x} is not an ASCII letter or digit")
    if decode in (decode_marc8, decode_iso5426):
        # MARC-8 escapes are scoped to a subfield, and both drop C0 controls: decode each on its own.
        texts = [chr(chunk[0]) + decode(chunk[1:]) if chunk else "" for chunk in chunks[1:]]
    else:
        # In UTF-8 and the GB encodings 0x1F never occurs inside a character: decode once, split after.
        texts = decode(body).split("\x1f")[1:]
    subfields = [Subfield(text[0], text[1:]) for text in texts if text]
    return Field(tag=field.tag, indicators=indicators, subfields=subfields)


def _indicator(tag: str, byte: int) -> str:
    if 0x20 <= byte <= 0x7E:
        return chr(byte)
    raise MarcReadError(f"field {tag}: indicator 0x{byte:02x} is not an ASCII character")


# -- MARCXML -------------------------------------------------------------------------------

_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_FORMAT_HINTS = {"marc21": MarcFormat.MARC21, "unimarc": MarcFormat.UNIMARC, "cnmarc": MarcFormat.CNMARC}


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


_XML_CHUNK = 1 << 16


def _read_xml(stream: BinaryIO, fmt: MarcFormat | None) -> Iterator[ReadResult]:
    head = stream.peek(200)[:200].lstrip(b"\xef\xbb\xbf")  # type: ignore[attr-defined]
    declared = _XML_ENCODING.match(head)
    encoding = declared.group(1).decode("ascii").lower() if declared else UTF8
    position = 0
    # A pull parser, not iterparse: when the document breaks, the records parsed before the
    # break are still delivered (iterparse raises first and loses whatever its buffer held).
    parser = etree.XMLPullParser(events=("end",), tag="{*}record", huge_tree=True, remove_comments=True,
                                 resolve_entities=False, no_network=True)
    syntax_error: etree.XMLSyntaxError | None = None
    while syntax_error is None:
        chunk = stream.read(_XML_CHUNK)
        try:
            if chunk:
                parser.feed(chunk)
            else:
                parser.close()
        except etree.XMLSyntaxError as error:
            syntax_error = error
        for _event, element in parser.read_events():
            if not _is_marc_record_element(element):
                _free(element)  # a wrapper (an SRU record around recordData): its MARC record is done
                continue
            position += 1
            raw = etree.tostring(element, encoding="utf-8")
            line = element.sourceline or 0
            try:
                record = _record_from_xml(element)
                detected = fmt or _detect_xml_format(element, record)
                yield ReadResult(record, detected, encoding, position, line, raw)
            except MarcReadError as error:
                yield ReadResult(None, fmt, encoding, position, line, raw, str(error))
            _free(element)
        if not chunk:
            break
    if syntax_error is not None:
        # Not resumable: report the rest of the document as one unreadable piece.
        yield ReadResult(None, fmt, encoding, position + 1, syntax_error.lineno or 0, b"",
                         f"XML syntax error: {syntax_error}")


def _free(element: etree._Element) -> None:
    """Drop a finished element and the finished siblings before it, so memory stays flat."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _is_marc_record_element(element: etree._Element) -> bool:
    return any(_local(child.tag) in ("leader", "controlfield", "datafield") for child in element)


def _record_from_xml(element: etree._Element) -> Record:
    leader = ""
    fields: list[Field] = []
    for child in element:
        name = _local(child.tag)
        if name == "leader":
            leader = child.text or ""
        elif name == "controlfield":
            tag = _xml_tag(child)
            fields.append(Field(tag=tag, data=child.text or ""))
        elif name == "datafield":
            tag = _xml_tag(child)
            indicators = Indicators(_xml_indicator(child, "ind1", tag), _xml_indicator(child, "ind2", tag))
            subfields = []
            for sub in child:
                if _local(sub.tag) != "subfield":
                    continue
                code = sub.get("code", "")
                if len(code) != 1 or not (0x21 <= ord(code) <= 0x7E):
                    raise MarcReadError(f"line {sub.sourceline}: field {tag}: bad subfield code {code!r}")
                subfields.append(Subfield(code, sub.text or ""))
            fields.append(Field(tag=tag, indicators=indicators, subfields=subfields))
    if len(leader) != 24:
        leader = (leader + " " * 24)[:24] if leader else "     nam a22     uu 4500"
    record = _new_record(leader.replace("-", " ") if re.fullmatch(r"[0-9a-z\- ]{24}", leader) else leader)
    for field in fields:
        record.add_field(field)
    return record


def _xml_tag(element: etree._Element) -> str:
    tag = element.get("tag", "")
    if len(tag) != 3 or not tag.isalnum():
        raise MarcReadError(f"line {element.sourceline}: {_local(element.tag)} tag {tag!r} is not a MARC tag")
    return tag


def _xml_indicator(element: etree._Element, name: str, tag: str) -> str:
    value = element.get(name, " ") or " "
    if len(value) != 1:
        raise MarcReadError(f"line {element.sourceline}: field {tag}: {name} {value!r} is not one character")
    return value


def _detect_xml_format(element: etree._Element, record: Record) -> MarcFormat:
    hint = (element.get("format") or "").lower()
    if hint in _FORMAT_HINTS:
        return _FORMAT_HINTS[hint]
    namespace = etree.QName(element.tag).namespace or ""
    return detect_format(record, cn_namespace="nlc.cn" in namespace)


def detect_format(record: Record, *, cn_namespace: bool = False) -> MarcFormat:
    """MARC21 / UNIMARC / CNMARC of a decoded record."""
    tags = {f.tag for f in record.fields}

    def values(tag: str, code: str) -> list[str]:
        return [v for f in record.get_fields(tag) if not f.is_control_field() for v in f.get_subfields(code)]

    unimarc_100a = (values("100", "a") or [None])[0]
    control_008 = next((f.data for f in record.get_fields("008") if f.is_control_field()), None)
    charsets = unimarc_100a[26:30] if unimarc_100a else ""
    return detect_format_from_tags(
        tags, str(record.leader), unimarc_100a, control_008,
        cn_namespace or _cn_markers(tags, values, charsets),
    )


# -- MARC-in-JSON --------------------------------------------------------------------------


# A MARC record is at most 99,999 bytes; its JSON never comes near this. Past it, an object that
# does not parse is a syntax error, not one still being read.
_JSON_MAX_RECORD = 1 << 24
_JSON_NEXT_OBJECT = re.compile(r"\n[ \t]*\{")


def _read_json(stream: BinaryIO, fmt: MarcFormat | None) -> Iterator[ReadResult]:
    """An array of MARC-in-JSON objects or one object per line, decoded incrementally.

    Bytes that are not UTF-8 are carried through (surrogateescape) so that only the record
    holding them is reported; after a syntax error, reading resumes at the next line that
    starts an object (one object per line: the next record).
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape")
    decoder = json.JSONDecoder()
    buffer = ""
    line = 1          # line number of buffer[0]
    position = 0
    eof = False

    def read_more() -> bool:
        nonlocal buffer, eof
        chunk = text.read(max(_CHUNK, len(buffer)))  # doubling: a long object is re-parsed log(n) times
        if not chunk:
            eof = True
            return False
        buffer += chunk
        return True

    while True:
        stripped = buffer.lstrip(" \t\r\n,[]")
        line += buffer[: len(buffer) - len(stripped)].count("\n")
        buffer = stripped
        if not buffer:
            if eof or not read_more():
                return
            continue
        try:
            value, end = decoder.raw_decode(buffer)
        except json.JSONDecodeError as error:
            if not eof and len(buffer) < _JSON_MAX_RECORD and read_more():
                continue
            next_object = _JSON_NEXT_OBJECT.search(buffer, 1)
            cut = next_object.start() + 1 if next_object else len(buffer)
            position += 1
            yield ReadResult(None, fmt, UTF8, position, line, buffer[:cut].encode("utf-8", "surrogateescape"),
                             f"JSON syntax error: {error.msg} at line {line + error.lineno - 1}")
            line += buffer[:cut].count("\n")
            buffer = buffer[cut:]
            continue
        position += 1
        raw_text = buffer[:end]
        start_line = line
        line += raw_text.count("\n")
        buffer = buffer[end:]
        raw = raw_text.encode("utf-8", "surrogateescape")
        try:
            _check_utf8(raw_text)
            record = record_from_json(value)
        except MarcReadError as error:
            yield ReadResult(None, fmt, UTF8, position, start_line, raw, str(error))
            continue
        yield ReadResult(record, fmt or detect_format(record), UTF8, position, start_line, raw)


def _check_utf8(text: str) -> None:
    for index, char in enumerate(text):
        if "\udc80" <= char <= "\udcff":
            context = text[max(0, index - 20):index].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise MarcReadError(f"byte 0x{ord(char) - 0xDC00:02x} after {context!r} is not UTF-8")


def _check_unicode(text: str, where: str) -> None:
    """JSON may escape half of a UTF-16 pair (`\\ud800`): valid JSON, but not text that can be
    stored or sent; such a record is unreadable here rather than failing later downstream."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            before = text[max(0, index - 20):index]
            raise MarcReadError(f"{where}: lone UTF-16 surrogate \\u{ord(char):04x} after {before!r} is not a Unicode character")


def record_from_json(value: object) -> Record:
    """A pymarc Record from the MARC-in-JSON shape (`Record.as_dict()`); `MarcReadError` if malformed."""
    if not isinstance(value, dict):
        raise MarcReadError(f"expected a MARC-in-JSON object, got {type(value).__name__}")
    leader = value.get("leader")
    if not isinstance(leader, str) or len(leader) != 24:
        raise MarcReadError(f"leader must be a 24-character string, got {leader!r}")
    raw_fields = value.get("fields")
    if not isinstance(raw_fields, list):
        raise MarcReadError("'fields' must be a list")
    _check_unicode(leader, "leader")
    record = _new_record(leader)
    for n, entry in enumerate(raw_fields):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise MarcReadError(f"fields[{n}] must be an object with one tag")
        ((tag, content),) = entry.items()
        if len(tag) != 3 or not tag.isalnum():
            raise MarcReadError(f"fields[{n}]: {tag!r} is not a MARC tag")
        if isinstance(content, str):
            _check_unicode(content, f"fields[{n}] ({tag})")
            record.add_field(Field(tag=tag, data=content))
            continue
        if not isinstance(content, dict) or not isinstance(content.get("subfields"), list):
            raise MarcReadError(f"fields[{n}] ({tag}): expected a string or an object with subfields")
        subfields = []
        for sub in content["subfields"]:
            if not isinstance(sub, dict) or len(sub) != 1:
                raise MarcReadError(f"fields[{n}] ({tag}): each subfield must be an object with one code")
            ((code, text),) = sub.items()
            if len(code) != 1 or not isinstance(text, str):
                raise MarcReadError(f"fields[{n}] ({tag}): bad subfield {sub!r}")
            _check_unicode(code, f"fields[{n}] ({tag}) subfield code")
            _check_unicode(text, f"fields[{n}] ({tag}) ${code}")
            subfields.append(Subfield(code, text))
        ind1 = str(content.get("ind1", " ")) or " "
        ind2 = str(content.get("ind2", " ")) or " "
        if len(ind1) != 1 or len(ind2) != 1:
            raise MarcReadError(f"fields[{n}] ({tag}): indicators must be one character each")
        _check_unicode(ind1 + ind2, f"fields[{n}] ({tag}) indicators")
        record.add_field(Field(tag=tag, indicators=Indicators(ind1, ind2), subfields=subfields))
    return record
