"""Live item status updates: from a circulation system (JSON batch or CSV) to the store.

One update is `{barcode, status, due_date, location}`: `status` is one of the availability
values (`available`, `on_loan`, `in_transit`, `on_hold`, `reference_only`, `lost`, `missing`,
`withdrawn`, `unknown`), `due_date` an ISO date (`YYYY-MM-DD`, for `on_loan` and `on_hold`
only), `location` a new shelving location (left as it is when absent).

`parse_batch` / `parse_csv` check the whole input first and raise `StatusInputError` with every
problem (`items[3].due_date: ...`, `file.csv:7: ...`); nothing is applied from input with any.
`apply_updates` then checks each update against the scope of the library sending it (its
token's library: `federation.availability.token_scope`), except returns, which any library
may record when the network returns anywhere. What is checked is the library that owns the
item's barcode: the one whose barcode range holds it (`federation.availability.lookup_barcode`,
as `GET /barcodes/{barcode}` answers), not the library the catalogue shows it at, which
differs when `barcode_policy: warn` let a copy with another library's barcode in. A barcode in
no library's range (also only under `warn`) is decided by the library holding the copy: no
range says otherwise, and refusing would leave such copies to the hub alone. If any update
falls outside the scope, nothing is applied and the report lists the violations. Otherwise every update whose barcode is in the
catalogue is applied in one store call (atomic in the embedded store) and each is reported as
accepted or rejected with its reason. Applying the same batch again changes nothing and gives
the same results (with `changed: false`).

If the store fails, `apply_updates` raises `UpdateInterrupted`, which says of every update
whether it was applied, not applied, or cannot be known: from the store's own account
(`indexer.store.ItemUpdatesFailed`: the Elasticsearch store writes record by record), and for
a write the store sent but got no answer for, from reading the item back when the store
answers that; a store failing otherwise applied nothing (the `Store.update_items` contract).
"""
from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable, Mapping, Sequence

from federation.availability import RETURN_STATUSES, is_return, lookup_barcode, token_scope
from federation.rules import Network
from federation.search import SearchService
from indexer.model import Availability, Item, ItemStatusUpdate
from indexer.store import ItemUpdatesFailed, StoreError

log = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 500
MAX_BARCODE_LENGTH = 64
MAX_LOCATION_LENGTH = 100
FIELDS = ("barcode", "status", "due_date", "location")
REQUIRED_FIELDS = ("barcode", "status")
DUE_DATE_STATUSES = frozenset({Availability.ON_LOAN, Availability.ON_HOLD})
STATUS_VALUES = tuple(a.value for a in Availability)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BARCODE = re.compile(r"^[^\s\x00-\x1f\x7f]+$")


class StatusInputError(ValueError):
    """The input is malformed; `problems` lists every problem, each naming where it is."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _check_entry(entry: Any, where: str, problems: list[str], *, label: str = ".") -> ItemStatusUpdate | None:
    """One update from a mapping of field name to value; problems are prefixed with `where`."""

    def at(name: str) -> str:
        return f"{where}{label}{name}"

    if not isinstance(entry, Mapping):
        problems.append(f"{where}: expected an object with {', '.join(FIELDS)}, got {_kind(entry)}")
        return None
    count = len(problems)
    for name in entry:
        if name not in FIELDS:
            problems.append(f"{at(str(name))}: unknown field (expected {', '.join(FIELDS)})")
    for name in REQUIRED_FIELDS:
        if name not in entry or entry[name] in (None, ""):
            problems.append(f"{at(name)}: required")
    barcode = entry.get("barcode")
    if barcode not in (None, ""):
        if not isinstance(barcode, str):
            problems.append(f"{at('barcode')}: expected a string, got {_kind(barcode)}")
        elif len(barcode) > MAX_BARCODE_LENGTH or not _BARCODE.match(barcode):
            problems.append(f"{at('barcode')}: {barcode[:80]!r} is not a barcode "
                            f"(at most {MAX_BARCODE_LENGTH} characters, no spaces or control characters)")
    availability = None
    status = entry.get("status")
    if status not in (None, ""):
        if not isinstance(status, str) or status not in STATUS_VALUES:
            problems.append(f"{at('status')}: {status!r} is not one of {', '.join(STATUS_VALUES)}")
        else:
            availability = Availability(status)
    due_date = entry.get("due_date")
    if due_date not in (None, ""):
        if not isinstance(due_date, str) or not _ISO_DATE.match(due_date) or not _is_date(due_date):
            problems.append(f"{at('due_date')}: {due_date!r} is not a date YYYY-MM-DD")
        elif availability is not None and availability not in DUE_DATE_STATUSES:
            problems.append(f"{at('due_date')}: a due date belongs to on_loan or on_hold, not {availability.value}")
    location = entry.get("location")
    if location is not None:
        if not isinstance(location, str) or not location.strip():
            problems.append(f"{at('location')}: expected a non-empty string, got {_kind(location)}")
        elif len(location) > MAX_LOCATION_LENGTH:
            problems.append(f"{at('location')}: longer than {MAX_LOCATION_LENGTH} characters")
    if len(problems) > count or availability is None or not isinstance(barcode, str):
        return None
    return ItemStatusUpdate(barcode=barcode, availability=availability, due_date=due_date or "",
                            location=location.strip() if isinstance(location, str) else None)


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return repr(value)


def _no_duplicates(updates: Sequence[tuple[str, ItemStatusUpdate]], problems: list[str]) -> None:
    first: dict[str, str] = {}
    for where, update in updates:
        if update.barcode in first:
            problems.append(f"{where}: barcode {update.barcode} is already updated at {first[update.barcode]}; "
                            "send one update per item")
        else:
            first[update.barcode] = where


def parse_batch(payload: Any) -> list[ItemStatusUpdate]:
    """A JSON batch `{"items": [update, ...]}`; StatusInputError lists every problem."""
    if not isinstance(payload, Mapping):
        raise StatusInputError([f"the body must be a JSON object {{\"items\": [...]}}, got {_kind(payload)}"])
    problems: list[str] = [f"{name}: unknown field (expected items)" for name in payload if name != "items"]
    entries = payload.get("items")
    if not isinstance(entries, list):
        problems.append("items: required, a list of updates" if entries is None
                        else f"items: expected a list of updates, got {_kind(entries)}")
        raise StatusInputError(problems)
    if not entries:
        problems.append("items: the batch is empty")
    if len(entries) > MAX_BATCH_ITEMS:
        problems.append(f"items: a batch holds at most {MAX_BATCH_ITEMS} updates, got {len(entries)}")
        raise StatusInputError(problems)
    checked = []
    for n, entry in enumerate(entries):
        update = _check_entry(entry, f"items[{n}]", problems)
        if update is not None:
            checked.append((f"items[{n}]", update))
    _no_duplicates(checked, problems)
    if problems:
        raise StatusInputError(problems)
    return [update for _, update in checked]


def parse_csv(text: str, source: str) -> list[tuple[int, ItemStatusUpdate]]:
    """A CSV export with a header row naming the columns (barcode and status required;
    due_date and location optional, in any order); (line number, update) per row. Empty cells
    are absent values, blank lines are skipped."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True)
    problems: list[str] = []
    header: list[str] | None = None
    checked: list[tuple[str, ItemStatusUpdate]] = []
    lines: list[int] = []
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as error:
            raise StatusInputError([*problems, f"{source}:{reader.line_num}: not CSV: {error}"]) from None
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            for column in header:
                if column not in FIELDS:
                    problems.append(f"{source}:{line}: unknown column {column!r} (expected {', '.join(FIELDS)})")
            for column in REQUIRED_FIELDS:
                if column not in header:
                    problems.append(f"{source}:{line}: the header has no {column!r} column")
            if problems:
                raise StatusInputError(problems)
            continue
        if len(row) != len(header):
            problems.append(f"{source}:{line}: {len(row)} cells, the header has {len(header)}")
            continue
        entry = {name: cell.strip() for name, cell in zip(header, row) if cell.strip()}
        update = _check_entry(entry, f"{source}:{line}", problems, label=": ")
        if update is not None:
            checked.append((f"{source}:{line}", update))
            lines.append(line)
    if header is None:
        problems.append(f"{source}: empty (expected a header row: {','.join(FIELDS)})")
    _no_duplicates(checked, problems)
    if problems:
        raise StatusInputError(problems)
    return [(line, update) for line, (_, update) in zip(lines, checked)]


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    index: int
    barcode: str
    accepted: bool
    changed: bool = False
    record: str | None = None
    library: str | None = None         # the library the catalogue holds the item at
    owner: str | None = None           # the library whose barcode range holds the barcode
    returned: bool = False             # recorded as a return by another library
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "barcode": self.barcode, "accepted": self.accepted,
                "changed": self.changed, "record": self.record, "library": self.library,
                "owner": self.owner, "returned": self.returned, "reason": self.reason}


@dataclass(frozen=True)
class ScopeViolation:
    index: int
    barcode: str
    library: str                       # the library whose scope it is (see `scope_owner`)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "barcode": self.barcode, "library": self.library, "reason": self.reason}


@dataclass
class StatusReport:
    results: list[ItemResult] = field(default_factory=list)
    violations: list[ScopeViolation] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return sum(1 for r in self.results if r.accepted)

    @property
    def rejected(self) -> int:
        return sum(1 for r in self.results if not r.accepted)

    def to_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "rejected": self.rejected,
                "items": [r.to_dict() for r in self.results]}


class UpdateInterrupted(StoreError):
    """The store failed while a batch was applied. Positions in the batch: `applied` (the item
    has the status sent), `unknown` (the write was sent, the store never answered, and reading
    the item back failed too), `not_applied` (all the others). `cause` is the store's error."""

    def __init__(self, cause: StoreError, updates: Sequence[ItemStatusUpdate], *,
                 applied: Iterable[int] = (), unknown: Iterable[int] = ()):
        self.cause = cause
        self.barcodes = [u.barcode for u in updates]
        self.applied = sorted(set(applied))
        self.unknown = sorted(set(unknown) - set(self.applied))
        settled = set(self.applied) | set(self.unknown)
        self.not_applied = [n for n in range(len(self.barcodes)) if n not in settled]
        super().__init__(f"{cause}; {self.summary()}")

    def summary(self) -> str:
        if not self.applied and not self.unknown:
            return "nothing was applied"
        parts = [f"{len(self.applied)} of {len(self.barcodes)} applied", f"{len(self.not_applied)} not applied"]
        if self.unknown:
            parts.append(f"{len(self.unknown)} unknown (the store did not answer for them)")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, list[str]]:
        """Barcodes: `applied`, `not_applied`, `unknown`; together the whole batch."""
        return {"applied": [self.barcodes[n] for n in self.applied],
                "not_applied": [self.barcodes[n] for n in self.not_applied],
                "unknown": [self.barcodes[n] for n in self.unknown]}


def _unchanged(item: Item, update: ItemStatusUpdate) -> bool:
    return (item.availability is update.availability and item.due_date == update.due_date
            and (update.location is None or update.location == item.location))


def _may_record_return(item: Item, update: ItemStatusUpdate) -> bool:
    """A library outside the item's scope may check it in (return anywhere): on loan -> on the
    shelf or in transit home, with no due date and the location unchanged; sending the same
    return again is allowed too (it changes nothing)."""
    if update.due_date or (update.location is not None and update.location != item.location):
        return False
    return is_return(item.availability, update.availability) or (
        update.availability in RETURN_STATUSES and _unchanged(item, update))


@dataclass(frozen=True)
class ScopeOwner:
    """Whose item an update touches, for token scope: `library` owns the barcode's range
    (`range` is that range), or, for a barcode in no range, `library` holds the copy."""

    library: str
    range: str | None

    def describe(self, barcode: str, held_at: str) -> str:
        if self.range is None:
            return f"{barcode} belongs to {self.library} (in no library's barcode range: the library holding it decides)"
        where = f"; held at {held_at}" if held_at != self.library else ""
        return f"{barcode} belongs to {self.library} (barcode range {self.range}{where})"


def scope_owner(network: Network, barcode: str, item: Item) -> ScopeOwner:
    """The library whose token scope covers an update of `item`: the owner of the barcode's
    range; the holding library when no range has the barcode."""
    owner = lookup_barcode(network, barcode)
    if owner.code is not None:
        return ScopeOwner(owner.code, owner.range)
    return ScopeOwner(item.library, None)


async def current_items(service: SearchService, barcodes: Iterable[str]) -> dict[str, tuple[str, Item]]:
    """barcode -> (union record id, item) for the barcodes the catalogue holds."""
    wanted = list(dict.fromkeys(barcodes))
    found = await service.store.find_by_barcode(wanted)
    ids = list(dict.fromkeys(found.values()))
    records = {r.id: r for r in await service.store.get(ids) if r is not None} if ids else {}
    items: dict[str, tuple[str, Item]] = {}
    for barcode, record_id in found.items():
        record = records.get(record_id)
        item = next((i for i in record.items if i.barcode == barcode), None) if record else None
        if item is not None:
            items[barcode] = (record_id, item)
    return items


async def apply_updates(service: SearchService, updates: Sequence[ItemStatusUpdate], *,
                        library: str | None) -> StatusReport:
    """Check scope, then apply; `library` is the sender (None: the network's own operator, no scope)."""
    network = service.network
    scope = token_scope(network, library) if library is not None else None
    return_anywhere = network.rules.circulation.return_anywhere
    try:
        current = await current_items(service, (u.barcode for u in updates))
    except StoreError as error:
        raise UpdateInterrupted(error, updates) from error
    report = StatusReport()
    pending: list[tuple[int, ItemStatusUpdate, str, Item, ScopeOwner, bool]] = []
    for index, update in enumerate(updates):
        found = current.get(update.barcode)
        if found is None:
            owner = lookup_barcode(network, update.barcode)
            where = f"it is in {owner.code}'s range" if owner.found else owner.reason
            report.results.append(ItemResult(index, update.barcode, False,
                                             reason=f"unknown barcode: no item in the catalogue has it ({where})"))
            continue
        record_id, item = found
        owner = scope_owner(network, update.barcode, item)
        returned = False
        if scope is not None and owner.library not in scope:
            if return_anywhere and _may_record_return(item, update):
                returned = True
            else:
                why = (f"{owner.describe(update.barcode, item.library)}, outside {library}'s scope "
                       f"({', '.join(sorted(scope))})")
                if update.availability in RETURN_STATUSES and return_anywhere:
                    why += f"; only a return of a copy on loan may be recorded by any library (it is {item.availability.value})"
                elif update.availability in RETURN_STATUSES:
                    why += "; this network does not return anywhere (rules.circulation.return_anywhere)"
                report.violations.append(ScopeViolation(index, update.barcode, owner.library, why))
                continue
        pending.append((index, update, record_id, item, owner, returned))
    if report.violations:
        report.results = []
        return report
    try:
        outcomes = await service.update_items([p[1] for p in pending]) if pending else []
    except ItemUpdatesFailed as failure:
        raise await _interrupted(service, updates, [p[0] for p in pending], failure) from failure
    except StoreError as error:
        raise UpdateInterrupted(error, updates) from error      # nothing applied (Store.update_items)
    for (index, update, record_id, item, owner, returned), outcome in zip(pending, outcomes):
        reason = outcome.reason
        if outcome.applied and returned:
            reason = f"return recorded by {library} for {owner.library} (rules.circulation.return_anywhere)"
        report.results.append(ItemResult(index, update.barcode, outcome.applied,
                                         changed=outcome.applied and not _unchanged(item, update),
                                         record=outcome.record_id or record_id, library=item.library,
                                         owner=owner.library if owner.range is not None else None,
                                         returned=returned, reason=reason))
    report.results.sort(key=lambda r: r.index)
    return report


async def _interrupted(service: SearchService, updates: Sequence[ItemStatusUpdate], sent: Sequence[int],
                       failure: ItemUpdatesFailed) -> UpdateInterrupted:
    """What a batch interrupted by `failure` applied; `sent[k]` is the batch position of the
    store's k-th update. Writes the store got no answer for are settled by reading the items
    back, if the store answers that: applied when the item has the status sent."""
    applied = [sent[k] for k, outcome in enumerate(failure.outcomes) if outcome is not None and outcome.applied]
    unanswered = [sent[k] for k, outcome in enumerate(failure.outcomes) if outcome is None]
    if unanswered:
        try:
            now = await current_items(service, (updates[n].barcode for n in unanswered))
        except Exception as error:  # noqa: BLE001 - the store has just failed; this is a best effort
            log.warning("reading back %d items after a failed status update failed too: %r", len(unanswered), error)
        else:
            for n in unanswered:
                found = now.get(updates[n].barcode)
                if found is not None and _unchanged(found[1], updates[n]):
                    applied.append(n)
            unanswered = []
    return UpdateInterrupted(failure, updates, applied=applied, unknown=unanswered)
