"""Items from the holdings fields of a library's export.

Each library's system keeps its items in one field with its own subfield layout; the rule set
says which (`HoldingsMapping`, per library or network-wide). Without one, the standard layout
of the record's format applies: MARC21 852, UNIMARC 995 (Koha), CNMARC 905. Layouts of the
common systems are in `STANDARD_LAYOUTS` (Koha 952, Sirsi 949, UNIMARC 955 holdings
statements).

For every holdings field: the library code it names (or the contributing library) is mapped
to a network library (`IngestPolicy.library_for_source_code`); the barcode is checked against
that library's ranges under the network's barcode policy; the status text (Chinese or English,
Koha codes) becomes an `Availability`. Nothing is dropped silently: every item left out, and
every doubtful value kept, is named in `problems`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pymarc import Field, Record

from indexer.extract import control_number
from indexer.model import Availability, Item, MarcFormat
from indexer.policy import BarcodePolicy, HoldingsMapping, IngestPolicy, LibraryPolicy

STANDARD_LAYOUTS: dict[str, HoldingsMapping] = {
    # MARC21 holdings: b sublocation/library, p piece designation (barcode), h call number, c shelving location
    "852": HoldingsMapping(tag="852", library="b", barcode="p", call_number="h", location="c"),
    # Koha (MARC21): a home branch, p barcode, o call number, c location, 7 not for loan, q due date, y item type
    "952": HoldingsMapping(tag="952", library="a", barcode="p", call_number="o", location="c", status="7",
                           due_date="q", material_type="y"),
    # SirsiDynix-style: m library, i barcode, a call number, l home location, s status, t item type
    "949": HoldingsMapping(tag="949", library="m", barcode="i", call_number="a", location="l", status="s",
                           material_type="t"),
    # CNMARC: a library, b barcode (登录号), c shelving location, s call number (索书号); d/e class and book number
    "905": HoldingsMapping(tag="905", library="a", barcode="b", call_number="s", location="c"),
    # UNIMARC Koha: b home branch, f barcode, k call number, e location, o circulation type, n due date, r type
    "995": HoldingsMapping(tag="995", library="b", barcode="f", call_number="k", location="e", status="o",
                           due_date="n", material_type="r"),
    # UNIMARC 955 holdings statements (BnF style): d location, e call number; no item barcodes
    "955": HoldingsMapping(tag="955", call_number="e", location="d"),
}

DEFAULT_LAYOUT = {MarcFormat.MARC21: "852", MarcFormat.UNIMARC: "995", MarcFormat.CNMARC: "905"}

# Koha flags outside the mapped status subfield: a non-zero value means the item is gone.
_KOHA_FLAGS = {
    "952": (("1", Availability.LOST), ("0", Availability.WITHDRAWN)),
    "995": (("2", Availability.LOST), ("0", Availability.WITHDRAWN)),
}
# Status subfields that hold Koha's numeric "not for loan" code (0: loanable, else not).
_KOHA_NOT_FOR_LOAN = {("952", "7"), ("995", "o")}

_STATUS_WORDS: tuple[tuple[Availability, tuple[str, ...]], ...] = (
    (Availability.AVAILABLE, (
        "available", "in", "on shelf", "checked in", "in library", "可借", "在架", "在馆", "入藏", "流通",
        "可外借", "正常")),
    (Availability.ON_LOAN, (
        "checked out", "on loan", "loaned", "charged", "due", "借出", "已借出", "外借", "已外借", "出借")),
    (Availability.IN_TRANSIT, ("in transit", "transit", "在途", "调拨中", "运送中", "传送中", "转运中")),
    (Availability.ON_HOLD, ("on hold", "hold", "held", "reserved", "on hold shelf", "预约", "已预约", "预约保留", "保留")),
    (Availability.REFERENCE_ONLY, (
        "reference", "not for loan", "library use only", "in-library use", "阅览", "不外借", "仅供阅览", "馆内阅览",
        "参考", "只供阅览", "不可借")),
    (Availability.LOST, ("lost", "丢失", "遗失", "读者遗失")),
    (Availability.MISSING, ("missing", "not found", "缺失", "找不到", "下落不明")),
    (Availability.WITHDRAWN, ("withdrawn", "discarded", "weeded", "注销", "剔除", "剔旧", "报废", "已注销")),
)
_STATUS_LOOKUP = {word: availability for availability, words in _STATUS_WORDS for word in words}
# Longest first, so that `in transit ...` is not taken for `in`.
_STATUS_PREFIXES = sorted(_STATUS_LOOKUP.items(), key=lambda entry: -len(entry[0]))


@dataclass
class HoldingsResult:
    items: list[Item] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The barcode policy is `quarantine` and an item broke it: the whole record must go to
    # the quarantine file (with `quarantine_reason`), not into the catalogue.
    quarantine: bool = False
    quarantine_reason: str = ""


def holdings_mapping(library: LibraryPolicy, marc_format: MarcFormat) -> HoldingsMapping:
    """The layout of this library's items: its own (or the network's) mapping, else the format's standard."""
    if library.holdings is not None:
        return library.holdings
    return STANDARD_LAYOUTS[DEFAULT_LAYOUT[MarcFormat(marc_format)]]


def status_availability(status: str) -> Availability | None:
    """A source system's status text as an Availability; None if the text is not recognised."""
    key = re.sub(r"\s+", " ", status.strip().casefold())
    if not key:
        return Availability.AVAILABLE
    if key in _STATUS_LOOKUP:
        return _STATUS_LOOKUP[key]
    if re.fullmatch(r"-?\d+", key) and int(key) == 0:
        return Availability.AVAILABLE
    for word, availability in _STATUS_PREFIXES:  # `已借出 2024-05-01`, `Checked out (due 5/1)`
        if key.startswith(word):
            rest = key[len(word):]
            if not rest[:1].isalpha() or not word.isascii():  # whole words only: `in` is not `inventory`
                return availability
    return None


def _first(field_: Field, code: str | None) -> str:
    if not code:
        return ""
    for value in field_.get_subfields(code):
        if value.strip():
            return value.strip()
    return ""


def extract_items(
    record: Record,
    marc_format: MarcFormat,
    library: LibraryPolicy,
    policy: IngestPolicy,
    *,
    default_library: str | None = None,
) -> HoldingsResult:
    """The items of one record from `library`'s export (see the module docstring).

    `default_library` is the network code of items whose field names no library (by default
    the contributing library's).
    """
    mapping = holdings_mapping(library, marc_format)
    fallback_code = default_library or library.code
    source_record = control_number(record) or ""
    result = HoldingsResult()
    seen_barcodes: set[str] = set()
    holdings_fields = record.get_fields(mapping.tag)
    if not holdings_fields:
        others = sorted({f.tag for f in record.fields if f.tag in STANDARD_LAYOUTS and not f.is_control_field()})
        if others:
            result.problems.append(
                f"the record has holdings in {', '.join(others)} but {library.code}'s layout reads {mapping.tag}: "
                "no items taken (check the library's holdings mapping)")
    for number, holding in enumerate(holdings_fields, start=1):
        if holding.is_control_field():
            continue
        where = f"{mapping.tag} #{number}"
        source_code = _first(holding, mapping.library) or fallback_code
        owner = policy.library_for_source_code(source_code)
        if owner is None:
            result.problems.append(f"{where}: library code {source_code!r} is not a library of the network; item left out")
            continue
        barcode = _first(holding, mapping.barcode)
        if not barcode:
            subfield = f"${mapping.barcode}" if mapping.barcode else "(the layout has no barcode subfield)"
            result.problems.append(f"{where}: no barcode {subfield}; item left out")
            continue
        if barcode in seen_barcodes:
            result.problems.append(f"{where}: barcode {barcode} repeats an earlier item of this record; left out")
            continue
        seen_barcodes.add(barcode)
        if owner.barcode_ranges and not owner.owns_barcode(barcode):
            message = _range_message(barcode, owner, policy)
            if policy.barcode_policy is BarcodePolicy.REJECT:
                result.problems.append(f"{where}: rejected: {message}")
                continue
            if policy.barcode_policy is BarcodePolicy.QUARANTINE:
                result.problems.append(f"{where}: {message}")
                if not result.quarantine:
                    result.quarantine = True
                    result.quarantine_reason = f"barcode policy 'quarantine': {where}: {message}"
            else:
                result.problems.append(f"{where}: warning: {message}")
        result.items.append(_item(holding, mapping, barcode, owner, source_code, source_record, policy, where, result))
    return result


def _range_message(barcode: str, owner: LibraryPolicy, policy: IngestPolicy) -> str:
    ranges = ", ".join(f"{r.start}-{r.end}" for r in owner.barcode_ranges)
    message = f"barcode {barcode} is outside {owner.code}'s ranges ({ranges})"
    other = next((lib.code for lib in policy.libraries.values() if lib.code != owner.code and lib.owns_barcode(barcode)), None)
    if other is not None:
        message += f"; it is in {other}'s range"
    return message


def _item(
    holding: Field,
    mapping: HoldingsMapping,
    barcode: str,
    owner: LibraryPolicy,
    source_code: str,
    source_record: str,
    policy: IngestPolicy,
    where: str,
    result: HoldingsResult,
) -> Item:
    call_number = _first(holding, mapping.call_number)
    if not call_number and mapping.tag == "905":
        # CNMARC 905 may give the call number only as class ($d) and book number ($e).
        parts = [p for p in (_first(holding, "d"), _first(holding, "e")) if p]
        call_number = "/".join(parts)
    location = _first(holding, mapping.location)
    status = _first(holding, mapping.status)
    due_date = _first(holding, mapping.due_date)
    availability = _availability(holding, mapping, status, due_date, location, policy, where, result)
    return Item(
        barcode=barcode,
        library=owner.code,
        tier=owner.tier,
        call_number=call_number,
        location=location,
        status=status,
        availability=availability,
        due_date=due_date,
        material_type=_first(holding, mapping.material_type),
        source_library=source_code,
        source_record=source_record,
    )


def _availability(
    holding: Field,
    mapping: HoldingsMapping,
    status: str,
    due_date: str,
    location: str,
    policy: IngestPolicy,
    where: str,
    result: HoldingsResult,
) -> Availability:
    for code, gone in _KOHA_FLAGS.get(mapping.tag, ()):
        flag = _first(holding, code)
        if flag and flag != "0":
            return gone
    if (mapping.tag, mapping.status) in _KOHA_NOT_FOR_LOAN and re.fullmatch(r"-?\d+", status):
        availability = Availability.AVAILABLE if int(status) == 0 else Availability.REFERENCE_ONLY
    else:
        recognised = status_availability(status)
        if recognised is None:
            result.problems.append(f"{where}: status {status!r} is not recognised; availability unknown")
            return Availability.UNKNOWN
        availability = recognised
    if due_date and availability is Availability.AVAILABLE:
        availability = Availability.ON_LOAN  # a due date means the copy is out, whatever the status code says
    if availability is Availability.AVAILABLE and location and location in policy.reference_only_locations:
        availability = Availability.REFERENCE_ONLY
    return availability
