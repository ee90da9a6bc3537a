"""The union record: one work, the bibliographic records every library contributed for it,
and all their items, each with its provenance.

Stores persist `UnionRecord`s whole (as `to_dict()` JSON) and index the `IndexDocument`
derived from them; live item status is kept on the `Item`s and can change without the
bibliographic part being touched.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Mapping


class MarcFormat(str, enum.Enum):
    MARC21 = "marc21"
    UNIMARC = "unimarc"
    CNMARC = "cnmarc"  # UNIMARC as the National Library of China profiles it (905 holdings, 690 CLC, ...)


class Availability(str, enum.Enum):
    """An item's status as readers see it; the circulation rules derive lending from it."""

    AVAILABLE = "available"
    ON_LOAN = "on_loan"
    IN_TRANSIT = "in_transit"
    ON_HOLD = "on_hold"
    REFERENCE_ONLY = "reference_only"  # on the shelf, may not leave the library
    LOST = "lost"
    MISSING = "missing"
    WITHDRAWN = "withdrawn"
    UNKNOWN = "unknown"


@dataclass
class Item:
    """One physical copy."""

    barcode: str
    library: str                 # network library code (after mapping the source's code)
    tier: str = ""               # the library's tier, filled in from the rule set
    call_number: str = ""
    location: str = ""           # shelving location / collection code
    status: str = ""             # the source system's status text or code, as given
    availability: Availability = Availability.UNKNOWN
    due_date: str = ""           # ISO date when on loan
    material_type: str = ""
    source_library: str = ""     # the library code as the export wrote it
    source_record: str = ""      # id of the contributing bibliographic record
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies every value and was a tenth of load time.
        return {
            "barcode": self.barcode,
            "library": self.library,
            "tier": self.tier,
            "call_number": self.call_number,
            "location": self.location,
            "status": self.status,
            "availability": self.availability.value,
            "due_date": self.due_date,
            "material_type": self.material_type,
            "source_library": self.source_library,
            "source_record": self.source_record,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Item":
        values = dict(data)
        values["availability"] = Availability(values.get("availability", "unknown"))
        return cls(**values)


@dataclass
class Contribution:
    """One library's bibliographic record for the work, with the items it sent."""

    library: str
    source_id: str               # the record's id in the library's system (001 / control number)
    format: MarcFormat
    marc: dict[str, Any]         # the record in MARC-in-JSON (pymarc's as_dict() shape)
    batch: str = ""              # ingest batch id
    fingerprint: str = ""        # hash of the normalized input, to detect unchanged re-ingests
    items: list[Item] = field(default_factory=list)

    def to_dict(self, *, marc_as_json: bool = False) -> dict[str, Any]:
        """`marc_as_json`: the MARC as JSON text under `marc_json` (what stores keep: read back,
        it stays text until somebody looks at it)."""
        data: dict[str, Any] = {
            "library": self.library,
            "source_id": self.source_id,
            "format": self.format.value,
            "batch": self.batch,
            "fingerprint": self.fingerprint,
            "items": [item.to_dict() for item in self.items],
        }
        if marc_as_json:
            data["marc_json"] = self.marc_json()
            data["completeness"] = self.completeness()
        else:
            data["marc"] = self.marc
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Contribution":
        contribution = cls(
            library=data["library"],
            source_id=data["source_id"],
            format=MarcFormat(data["format"]),
            marc=data.get("marc") or {},
            batch=data.get("batch", ""),
            fingerprint=data.get("fingerprint", ""),
            items=[Item.from_dict(i) for i in data.get("items", [])],
        )
        if "marc_json" in data:
            text = data["marc_json"]
            contribution.__dict__.update(_marc=None, _marc_json=text)
            if isinstance(data.get("completeness"), int):
                contribution.__dict__["_completeness"] = (text, data["completeness"])
        return contribution

    def compact(self) -> None:
        """Keep the MARC as JSON text only, until it is looked at again: a contribution waiting
        to be written holds one string instead of a tree of small dicts (ingest at 20k records
        held in memory: about 11 KB a contribution instead of 17-25 KB)."""
        if "_marc_json" not in self.__dict__:
            count = marc_completeness(self.marc)
            text = self.marc_json()
            self.__dict__.update(_marc_json=text, _marc=None, _completeness=(text, count))

    def completeness(self) -> int:
        """Fields plus subfields of its MARC, the master rule's measure of richness. MARC kept
        as text is not decoded for it: the count goes with the text (and with the stored record),
        so that choosing a master as contributions arrive decodes nobody's MARC."""
        state = self.__dict__
        text = state.get("_marc_json")
        if text is None:
            return marc_completeness(self.marc)
        known = state.get("_completeness")
        if known is None or known[0] is not text:
            known = state["_completeness"] = (text, marc_completeness(json.loads(text)))
        return known[1]

    def marc_json(self) -> str:
        """The MARC as compact JSON text, without decoding it if it is still text."""
        text = self.__dict__.get("_marc_json")
        if text is None:
            text = json.dumps(self.marc, ensure_ascii=False, separators=(",", ":"))
        return text


def marc_completeness(marc: Mapping[str, Any]) -> int:
    """Fields plus subfields of a MARC-in-JSON record."""
    total = 0
    for entry in marc.get("fields", ()):
        for value in entry.values():
            total += 1
            if isinstance(value, dict):
                total += len(value.get("subfields", ()))
    return total


# `Contribution.marc` decodes on first use: a record read for display needs the MARC of its
# master only, and decoding every library's MARC was most of the cost of reading a record
# (a work held by four libraries carries four). Once decoded, the dict is the truth (callers
# may change it), so the text is dropped.
def _marc(contribution: Contribution) -> dict[str, Any]:
    state = contribution.__dict__
    marc = state.get("_marc")
    if marc is None:
        marc = state["_marc"] = json.loads(state.pop("_marc_json", None) or "{}")
    return marc


def _set_marc(contribution: Contribution, marc: dict[str, Any]) -> None:
    contribution.__dict__["_marc"] = marc
    contribution.__dict__.pop("_marc_json", None)


Contribution.marc = property(_marc, _set_marc)  # type: ignore[assignment]


@dataclass
class UnionRecord:
    """A work in the union catalogue.

    `id` is stable across re-ingests (derived from the primary match key). `master` names the
    contribution whose bibliographic record is shown (`library`, `source_id`). `fields` holds
    the extracted index values (canonical index name -> values) of the master record plus the
    identifiers of all contributions; `match_keys` are the dedup keys (`isbn:978...`,
    `issn:...`, `work:...`).
    """

    id: str
    contributions: list[Contribution]
    master: tuple[str, str]
    fields: dict[str, list[str]] = field(default_factory=dict)
    match_keys: list[str] = field(default_factory=list)
    # Set by a store on the records it reads: equal revisions of one id mean equal content.
    # Not stored, not compared, and not carried by `dataclasses.replace` (a changed copy is a
    # new revision); "" means unknown, and nothing is cached for it.
    revision: str = field(default="", init=False, compare=False, repr=False)

    @property
    def items(self) -> list[Item]:
        return [item for c in self.contributions for item in c.items]

    @property
    def master_contribution(self) -> Contribution:
        for contribution in self.contributions:
            if (contribution.library, contribution.source_id) == self.master:
                return contribution
        raise LookupError(f"union record {self.id}: master {self.master} is not among its contributions")

    def apply_status(self, update: ItemStatusUpdate) -> bool:
        """Put a live status change on the record's item(s) with the update's barcode; whether
        any item had it."""
        applied = False
        for item in self.items:
            if item.barcode == update.barcode:
                item.availability = update.availability
                item.status = update.status
                item.due_date = update.due_date
                if update.location is not None:
                    item.location = update.location
                applied = True
        return applied

    @property
    def libraries(self) -> list[str]:
        return sorted({item.library for item in self.items} | {c.library for c in self.contributions})

    def to_dict(self, *, marc_as_json: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "master": list(self.master),
            "fields": self.fields,
            "match_keys": self.match_keys,
            "contributions": [c.to_dict(marc_as_json=marc_as_json) for c in self.contributions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UnionRecord":
        return cls(
            id=data["id"],
            master=(data["master"][0], data["master"][1]),
            fields={k: list(v) for k, v in data.get("fields", {}).items()},
            match_keys=list(data.get("match_keys", [])),
            contributions=[Contribution.from_dict(c) for c in data["contributions"]],
        )


@dataclass(frozen=True)
class ItemStatusUpdate:
    """A live status change for one item, found by barcode (barcodes are unique in a network)."""

    barcode: str
    availability: Availability
    status: str = ""
    due_date: str = ""
    location: str | None = None  # None: unchanged


@dataclass(frozen=True)
class ItemUpdateOutcome:
    barcode: str
    applied: bool
    record_id: str | None = None
    reason: str = ""
