"""The write path: MARC files in, union records out.

`await ingest(paths, store, table, policy, options)` reads every record of the given files
(directories are walked), turns each into one library's contribution (bibliographic record,
extracted index values, items), merges the contributions into union records with
`indexer.union.MergeSession`, batch by batch, and writes what changed to the store.

Every record read ends in exactly one of the report's counts, so that
`read = added + merged + updated + unchanged + quarantined` always holds:
- added: it became a new union record; merged: it joined an existing one;
- updated: this library's contribution for it changed, moved, or (leader/05 `d`) was withdrawn;
- unchanged: the stored contribution has the same fingerprint (or a withdrawal found nothing
  to withdraw), or the whole file is unchanged since its last clean ingest (see below);
- quarantined: it was not taken in, and its raw bytes are in the quarantine file with the
  reason and its position. Only bibliographic records are taken in: a record whose leader/06
  names another type (authority, holdings, classification, community information) is
  quarantined whatever the rule set requires, and so is one whose leader/06 is blank and that
  has no title field (245, UNIMARC/CNMARC 200).

Which library a file belongs to: `options.library`, else the library the holdings' source
codes name most often in the file's first records, else the hub (whose catalogue records
carry no items).

Incremental by default: contributions are upserted, a deleted record withdraws that
library's contribution for it. With `options.full`, the input is the complete export of each
library it belongs to: after it is read, that library's contributions the input did not
contain are withdrawn (unless none of its input records could be taken in: then nothing is
withdrawn and a warning says so). A union record left without contributions is deleted.

A control number that comes again in the same file with a different record is quarantined
(the first record is kept; the same record again counts unchanged), so that re-running the
file changes nothing. Across files, a later file's record replaces an earlier one's.

The run is one bulk load (`Store.bulk_load`): the embedded store indexes the union records it
wrote when the run ends, once each, however often they were rewritten as the libraries' files
came in; until then searches find them as they were before the run.

With `options.jobs` = N >= 2, N - 1 other processes read, parse and extract the files (each
its own files, in turn, a few batches ahead) while this one merges and writes; the catalogue,
the report and the quarantine are the same as with one. They are new interpreters,
given their work on stdin.

Memory stays flat: records are read and looked up in batches of `options.batch_size`; one
merge session holds up to about `options.write_behind` contributions before its changes are
written, so that a work several libraries' files send is written once; the source ids read
so far are kept in a temporary on-disk SQLite database.

The quarantine file is JSON lines, one object per quarantined record:
`{"file", "position" (1-based record number), "offset" (byte offset or line), "library",
"source_id" (if known), "reason", "raw" (the record's bytes, base64)}`.

Skipping unchanged files: with `options.state_path`, the content hash of every file that went
in without quarantine is recorded with the options and the extraction configuration it was
read under; a later run finds it unchanged and counts its records unchanged without reading
them. A full ingest of a library forgets the other files recorded for that library, and an
empty store forgets everything.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import hashlib
import itertools
import json
import os
import queue
import signal
import sqlite3
import threading
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from pymarc import Record

from indexer.children import Child
from indexer.extract import analyse, contribution_analyzer, control_number
from indexer.holdings import STANDARD_LAYOUTS, extract_items
from indexer.indexes import IndexTable
from indexer.model import Contribution, MarcFormat, UnionRecord
from indexer.policy import IngestPolicy, LibraryPolicy
from indexer.readers import ReadResult, read_records
from indexer.store import IndexingProgress, Store
from indexer.union import Analysis, IdLookupNeeded, Incoming, MergeSession, Outcome, fingerprint

REPORT_KEYS = ("read", "added", "merged", "updated", "unchanged", "quarantined")
DEFAULT_BATCH_SIZE = 500
DEFAULT_WRITE_BEHIND = 2000
# File name endings a directory walk takes as MARC input (a file named explicitly is always read).
MARC_SUFFIXES = (".mrc", ".marc", ".iso", ".iso2709", ".dat", ".xml", ".json", ".jsonl", ".ndjson", ".gz")
# Records looked at to decide which library a file belongs to.
LIBRARY_SNIFF_RECORDS = 200
# Warnings kept in the report (the count goes on).
MAX_WARNINGS = 1000
# Bump when the pipeline's own treatment of records changes what it stores.
PIPELINE_VERSION = "1"
# Bump when what the pipeline takes in changes but not what it stores of the records it takes
# (fingerprints stay, so nothing is rewritten): files recorded as clean are read once more, so
# that records now refused are reported. 2: records of a non-bibliographic type are refused.
FILE_STATE_VERSION = "2"

# Leader/06 (type of record) of the bibliographic formats; any other type is not catalogued.
BIBLIOGRAPHIC_TYPES = {
    MarcFormat.MARC21: frozenset("acdefgijkmoprt"),
    MarcFormat.UNIMARC: frozenset("abcdefgijklmr"),
    MarcFormat.CNMARC: frozenset("abcdefgijklmr"),
}
# What the other leader/06 values of each format's family of formats stand for (for the reason).
_UNIMARC_OTHER_TYPES = {
    "x": "authority record", "y": "authority record (reference entry)",
    "z": "authority record (general explanatory entry)", "u": "holdings record",
}
OTHER_RECORD_TYPES = {
    MarcFormat.MARC21: {
        "z": "authority record", "u": "holdings record", "v": "holdings record", "x": "holdings record",
        "y": "holdings record", "w": "classification record", "q": "community information record",
    },
    MarcFormat.UNIMARC: _UNIMARC_OTHER_TYPES,
    MarcFormat.CNMARC: _UNIMARC_OTHER_TYPES,
}
# The title field that lets a record whose leader does not state its type go in as bibliographic.
TITLE_TAGS = {MarcFormat.MARC21: "245", MarcFormat.UNIMARC: "200", MarcFormat.CNMARC: "200"}


class IngestError(Exception):
    """A fatal problem: the ingest cannot go on (unreadable input path, store failure)."""


@dataclass(frozen=True)
class IngestOptions:
    quarantine_path: Path
    library: str | None = None          # the library every input file belongs to
    format: MarcFormat | None = None    # else detected per record
    encoding: str | None = None         # else detected per record
    full: bool = False                  # the input is each library's complete export
    batch_size: int = DEFAULT_BATCH_SIZE
    # Contributions a merge session holds (loaded with their union records, or placed) before
    # its changes are written: a work that several files (libraries) send is then written once,
    # not once per file. Memory is bounded by it (some 20 KB per contribution).
    write_behind: int = DEFAULT_WRITE_BEHIND
    state_path: Path | None = None      # where file fingerprints are recorded
    skip_unchanged_files: bool = True   # count a recorded, unchanged file as unchanged without reading it
    batch_id: str = ""                  # provenance of this run's contributions; default: the UTC time
    # Processes at work: with 2 or more, `jobs - 1` processes read, parse and extract the files
    # (each its own files, in turn) while this one merges and writes.
    jobs: int = 1


@dataclass
class FileSummary:
    path: str
    library: str
    read: int = 0
    quarantined: int = 0
    skipped: bool = False               # unchanged since its last clean ingest; not read again


@dataclass
class IngestReport:
    read: int = 0
    added: int = 0
    merged: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    quarantine: str = ""
    withdrawn: int = 0                  # contributions a full ingest removed (no input record)
    deleted_records: int = 0            # union records removed for want of contributions
    files: list[FileSummary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0

    @property
    def reconciled(self) -> bool:
        return self.read == self.added + self.merged + self.updated + self.unchanged + self.quarantined

    def to_json(self) -> dict[str, int | str]:
        """The report file: exactly the counts and the quarantine file's path."""
        data: dict[str, int | str] = {key: getattr(self, key) for key in REPORT_KEYS}
        data["quarantine"] = self.quarantine
        return data

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


ProgressCallback = Callable[[IngestReport], None]


# -- inputs -----------------------------------------------------------------------------------


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """The files to read: each file given, and the MARC files under each directory (sorted,
    hidden entries skipped). A path that does not exist is an `IngestError`."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and name.lower().endswith(MARC_SUFFIXES):
                        files.append(Path(root) / name)
        elif path.is_file():
            files.append(path)
        else:
            raise IngestError(f"{path}: no such file or directory")
    return files


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extraction_salt(table: IndexTable, policy: IngestPolicy) -> str:
    """Names the configuration that turns a record into stored values: a change re-indexes."""
    extraction = [
        (d.name, d.marc21, d.unimarc, d.cnmarc, d.normalizer, sorted(d.value_map.items()), d.value_map_strict, d.single)
        for d in table.indexes
    ]
    material = repr((PIPELINE_VERSION, extraction, policy))
    return hashlib.blake2b(material.encode("utf-8"), digest_size=8).hexdigest()


def library_codes_in(record: Record, policy: IngestPolicy) -> list[str]:
    """The network libraries the record's holdings name (by the rule set's holdings mappings,
    then the standard layouts of the common systems), one entry per item field."""
    places: list[tuple[str, str]] = []
    for library in policy.libraries.values():
        mapping = library.holdings
        if mapping is not None and mapping.library and (mapping.tag, mapping.library) not in places:
            places.append((mapping.tag, mapping.library))
    for layout in STANDARD_LAYOUTS.values():
        if layout.library and (layout.tag, layout.library) not in places:
            places.append((layout.tag, layout.library))
    for tag, code in places:
        found = []
        for holding in record.get_fields(tag):
            if holding.is_control_field():
                continue
            for value in holding.get_subfields(code):
                library = policy.library_for_source_code(value)
                if library is not None:
                    found.append(library.code)
                    break
        if found:
            return found
    return []


def detect_library(results: Iterator[ReadResult], policy: IngestPolicy) -> tuple[list[ReadResult], str]:
    """The library owning most items in a file's first records (the hub when none is named),
    and those records, taken from `results` (read once: the caller goes on with them)."""
    head = list(itertools.islice(results, LIBRARY_SNIFF_RECORDS))
    counts: collections.Counter[str] = collections.Counter()
    order: dict[str, int] = {}
    for result in head:
        if result.record is not None:
            for code in library_codes_in(result.record, policy):
                counts[code] += 1
                order.setdefault(code, len(order))
    if not counts:
        return head, policy.hub
    return head, max(counts, key=lambda code: (counts[code], -order[code]))


# -- quarantine -------------------------------------------------------------------------------


class Quarantine:
    """The quarantine file (created even when nothing is quarantined, so the report's path exists)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "w", encoding="utf-8")

    def add(self, source: Path, result: ReadResult, library: str, reason: str, source_id: str | None = None) -> None:
        entry = {
            "file": str(source),
            "position": result.position,
            "offset": result.offset,
            "library": library,
            "source_id": source_id,
            "reason": reason,
            "raw": base64.b64encode(result.raw).decode("ascii"),
        }
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()


def read_quarantine(path: str | Path) -> list[dict]:
    """The entries of a quarantine file, `raw` decoded to bytes."""
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                entry = json.loads(line)
                entry["raw"] = base64.b64decode(entry["raw"])
                entries.append(entry)
    return entries


# -- file state (skipping unchanged files) ---------------------------------------------------


class FileState:
    """Content hashes of files ingested cleanly, with what they held."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path is not None and path.exists():
            try:
                self.entries = json.loads(path.read_text(encoding="utf-8")).get("files", {})
            except (OSError, ValueError):
                self.entries = {}

    @staticmethod
    def key(digest: str, options: IngestOptions, salt: str) -> str:
        material = json.dumps([FILE_STATE_VERSION, digest, options.library, options.format and options.format.value,
                               options.encoding, salt])
        return hashlib.sha256(material.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, path: Path, library: str, records: int) -> None:
        self.entries[key] = {"path": str(path), "library": library, "records": records}

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

    def forget_library(self, library: str, keep: set[str]) -> None:
        self.entries = {k: v for k, v in self.entries.items() if v["library"] != library or k in keep}

    def clear(self) -> None:
        self.entries = {}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"files": self.entries}, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)


class SeenSources:
    """The (library, source id) of every record this run has read, with the number of the file
    it was last read from: on disk, so memory stays flat. It finds duplicates within a file and
    tells a full ingest what the library no longer sends."""

    _CHUNK = 400
    NOT_TAKEN = 0  # the file number of records read but quarantined

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # a private temporary database, on disk
        self._db.execute(
            "CREATE TABLE seen (library TEXT, source_id TEXT, file INTEGER, PRIMARY KEY (library, source_id)) WITHOUT ROWID")

    def add(self, file_number: int, pairs: Iterable[tuple[str, str]]) -> None:
        verb = "INSERT OR IGNORE" if file_number == self.NOT_TAKEN else "INSERT OR REPLACE"
        self._db.executemany(f"{verb} INTO seen VALUES (?, ?, ?)", [(l, s, file_number) for l, s in pairs])

    def _present(self, library: str, source_ids: Sequence[str], file_number: int | None) -> set[str]:
        present: set[str] = set()
        for start in range(0, len(source_ids), self._CHUNK):
            chunk = list(source_ids[start:start + self._CHUNK])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT source_id FROM seen WHERE library = ? AND source_id IN ({marks})"
            parameters: list[object] = [library, *chunk]
            if file_number is not None:
                sql += " AND file = ?"
                parameters.append(file_number)
            present.update(row[0] for row in self._db.execute(sql, parameters))
        return present

    def in_file(self, file_number: int, library: str, source_ids: Sequence[str]) -> set[str]:
        """The source ids already read from this file."""
        return self._present(library, source_ids, file_number)

    def missing(self, library: str, source_ids: Sequence[str]) -> set[str]:
        """The source ids this run has not read."""
        return set(source_ids) - self._present(library, source_ids, None)

    def close(self) -> None:
        self._db.close()


# -- preparing records --------------------------------------------------------------------------


@dataclass
class _Quarantined:
    result: ReadResult
    reason: str
    source_id: str | None = None
    # Whether a full ingest keeps the library's previous contribution under `source_id`: not for
    # a record that is no bibliographic record (its control number names no contribution).
    keeps_previous: bool = True


@dataclass
class _Withdrawal:
    result: ReadResult
    library: str
    source_id: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.library, self.source_id)


@dataclass
class _Candidate:
    result: ReadResult
    record: Record | None               # None once analysed in a preparing process
    contribution: Contribution
    # The analysis, made only when the contribution is not unchanged (`_Preparer.analyse`).
    incoming: Incoming | None = None
    failure: str = ""  # why the analysis failed

    @property
    def key(self) -> tuple[str, str]:
        return (self.contribution.library, self.contribution.source_id)


_Prepared = _Quarantined | _Withdrawal | _Candidate


def unicode_leader(leader: str, fmt: MarcFormat) -> str:
    """The leader of a record as stored: decoded, so in Unicode whatever the export's encoding.
    MARC21 leader/09 says so (`a`); UNIMARC leaves the position undefined (blank; the character
    sets are in 100$a). The same record in UTF-8, MARC-8 or GB18030 is then the same contribution."""
    if len(leader) < 10:
        return leader
    coding = "a" if fmt is MarcFormat.MARC21 else " "
    return leader[:9] + coding + leader[10:]


def record_type_refusal(record: Record, fmt: MarcFormat) -> str | None:
    """Why a record is not taken in as bibliographic because of its leader/06 (type of record),
    or None. A blank (unstated) type is left to `_Preparer._prepare`."""
    code = str(record.leader)[6:7]
    if code in ("", " ") or code in BIBLIOGRAPHIC_TYPES[fmt]:
        return None
    kind = OTHER_RECORD_TYPES[fmt].get(code)
    if kind is None:
        types = " ".join(sorted(BIBLIOGRAPHIC_TYPES[fmt]))
        return f"leader/06 {code!r} is no {fmt.value} bibliographic type of record ({types}): only bibliographic records are catalogued"
    return f"{kind} (leader/06 {code!r}): only bibliographic records are catalogued"


def fallback_source_id(record: Record) -> str:
    """An id for a record without a control number: a hash of its content (stable across
    re-ingests of the same record; a changed record is a new contribution)."""
    material = json.dumps(record.as_dict(), ensure_ascii=False, sort_keys=True)
    return "sha:" + hashlib.blake2b(material.encode("utf-8"), digest_size=10).hexdigest()


class _Preparer:
    """One input record -> a quarantine entry, a withdrawal, or an incoming contribution."""

    def __init__(self, table: IndexTable, policy: IngestPolicy, batch_id: str, salt: str, report: IngestReport):
        self.table = table
        self.policy = policy
        self.batch_id = batch_id
        self.salt = salt
        self.report = report

    def prepare(self, source: Path, result: ReadResult, library: LibraryPolicy) -> _Prepared:
        if result.record is None or result.format is None:
            return _Quarantined(result, result.error or "the record could not be read")
        try:
            return self._prepare(source, result, result.record, result.format, library)
        except Exception as error:  # a record that breaks extraction must not stop the run
            return _Quarantined(result, f"cannot extract the record: {type(error).__name__}: {error}")

    def _prepare(self, source: Path, result: ReadResult, record: Record, fmt: MarcFormat, library: LibraryPolicy) -> _Prepared:
        where = f"{source}:{result.position}"
        if fmt.value not in self.policy.accepted_formats:
            return _Quarantined(result, f"format {fmt.value} is not accepted by the rule set ({', '.join(self.policy.accepted_formats)})")
        source_id = control_number(record, fmt)
        # Authority, holdings, classification, community information records are not books: not
        # as union records, and not as deletions either (their control numbers are another
        # numbering, which may name one of the library's bibliographic records).
        refusal = record_type_refusal(record, fmt)
        if refusal:
            return _Quarantined(result, refusal, source_id, keeps_previous=False)
        if str(record.leader)[5:6] == "d":
            if not source_id:
                return _Quarantined(result, "deleted record (leader/05 d) without a control number: cannot tell what it withdraws")
            return _Withdrawal(result, library.code, source_id)
        required = self.policy.required_fields.get(fmt.value, ())
        missing = [tag for tag in required if not record.get_fields(tag)]
        if missing:
            return _Quarantined(result, f"missing required field(s) {', '.join(missing)} for {fmt.value}", source_id)
        if str(record.leader)[6:7] in ("", " "):
            title = TITLE_TAGS[fmt]
            if not record.get_fields(title):
                return _Quarantined(result, f"type of record not stated (leader/06 blank) and no {title} title: "
                                            "not recognizably a bibliographic record", source_id)
            self.report.warn(f"{where}: type of record not stated (leader/06 blank); taken in as bibliographic (it has a {title})")
        if not source_id:
            source_id = fallback_source_id(record)
            self.report.warn(f"{where}: no control number; identified by content as {source_id}")
        holdings = extract_items(record, fmt, library, self.policy, default_library=library.code)
        if holdings.quarantine:
            return _Quarantined(result, holdings.quarantine_reason, source_id)
        for problem in holdings.problems:
            self.report.warn(f"{where}: {problem}")
        items = list(holdings.items)
        for item in items:
            if not item.source_record:
                item.source_record = source_id
            if not item.tier:
                owner = self.policy.libraries.get(item.library)
                if owner is not None:
                    item.tier = owner.tier
        marc = record.as_dict()
        marc["leader"] = unicode_leader(marc["leader"], fmt)
        contribution = Contribution(
            library=library.code,
            source_id=source_id,
            format=fmt,
            marc=marc,
            batch=self.batch_id,
            fingerprint=fingerprint(marc, fmt, items, self.salt),
            items=items,
        )
        return _Candidate(result, record, contribution)

    def analyse(self, candidate: _Candidate) -> Incoming | None:
        """The candidate's analysis; None (and `failure` set) if extraction fails on the record."""
        if candidate.incoming is None and not candidate.failure:
            assert candidate.record is not None, "a candidate from a preparing process comes analysed"
            try:
                analysis: Analysis = analyse(candidate.record, candidate.contribution.format, self.table)
            except Exception as error:  # a record that breaks extraction must not stop the run
                candidate.failure = f"cannot extract the record: {type(error).__name__}: {error}"
                return None
            candidate.incoming = Incoming(candidate.contribution, analysis)
        return candidate.incoming


    def prepare_to_send(self, source: Path, result: ReadResult, library: LibraryPolicy) -> _Prepared:
        """`prepare`, then analysed (whether it is unchanged is for the merging process to find
        out) and without the parsed record: what crosses to the merging process is small."""
        entry = self.prepare(source, result, library)
        if isinstance(entry, _Candidate):
            self.analyse(entry)
            entry.record = None
            entry.contribution.compact()
        entry.result = replace(entry.result, record=None)  # the raw bytes stay, for the quarantine
        return entry


# -- preparing in other processes ------------------------------------------------------------------

@dataclass(frozen=True)
class _PreparerSetup:
    """What a preparing process needs (pickled to it)."""

    table: IndexTable
    policy: IngestPolicy
    options: IngestOptions
    batch_id: str
    salt: str


# Messages a preparing process may have ready beyond the one its pipe holds: the merging
# process goes on without waiting when a batch took the preparing process longer than usual.
_MESSAGES_AHEAD = 4


def _prepare_files(setup: _PreparerSetup, files: list[tuple[int, str]], connection: Connection) -> None:
    """A preparing process: reads its files in turn, sending for each `("start", number,
    library code)`, `("batch", number, entries, warnings)`..., `("end", number)`; or
    `("failed", number, message)`, after which it stops. At most `_MESSAGES_AHEAD` messages
    wait to be sent: memory stays bounded."""
    # Ctrl-C on a terminal reaches the whole process group: the merging process handles it
    # (and stops this one), so that it is not reported once per process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outbox: queue.Queue[tuple | None] = queue.Queue(_MESSAGES_AHEAD)
    sender = threading.Thread(target=_send_all, args=(outbox, connection), name="ingest-prepare-send")
    sender.start()
    try:
        _prepare_into(setup, files, outbox.put)
    finally:
        outbox.put(None)
        sender.join()


def _send_all(outbox: "queue.Queue[tuple | None]", connection: Connection) -> None:
    try:
        while (message := outbox.get()) is not None:
            connection.send(message)
    except (BrokenPipeError, ConnectionResetError):
        os._exit(0)  # the merging process has stopped: nobody wants the rest
    finally:
        connection.close()


def _prepare_into(setup: _PreparerSetup, files: list[tuple[int, str]], send: Callable[[tuple], None]) -> None:
    report = IngestReport()
    preparer = _Preparer(setup.table, setup.policy, setup.batch_id, setup.salt, report)
    options = setup.options
    for number, name in files:
        path = Path(name)
        try:
            results = read_records(path, format=options.format, encoding=options.encoding)
            if options.library is not None:
                head, library_code = [], options.library
            else:
                head, library_code = detect_library(results, setup.policy)
            send(("start", number, library_code))
            library = setup.policy.libraries[library_code]
            batch: list[_Prepared] = []
            for result in itertools.chain(head, results):
                batch.append(preparer.prepare_to_send(path, result, library))
                if len(batch) >= options.batch_size:
                    send(("batch", number, batch, report.warnings))
                    batch, report.warnings = [], []
            send(("batch", number, batch, report.warnings))
            report.warnings = []
            send(("end", number))
        except OSError as error:
            send(("failed", number, f"{path}: {error.strerror or error}"))
            return
        except Exception as error:  # the merging process stops the run with it
            send(("failed", number, f"{path}: preparing its records failed: {type(error).__name__}: {error}"))
            return


class _Preparers:
    """The preparing processes of a run (`indexer.children`): file k of the files to read goes
    to process k mod n, which sends its files' batches in its files' order; the merging process
    takes them file after file. A process that dies ends the run with an error."""

    def __init__(self, setup: _PreparerSetup, files: list[tuple[int, Path]], processes: int):
        count = max(1, min(processes, len(files)))
        self._process_of = {number: k % count for k, (number, _) in enumerate(files)}
        self._children: list[Child] = []
        try:
            for n in range(count):
                mine = [(number, str(path)) for k, (number, path) in enumerate(files) if k % count == n]
                self._children.append(Child.start("indexer.ingest", "_preparer_main", (setup, mine)))
        except BaseException:
            self.close()
            raise

    async def next(self, number: int) -> tuple:
        """The next message about file `number` (its process's next one)."""
        child = self._children[self._process_of[number]]
        message = await asyncio.to_thread(child.receive)
        if message is None:
            code = await asyncio.to_thread(child.wait, 5)
            raise IngestError(f"the process preparing the records ended unexpectedly (exit code {code})")
        if message[1] != number:
            raise IngestError(f"the preparing process sent file {message[1]} when file {number} was due")
        if message[0] == "failed":
            raise IngestError(message[2])
        return message

    def close(self) -> None:
        for child in self._children:
            child.close()


def _preparer_main(work: tuple[_PreparerSetup, list[tuple[int, str]]], connection: Connection) -> int:
    """A preparing process (see `_Preparers`)."""
    setup, files = work
    _prepare_files(setup, files, connection)
    return 0


# -- the pipeline -------------------------------------------------------------------------------


def default_batch_id() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass
class _Placed:
    """An input record whose contribution waits in the session to be written."""

    file: "_FileRun"
    result: ReadResult
    key: tuple[str, str]
    outcome: Outcome


@dataclass
class _FileRun:
    """The file being ingested."""

    path: Path
    number: int                         # 1-based, in input order
    library: LibraryPolicy
    summary: FileSummary


class Pipeline:
    def __init__(self, store: Store, table: IndexTable, policy: IngestPolicy, options: IngestOptions,
                 progress: ProgressCallback | None = None):
        self.store = store
        self.table = table
        self.policy = policy
        self.options = options
        self.progress = progress
        self.report = IngestReport(quarantine=str(options.quarantine_path))
        self.salt = extraction_salt(table, policy)
        self.analyzer = contribution_analyzer(table)
        self.preparer = _Preparer(table, policy, options.batch_id or default_batch_id(), self.salt, self.report)
        self.session: MergeSession | None = None  # the merge session of the records not yet written
        self.session_size = 0                     # contributions it holds (loaded or placed)
        self.pending: list[_Placed] = []           # input records placed in it, to count when written
        self.preparers: _Preparers | None = None   # with options.jobs > 1

    def new_session(self) -> MergeSession:
        return MergeSession(self.policy.hub, self.policy.match_points, self.analyzer)

    async def run(self, paths: Sequence[str | Path]) -> IngestReport:
        files = expand_inputs(paths)
        if self.options.library is not None and self.options.library not in self.policy.libraries:
            raise IngestError(f"library {self.options.library!r} is not in the rule set ({', '.join(self.policy.libraries)})")
        state = FileState(self.options.state_path)
        if state.entries and (await self.store.stats()).records == 0:
            state.clear()
        self.quarantine = Quarantine(self.options.quarantine_path)
        self.seen = SeenSources()
        read_files: list[tuple[str, FileSummary]] = []  # (state key, summary) of the files read
        plan = []  # (number, path, state key, what the state knows of an unchanged file to skip)
        for number, path in enumerate(files, start=1):
            key = FileState.key(file_digest(path), self.options, self.salt)
            known = state.get(key)
            skip = known is not None and self.options.skip_unchanged_files and not self.options.full
            plan.append((number, path, key, known if skip else None))
        to_read = [(number, path) for number, path, _, known in plan if known is None]
        if self.options.jobs > 1 and to_read:
            setup = _PreparerSetup(self.table, self.policy, self.options, self.preparer.batch_id, self.salt)
            self.preparers = _Preparers(setup, to_read, self.options.jobs - 1)
        try:
            for number, path, key, known in plan:
                if known is not None:
                    summary = FileSummary(str(path), known["library"], read=known["records"], skipped=True)
                    self.report.files.append(summary)
                    self.report.read += summary.read
                    self.report.unchanged += summary.read
                    self._tick()
                    continue
                summary = await self._ingest_file(path, number)
                if summary.read == 0:
                    self.report.warn(f"{path}: no MARC records found")
                read_files.append((key, summary))
            await self._flush()
            if self.options.full:
                await self._withdraw_unread(read_files, state)
        finally:
            if self.preparers is not None:
                self.preparers.close()
            self.quarantine.close()
            self.seen.close()
        for key, summary in read_files:
            if summary.quarantined == 0:
                state.put(key, Path(summary.path), summary.library, summary.read)
            else:
                state.forget(key)
        state.save()
        return self.report

    async def _withdraw_unread(self, read_files: list[tuple[str, FileSummary]], state: FileState) -> None:
        """After a full ingest: each library's contributions its input did not have go."""
        by_library: dict[str, list[FileSummary]] = {}
        keys: dict[str, set[str]] = {}
        for key, summary in read_files:
            by_library.setdefault(summary.library, []).append(summary)
            keys.setdefault(summary.library, set()).add(key)
        for library_code, summaries in by_library.items():
            if sum(s.read - s.quarantined for s in summaries) == 0:
                # An export with nothing readable in it is far likelier a wrong file than a
                # library without books: withdrawing everything on its word would be a disaster.
                self.report.warn(f"full ingest of {library_code}: no record of its input was taken in; nothing withdrawn")
                continue
            await self._withdraw_unseen(library_code)
            state.forget_library(library_code, keep=keys[library_code])

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(self.report)

    async def _ingest_file(self, path: Path, number: int) -> FileSummary:
        if self.preparers is not None:
            return await self._ingest_prepared_file(path, number)
        try:
            results = read_records(path, format=self.options.format, encoding=self.options.encoding)
            if self.options.library is not None:
                head, library_code = [], self.options.library
            else:
                head, library_code = detect_library(results, self.policy)
            file = _FileRun(path, number, self.policy.libraries[library_code], FileSummary(str(path), library_code))
            self.report.files.append(file.summary)
            batch: list[_Prepared] = []
            for result in itertools.chain(head, results):
                batch.append(self.preparer.prepare(path, result, file.library))
                if len(batch) >= self.options.batch_size:
                    await self._apply(file, batch)
                    batch = []
        except OSError as error:
            raise IngestError(f"{path}: {error.strerror or error}") from error
        if batch:
            await self._apply(file, batch)
        return file.summary

    async def _ingest_prepared_file(self, path: Path, number: int) -> FileSummary:
        """`_ingest_file` with the file read, parsed and extracted by a preparing process."""
        assert self.preparers is not None
        _, _, library_code = await self.preparers.next(number)
        file = _FileRun(path, number, self.policy.libraries[library_code], FileSummary(str(path), library_code))
        self.report.files.append(file.summary)
        while (message := await self.preparers.next(number))[0] == "batch":
            _, _, entries, warnings = message
            for warning in warnings:
                self.report.warn(warning)
            if entries:
                await self._apply(file, entries)
        return file.summary

    async def _load(self, session: MergeSession, entries: list[_Prepared]) -> None:
        """Load every union record the batch can touch: first those holding the batch's
        contributions; then, for the records that are not unchanged (only those are analysed),
        those sharing their match keys and those at the ids new records would take."""
        by_library: dict[str, set[str]] = {}
        for entry in entries:
            if isinstance(entry, (_Candidate, _Withdrawal)):
                library, source_id = entry.key
                by_library.setdefault(library, set()).add(source_id)
        ids: set[str] = set()
        for library, source_ids in by_library.items():
            ids.update((await self.store.find_by_contribution(library, sorted(source_ids))).values())
        await self._load_ids(session, sorted(ids))
        changed = []
        for entry in entries:
            if isinstance(entry, _Candidate):
                stored = session.contribution(*entry.key)
                if stored is None or stored.fingerprint != entry.contribution.fingerprint:
                    incoming = self.preparer.analyse(entry)
                    if incoming is not None:
                        changed.append(incoming)
        await self._load_for(session, changed)

    async def _load_for(self, session: MergeSession, incoming: list[Incoming]) -> None:
        keys = sorted({key for entry in incoming for key in entry.analysis.match_keys})
        if keys:
            ids = {i for found in (await self.store.find_by_match_keys(keys)).values() for i in found}
            await self._load_ids(session, sorted(ids))
        await self._resolve_ids(session, incoming)

    async def _load_ids(self, session: MergeSession, ids: Sequence[str]) -> None:
        wanted = [i for i in ids if not session.knows(i)]
        if not wanted:
            return
        records = await self.store.get(wanted)
        self.session_size += sum(len(r.contributions) for r in records if r is not None)
        session.load(r for r in records if r is not None)
        session.mark_absent(i for i, r in zip(wanted, records) if r is None)

    async def _resolve_ids(self, session: MergeSession, pending: list[Incoming]) -> None:
        """Find out whether the ids new records would take exist (ids derive from match keys)."""
        while pending:
            wanted: set[str] = set()
            still = []
            for incoming in pending:
                unknown = session.unknown_ids(incoming)
                if unknown:
                    wanted.update(unknown)
                    still.append(incoming)
            if not wanted:
                return
            await self._load_ids(session, sorted(wanted))
            pending = still

    async def _place(self, session: MergeSession, incoming: Incoming) -> Outcome:
        was_present = session.record_of(*incoming.key) is not None
        while True:
            try:
                outcome = session.place(incoming)
                break
            except IdLookupNeeded as needed:
                await self._load_ids(session, [needed.record_id])
        if was_present and outcome in (Outcome.ADDED, Outcome.MERGED):
            # A retry after a lookup: the first attempt had already taken the contribution out.
            return Outcome.UPDATED
        return outcome

    def _earlier_in_file(self, file: _FileRun, entries: list[_Prepared]) -> set[tuple[str, str]]:
        by_library: dict[str, list[str]] = {}
        for entry in entries:
            if isinstance(entry, _Candidate):
                by_library.setdefault(entry.contribution.library, []).append(entry.contribution.source_id)
        return {(library, source_id)
                for library, source_ids in by_library.items()
                for source_id in self.seen.in_file(file.number, library, source_ids)}

    def _session(self) -> MergeSession:
        if self.session is None:
            self.session = self.new_session()
            self.session_size = 0
        return self.session

    async def _apply(self, file: _FileRun, entries: list[_Prepared]) -> None:
        session = self._session()
        await self._load(session, entries)
        read_before = self._earlier_in_file(file, entries)
        for entry in entries:
            file.summary.read += 1
            self.report.read += 1
            if isinstance(entry, _Quarantined):
                if entry.source_id and entry.keeps_previous:
                    # Sent, though not taken in: a full ingest keeps its previous contribution. (Not
                    # as read from this file: a later good record with its control number goes in.)
                    self.seen.add(SeenSources.NOT_TAKEN, [(file.library.code, entry.source_id)])
                self._quarantine(file, entry)
            elif isinstance(entry, _Withdrawal):
                withdrawn = session.withdraw(entry.library, entry.source_id)
                self.report.count(Outcome.UPDATED if withdrawn else Outcome.UNCHANGED)
            else:
                decided, outcome = await self._decide(file, session, entry, read_before)
                if outcome is None:
                    assert isinstance(decided, _Quarantined)
                    self._quarantine(file, decided)
                elif outcome is Outcome.UNCHANGED:
                    self.report.count(outcome)
                else:
                    # Without the parsed record: only the raw bytes are needed, should the store refuse it.
                    entry.contribution.compact()
                    self.pending.append(_Placed(file, replace(entry.result, record=None), entry.key, outcome))
                    self.session_size += 1
        self.quarantine.flush()
        if self.session_size >= self.options.write_behind:
            await self._flush()
        self._tick()

    def _quarantine(self, file: _FileRun, entry: _Quarantined) -> None:
        self.quarantine.add(file.path, entry.result, file.library.code, entry.reason, entry.source_id)
        file.summary.quarantined += 1
        self.report.quarantined += 1

    async def _flush(self) -> None:
        """Write the session's changes and count the records placed in it: those whose union
        record the store refused go to quarantine."""
        if self.session is None:
            return
        session, self.session = self.session, None
        upserts, deletes = session.changes()
        failed = await self._write(upserts, deletes)
        for placed in self.pending:
            record_id = session.record_of(*placed.key)
            if record_id in failed:
                reason = f"the store did not take union record {record_id}: {failed[record_id]}"
                self._quarantine(placed.file, _Quarantined(placed.result, reason, placed.key[1]))
            else:
                self.report.count(placed.outcome)
        self.pending = []
        self.quarantine.flush()

    async def _decide(self, file: _FileRun, session: MergeSession, entry: _Candidate,
                      read_before: set[tuple[str, str]]) -> tuple[_Prepared, Outcome | None]:
        """Unchanged, placed, or (a different record under a control number the file already
        had: the first one is kept) quarantined."""
        contribution = entry.contribution
        key = entry.key
        stored = session.contribution(*key)
        unchanged = stored is not None and stored.fingerprint == contribution.fingerprint
        where = f"{file.path}:{entry.result.position}"
        if key in read_before:
            if unchanged:
                self.report.warn(f"{where}: control number {contribution.source_id} again, the same record")
                return entry, Outcome.UNCHANGED
            reason = f"control number {contribution.source_id} came earlier in this file: the earlier record is kept"
            return _Quarantined(entry.result, reason, contribution.source_id), None
        read_before.add(key)
        self.seen.add(file.number, [key])
        if unchanged:
            return entry, Outcome.UNCHANGED
        if entry.incoming is None and not entry.failure:
            # Unchanged when the batch was loaded, no longer (an earlier record withdrew it).
            incoming = self.preparer.analyse(entry)
            if incoming is not None:
                await self._load_for(session, [incoming])
        if entry.incoming is None:
            return _Quarantined(entry.result, entry.failure, contribution.source_id), None
        return entry, await self._place(session, entry.incoming)

    async def _write(self, upserts: list[UnionRecord], deletes: list[str]) -> dict[str, str]:
        """Write a session's changes; the ids the store refused, with its reasons."""
        failed: dict[str, str] = {}
        if upserts:
            result = await self.store.upsert(upserts)
            failed.update(result.failed)
        if deletes:
            result = await self.store.delete(deletes)
            failed.update(result.failed)
            self.report.deleted_records += len(deletes) - len(result.failed)
        if upserts or deletes:
            await self.store.refresh()
        return failed

    async def _withdraw_unseen(self, library: str) -> None:
        """After a full ingest: withdraw the library's contributions its export no longer has."""
        ids = await self.store.ids_of_library(library)
        for start in range(0, len(ids), self.options.batch_size):
            records = [r for r in await self.store.get(ids[start:start + self.options.batch_size]) if r is not None]
            session = self.new_session()
            session.load(records)
            for record in records:
                source_ids = [c.source_id for c in record.contributions if c.library == library]
                for source_id in sorted(self.seen.missing(library, source_ids)):
                    if session.withdraw(library, source_id):
                        self.report.withdrawn += 1
            upserts, deletes = session.changes()
            failed = await self._write(upserts, deletes)
            for record_id, reason in failed.items():
                self.report.warn(f"full ingest of {library}: the store did not update union record {record_id}: {reason}")


async def ingest(
    paths: Sequence[str | Path],
    store: Store,
    table: IndexTable,
    policy: IngestPolicy,
    options: IngestOptions,
    progress: ProgressCallback | None = None,
    indexing: IndexingProgress | None = None,
) -> IngestReport:
    """Read the files into the store; see the module docstring. `indexing(done, total)` follows
    the indexing at the end of the run (`Store.bulk_load`)."""
    async with store.bulk_load(indexing, options.jobs):
        return await Pipeline(store, table, policy, options, progress).run(paths)


def write_report(report: IngestReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)

