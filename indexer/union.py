"""Deduplication: how contributed records become union records.

Pure logic on the model (`indexer.model`), no I/O: the ingest pipeline loads the union records
a batch of input can touch into a `MergeSession`, applies each incoming contribution to it in
input order, and writes back what the session reports as changed.

Rules
- A contribution joins the union record that shares its first match key, taken in the rule
  set's match-point order (`isbn:` keys, then `issn:`, then the `work:` key of normalized
  title, first author and year). A work-key match is refused when both sides carry standard
  numbers of the same kind and none of them agree: two editions with different ISBNs stay apart.
- The master (the bibliographic record shown) is the hub's contribution if there is one, then
  the most complete record (fields + subfields), then the earliest batch.
- `fields` are the master's extracted values, with the identifier indexes (ISBN, ISSN, control
  number) holding the values of every contribution; `match_keys` are every contribution's keys.
- A union record's id is derived from the primary match key of the contribution that created it
  (`u` + base32 of a hash), so the same input gives the same ids; if that id is taken by a
  record that no longer carries the key, the next derived id (`key#1`, ...) is used. An id never
  changes while its record exists.
- A contribution is identified by (library, source id). Re-ingesting it with new content moves it
  when its keys changed; a union record with no contribution left is deleted.
"""
from __future__ import annotations

import base64
import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from indexer.model import Contribution, Item, MarcFormat, UnionRecord

# Indexes whose values every contribution adds to its union record (not only the master's).
IDENTIFIER_INDEXES = ("isbn", "issn", "control_number")

# Match point names in the rule set -> the prefix of the match keys they stand for.
MATCH_POINT_PREFIXES = {"isbn": "isbn:", "issn": "issn:", "title_author_year": "work:", "work": "work:"}
_STANDARD_NUMBER_PREFIXES = ("isbn:", "issn:")

ContributionKey = tuple[str, str]  # (library, source id)


@dataclass(frozen=True)
class Analysis:
    """What extraction made of one contribution's bibliographic record."""

    fields: Mapping[str, list[str]]
    match_keys: tuple[str, ...]


# Re-extracts a stored contribution (needed when a record loses a contribution or its master).
Analyzer = Callable[[Contribution], Analysis]


@dataclass
class Incoming:
    """A contribution as the input brings it, with its analysis."""

    contribution: Contribution
    analysis: Analysis

    @property
    def key(self) -> ContributionKey:
        return (self.contribution.library, self.contribution.source_id)


class Outcome(str, enum.Enum):
    ADDED = "added"          # became a new union record
    MERGED = "merged"        # joined an existing union record
    UPDATED = "updated"      # this library's contribution changed (or was withdrawn)
    UNCHANGED = "unchanged"  # same fingerprint as the stored contribution


class IdLookupNeeded(LookupError):
    """The session must be told whether a record with this id exists before it can go on."""

    def __init__(self, record_id: str):
        super().__init__(f"existence of union record {record_id} is not known to the session")
        self.record_id = record_id


# -- pure helpers ---------------------------------------------------------------------------


def ordered_match_keys(keys: Iterable[str], match_points: Sequence[str]) -> tuple[str, ...]:
    """The keys the rule set's match points use, deduplicated, in match-point order
    (stable within one kind: the record's own order)."""
    prefixes: list[str] = []
    for point in match_points:
        prefix = MATCH_POINT_PREFIXES.get(point)
        if prefix is not None and prefix not in prefixes:
            prefixes.append(prefix)
    rank = {prefix: n for n, prefix in enumerate(prefixes)}
    seen: dict[str, int] = {}
    for key in keys:
        prefix = key[: key.find(":") + 1]
        if prefix in rank and key not in seen:
            seen[key] = rank[prefix]
    return tuple(sorted(seen, key=seen.__getitem__))


def union_id(primary_key: str, attempt: int = 0) -> str:
    """The id a union record created from `primary_key` gets (`attempt` > 0 after collisions)."""
    material = primary_key if attempt == 0 else f"{primary_key}#{attempt}"
    digest = hashlib.blake2b(material.encode("utf-8"), digest_size=10).digest()
    return "u" + base64.b32encode(digest).decode("ascii").lower()


def master_rank(contribution: Contribution, hub: str) -> tuple:
    """Sort key: the smallest is the master."""
    return (
        contribution.library != hub,
        -contribution.completeness(),
        contribution.batch,
        contribution.library,
        contribution.source_id,
    )


def choose_master(contributions: Sequence[Contribution], hub: str) -> Contribution:
    return min(contributions, key=lambda c: master_rank(c, hub))


def fingerprint(marc: Mapping, marc_format: MarcFormat | str, items: Sequence[Item], salt: str = "") -> str:
    """Hash of the normalized record and its items, to recognise unchanged re-ingests.

    The leader's record length and base address depend on the serialization, not the content,
    and are left out. `salt` names the extraction configuration, so that a changed index table
    re-indexes everything.
    """
    leader = str(marc.get("leader", ""))
    normalized = {
        "leader": leader[5:12] + leader[17:],
        "fields": marc.get("fields", []),
        "format": MarcFormat(marc_format).value,
        "items": [item.to_dict() for item in items],
        "salt": salt,
    }
    encoded = json.dumps(normalized, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(encoded.encode("utf-8"), digest_size=16).hexdigest()


def _dedup_extend(values: list[str], more: Iterable[str]) -> None:
    present = set(values)
    for value in more:
        if value not in present:
            present.add(value)
            values.append(value)


def combine_fields(master: Analysis, analyses: Iterable[Analysis]) -> dict[str, list[str]]:
    """The master's fields; identifier indexes hold every contribution's values, in contribution order."""
    fields = {name: list(values) for name, values in master.fields.items() if name not in IDENTIFIER_INDEXES}
    identifiers: dict[str, list[str]] = {name: [] for name in IDENTIFIER_INDEXES}
    for analysis in analyses:
        for name in IDENTIFIER_INDEXES:
            _dedup_extend(identifiers[name], analysis.fields.get(name, ()))
    for name in IDENTIFIER_INDEXES:
        if identifiers[name]:
            fields[name] = identifiers[name]
    return fields


def combine_match_keys(analyses: Iterable[Analysis], match_points: Sequence[str]) -> list[str]:
    keys: list[str] = []
    for analysis in analyses:
        _dedup_extend(keys, analysis.match_keys)
    return list(ordered_match_keys(keys, match_points))


def build_record(
    record_id: str,
    contributions: Sequence[Contribution],
    analyses: Mapping[ContributionKey, Analysis],
    hub: str,
    match_points: Sequence[str],
) -> UnionRecord:
    """A union record from scratch: master by rule, fields and keys combined."""
    if not contributions:
        raise ValueError(f"union record {record_id} needs at least one contribution")
    master = choose_master(contributions, hub)
    ordered = [analyses[(c.library, c.source_id)] for c in contributions]
    return UnionRecord(
        id=record_id,
        contributions=list(contributions),
        master=(master.library, master.source_id),
        fields=combine_fields(analyses[(master.library, master.source_id)], ordered),
        match_keys=combine_match_keys(ordered, match_points),
    )


def _standard_numbers(keys: Iterable[str]) -> dict[str, set[str]]:
    numbers: dict[str, set[str]] = {}
    for key in keys:
        for prefix in _STANDARD_NUMBER_PREFIXES:
            if key.startswith(prefix):
                numbers.setdefault(prefix, set()).add(key)
    return numbers


def conflicting(incoming_keys: Iterable[str], record_keys: Iterable[str]) -> bool:
    """True when both carry standard numbers of one kind (ISBN or ISSN) and none agree."""
    ours, theirs = _standard_numbers(incoming_keys), _standard_numbers(record_keys)
    return any(prefix in theirs and not (numbers & theirs[prefix]) for prefix, numbers in ours.items())


# -- the working set of one batch -------------------------------------------------------------


@dataclass
class _Entry:
    record: UnionRecord
    existed: bool          # was in the store when loaded
    dirty: bool = False


@dataclass
class MergeSession:
    """The union records one batch of input can touch, and the changes made to them.

    Load it with every record the batch's match keys and contributions point to (and the
    records at the batch's candidate ids) before applying the batch; then `place` and
    `withdraw` each input record in order, and write `changes()` back.
    """

    hub: str
    match_points: Sequence[str]
    analyze: Analyzer
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _absent: set[str] = field(default_factory=set)          # ids known not to exist anywhere
    _by_key: dict[str, set[str]] = field(default_factory=dict)
    _by_contribution: dict[ContributionKey, str] = field(default_factory=dict)
    _analyses: dict[ContributionKey, Analysis] = field(default_factory=dict)

    # -- loading ---------------------------------------------------------------------------
    def load(self, records: Iterable[UnionRecord]) -> None:
        for record in records:
            if record.id in self._entries:
                continue
            self._absent.discard(record.id)
            self._entries[record.id] = _Entry(record, existed=True)
            self._index(record)

    def mark_absent(self, ids: Iterable[str]) -> None:
        for record_id in ids:
            if record_id not in self._entries:
                self._absent.add(record_id)

    def knows(self, record_id: str) -> bool:
        return record_id in self._entries or record_id in self._absent

    def record(self, record_id: str) -> UnionRecord | None:
        entry = self._entries.get(record_id)
        return entry.record if entry is not None and entry.record.contributions else None

    def record_of(self, library: str, source_id: str) -> str | None:
        return self._by_contribution.get((library, source_id))

    def contribution(self, library: str, source_id: str) -> Contribution | None:
        record_id = self._by_contribution.get((library, source_id))
        if record_id is None:
            return None
        for contribution in self._entries[record_id].record.contributions:
            if (contribution.library, contribution.source_id) == (library, source_id):
                return contribution
        return None

    # -- applying input --------------------------------------------------------------------
    def unknown_ids(self, incoming: Incoming) -> list[str]:
        """Candidate ids for a new record from `incoming` whose existence must be looked up first."""
        primary = self._primary_key(incoming)
        attempt = 0
        while True:
            candidate = union_id(primary, attempt)
            entry = self._entries.get(candidate)
            if entry is None:
                return [] if candidate in self._absent else [candidate]
            if not entry.record.contributions:
                return []
            attempt += 1

    def place(self, incoming: Incoming) -> Outcome:
        """Apply an incoming (not deleted) contribution; the caller checked it is not unchanged."""
        contribution = incoming.contribution
        key = incoming.key
        analysis = Analysis(incoming.analysis.fields, ordered_match_keys(incoming.analysis.match_keys, self.match_points))
        current_id = self._by_contribution.get(key)
        if current_id is not None:
            record = self._entries[current_id].record
            position = next(n for n, c in enumerate(record.contributions) if (c.library, c.source_id) == key)
            previous = record.contributions[position]
            if previous.marc == contribution.marc and previous.format == contribution.format:
                # Only the items changed: the bibliographic analysis and the master stay as they are.
                record.contributions[position] = contribution
                self._analyses[key] = analysis
                self._entries[current_id].dirty = True
                return Outcome.UPDATED
            self._remove(current_id, key)
        self._analyses[key] = analysis
        target = self._find_target(analysis.match_keys, prefer=current_id)
        if target is not None:
            self._add(target, contribution, analysis)
            return Outcome.UPDATED if current_id is not None else Outcome.MERGED
        record_id = self._allocate(self._primary_key(incoming))
        record = build_record(record_id, [contribution], {key: analysis}, self.hub, self.match_points)
        entry = self._entries.get(record_id)
        if entry is None:
            self._absent.discard(record_id)
            self._entries[record_id] = _Entry(record, existed=False, dirty=True)
        else:  # an emptied record's id, taken over
            self._unindex(entry.record)
            entry.record, entry.dirty = record, True
        self._index(record)
        return Outcome.UPDATED if current_id is not None else Outcome.ADDED

    def withdraw(self, library: str, source_id: str) -> bool:
        """Remove a library's contribution; True if there was one."""
        record_id = self._by_contribution.get((library, source_id))
        if record_id is None:
            return False
        self._remove(record_id, (library, source_id))
        return True

    def changes(self) -> tuple[list[UnionRecord], list[str]]:
        """(records to upsert, ids to delete) since the session was loaded."""
        upserts: list[UnionRecord] = []
        deletes: list[str] = []
        for record_id, entry in self._entries.items():
            if not entry.dirty:
                continue
            if entry.record.contributions:
                upserts.append(entry.record)
            elif entry.existed:
                deletes.append(record_id)
        return upserts, deletes

    # -- internals -------------------------------------------------------------------------
    def _primary_key(self, incoming: Incoming) -> str:
        keys = ordered_match_keys(incoming.analysis.match_keys, self.match_points)
        if keys:
            return keys[0]
        library, source_id = incoming.key
        return f"source:{library}/{source_id}"

    def _allocate(self, primary_key: str) -> str:
        attempt = 0
        while True:
            candidate = union_id(primary_key, attempt)
            entry = self._entries.get(candidate)
            if entry is None:
                if candidate in self._absent:
                    return candidate
                raise IdLookupNeeded(candidate)
            if not entry.record.contributions:
                return candidate
            attempt += 1

    def _find_target(self, keys: Sequence[str], prefer: str | None) -> str | None:
        for key in keys:
            candidates = [
                record_id
                for record_id in self._by_key.get(key, ())
                if self._entries[record_id].record.contributions
                and (key.startswith(_STANDARD_NUMBER_PREFIXES) or not conflicting(keys, self._entries[record_id].record.match_keys))
            ]
            if candidates:
                return prefer if prefer in candidates else min(candidates)
        return None

    def _analysis(self, contribution: Contribution) -> Analysis:
        key = (contribution.library, contribution.source_id)
        analysis = self._analyses.get(key)
        if analysis is None:
            raw = self.analyze(contribution)
            analysis = Analysis(raw.fields, ordered_match_keys(raw.match_keys, self.match_points))
            self._analyses[key] = analysis
        return analysis

    def _add(self, record_id: str, contribution: Contribution, analysis: Analysis) -> None:
        """Join a record: incremental, no re-analysis of the contributions already there."""
        entry = self._entries[record_id]
        record = entry.record
        self._unindex(record)
        record.contributions.append(contribution)
        master = record.master_contribution
        if master_rank(contribution, self.hub) < master_rank(master, self.hub):
            fields = {n: list(v) for n, v in analysis.fields.items() if n not in IDENTIFIER_INDEXES}
            for name in IDENTIFIER_INDEXES:
                if name in record.fields:
                    fields[name] = list(record.fields[name])
            record.fields = fields
            record.master = (contribution.library, contribution.source_id)
        for name in IDENTIFIER_INDEXES:
            values = analysis.fields.get(name)
            if values:
                _dedup_extend(record.fields.setdefault(name, []), values)
        record.match_keys = list(ordered_match_keys([*record.match_keys, *analysis.match_keys], self.match_points))
        entry.dirty = True
        self._index(record)

    def _remove(self, record_id: str, key: ContributionKey) -> None:
        entry = self._entries[record_id]
        record = entry.record
        self._unindex(record)
        record.contributions = [c for c in record.contributions if (c.library, c.source_id) != key]
        entry.dirty = True
        if record.contributions:
            rebuilt = build_record(
                record_id,
                record.contributions,
                {(c.library, c.source_id): self._analysis(c) for c in record.contributions},
                self.hub,
                self.match_points,
            )
            record.master, record.fields, record.match_keys = rebuilt.master, rebuilt.fields, rebuilt.match_keys
        else:
            record.fields, record.match_keys = {}, []
        self._index(record)

    def _index(self, record: UnionRecord) -> None:
        for key in record.match_keys:
            self._by_key.setdefault(key, set()).add(record.id)
        for contribution in record.contributions:
            self._by_contribution[(contribution.library, contribution.source_id)] = record.id

    def _unindex(self, record: UnionRecord) -> None:
        for key in record.match_keys:
            ids = self._by_key.get(key)
            if ids is not None:
                ids.discard(record.id)
                if not ids:
                    del self._by_key[key]
        for contribution in record.contributions:
            if self._by_contribution.get((contribution.library, contribution.source_id)) == record.id:
                del self._by_contribution[(contribution.library, contribution.source_id)]
