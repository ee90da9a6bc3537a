"""What the write path needs to know of a network's rule set.

The application (federation) loads and validates the rule set; the indexer gets
these plain values and never reads YAML itself.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field


class BarcodePolicy(str, enum.Enum):
    """What ingestion does with an item whose barcode is outside its library's ranges."""

    REJECT = "reject"          # the item is dropped and reported; the record goes in without it
    QUARANTINE = "quarantine"  # the whole record goes to the quarantine file
    WARN = "warn"              # the item goes in; a warning is reported


@dataclass(frozen=True, order=True)
class NumberRange:
    """An inclusive range of barcode or reader-card numbers: same prefix, same digit count.

    `start` and `end` are the full numbers as printed on the label, e.g.
    `GR0100000000`..`GR0199999999`: a non-digit prefix followed by digits.
    """

    start: str
    end: str

    _SHAPE = re.compile(r"^(?P<prefix>\D*)(?P<digits>\d{1,40})$")  # longer is no barcode or card

    @classmethod
    def split(cls, number: str) -> tuple[str, int, int] | None:
        """(prefix, numeric value, digit count) of a number, or None if it has no numeric tail
        (or one longer than any real barcode or card number: never hand Python a 5000-digit int)."""
        match = cls._SHAPE.match(number.strip())
        if match is None:
            return None
        digits = match.group("digits")
        return match.group("prefix"), int(digits), len(digits)

    def contains(self, number: str) -> bool:
        parts = self.split(number)
        low, high = self.split(self.start), self.split(self.end)
        if parts is None or low is None or high is None:
            return False
        prefix, value, width = parts
        return prefix == low[0] and width == low[2] and low[1] <= value <= high[1]

    def overlaps(self, other: "NumberRange") -> bool:
        a_low, a_high = self.split(self.start), self.split(self.end)
        b_low, b_high = other.split(other.start), other.split(other.end)
        if None in (a_low, a_high, b_low, b_high):
            return False
        if a_low[0] != b_low[0] or a_low[2] != b_low[2]:  # type: ignore[index]
            return False
        return a_low[1] <= b_high[1] and b_low[1] <= a_high[1]  # type: ignore[index]


@dataclass(frozen=True)
class HoldingsMapping:
    """Where one library's MARC export keeps its items: a field and the subfield of each item attribute.

    A subfield of None means the export does not carry that attribute.
    """

    tag: str
    library: str | None = None
    barcode: str | None = None
    call_number: str | None = None
    location: str | None = None
    status: str | None = None
    material_type: str | None = None
    due_date: str | None = None


@dataclass(frozen=True)
class LibraryPolicy:
    code: str
    tier: str
    barcode_ranges: tuple[NumberRange, ...] = ()
    # Library codes used in other systems' exports (e.g. a 905$a or 952$a value) that mean this library.
    source_codes: tuple[str, ...] = ()
    holdings: HoldingsMapping | None = None

    def owns_barcode(self, barcode: str) -> bool:
        return any(r.contains(barcode) for r in self.barcode_ranges)


@dataclass(frozen=True)
class IngestPolicy:
    """The rule set as ingestion applies it."""

    hub: str
    libraries: dict[str, LibraryPolicy]
    barcode_policy: BarcodePolicy = BarcodePolicy.WARN
    accepted_formats: tuple[str, ...] = ("marc21", "unimarc", "cnmarc")
    required_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)  # format -> MARC tags
    match_points: tuple[str, ...] = ("isbn", "issn", "title_author_year")
    reference_only_locations: tuple[str, ...] = ()

    def library_for_source_code(self, code: str) -> LibraryPolicy | None:
        """The network library a code found in an export stands for (its own code or a mapped source code)."""
        wanted = code.strip()
        if wanted in self.libraries:
            return self.libraries[wanted]
        folded = wanted.casefold()
        for library in self.libraries.values():
            if library.code.casefold() == folded or any(c.casefold() == folded for c in library.source_codes):
                return library
        return None
