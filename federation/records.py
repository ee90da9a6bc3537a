"""Union records as the protocols present them.

`presentation_marc` turns a `UnionRecord` into MARC-in-JSON ready for the serializers in
`protocols.records`: the master contribution's bibliographic record, identified by the union
record id, with one holdings field per item showing its current availability:

  001  the union record id (stable across re-ingests); 003 the network id
  035  `$a (LIBRARY)SOURCE-ID` for every contributed record
  MARC21 852 (one per item, the MARC21 holdings layout):
       $a network hub code  $b library code  $c shelving location  $h call number
       $p barcode  $x tier  $z availability (available, on_loan, ...)  $z `due YYYY-MM-DD`
  CNMARC / UNIMARC 905 (the layout of the hub systems, dp2 and NLC):
       $a library code  $b barcode  $c location  $s call number  $x tier
       $z availability  $y due date

Holdings fields the contributions carried (852, 905, 952, 995) are replaced by these, so a
record never shows stale availability. Items are rendered as given: a per-library or per-tier
database hands in records that already hold only that scope's items.

Also here: Dublin Core elements, ISO 20775 holdings data, and the JSON form of a union record.
"""
from __future__ import annotations

from typing import Any, Iterable

from indexer.model import Availability, Item, MarcFormat, UnionRecord
from protocols.records import HoldingsCopy, HoldingsLocation
from protocols.records.iso20775 import (
    FOR_LOAN,
    FOR_USE_IN_LIBRARY,
    STATUS_AVAILABLE,
    STATUS_NOT_AVAILABLE,
    STATUS_POSSIBLY_AVAILABLE,
    STATUS_UNKNOWN,
)

SOURCE_HOLDINGS_TAGS = frozenset({"852", "905", "952", "995"})


class Directory:
    """What the presentation needs to know of the network: names and tiers of library codes."""

    def __init__(self, network_id: str = "", hub: str = "", names: dict[str, str] | None = None,
                 tiers: dict[str, str] | None = None):
        self.network_id = network_id
        self.hub = hub
        self.names = names or {}
        self.tiers = tiers or {}

    @classmethod
    def from_network(cls, network: Any) -> "Directory":
        """From a `federation.rules.Network`."""
        return cls(
            network_id=network.id,
            hub=network.hub,
            names={code: str(lib.names.zh or lib.names.en) for code, lib in network.libraries.items()},
            tiers={code: lib.tier for code, lib in network.libraries.items()},
        )

    def name(self, code: str) -> str:
        return self.names.get(code, code)


def is_unimarc(record: UnionRecord) -> bool:
    return record.master_contribution.format in (MarcFormat.UNIMARC, MarcFormat.CNMARC)


def presentation_marc(record: UnionRecord, directory: Directory) -> dict[str, Any]:
    master = record.master_contribution
    unimarc = is_unimarc(record)
    # The result shares the master's field objects (serializers only read them): a deep copy
    # was a third of the rendering time of an SRU answer.
    marc = master.marc
    body: list[dict[str, Any]] = []
    for entry in marc.get("fields", []):
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        tag = next(iter(entry))
        if tag in ("001", "003") or tag in SOURCE_HOLDINGS_TAGS:
            continue
        if tag == "035" and _is_contribution_035(entry[tag], record):
            continue
        body.append(entry)
    head: list[dict[str, Any]] = [{"001": record.id}]
    if directory.network_id:
        head.append({"003": directory.network_id})
    identifiers = [
        {"035": {"ind1": " ", "ind2": " ", "subfields": [{"a": f"({c.library}){c.source_id}"}]}}
        for c in record.contributions if c.source_id
    ]
    holdings = [_holdings_field(item, directory, unimarc) for item in record.items]
    fields = head + _merge_in_order(body, identifiers) + holdings
    return {"leader": marc.get("leader", ""), "fields": fields}


def _is_contribution_035(body: Any, record: UnionRecord) -> bool:
    if not isinstance(body, dict):
        return False
    values = [v for sub in body.get("subfields", []) for v in sub.values()]
    wanted = {f"({c.library}){c.source_id}" for c in record.contributions}
    return bool(values) and all(v in wanted for v in values)


def _merge_in_order(fields: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert `extra` fields keeping tag order (before the first field with a higher tag)."""
    result = list(fields)
    for entry in extra:
        tag = next(iter(entry))
        position = next((n for n, f in enumerate(result) if next(iter(f)) > tag), len(result))
        result.insert(position, entry)
    return result


def _holdings_field(item: Item, directory: Directory, unimarc: bool) -> dict[str, Any]:
    tier = item.tier or directory.tiers.get(item.library, "")
    if unimarc:
        subfields = [{"a": item.library}, {"b": item.barcode}]
        if item.location:
            subfields.append({"c": item.location})
        if item.call_number:
            subfields.append({"s": item.call_number})
        if tier:
            subfields.append({"x": tier})
        subfields.append({"z": item.availability.value})
        if item.due_date:
            subfields.append({"y": item.due_date})
        return {"905": {"ind1": " ", "ind2": " ", "subfields": subfields}}
    subfields = [{"a": directory.hub or item.library}, {"b": item.library}]
    if item.location:
        subfields.append({"c": item.location})
    if item.call_number:
        subfields.append({"h": item.call_number})
    subfields.append({"p": item.barcode})
    if tier:
        subfields.append({"x": tier})
    subfields.append({"z": item.availability.value})
    if item.due_date:
        subfields.append({"z": f"due {item.due_date}"})
    return {"852": {"ind1": " ", "ind2": " ", "subfields": subfields}}


# -- Dublin Core ------------------------------------------------------------------------------

_DC_FROM_INDEX = (
    ("title", "title"),
    ("creator", "creator"),
    ("subject", "subject"),
    ("notes", "description"),
    ("publisher", "publisher"),
    ("date", "date"),
    ("material_type", "type"),
    ("isbn", "identifier"),
    ("issn", "identifier"),
    ("language", "language"),
    ("classification", "coverage"),
)


def dublin_core(record: UnionRecord) -> list[tuple[str, str]]:
    """(element, value) pairs from the extracted index values; the union id is an identifier."""
    values: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for index, element in _DC_FROM_INDEX:
        for value in record.fields.get(index, []):
            text = f"urn:isbn:{value}" if index == "isbn" else f"urn:issn:{value}" if index == "issn" else value
            if (element, text) not in seen:
                seen.add((element, text))
                values.append((element, text))
    values.append(("identifier", f"union:{record.id}"))
    return values


# -- ISO 20775 ----------------------------------------------------------------------------------

_STATUS = {
    Availability.AVAILABLE: STATUS_AVAILABLE,
    Availability.REFERENCE_ONLY: STATUS_AVAILABLE,
    Availability.IN_TRANSIT: STATUS_POSSIBLY_AVAILABLE,
    Availability.ON_HOLD: STATUS_POSSIBLY_AVAILABLE,
    Availability.ON_LOAN: STATUS_NOT_AVAILABLE,
    Availability.LOST: STATUS_NOT_AVAILABLE,
    Availability.MISSING: STATUS_NOT_AVAILABLE,
    Availability.WITHDRAWN: STATUS_NOT_AVAILABLE,
    Availability.UNKNOWN: STATUS_UNKNOWN,
}


def holdings_locations(items: Iterable[Item], directory: Directory) -> list[HoldingsLocation]:
    by_library: dict[str, list[HoldingsCopy]] = {}
    for item in items:
        by_library.setdefault(item.library, []).append(HoldingsCopy(
            barcode=item.barcode,
            call_number=item.call_number,
            sublocation=item.location,
            availability_status=_STATUS[item.availability],
            available_for=FOR_USE_IN_LIBRARY if item.availability is Availability.REFERENCE_ONLY else FOR_LOAN,
            date_available=item.due_date,
            note=item.availability.value,
        ))
    return [HoldingsLocation(code, directory.name(code), tuple(copies)) for code, copies in by_library.items()]


# -- JSON ---------------------------------------------------------------------------------------

def record_json(record: UnionRecord, directory: Directory) -> dict[str, Any]:
    """The union record for JSON clients: id, index values, holdings grouped by library, and the
    presentation MARC."""
    groups: dict[str, dict[str, Any]] = {}
    for item in record.items:
        group = groups.setdefault(item.library, {
            "library": item.library,
            "name": directory.name(item.library),
            "tier": item.tier or directory.tiers.get(item.library, ""),
            "items": [],
        })
        group["items"].append({
            "barcode": item.barcode,
            "call_number": item.call_number,
            "location": item.location,
            "availability": item.availability.value,
            "due_date": item.due_date,
        })
    return {
        "id": record.id,
        "format": record.master_contribution.format.value,
        "master": {"library": record.master[0], "source_id": record.master[1]},
        "fields": record.fields,
        "contributions": [{"library": c.library, "source_id": c.source_id} for c in record.contributions],
        "holdings": list(groups.values()),
        "marc": presentation_marc(record, directory),
    }
