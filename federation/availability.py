"""Availability for a reader under the network's circulation rules.

Pure logic over a `UnionRecord` (with its live item statuses) and a `federation.rules.Network`:
no store, no protocol. `identify_reader` resolves who is asking (a reader's card number, a
library code, or both: the card says who the reader is, the library where they want the book);
`assess` gives one verdict per copy, each citing the rule that decided it as a key path into the
rule set (`rules.circulation.lending_tiers`, `rules.circulation.transfers[2]`, ...), plus where
the book may be returned.

The verdicts, in the order they are decided for each copy:
  not_available        the copy's live status is not on the shelf (on loan with its due date, in
                       transit, on hold, lost, missing, withdrawn, unknown)         `item.status`
  in_library_use_only  a reference-only copy: its shelving location is listed in
                       `rules.circulation.reference_only_locations`, or its library's system
                       marks it not for loan (status `reference_only`)
  on_shelf_here        on the shelf at the reader's library
  requestable          on the shelf at another library that lends across the network: it is sent
                       to the reader's library in the configured transfer days
  visit_to_borrow      on the shelf at a library whose tier lends only on its own premises
                       (`rules.circulation.lending_tiers`), or when the network does not send copies
                       between libraries (`borrow_anywhere: false`), or for a reader of a
                       joint-network member who named no library of this network
  not_lendable_to_reader  the reader's card is not honoured where the copy is
                       (`one_card: false`, or a library outside the reader's joint network)

A library's token scope for live status updates (`token_scope`) is also decided here: the
library itself and the libraries under it (a culture station's service points, and for the hub
the whole network).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from federation.rules import JointNetwork, Library, Network
from indexer.model import Availability, Item, UnionRecord
from indexer.policy import NumberRange

_NOT_ON_SHELF = {
    Availability.ON_LOAN: "on loan",
    Availability.IN_TRANSIT: "in transit between libraries",
    Availability.ON_HOLD: "on hold for another reader",
    Availability.LOST: "lost",
    Availability.MISSING: "missing from the shelf",
    Availability.WITHDRAWN: "withdrawn",
    Availability.UNKNOWN: "of unknown status (ask the library)",
}


class Verdict(str, enum.Enum):
    NOT_AVAILABLE = "not_available"
    IN_LIBRARY_USE_ONLY = "in_library_use_only"
    ON_SHELF_HERE = "on_shelf_here"
    REQUESTABLE = "requestable"
    VISIT_TO_BORROW = "visit_to_borrow"
    NOT_LENDABLE_TO_READER = "not_lendable_to_reader"


class ReaderError(LookupError):
    """The reader cannot be identified or is not served where they asked.

    `code`: `unknown_card`, `unknown_library` or `card_not_valid`; `rule`: the rule-set key path
    that decided (empty when none did)."""

    def __init__(self, code: str, message: str, rule: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.rule = rule

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message, "rule": self.rule}


# ---------------------------------------------------------------------------------------------
# Numbers: which library a card or barcode belongs to, or why none


@dataclass(frozen=True)
class NumberOwner:
    """Who a card or barcode number belongs to: a library of the network or an outside member
    of a joint network (`joint_network` set)."""

    number: str
    kind: str                            # card | barcode
    code: str | None
    name: str = ""
    tier: str = ""
    range: str = ""                      # the matching range, START-END
    joint_network: str | None = None
    reason: str = ""                     # why no owner was found (empty when found)

    @property
    def found(self) -> bool:
        return self.code is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"number": self.number, "kind": self.kind, "found": self.found}
        if self.found:
            data.update(library=self.code, name=self.name, tier=self.tier, range=self.range,
                        joint_network=self.joint_network)
        else:
            data["reason"] = self.reason
        return data


def range_text(number_range: NumberRange) -> str:
    return f"{number_range.start}-{number_range.end}"


def _shape_text(prefix: str, width: int) -> str:
    return f"{width} digits" if not prefix else f"prefix {prefix!r} and {width} digits"


def explain_no_match(number: str, ranges: Sequence[tuple[str, NumberRange]], kind: str) -> str:
    """Why `number` falls in none of `ranges` ((owner code, range) pairs)."""
    text = number.strip()
    if not text:
        return f"the {kind} number is empty"
    if not ranges:
        return f"no library of this network has {kind} ranges configured"
    shape = NumberRange.split(text)
    shapes: dict[tuple[str, int], list[tuple[str, NumberRange]]] = {}
    for owner, number_range in ranges:
        low = NumberRange.split(number_range.start)
        if low is not None:
            shapes.setdefault((low[0], low[2]), []).append((owner, number_range))
    expected = "; ".join(_shape_text(prefix, width) for prefix, width in shapes)
    if shape is None:
        return f"{text!r} does not end in digits; {kind} numbers here have {expected}"
    prefix, value, width = shape
    same_shape = shapes.get((prefix, width))
    if same_shape is None:
        return f"{text!r} has {_shape_text(prefix, width)}; {kind} numbers here have {expected}"

    def distance(entry: tuple[str, NumberRange]) -> int:
        low, high = NumberRange.split(entry[1].start), NumberRange.split(entry[1].end)
        assert low is not None and high is not None
        return max(low[1] - value, value - high[1], 0)

    owner, nearest = min(same_shape, key=distance)
    return (f"{text!r} lies in no library's {kind} range; the nearest is {owner}'s "
            f"{range_text(nearest)}")


# Longer than any card or barcode printed on a label; refused before its digits are read as a
# number (Python will not convert more than 4300 digits, and no range is that wide).
MAX_NUMBER_LENGTH = 64


def _too_long(text: str, kind: str) -> NumberOwner | None:
    if len(text) <= MAX_NUMBER_LENGTH:
        return None
    return NumberOwner(text, kind, None, reason=f"a {kind} number of {len(text)} characters is longer "
                                                f"than any {kind} number ({MAX_NUMBER_LENGTH} at most)")


def lookup_card(network: Network, number: str) -> NumberOwner:
    text = number.strip()
    if (refused := _too_long(text, "card")) is not None:
        return refused
    for library in network.libraries.values():
        for number_range in library.card_ranges:
            if number_range.contains(text):
                return NumberOwner(text, "card", library.code, str(library.names), library.tier,
                                   range_text(number_range))
    for joint in network.joint_networks:
        for member in joint.other_members:
            for number_range in member.card_ranges:
                if number_range.contains(text):
                    reason = "" if joint.shared_cards else "its joint network does not share cards"
                    return NumberOwner(text, "card", member.code, str(member.names), "",
                                       range_text(number_range), joint_network=joint.id, reason=reason)
    ranges = [(library.code, r) for library in network.libraries.values() for r in library.card_ranges]
    ranges += [(member.code, r) for joint in network.joint_networks for member in joint.other_members
               for r in member.card_ranges]
    return NumberOwner(text, "card", None, reason=explain_no_match(text, ranges, "card"))


def lookup_barcode(network: Network, barcode: str) -> NumberOwner:
    text = barcode.strip()
    if (refused := _too_long(text, "barcode")) is not None:
        return refused
    for library in network.libraries.values():
        for number_range in library.barcode_ranges:
            if number_range.contains(text):
                return NumberOwner(text, "barcode", library.code, str(library.names), library.tier,
                                   range_text(number_range))
    ranges = [(library.code, r) for library in network.libraries.values() for r in library.barcode_ranges]
    return NumberOwner(text, "barcode", None, reason=explain_no_match(text, ranges, "barcode"))


# ---------------------------------------------------------------------------------------------
# Readers


@dataclass(frozen=True)
class Reader:
    """Who asks and where they want the book.

    `issuer`: the library (or outside joint-network member) that issued the card; None when the
    question names only a library. `pickup`: the network library where the reader borrows or
    collects (the `library` asked for, else the card's library; None for a joint-network
    reader who named no library)."""

    card: str | None
    issuer: str | None
    issuer_name: str
    pickup: str | None
    joint_network: str | None = None
    rule: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"card": self.card, "issuer": self.issuer, "issuer_name": self.issuer_name,
                "pickup": self.pickup, "joint_network": self.joint_network,
                "rule": self.rule, "reason": self.reason}


def joint_participants(network: Network, joint: JointNetwork) -> set[str]:
    """Libraries of the network that take part in a joint network: its members and the
    libraries under them (which take part through them)."""
    members = set(joint.members)
    return {code for code in network.libraries
            if code in members or any(a in members for a in network.ancestors(code))}


def identify_reader(network: Network, *, card: str | None = None, library: str | None = None) -> Reader:
    """The reader for a card number and/or a library code; ReaderError when neither identifies one."""
    if card is None and library is None:
        raise ReaderError("unknown_card", "give a reader's card number or a library code")
    if library is not None and library not in network.libraries:
        raise ReaderError("unknown_library", f"{library!r} is not a library of {network.id} "
                          f"({', '.join(network.libraries)})", "libraries")
    if card is None:
        assert library is not None
        return Reader(None, None, "", library, reason=f"a reader at {network.libraries[library].names}")
    owner = lookup_card(network, card)
    if not owner.found:
        raise ReaderError("unknown_card", f"card {owner.number!r} was not issued in {network.id}: {owner.reason}",
                          "libraries.card_ranges")
    circulation = network.rules.circulation
    if owner.joint_network is None:
        assert owner.code is not None
        pickup = library or owner.code
        if pickup != owner.code and not circulation.one_card:
            raise ReaderError(
                "card_not_valid",
                f"card {owner.number} was issued by {owner.code} and is honoured only there "
                f"(one_card is false); {pickup} cannot serve it",
                "rules.circulation.one_card",
            )
        rule = "rules.circulation.one_card" if pickup != owner.code else f"libraries.{owner.code}.card_ranges"
        reason = f"card issued by {owner.name} (range {owner.range})"
        if pickup != owner.code:
            reason += f", used at {network.libraries[pickup].names}: one card is valid at every library"
        return Reader(owner.number, owner.code, owner.name, pickup, rule=rule, reason=reason)
    joint = next(j for j in network.joint_networks if j.id == owner.joint_network)
    rule = f"joint_networks.{joint.id}.shared_cards"
    if not joint.shared_cards:
        raise ReaderError("card_not_valid", f"card {owner.number} was issued by {owner.name}, a member of "
                          f"{joint.names}, which does not share cards with {network.id}", rule)
    if library is not None and library not in joint_participants(network, joint):
        raise ReaderError("card_not_valid", f"card {owner.number} of {owner.name} is honoured at the libraries "
                          f"of {joint.names}; {library} does not take part in it", rule)
    reason = f"card issued by {owner.name}, a member of {joint.names}, whose cards are honoured here"
    return Reader(owner.number, owner.code, owner.name, library, joint_network=joint.id, rule=rule, reason=reason)


# ---------------------------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class ItemVerdict:
    barcode: str
    library: str
    library_name: str
    tier: str
    location: str
    call_number: str
    availability: str
    due_date: str
    verdict: Verdict
    rule: str
    reason: str
    transfer_days: int | None = None     # requestable: days until it is at the pickup library
    pickup: str | None = None            # requestable: where it is sent; otherwise where to borrow or read it
    return_to: tuple[str, ...] = ()      # libraries where the copy may be returned once borrowed

    def to_dict(self) -> dict[str, Any]:
        return {
            "barcode": self.barcode, "library": self.library, "library_name": self.library_name,
            "tier": self.tier, "location": self.location, "call_number": self.call_number,
            "availability": self.availability, "due_date": self.due_date, "verdict": self.verdict.value,
            "rule": self.rule, "reason": self.reason, "transfer_days": self.transfer_days,
            "pickup": self.pickup, "return_to": list(self.return_to),
        }


@dataclass(frozen=True)
class ReturnRule:
    anywhere: bool
    libraries: tuple[str, ...]           # every library when anywhere; else empty (see each copy)
    rule: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"anywhere": self.anywhere, "libraries": list(self.libraries), "rule": self.rule,
                "reason": self.reason}


@dataclass(frozen=True)
class AvailabilityAnswer:
    record_id: str
    reader: Reader
    items: tuple[ItemVerdict, ...]
    returns: ReturnRule
    summary: dict[str, int] = field(default_factory=dict)   # verdict -> copies

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record_id, "reader": self.reader.to_dict(),
                "summary": self.summary, "items": [i.to_dict() for i in self.items],
                "returns": self.returns.to_dict()}


def transfer_rule(network: Network, from_code: str, to_code: str) -> tuple[int, str]:
    """Days a copy takes between two libraries and the rule that says so."""
    circulation = network.rules.circulation
    for index, rule in enumerate(circulation.transfers):
        if set(rule.between) == {from_code, to_code}:
            return rule.days, f"rules.circulation.transfers[{index}]"
    return circulation.transfer_days, "rules.circulation.transfer_days"


def return_rule(network: Network) -> ReturnRule:
    if network.rules.circulation.return_anywhere:
        return ReturnRule(True, tuple(network.libraries), "rules.circulation.return_anywhere",
                          "a borrowed copy may be returned at any library of the network")
    return ReturnRule(False, (), "rules.circulation.return_anywhere",
                      "a borrowed copy must be returned to the library that lent it")


def assess(record: UnionRecord, network: Network, reader: Reader) -> AvailabilityAnswer:
    returns = return_rule(network)
    verdicts = tuple(_assess_item(item, network, reader, returns) for item in record.items)
    summary: dict[str, int] = {}
    for verdict in verdicts:
        summary[verdict.verdict.value] = summary.get(verdict.verdict.value, 0) + 1
    return AvailabilityAnswer(record.id, reader, verdicts, returns, summary)


def _assess_item(item: Item, network: Network, reader: Reader, returns: ReturnRule) -> ItemVerdict:
    library: Library | None = network.libraries.get(item.library)
    name = str(library.names) if library else item.library
    tier = item.tier or (library.tier if library else "")
    circulation = network.rules.circulation
    return_to = returns.libraries if returns.anywhere else (item.library,)

    def verdict(kind: Verdict, rule: str, reason: str, *, days: int | None = None,
                pickup: str | None = None) -> ItemVerdict:
        return ItemVerdict(item.barcode, item.library, name, tier, item.location, item.call_number,
                           item.availability.value, item.due_date, kind, rule, reason, days,
                           pickup if pickup is not None else item.library, return_to)

    if item.availability in _NOT_ON_SHELF:
        reason = f"the copy at {name} is {_NOT_ON_SHELF[item.availability]}"
        if item.due_date:
            reason += f", due back {item.due_date}"
        return verdict(Verdict.NOT_AVAILABLE, "item.status", reason)
    if network.is_reference_only_location(item.location):
        return verdict(Verdict.IN_LIBRARY_USE_ONLY, "rules.circulation.reference_only_locations",
                       f"{item.location} at {name} is a reference-only location: read it there")
    if item.availability is Availability.REFERENCE_ONLY:
        return verdict(Verdict.IN_LIBRARY_USE_ONLY, "item.status",
                       f"{name} marks this copy not for loan: read it there")
    if library is None:
        return verdict(Verdict.NOT_LENDABLE_TO_READER, "libraries",
                       f"{item.library} is not a library of {network.id}")
    if reader.pickup == item.library:
        # A card from elsewhere is good here by the rule that identified the reader (one card,
        # or the joint network's shared cards).
        rule = "item.status" if reader.issuer in (None, item.library) else reader.rule
        return verdict(Verdict.ON_SHELF_HERE, rule, f"on the shelf at {name}: borrow it there")
    if reader.pickup is None and reader.joint_network is not None:
        joint = next(j for j in network.joint_networks if j.id == reader.joint_network)
        if item.library not in joint_participants(network, joint):
            return verdict(Verdict.NOT_LENDABLE_TO_READER, f"joint_networks.{joint.id}.members",
                           f"{name} does not take part in {joint.names}, whose card the reader holds")
        return verdict(Verdict.VISIT_TO_BORROW, f"joint_networks.{joint.id}.shared_cards",
                       f"on the shelf at {name}: borrow it there with the {joint.names} card "
                       "(name a library to have it sent there)")
    card_valid_there = reader.issuer is None or reader.joint_network is not None or circulation.one_card \
        or reader.issuer == item.library
    if not circulation.borrow_anywhere or not network.lends_across_network(item.library):
        if circulation.borrow_anywhere:
            rule = "rules.circulation.lending_tiers"
            why = f"{name} is a {tier.replace('_', ' ')}, which lends only on its own premises"
        else:
            rule = "rules.circulation.borrow_anywhere"
            why = "copies are not sent between libraries of this network"
        if not card_valid_there:
            return verdict(Verdict.NOT_LENDABLE_TO_READER, "rules.circulation.one_card",
                           f"{why}, and a card from {reader.issuer} is honoured only there")
        return verdict(Verdict.VISIT_TO_BORROW, rule, f"on the shelf, but {why}: borrow it at {name}")
    assert reader.pickup is not None
    days, rule = transfer_rule(network, item.library, reader.pickup)
    pickup_name = network.libraries[reader.pickup].names
    return verdict(Verdict.REQUESTABLE, rule,
                   f"on the shelf at {name}: request it and it is sent to {pickup_name} in {days} "
                   f"day{'s' if days != 1 else ''}", days=days, pickup=reader.pickup)


# ---------------------------------------------------------------------------------------------
# Live status updates: what a library's token may change


def token_scope(network: Network, library: str) -> frozenset[str]:
    """The libraries whose items a library's token may change: itself and those under it."""
    return frozenset(code for code in network.libraries
                     if code == library or library in network.ancestors(code))


RETURN_STATUSES = frozenset({Availability.AVAILABLE, Availability.IN_TRANSIT})


def is_return(current: Availability, wanted: Availability) -> bool:
    """A copy on loan coming back (checked in on the shelf, or sent home in transit)."""
    return current is Availability.ON_LOAN and wanted in RETURN_STATUSES


def summarize_holdings(items: Iterable[Item], network: Network) -> list[dict[str, Any]]:
    """Copies and copies on the shelf per library, in the rule set's library order."""
    counts: dict[str, dict[str, Any]] = {}
    for item in items:
        library = network.libraries.get(item.library)
        entry = counts.setdefault(item.library, {
            "library": item.library,
            "name": str(library.names) if library else item.library,
            "tier": item.tier or (library.tier if library else ""),
            "copies": 0,
            "available": 0,
        })
        entry["copies"] += 1
        if item.availability is Availability.AVAILABLE and not network.is_reference_only_location(item.location):
            entry["available"] += 1
    order = {code: n for n, code in enumerate(network.libraries)}
    return sorted(counts.values(), key=lambda e: (order.get(e["library"], len(order)), e["library"]))
