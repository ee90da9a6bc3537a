"""ISO 20775 holdings XML (`http://www.loc.gov/standards/iso20775/`), the structure Alma and
dp2 deliver over SRU: one `<holding>` per holding library, a `<copiesSummary>` and one
`<copyInformation>` per copy.

Coded values follow the sample responses of those servers: `availabilityStatus` 1 available,
2 not available, 3 possibly available (in transit / on hold), 0 unknown; `availableFor`
1 loan, 3 use in the library. The network's own status word (`available`, `on_loan`, ...)
goes in `availabilityInformation/policy`, the due date in `status/dateTimeAvailable`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from protocols.records.marcxml import xml_text

ISO20775_NAMESPACE = "http://www.loc.gov/standards/iso20775/"

STATUS_UNKNOWN = 0
STATUS_AVAILABLE = 1
STATUS_NOT_AVAILABLE = 2
STATUS_POSSIBLY_AVAILABLE = 3

FOR_LOAN = 1
FOR_USE_IN_LIBRARY = 3


@dataclass(frozen=True)
class HoldingsCopy:
    barcode: str
    call_number: str = ""
    sublocation: str = ""
    availability_status: int = STATUS_UNKNOWN
    available_for: int = FOR_LOAN
    date_available: str = ""     # ISO date when the copy is due back
    note: str = ""               # the network's status word, e.g. "on_loan"


@dataclass(frozen=True)
class HoldingsLocation:
    institution: str             # network library code
    name: str = ""               # the library's display name
    copies: tuple[HoldingsCopy, ...] = field(default_factory=tuple)


def iso20775_element(locations: list[HoldingsLocation]) -> etree._Element:
    ns = ISO20775_NAMESPACE

    def sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{ns}}}{name}")
        if text is not None:
            element.text = xml_text(text)
        return element

    root = etree.Element(f"{{{ns}}}holdings", nsmap={None: ns})
    for location in locations:
        holding = sub(root, "holding")
        identifier = sub(holding, "institutionIdentifier")
        sub(identifier, "value", location.institution)
        sub(sub(identifier, "typeOrSource"), "text", "network library code")
        if location.name:
            sub(holding, "physicalLocation", location.name)
        simple = sub(holding, "holdingSimple")
        summary = sub(simple, "copiesSummary")
        sub(summary, "copiesCount", str(len(location.copies)))
        for available_for in sorted({c.available_for for c in location.copies}):
            status = sub(summary, "status")
            count = sum(
                1 for c in location.copies
                if c.available_for == available_for and c.availability_status == STATUS_AVAILABLE
            )
            sub(status, "availableCount", str(count))
            sub(status, "availableFor", str(available_for))
        for copy in location.copies:
            info = sub(simple, "copyInformation")
            piece = sub(info, "pieceIdentifier")
            sub(piece, "value", copy.barcode)
            sub(sub(piece, "typeOrSource"), "text", "barcode")
            if copy.sublocation:
                sub(info, "sublocation", copy.sublocation)
            if copy.call_number:
                sub(info, "shelfLocator", copy.call_number)
            availability = sub(info, "availabilityInformation")
            status = sub(availability, "status")
            sub(status, "availabilityStatus", str(copy.availability_status))
            sub(status, "availableFor", str(copy.available_for))
            if copy.date_available:
                sub(status, "dateTimeAvailable", copy.date_available)
            if copy.note:
                sub(availability, "policy", copy.note)
    return root
