"""The ingest pipeline and `federation ingest` on real records, into the embedded store.

Two libraries' exports are built from the Library of Congress records the way their systems
would write them (own control numbers, items in the library's holdings field, barcodes from
the rule set's ranges), so merging, full re-ingests, deletions and the barcode policy are
checked on real bibliographic data.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import pty
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pymarc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from lxml import etree

from es_support import es_store
from test_readers import iso2709
from federation.rules import load_network
from indexer.demo import write_demo_data
from indexer.embedded import DATABASE_NAME, EmbeddedStore
from indexer.extract import control_number
from indexer.indexes import load_index_table
from indexer.ingest import (
    REPORT_KEYS, IngestError, IngestOptions, IngestReport, fallback_source_id, ingest, read_quarantine, unicode_leader)
from indexer.model import MarcFormat, UnionRecord
from indexer.policy import BarcodePolicy, IngestPolicy, LibraryPolicy, NumberRange
from indexer.query import Clause, Relation, SearchRequest
from indexer.readers import read_records

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
NETWORK_FILE = ROOT / "config" / "networks" / "guangrao.yaml"
LOC = FIXTURES / "marc21" / "loc-bibliographic-386.mrc"
FEDERATION = Path(sys.executable).with_name("federation")

# Two member libraries whose own systems export MARC21: the court reading room (852 $b $p) and
# the county-departments branch (Koha 952 $a $p, library code XZBM mapped by the rule set).
READING_ROOM = "GR-FY"
KOHA_BRANCH = "GR-XZBM"


@pytest.fixture(scope="module")
def network():
    return load_network(NETWORK_FILE)


@pytest.fixture(scope="module")
def table():
    return load_index_table()


@pytest.fixture(scope="module")
def policy(network) -> IngestPolicy:
    return network.to_ingest_policy()


@pytest.fixture(scope="module")
def any_format_policy(policy) -> IngestPolicy:
    """The rule set, accepting every MARC format (Guangrao itself takes CNMARC and MARC21)."""
    return dataclasses.replace(policy, accepted_formats=("marc21", "unimarc", "cnmarc"))


@pytest.fixture
async def store(tmp_path, table):
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(params=["embedded", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
async def any_store(request, tmp_path, table):
    """Each store kind, for the tests of what the pipeline asks of a store (lookups, refresh)."""
    if request.param == "embedded":
        store = EmbeddedStore(tmp_path / "store", table)
        await store.open()
        yield store
        await store.close()
    else:
        async with es_store(table) as store:
            yield store


@pytest.fixture(scope="module")
def loc_records() -> list[pymarc.Record]:
    return [result.record for result in read_records(LOC)]


class Runner:
    """Runs ingests into one store, each with its own quarantine file."""

    def __init__(self, store, table, policy, directory: Path):
        self.store, self.table, self.policy, self.directory = store, table, policy, directory
        self.runs = 0

    async def __call__(self, paths: Sequence[Path], policy: IngestPolicy | None = None, **options) -> IngestReport:
        self.runs += 1
        options.setdefault("skip_unchanged_files", False)
        report = await ingest(
            paths, self.store, self.table, policy or self.policy,
            IngestOptions(quarantine_path=self.directory / f"run{self.runs}.quarantine.jsonl", **options),
        )
        assert report.reconciled, report.to_json()
        return report


@pytest.fixture
def run(store, table, policy, tmp_path) -> Runner:
    return Runner(store, table, policy, tmp_path)


@pytest.fixture
def run_any(any_store, table, policy, tmp_path) -> Runner:
    return Runner(any_store, table, policy, tmp_path)


# -- building exports ----------------------------------------------------------------------------


def barcode(library: LibraryPolicy, n: int) -> str:
    prefix, start, width = NumberRange.split(library.barcode_ranges[0].start)
    return f"{prefix}{start + n:0{width}d}"


def holdings_field(library: LibraryPolicy, source_code: str, code: str) -> pymarc.Field:
    mapping = library.holdings
    subfields = [pymarc.Subfield(mapping.library, source_code), pymarc.Subfield(mapping.barcode, code)]
    if mapping.call_number:
        subfields.append(pymarc.Subfield(mapping.call_number, "Z" + code[-4:]))
    return pymarc.Field(tag=mapping.tag, indicators=pymarc.Indicators(" ", " "), subfields=subfields)


def library_copy(record: pymarc.Record, control: str, fields: Sequence[pymarc.Field]) -> pymarc.Record:
    """The record as a library's system exports it: its own 001, its own items, no one else's."""
    copy = pymarc.Record(leader=str(record.leader), force_utf8=True)
    copy.leader = pymarc.Leader(str(record.leader)[:9] + "a" + str(record.leader)[10:])
    copy.add_field(pymarc.Field(tag="001", data=control))
    for existing in record.fields:
        if existing.tag not in ("001", "852", "905", "949", "952"):
            copy.add_field(existing)
    for item in fields:
        copy.add_field(item)
    return copy


def write_export(path: Path, records: Sequence[pymarc.Record]) -> Path:
    with open(path, "wb") as handle:
        for record in records:
            handle.write(record.as_marc())
    return path


def export(path: Path, policy: IngestPolicy, code: str, source_code: str, records: dict[int, pymarc.Record],
           items_per_record: int = 1) -> Path:
    """`records` by their position in the LoC file (the control number and barcodes derive from it)."""
    library = policy.libraries[code]
    copies = []
    for n, record in sorted(records.items()):
        items = [holdings_field(library, source_code, barcode(library, n * 10 + i)) for i in range(items_per_record)]
        copies.append(library_copy(record, f"{code}-{n:05d}", items))
    return write_export(path, copies)


async def all_records(store) -> list[UnionRecord]:
    ids = set()
    for library in ("GR", READING_ROOM, KOHA_BRANCH):
        ids.update(await store.ids_of_library(library))
    return [r for r in await store.get(sorted(ids)) if r is not None]


async def record_of(store, library: str, source_id: str) -> UnionRecord:
    found = await store.find_by_contribution(library, [source_id])
    assert source_id in found, f"{library}/{source_id} is not in the store"
    (record,) = await store.get([found[source_id]])
    return record


def barcodes_of(record: UnionRecord, library: str | None = None) -> set[str]:
    return {item.barcode for item in record.items if library is None or item.library == library}


# -- real files: counts reconcile ------------------------------------------------------------------


def iso2709_count(path: Path) -> int:
    """Records in an ISO 2709 file by pymarc, independent of the project's reader."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        # permissive: a chunk pymarc cannot parse (trailing padding) comes as None and is no record
        return sum(1 for r in pymarc.MARCReader(handle, to_unicode=False, permissive=True) if r is not None)


def xml_record_count(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        tree = etree.parse(handle)
    return len(tree.xpath("//*[local-name()='record' and ./*[local-name()='leader']]"))


@pytest.mark.parametrize("relative, expected_format", [
    ("marc21/loc-bibliographic-386.mrc", MarcFormat.MARC21),
    ("marc21/one-marc8.mrc", MarcFormat.MARC21),
    ("marc21/stanford-30.utf8.mrc", MarcFormat.MARC21),
    ("cnmarc/dp2_sru_sample_cnmarcxml.iso", MarcFormat.CNMARC),
    ("cnmarc/sample_cnmarcxml.xml", MarcFormat.CNMARC),
    pytest.param("unimarc/periouni-3064.mrc", MarcFormat.UNIMARC, marks=pytest.mark.slow),
    ("idzebra/marc21/sample-marc.gz", MarcFormat.MARC21),
    ("idzebra/marcxml/collection-opera-43.xml.gz", MarcFormat.MARC21),
    ("idzebra/marcxml/collection-2.xml.gz", MarcFormat.MARC21),
    ("idzebra/marcxml/collection-sandburg-1.xml", MarcFormat.MARC21),
])
async def test_real_files_reconcile_and_every_record_is_findable(run, store, any_format_policy, relative, expected_format):
    path = FIXTURES / relative
    expected = xml_record_count(path) if ".xml" in path.suffixes else iso2709_count(path)
    report = await run([path], any_format_policy)
    assert report.read == expected
    assert report.files[0].library == "GR"  # no items: the hub's catalogue records
    # Expected outcomes from the records themselves: a deletion (leader/05 d) with nothing to
    # withdraw is unchanged; a control number repeated in the file keeps its first record (the
    # same record again is unchanged, a different one is quarantined).
    records, deleted, repeated_same, repeated_different = {}, 0, 0, 0
    for result in read_records(path):
        assert result.format is expected_format
        source_id = control_number(result.record) or fallback_source_id(result.record)
        if str(result.record.leader)[5] == "d":
            deleted += 1
        elif source_id in records:
            if records[source_id].as_dict() == result.record.as_dict():
                repeated_same += 1
            else:
                repeated_different += 1
        else:
            records[source_id] = result.record
    assert report.quarantined == repeated_different
    assert all("came earlier in this file" in e["reason"] for e in read_quarantine(report.quarantine))
    assert report.unchanged == deleted + repeated_same
    assert report.added + report.merged + report.updated == len(records)
    found = await store.find_by_contribution("GR", sorted(records))
    assert set(found) == set(records)
    stored = {r.id: r for r in await store.get(sorted(set(found.values())))}
    assert (await store.stats()).records == len(stored)
    for source_id, record in records.items():
        contribution = next(c for c in stored[found[source_id]].contributions if c.source_id == source_id)
        expected_marc = record.as_dict()
        expected_marc["leader"] = unicode_leader(expected_marc["leader"], expected_format)
        assert contribution.marc == expected_marc
        assert contribution.format is expected_format
    # Every record is either its own union record's master or merged into one: none lost.
    assert sum(len(r.contributions) for r in stored.values()) == len(records)
    # Same input again: nothing changes.
    again = await run([path], any_format_policy)
    assert (again.read, again.unchanged, again.quarantined) == (expected, expected - repeated_different, repeated_different)
    assert await store.find_by_contribution("GR", sorted(records)) == found


async def test_the_same_cnmarc_records_in_gb18030_and_as_served_in_cnmarc_xml_are_unchanged(run, store, tmp_path):
    """The dp2 CNMARC records as UTF-8 ISO 2709, re-encoded to GB18030, and in the CNMARC-XML
    (and UNIMARC-XML, KORMARC-XML namespaces) of the SRU responses: one catalogue, whatever the
    encoding, serialization and namespace."""
    utf8 = FIXTURES / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso"
    originals = [r.record for r in read_records(utf8)]
    gb18030 = tmp_path / "dp2.gb18030.iso"
    gb18030.write_bytes(b"".join(iso2709(record, "gb18030") for record in originals))
    first = await run([utf8])
    assert (first.read, first.added + first.merged) == (10, 10)
    ids = await store.find_by_contribution("GR", [control_number(r) for r in originals])
    assert len(ids) == 10
    for path, options in ((gb18030, {"encoding": "gb18030"}), (gb18030, {}),
                          (FIXTURES / "cnmarc" / "sample_cnmarcxml.xml", {}),
                          # the same records served in the UNIMARC-XML and KORMARC-XML namespaces
                          (FIXTURES / "cnmarc" / "sample_unimarcxml.xml", {}),
                          (FIXTURES / "cnmarc" / "sample_kormarcxml.xml", {})):
        again = await run([path], **options)
        assert (again.read, again.unchanged) == (10, 10), (path, options)
    assert await store.find_by_contribution("GR", [control_number(r) for r in originals]) == ids


@pytest.mark.parametrize("relative, reason", [
    # Guangrao accepts CNMARC and MARC21 only.
    ("unimarc/periouni-3064.mrc", "format unimarc is not accepted"),
    # Zebra's classification records (leader/06 w) and its LC name and subject authority records
    # (leader/06 z) are no bibliographic records (they also lack the 245 Guangrao requires).
    ("idzebra/marcxml/collection-clasmrc.xml.gz", "classification record (leader/06 'w'): only bibliographic records are catalogued"),
    ("idzebra/marcxml/collection-namemrc.xml.gz", "authority record (leader/06 'z'): only bibliographic records are catalogued"),
    ("idzebra/marcxml/collection-subjmrc.xml.gz", "authority record (leader/06 'z'): only bibliographic records are catalogued"),
])
async def test_records_the_rule_set_refuses_are_quarantined(run, store, relative, reason):
    path = FIXTURES / relative
    expected = xml_record_count(path) if ".xml" in path.suffixes else iso2709_count(path)
    if "idzebra" in relative:
        assert expected == 20 and set(xml_leader_types(path)) == ({"w"} if "clas" in relative else {"z"})
    report = await run([path])
    assert (report.read, report.quarantined) == (expected, expected)
    entries = read_quarantine(report.quarantine)
    assert [e["position"] for e in entries] == list(range(1, expected + 1))
    assert all(reason in e["reason"] for e in entries)
    assert (await store.stats()).records == 0


def xml_leader_types(path: Path) -> list[str]:
    """Leader/06 (type of record) of each record of a MARCXML file, by lxml."""
    with gzip.open(path, "rb") as handle:
        tree = etree.parse(handle)
    return [leader[6] for leader in tree.xpath("//*[local-name()='record']/*[local-name()='leader']/text()")]


@pytest.mark.parametrize("name", ["collection-namemrc.xml.gz", "collection-subjmrc.xml.gz", "collection-clasmrc.xml.gz"])
async def test_authority_records_are_refused_whatever_the_required_fields(run, store, any_format_policy, name):
    """Zebra's LC name/subject authority and classification records are not books: a rule set
    that requires no fields must not make them union records either."""
    path = FIXTURES / "idzebra" / "marcxml" / name
    lenient = dataclasses.replace(any_format_policy, required_fields={})
    report = await run([path], lenient)
    assert (report.read, report.quarantined) == (20, 20)
    assert (await store.stats()).records == 0
    kind = "classification record (leader/06 'w')" if "clas" in name else "authority record (leader/06 'z')"
    entries = read_quarantine(report.quarantine)
    assert [e["position"] for e in entries] == list(range(1, 21))
    assert {e["reason"] for e in entries} == {f"{kind}: only bibliographic records are catalogued"}
    assert all(e["source_id"] for e in entries)  # the control number, to find the record by


def with_leader_06(record: pymarc.Record, code: str, control: str | None = None) -> pymarc.Record:
    """A copy of the record whose leader/06 (type of record) is `code`, under another 001."""
    copy = pymarc.Record(leader=str(record.leader)[:6] + code + str(record.leader)[7:], force_utf8=True)
    for existing in record.fields:
        if control is not None and existing.tag == "001":
            copy.add_field(pymarc.Field(tag="001", data=control))
        else:
            copy.add_field(existing)
    return copy


@pytest.mark.parametrize("code, reason", [
    ("z", "authority record (leader/06 'z')"),
    ("u", "holdings record (leader/06 'u')"),
    ("v", "holdings record (leader/06 'v')"),
    ("x", "holdings record (leader/06 'x')"),
    ("y", "holdings record (leader/06 'y')"),
    ("w", "classification record (leader/06 'w')"),
    ("q", "community information record (leader/06 'q')"),
    ("b", "leader/06 'b' is no marc21 bibliographic type of record (a c d e f g i j k m o p r t)"),
])
async def test_marc21_records_of_another_type_are_quarantined_with_their_type(
        run, store, any_format_policy, tmp_path, loc_records, code, reason):
    # Even a record that has everything a book has (a 245, a 100, items) is refused for its type.
    lenient = dataclasses.replace(any_format_policy, required_fields={})
    book = library_copy(loc_records[3], "FY-3", [])
    path = write_export(tmp_path / "mixed.mrc", [with_leader_06(book, code, "FY-OTHER"), book])
    report = await run([path], lenient, library=READING_ROOM)
    assert (report.read, report.added, report.quarantined) == (2, 1, 1)
    (entry,) = read_quarantine(report.quarantine)
    assert (entry["position"], entry["source_id"]) == (1, "FY-OTHER")
    assert entry["reason"] == f"{reason}: only bibliographic records are catalogued"
    assert set(await store.find_by_contribution(READING_ROOM, ["FY-3", "FY-OTHER"])) == {"FY-3"}


@pytest.mark.parametrize("code, reason", [
    ("x", "authority record (leader/06 'x')"),
    ("y", "authority record (reference entry) (leader/06 'y')"),
    ("z", "authority record (general explanatory entry) (leader/06 'z')"),
    ("u", "holdings record (leader/06 'u')"),
])
async def test_unimarc_and_cnmarc_records_of_another_type_are_quarantined_with_their_type(
        run, store, any_format_policy, tmp_path, code, reason):
    books = [r.record for r in read_records(FIXTURES / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso")][:2]
    unimarc = [r.record for r in read_records(FIXTURES / "unimarc" / "periouni-3064.mrc")][:2]
    records = [with_leader_06(books[0], code), books[1], with_leader_06(unimarc[0], code), unimarc[1]]
    path = tmp_path / "mixed.iso"
    path.write_bytes(b"".join(iso2709(record, "utf-8") for record in records))
    report = await run([path], any_format_policy)
    assert (report.read, report.added + report.merged, report.quarantined) == (4, 2, 2)
    entries = read_quarantine(report.quarantine)
    assert [e["position"] for e in entries] == [1, 3]
    assert {e["reason"] for e in entries} == {f"{reason}: only bibliographic records are catalogued"}


async def test_every_bibliographic_type_of_record_goes_in(run, store, any_format_policy, tmp_path, loc_records):
    book = library_copy(loc_records[5], "FY-5", [])
    records = [with_leader_06(book, code, f"FY-{code}") for code in "acdefgijkmoprt"]
    path = write_export(tmp_path / "types.mrc", records)
    report = await run([path], dataclasses.replace(any_format_policy, required_fields={}), library=READING_ROOM)
    assert (report.read, report.quarantined) == (14, 0)
    assert len(await store.find_by_contribution(READING_ROOM, [f"FY-{code}" for code in "acdefgijkmoprt"])) == 14


async def test_a_blank_type_of_record_goes_in_only_with_a_title(run, store, any_format_policy, tmp_path, loc_records):
    # pymarc's own blank leader (and fixtures/malformed/bad_leaders_10_11.mrc) state no type:
    # a record with a 245 is taken in as bibliographic, with a warning; one without is refused.
    lenient = dataclasses.replace(any_format_policy, required_fields={})
    titled = with_leader_06(library_copy(loc_records[7], "FY-7", []), " ")
    untitled = with_leader_06(library_copy(loc_records[8], "FY-8", []), " ")
    untitled.remove_fields("245")
    report = await run([write_export(tmp_path / "blank.mrc", [titled, untitled])], lenient, library=READING_ROOM)
    assert (report.read, report.added, report.quarantined) == (2, 1, 1)
    (entry,) = read_quarantine(report.quarantine)
    assert entry["reason"] == ("type of record not stated (leader/06 blank) and no 245 title: "
                               "not recognizably a bibliographic record")
    assert any("leader/06 blank" in warning and "taken in as bibliographic" in warning for warning in report.warnings)
    assert set(await store.find_by_contribution(READING_ROOM, ["FY-7", "FY-8"])) == {"FY-7"}


async def test_a_record_of_another_type_neither_withdraws_nor_keeps_a_bibliographic_contribution(
        run, store, policy, tmp_path, loc_records):
    """An authority record's control number is another numbering: the library's bibliographic
    record under the same number is not withdrawn by a deleted authority record, and is not kept
    by a full export that has only an authority record under that number."""
    room = policy.libraries[READING_ROOM]
    books = {n: library_copy(loc_records[n], f"FY-{n}", [holdings_field(room, READING_ROOM, barcode(room, n))])
             for n in (10, 11)}
    await run([write_export(tmp_path / "fy.mrc", list(books.values()))], library=READING_ROOM)
    authority = with_leader_06(loc_records[10], "z", "FY-10")
    deleted = pymarc.Record(leader=str(authority.leader)[:5] + "d" + str(authority.leader)[6:], force_utf8=True)
    deleted.add_field(pymarc.Field(tag="001", data="FY-10"))
    report = await run([write_export(tmp_path / "auth-deleted.mrc", [deleted])], library=READING_ROOM)
    assert (report.read, report.quarantined, report.updated) == (1, 1, 0)
    assert "authority record (leader/06 'z')" in read_quarantine(report.quarantine)[0]["reason"]
    assert set(await store.find_by_contribution(READING_ROOM, ["FY-10", "FY-11"])) == {"FY-10", "FY-11"}
    # A full export holding book 11 and an authority record numbered FY-10: book 10 is withdrawn.
    report = await run([write_export(tmp_path / "fy-full.mrc", [authority, books[11]])], full=True, library=READING_ROOM)
    assert (report.read, report.unchanged, report.quarantined, report.withdrawn) == (2, 1, 1, 1)
    assert set(await store.find_by_contribution(READING_ROOM, ["FY-10", "FY-11"])) == {"FY-11"}


# -- malformed input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "malformed").iterdir()))
async def test_malformed_files_good_records_in_bad_ones_quarantined(run, store, any_format_policy, name):
    path = FIXTURES / "malformed" / name
    results = list(read_records(path))
    report = await run([path], any_format_policy)
    assert report.read == len(results)
    entries = read_quarantine(report.quarantine)
    assert len(entries) == report.quarantined
    by_position = {e["position"]: e for e in entries}
    data = path.read_bytes()
    for result in results:
        if not result.ok:
            entry = by_position[result.position]
            assert entry["reason"] == result.error
            assert entry["raw"] == result.raw
            if path.suffix == ".mrc":
                assert data[entry["offset"]:entry["offset"] + len(entry["raw"])] == entry["raw"]
    for entry in entries:
        assert entry["reason"] and entry["file"] == str(path)
    # Every record not quarantined is in the store under its control number.
    kept = [r for r in results if r.ok and r.position not in by_position]
    ids = [control_number(r.record) for r in kept if control_number(r.record)]
    assert set((await store.find_by_contribution("GR", ids))) == set(ids)
    assert report.added + report.merged + report.updated + report.unchanged == len(kept)


async def test_a_json_record_with_a_lone_surrogate_is_quarantined_and_the_rest_goes_in(run, store, tmp_path):
    # MARC-in-JSON may escape half of a UTF-16 pair: valid JSON, not valid Unicode text. The reader
    # refuses it, naming the field, before anything downstream (extraction, the store) sees it.
    path = tmp_path / "surrogate.json"
    path.write_text(
        '[{"leader": "00000nam a2200000 a 4500", "fields": [{"001": "S1"},'
        ' {"245": {"ind1": "1", "ind2": "0", "subfields": [{"a": "Broken \\ud800 title"}]}}]},\n'
        ' {"leader": "00000nam a2200000 a 4500", "fields": [{"001": "S2"},'
        ' {"245": {"ind1": "1", "ind2": "0", "subfields": [{"a": "Good title"}]}}]}]\n', encoding="ascii")
    report = await run([path])
    assert (report.read, report.added, report.quarantined) == (2, 1, 1)
    (entry,) = read_quarantine(report.quarantine)
    assert entry["position"] == 1
    assert entry["reason"] == r"fields[1] (245) $a: lone UTF-16 surrogate \ud800 after 'Broken ' is not a Unicode character"
    assert b"\\ud800" in entry["raw"]
    assert set(await store.find_by_contribution("GR", ["S1", "S2"])) == {"S2"}


# -- merging two libraries -----------------------------------------------------------------------------


# LoC records (by position) each library holds: they overlap in 60-119.
ROOM_HOLDS = range(0, 120)
KOHA_HOLDS = range(60, 180)
OVERLAP = range(60, 120)


@pytest.fixture
def two_exports(tmp_path, policy, loc_records):
    """The reading room's export (one item per record) and the Koha branch's (two items each)."""
    room = export(tmp_path / "fy.mrc", policy, READING_ROOM, READING_ROOM, {n: loc_records[n] for n in ROOM_HOLDS})
    koha = export(tmp_path / "xzbm.mrc", policy, KOHA_BRANCH, "XZBM", {n: loc_records[n] for n in KOHA_HOLDS}, 2)
    return room, koha


async def test_overlapping_exports_merge_into_one_record_per_work_with_both_holdings(
        run_any, any_store, two_exports, tmp_path, table, policy, loc_records):
    run, store = run_any, any_store
    room, koha = two_exports
    first = await run([room])
    second = await run([koha])
    assert first.files[0].library == READING_ROOM
    assert second.files[0].library == KOHA_BRANCH  # from 952 $a XZBM, a source code of the branch
    assert (first.read, second.read) == (len(ROOM_HOLDS), len(KOHA_HOLDS))
    for n in OVERLAP:
        record = await record_of(store, READING_ROOM, f"{READING_ROOM}-{n:05d}")
        assert {(c.library, c.source_id) for c in record.contributions} >= {
            (READING_ROOM, f"{READING_ROOM}-{n:05d}"), (KOHA_BRANCH, f"{KOHA_BRANCH}-{n:05d}")}
        assert barcodes_of(record, READING_ROOM) >= {barcode(policy.libraries[READING_ROOM], n * 10)}
        assert barcodes_of(record, KOHA_BRANCH) >= {barcode(policy.libraries[KOHA_BRANCH], n * 10 + i) for i in (0, 1)}
        assert all(item.tier == "reading_room" for item in record.items if item.library == READING_ROOM)
        assert all(item.tier == "branch" for item in record.items if item.library == KOHA_BRANCH)
    # The grouping is the one a single library's export of records 0-299 gets: merging is by work.
    single_store = EmbeddedStore(tmp_path / "single", table)
    await single_store.open()
    try:
        single = Runner(single_store, table, policy, tmp_path / "single-q")
        alone = export(tmp_path / "alone.mrc", policy, READING_ROOM, READING_ROOM, {n: loc_records[n] for n in range(ROOM_HOLDS.start, KOHA_HOLDS.stop)})
        await single([alone])
        assert (await single_store.stats()).records == (await store.stats()).records
    finally:
        await single_store.close()
    assert second.merged >= len(OVERLAP) and second.added == len(KOHA_HOLDS) - second.merged


async def test_batch_and_write_sizes_do_not_change_the_catalogue(run, store, two_exports, tmp_path, table, policy):
    room, koha = two_exports
    await run([room, koha])
    small_store = EmbeddedStore(tmp_path / "small", table)
    await small_store.open()
    try:
        # Batches of 7 records, written whenever the session holds more than 5 union records.
        await Runner(small_store, table, policy, tmp_path / "small-q")([room, koha], batch_size=7, write_behind=5)
        big = {r.id: sorted((c.library, c.source_id) for c in r.contributions) for r in await all_records(store)}
        small = {r.id: sorted((c.library, c.source_id) for c in r.contributions) for r in await all_records(small_store)}
        assert big == small
    finally:
        await small_store.close()


async def test_full_reingest_of_a_smaller_export_removes_exactly_the_withdrawn_holdings(
        run_any, any_store, two_exports, tmp_path, policy, loc_records):
    run, store = run_any, any_store
    room, koha = two_exports
    await run([room, koha])
    before = {r.id: r for r in await all_records(store)}
    kept, dropped = range(0, 90), range(90, 120)  # the room no longer has 90-119 (the branch has them)
    smaller = export(tmp_path / "fy-smaller.mrc", policy, READING_ROOM, READING_ROOM, {n: loc_records[n] for n in kept})
    report = await run([smaller], full=True)
    assert (report.read, report.unchanged) == (len(kept), len(kept))
    assert report.withdrawn == len(dropped)
    after = {r.id: r for r in await all_records(store)}
    withdrawn = {barcode(policy.libraries[READING_ROOM], n * 10) for n in dropped}
    all_before = set().union(*(barcodes_of(r) for r in before.values()))
    all_after = set().union(*(barcodes_of(r) for r in after.values()))
    assert all_before - all_after == withdrawn
    # Their union records stay: the Koha branch holds them too; none of them lists the room any more.
    for n in dropped:
        record = await record_of(store, KOHA_BRANCH, f"{KOHA_BRANCH}-{n:05d}")
        assert READING_ROOM not in {c.library for c in record.contributions}
    assert set(after) <= set(before)
    # The Koha branch's full export without 150-179: union records held by no one else go.
    kept, dropped = range(60, 150), range(150, 180)
    koha_smaller = export(tmp_path / "xzbm-smaller.mrc", policy, KOHA_BRANCH, "XZBM", {n: loc_records[n] for n in kept}, 2)
    gone = {(await record_of(store, KOHA_BRANCH, f"{KOHA_BRANCH}-{n:05d}")).id for n in dropped}
    report = await run([koha_smaller], full=True)
    assert report.withdrawn == len(dropped) and report.deleted_records == len(gone)
    assert await store.get(sorted(gone)) == [None] * len(gone)
    assert await store.find_by_contribution(KOHA_BRANCH, [f"{KOHA_BRANCH}-{n:05d}" for n in dropped]) == {}
    # A "full export" with nothing readable in it withdraws nothing.
    before = {r.id: r.to_dict() for r in await all_records(store)}
    report = await run([FIXTURES / "malformed" / "bad_subfield_code.mrc"], full=True, library=KOHA_BRANCH)
    assert (report.read, report.quarantined, report.withdrawn) == (1, 1, 0)
    assert any("nothing withdrawn" in warning for warning in report.warnings)
    assert {r.id: r.to_dict() for r in await all_records(store)} == before


async def test_a_deleted_record_withdraws_only_that_record(run_any, any_store, two_exports, tmp_path, policy, loc_records):
    run, store = run_any, any_store
    room, koha = two_exports
    await run([room, koha])
    before = {r.id: r for r in await all_records(store)}
    target = await record_of(store, READING_ROOM, f"{READING_ROOM}-00100")
    deleted = library_copy(loc_records[100], f"{READING_ROOM}-00100", [])
    deleted.leader = pymarc.Leader(str(deleted.leader)[:5] + "d" + str(deleted.leader)[6:])
    report = await run([write_export(tmp_path / "deletion.mrc", [deleted])], library=READING_ROOM)
    assert (report.read, report.updated) == (1, 1)
    after = {r.id: r for r in await all_records(store)}
    assert set(after) == set(before)
    for record_id, record in after.items():
        if record_id == target.id:
            assert {(c.library, c.source_id) for c in record.contributions} == \
                {(c.library, c.source_id) for c in before[record_id].contributions} - {(READING_ROOM, f"{READING_ROOM}-00100")}
            assert barcodes_of(record) == barcodes_of(before[record_id]) - {barcode(policy.libraries[READING_ROOM], 1000)}
        else:
            assert record.to_dict() == before[record_id].to_dict()
    again = await run([tmp_path / "deletion.mrc"], library=READING_ROOM)
    assert (again.read, again.unchanged) == (1, 1)


async def test_demo_catalogue_merges_into_exactly_the_works_the_generator_made(run, store, policy, tmp_path):
    """`federation demo-data` knows how many works it spread over the libraries' exports; the
    ingest must find exactly those works again, with every item."""
    summary = write_demo_data(policy, tmp_path / "demo", records=300, seed=5)
    report = await run([tmp_path / "demo"])
    assert (report.read, report.quarantined) == (300, 0)
    assert (report.added, report.merged) == (summary.works, 300 - summary.works)
    assert {Path(f.path).stem: f.library for f in report.files if f.read} == \
        {code: code for code, output in summary.libraries.items() if output.records}
    stats = await store.stats()
    assert (stats.records, stats.items) == (summary.works, summary.items)
    again = await run([tmp_path / "demo"])
    assert again.unchanged == 300


# -- the master record and provenance ---------------------------------------------------------------


def marc_size(record: pymarc.Record) -> int:
    """Fields plus subfields, counted on the record as written (the master rule's measure)."""
    return sum(1 if f.is_control_field() else 1 + len(f.subfields) for f in record.fields)


def trimmed(record: pymarc.Record) -> pymarc.Record:
    """A branch's brief record of the same book: fixed data, ISBN, author, title, imprint only."""
    brief = pymarc.Record(leader=str(record.leader), force_utf8=True)
    for existing in record.fields:
        if existing.tag in ("008", "020", "100", "245", "260", "264"):
            brief.add_field(existing)
    return brief


@pytest.fixture(scope="module")
def works(loc_records) -> list[int]:
    """LoC records (by position) with one ISBN each, subjects (650) and an LC class (050): distinct books."""
    chosen, isbns = [], set()
    for n, record in enumerate(loc_records):
        values = [v.split(" ")[0] for f in record.get_fields("020") for v in f.get_subfields("a")]
        if len(values) == 1 and len(values[0]) in (10, 13) and values[0] not in isbns \
                and record.get_fields("650") and record.get_fields("050"):
            chosen.append(n)
            isbns.add(values[0])
    assert len(chosen) >= 12
    return chosen[:12]


async def test_master_is_the_hubs_record_else_the_most_complete_and_provenance_is_kept(
        run, store, policy, tmp_path, loc_records, works):
    hub, room, koha = policy.libraries["GR"], policy.libraries[READING_ROOM], policy.libraries[KOHA_BRANCH]
    hub_first, complete_later, complete_first = works[0:4], works[4:8], works[8:12]
    sent: dict[tuple[str, str], tuple[pymarc.Record, str, set[str]]] = {}  # (library, id) -> record, batch, barcodes

    async def send(library, source_code: str, numbers, brief: bool, batch: str, items: int = 1) -> None:
        copies, barcodes = [], {}
        for n in numbers:
            codes = [barcode(library, n * 10 + i) for i in range(items)]
            copies.append(library_copy(trimmed(loc_records[n]) if brief else loc_records[n], f"{library.code}-{n:05d}",
                                       [holdings_field(library, source_code, code) for code in codes]))
            barcodes[f"{library.code}-{n:05d}"] = set(codes)
        path = write_export(tmp_path / f"{batch}.mrc", copies)
        with open(path, "rb") as handle:  # the records as the file holds them, read by pymarc
            for written in pymarc.MARCReader(handle, to_unicode=True, force_utf8=True):
                source_id = written["001"].data
                sent[(library.code, source_id)] = (written, batch, barcodes[source_id])
        report = await run([path], batch_id=batch)
        assert report.files[0].library == library.code and report.quarantined == 0

    # 1. The reading room's full records, then the hub's brief ones: the hub's record is the master
    #    although it came later and says less.
    await send(room, READING_ROOM, hub_first, brief=False, batch="fy-2026-01")
    await send(hub, "GRL", hub_first, brief=True, batch="gr-2026-02")
    # 2. Two branches, no hub: the Koha branch's brief record first, the room's full one later; and
    #    the other way round. The more complete record is the master either way.
    await send(koha, "XZBM", complete_later, brief=True, batch="xzbm-2026-03", items=2)
    await send(room, READING_ROOM, complete_later, brief=False, batch="fy-2026-04")
    await send(room, READING_ROOM, complete_first, brief=False, batch="fy-2026-05")
    await send(koha, "XZBM", complete_first, brief=True, batch="xzbm-2026-06", items=2)

    def expected_master(n: int) -> tuple[str, str]:
        if n in hub_first:
            return ("GR", f"GR-{n:05d}")
        full, brief = sent[(READING_ROOM, f"{READING_ROOM}-{n:05d}")][0], sent[(KOHA_BRANCH, f"{KOHA_BRANCH}-{n:05d}")][0]
        assert marc_size(full) > marc_size(brief)  # even with the branch's two item fields
        return (READING_ROOM, f"{READING_ROOM}-{n:05d}")

    for n in works:
        record = await record_of(store, READING_ROOM, f"{READING_ROOM}-{n:05d}")
        master_library, master_id = expected_master(n)
        assert record.master == (master_library, master_id), n
        master_marc, _, _ = sent[(master_library, master_id)]
        expected_marc = master_marc.as_dict()
        expected_marc["leader"] = unicode_leader(expected_marc["leader"], MarcFormat.MARC21)
        assert record.master_contribution.marc == expected_marc
        # The shown record's values are the master's: the brief hub record has no subjects or LC class.
        subjects = [v for f in loc_records[n].get_fields("650") for v in f.get_subfields("a")]
        if master_library == "GR":
            assert not record.fields.get("subject") and not record.fields.get("lcc")
        else:
            assert record.fields.get("lcc") and all(
                any(value.startswith(subject.rstrip(" .")) for value in record.fields["subject"]) for subject in subjects)
        # Provenance: every library's contribution with its source record id and the batch it came in.
        libraries = {"GR", READING_ROOM} if n in hub_first else {READING_ROOM, KOHA_BRANCH}
        expected_provenance = {(code, f"{code}-{n:05d}", sent[(code, f"{code}-{n:05d}")][1]) for code in libraries}
        assert {(c.library, c.source_id, c.batch) for c in record.contributions} == expected_provenance
        for contribution in record.contributions:
            _, _, codes = sent[(contribution.library, contribution.source_id)]
            assert {i.barcode for i in contribution.items} == codes
            assert all(i.library == contribution.library and i.source_record == contribution.source_id
                       for i in contribution.items)

    # 3. The hub withdraws its record (leader/05 d): the master falls to the most complete one left.
    n = hub_first[0]
    deletion = library_copy(trimmed(loc_records[n]), f"GR-{n:05d}", [])
    deletion.leader = pymarc.Leader(str(deletion.leader)[:5] + "d" + str(deletion.leader)[6:])
    report = await run([write_export(tmp_path / "gr-delete.mrc", [deletion])], library="GR", batch_id="gr-2026-07")
    assert (report.read, report.updated) == (1, 1)
    record = await record_of(store, READING_ROOM, f"{READING_ROOM}-{n:05d}")
    assert record.master == (READING_ROOM, f"{READING_ROOM}-{n:05d}")
    assert {(c.library, c.source_id, c.batch) for c in record.contributions} == {
        (READING_ROOM, f"{READING_ROOM}-{n:05d}", "fy-2026-01")}
    assert record.fields.get("lcc")


# -- barcode policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("barcode_policy", list(BarcodePolicy))
async def test_barcode_policy(run, store, policy, tmp_path, loc_records, barcode_policy):
    room = policy.libraries[READING_ROOM]
    foreign = barcode(policy.libraries[KOHA_BRANCH], 1)  # another library's range
    records = [
        library_copy(loc_records[0], "FY-1", [holdings_field(room, READING_ROOM, barcode(room, 1)),
                                             holdings_field(room, READING_ROOM, foreign)]),
        library_copy(loc_records[1], "FY-2", [holdings_field(room, READING_ROOM, barcode(room, 2))]),
    ]
    path = write_export(tmp_path / "fy.mrc", records)
    report = await run([path], dataclasses.replace(policy, barcode_policy=barcode_policy))
    assert report.read == 2
    assert barcodes_of(await record_of(store, READING_ROOM, "FY-2")) == {barcode(room, 2)}
    if barcode_policy is BarcodePolicy.QUARANTINE:
        assert report.quarantined == 1
        (entry,) = read_quarantine(report.quarantine)
        assert entry["position"] == 1 and foreign in entry["reason"]
        assert await store.find_by_contribution(READING_ROOM, ["FY-1"]) == {}
    else:
        assert report.quarantined == 0
        assert any(foreign in warning for warning in report.warnings)
        kept = barcodes_of(await record_of(store, READING_ROOM, "FY-1"))
        if barcode_policy is BarcodePolicy.REJECT:
            assert kept == {barcode(room, 1)}
        else:
            assert kept == {barcode(room, 1), foreign}


async def test_a_control_number_repeated_in_a_file_keeps_the_first_record_taken_in(run, store, policy, tmp_path, loc_records):
    room = policy.libraries[READING_ROOM]
    foreign = barcode(policy.libraries[KOHA_BRANCH], 7)

    def copy(n: int, *barcodes: str) -> pymarc.Record:
        return library_copy(loc_records[n], "FY-1", [holdings_field(room, READING_ROOM, b) for b in barcodes])

    records = [
        copy(0, foreign),              # out of range: quarantined, so not "taken in"
        copy(0, barcode(room, 1)),     # taken in
        copy(1, barcode(room, 2)),     # another record under the same number: quarantined
        copy(0, barcode(room, 1)),     # the record taken in, again: unchanged
    ]
    path = write_export(tmp_path / "fy.mrc", records)
    quarantining = dataclasses.replace(policy, barcode_policy=BarcodePolicy.QUARANTINE)
    report = await run([path], quarantining)
    assert (report.read, report.added, report.quarantined, report.unchanged) == (4, 1, 2, 1)
    reasons = {e["position"]: e["reason"] for e in read_quarantine(report.quarantine)}
    assert foreign in reasons[1] and "came earlier in this file" in reasons[3]
    assert barcodes_of(await record_of(store, READING_ROOM, "FY-1")) == {barcode(room, 1)}
    again = await run([path], quarantining)
    assert (again.read, again.unchanged, again.quarantined) == (4, 2, 2)


# -- re-ingest, ids ------------------------------------------------------------------------------------


async def test_reingest_is_all_unchanged_and_ids_are_stable(run, store, two_exports, tmp_path, table, policy):
    room, koha = two_exports
    first = await run([room, koha])
    ids = {r.id: r.to_dict() for r in await all_records(store)}
    again = await run([room, koha])
    assert (again.read, again.unchanged) == (first.read, first.read)
    assert {r.id: r.to_dict() for r in await all_records(store)} == ids
    # A fresh store given the same input in the other order ends with the same ids.
    other = EmbeddedStore(tmp_path / "other", table)
    await other.open()
    try:
        await Runner(other, table, policy, tmp_path / "other-q")([koha, room])
        assert {r.id for r in await all_records(other)} == set(ids)
    finally:
        await other.close()


# -- the command line ------------------------------------------------------------------------------------


def federation(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(FEDERATION), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_ingest_writes_report_and_skips_unchanged_files_the_second_time(tmp_path):
    data_dir = tmp_path / "data"
    inputs = [str(LOC), str(FIXTURES / "malformed" / "bad_subfield_code.mrc")]
    report_path = tmp_path / "report.json"
    textfile = tmp_path / "ingest.prom"
    done = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(data_dir),
                      "--report", str(report_path), "--metrics-textfile", str(textfile), *inputs)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    # The run's counters for node_exporter's textfile collector agree with the report.
    counted = {s.labels.get("outcome"): s.value
               for family in text_string_to_metric_families(textfile.read_text(encoding="utf-8"))
               for s in family.samples if s.name == "union_ingest_records_total"}
    assert all(counted.get(key, 0) == report[key] for key in REPORT_KEYS) and counted["read"] == 387, counted
    assert set(report) == {*REPORT_KEYS, "quarantine"}
    assert report["read"] == 387 and report["quarantined"] == 1
    assert report["read"] == sum(report[k] for k in REPORT_KEYS if k != "read")
    (entry,) = read_quarantine(report["quarantine"])
    assert entry["file"].endswith("bad_subfield_code.mrc") and "subfield code" in entry["reason"]
    assert "reconciled" in done.stdout
    # Second run: the clean LoC file is recognised and not read again; the file that had a
    # quarantined record is read again (its record is quarantined again).
    again = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(data_dir), "--quiet", *inputs)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    (latest,) = sorted(data_dir.glob("ingest/*.report.json"))
    second = json.loads(latest.read_text(encoding="utf-8"))
    assert (second["read"], second["unchanged"], second["quarantined"]) == (387, 386, 1)
    assert Path(second["quarantine"]).parent == data_dir / "ingest"


def test_cli_walks_a_folder_for_dat_and_dat_gz_exports(tmp_path):
    """ISO 2709 exports named `.dat` (as many Chinese library systems write them), plain and
    gzipped, are found by the folder walk and every record in them goes in; other files are not read."""
    exports = tmp_path / "exports"
    (exports / "branch").mkdir(parents=True)
    plain = exports / "LOC-EXPORT.DAT"                     # upper case, as DOS-era systems name them
    shutil.copyfile(LOC, plain)
    stanford = FIXTURES / "marc21" / "stanford-30.utf8.mrc"
    zipped = exports / "branch" / "stanford.dat.gz"
    zipped.write_bytes(gzip.compress(stanford.read_bytes()))
    (exports / "readme.txt").write_text("not MARC\n", encoding="utf-8")   # not a MARC suffix: not read
    expected = {plain: iso2709_count(plain), zipped: iso2709_count(zipped)}
    assert expected == {plain: 386, zipped: 30}
    # The control numbers (001 without its padding), read by pymarc, not by the project's reader.
    controls, deletions = [], []
    for path in expected:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for record in pymarc.MARCReader(handle, to_unicode=True, force_utf8=True):
                # A deletion (leader/05 d; Stanford's file has one) withdraws, it adds nothing.
                (deletions if str(record.leader)[5] == "d" else controls).append(record["001"].data.strip())
    assert len(set(controls)) == len(controls) == 416 - len(deletions) and len(deletions) == 1

    report_path = tmp_path / "report.json"
    done = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(tmp_path / "data"),
                      "--report", str(report_path), str(exports))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert (report["read"], report["quarantined"], report["unchanged"]) == (416, 0, len(deletions))
    assert report["read"] == sum(report[k] for k in REPORT_KEYS if k != "read")
    for path, count in expected.items():
        assert f"{path}: {count} records for GR" in done.stdout
    assert "readme.txt" not in done.stdout + done.stderr

    async def stored() -> dict[str, str]:
        store = EmbeddedStore(tmp_path / "data", load_index_table())
        await store.open()
        try:
            return await store.find_by_contribution("GR", controls + deletions)
        finally:
            await store.close()

    assert set(asyncio.run(stored())) == set(controls)


def test_cli_fatal_errors_exit_non_zero(tmp_path):
    missing = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(tmp_path), str(tmp_path / "nope.mrc"))
    assert missing.returncode == 1 and "nope.mrc: no such file" in missing.stderr
    unknown = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(tmp_path), "--library", "XX", str(LOC))
    assert unknown.returncode == 1 and "--library XX" in unknown.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(NETWORK_FILE.read_text(encoding="utf-8").replace("hub: GR", "hub: NOPE", 1), encoding="utf-8")
    bad_config = federation("ingest", "--config", str(broken), "--data-dir", str(tmp_path), str(LOC))
    assert bad_config.returncode == 1 and f"{broken}:" in bad_config.stderr
    # A store that does not answer (nothing listens on port 1 of the loopback).
    no_store = subprocess.run(
        [str(FEDERATION), "ingest", "--config", str(NETWORK_FILE), "--store", "elasticsearch", str(LOC)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "ELASTICSEARCH_URL": "http://127.0.0.1:1"})
    assert no_store.returncode == 1 and "unreachable" in no_store.stderr


def test_cli_shows_progress_on_a_terminal_only(tmp_path):
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(FEDERATION), "ingest", "--config", str(NETWORK_FILE), "--data-dir", str(tmp_path), str(LOC)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal is gone: the process has exited
                break
            if not chunk:
                break
            shown += chunk
        out, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert b"386 records" in shown and b"records/s" in shown
    # Then the indexing at the end of the run, to its last record.
    assert re.search(rb"indexing for search: (\d+) of \1 union records", shown), shown
    assert b"records/s," not in out  # the summary on stdout (a pipe) has no progress lines
    assert "read 386 = added" in out.decode()


# -- memory --------------------------------------------------------------------------------------------


def distinct_copies(path: Path, loc_records: Sequence[pymarc.Record], copies: int) -> Path:
    """`copies` times the LoC records, each copy a different work (own control number, title
    marked with the copy number, no ISBN or LCCN to merge on)."""
    with open(path, "wb") as handle:
        for k in range(copies):
            for n, record in enumerate(loc_records):
                copy = pymarc.Record(leader=str(record.leader)[:9] + "a" + str(record.leader)[10:], force_utf8=True)
                copy.add_field(pymarc.Field(tag="001", data=f"C{k}-{n:05d}"))
                for existing in record.fields:
                    if existing.tag in ("001", "010", "020", "022", "035"):
                        continue
                    if existing.tag == "245":
                        existing = pymarc.Field(tag="245", indicators=existing.indicators, subfields=[
                            pymarc.Subfield(s.code, f"{s.value} (copy {k})" if s.code == "a" else s.value)
                            for s in existing.subfields])
                    copy.add_field(existing)
                handle.write(copy.as_marc())
    return path


@pytest.mark.slow
async def test_memory_stays_flat_as_the_input_grows(tmp_path, table, policy, loc_records):
    """The Python heap an ingest needs is set by its batch and write-behind sizes, not by the input:
    twice the records (all new works, so every one is written) peak at about the same."""
    import tracemalloc

    async def peak(copies: int) -> int:
        path = distinct_copies(tmp_path / f"x{copies}.mrc", loc_records, copies)
        store = EmbeddedStore(tmp_path / f"store{copies}", table)
        await store.open()
        try:
            tracemalloc.start()
            try:
                report = await ingest([path], store, table, policy, IngestOptions(
                    quarantine_path=tmp_path / f"q{copies}.jsonl", batch_size=50, write_behind=100))
                traced = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert report.reconciled and (report.read, report.quarantined) == (copies * len(loc_records), 0)
            assert (await store.stats()).records == report.added
            return traced
        finally:
            await store.close()

    small, large = await peak(1), await peak(2)
    # Holding the input would double the peak (with write-behind unbounded: 13 MB for 386 records, 38 MB for 1,158).
    assert large < small * 1.25, (small, large)


# -- a killed ingest ---------------------------------------------------------------------------------


async def catalogue_of(data_dir: Path, table, policy) -> dict[str, dict]:
    """Every union record of an embedded store, without the ingest batch ids (provenance of the run)."""
    store = EmbeddedStore(data_dir, table)
    await store.open()
    try:
        ids: set[str] = set()
        for library in policy.libraries:
            ids.update(await store.ids_of_library(library))
        records = {}
        for record in await store.get(sorted(ids)):
            data = record.to_dict()
            for contribution in data["contributions"]:
                contribution.pop("batch")
            records[record.id] = data
        assert (await store.stats()).records == len(records)
        return records
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_killed_ingest_rerun_ends_with_exactly_the_catalogue_of_a_clean_one(tmp_path, table, policy):
    write_demo_data(policy, tmp_path / "demo", records=1200, seed=11)
    command = [str(FEDERATION), "ingest", "--config", str(NETWORK_FILE), "--batch-size", "50", "--write-behind", "100",
               "--quiet", str(tmp_path / "demo")]

    clean = subprocess.run([*command, "--data-dir", str(tmp_path / "clean")], capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    expected = await catalogue_of(tmp_path / "clean", table, policy)

    # Killed (SIGKILL: no clean-up of any kind) once some union records are in, well before the end.
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([*command, "--data-dir", str(killed_dir)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    written = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            written = records_in(killed_dir / DATABASE_NAME)
            if written > 0:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"
    survived = records_in(killed_dir / DATABASE_NAME)
    assert 0 < survived < len(expected), (survived, len(expected))

    rerun = subprocess.run([*command, "--data-dir", str(killed_dir)], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    (report_path,) = sorted(killed_dir.glob("ingest/*.report.json"))
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert (report["read"], report["quarantined"]) == (1200, 0)
    assert report["unchanged"] > 0  # what the killed run had written is recognised, not written again
    assert await catalogue_of(killed_dir, table, policy) == expected


def records_in(database: Path) -> int:
    """Union records committed to an embedded store's database, read as another process would."""
    if not database.exists():
        return 0
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute("SELECT count(*) FROM records").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def test_cli_format_encoding_and_library_options_read_an_unlabelled_gb18030_export(tmp_path):
    """A branch's CNMARC export in GB18030 whose records lack the 100 field that names the
    character set: detected, it cannot be decoded (quarantined, not mojibake); with --encoding,
    --format and --library given it goes in, under that library."""
    originals = [r.record for r in read_records(FIXTURES / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso")]
    for record in originals:
        record.fields = [f for f in record.fields if f.tag not in ("100", "102", "690", "905", "906", "801")]
    export_path = tmp_path / "dawang.iso"
    export_path.write_bytes(b"".join(iso2709(record, "gb18030") for record in originals))

    detected = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(tmp_path / "a"),
                          "--report", str(tmp_path / "a.json"), "--quiet", str(export_path))
    assert detected.returncode == 0, detected.stderr
    report = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert (report["read"], report["quarantined"]) == (10, 10)
    assert all("cannot decode" in entry["reason"] for entry in read_quarantine(report["quarantine"]))

    given = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(tmp_path / "b"),
                       "--encoding", "gb18030", "--format", "cnmarc", "--library", "GR-DW",
                       "--report", str(tmp_path / "b.json"), str(export_path))
    assert given.returncode == 0, given.stderr
    report = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert (report["read"], report["quarantined"], report["added"] + report["merged"]) == (10, 0, 10)
    assert f"{export_path}: 10 records for GR-DW" in given.stdout

    async def titles() -> list[str]:
        store = EmbeddedStore(tmp_path / "b", load_index_table())
        await store.open()
        try:
            found = await store.find_by_contribution("GR-DW", [control_number(r) for r in originals])
            records = {r.id: r for r in await store.get(sorted(set(found.values())))}
            return [next(c for c in records[found[control_number(o)]].contributions
                         if c.library == "GR-DW").marc["fields"] for o in originals]
        finally:
            await store.close()

    stored = asyncio.run(titles())
    for fields, original in zip(stored, originals):
        title = next(f["200"] for f in fields if "200" in f)
        assert {"a": original.get_fields("200")[0]["a"]} in title["subfields"]


# -- preparing processes (--jobs) ----------------------------------------------------------------------


async def ingest_with_jobs(directory: Path, runs: Sequence[Sequence[Path]], table, policy, jobs: int,
                           **options) -> tuple[IngestReport, list[dict], dict]:
    """Ingests into a new store, one per list of paths: the last one's report and quarantine
    entries, and the records stored in the end."""
    store = EmbeddedStore(directory / "store", table)
    await store.open()
    try:
        for number, paths in enumerate(runs):
            report = await ingest(paths, store, table, policy, IngestOptions(
                quarantine_path=directory / f"q{number}.jsonl", batch_id="one-batch", jobs=jobs, **options))
            assert report.reconciled, report.to_json()
        records = {r.id: r.to_dict() for r in await all_records(store)}
        hits = await store.search(SearchRequest(Clause("anywhere", Relation.ANY, "history 小麦 the"), limit=5_000))
        return report, read_quarantine(report.quarantine), {"records": records, "hits": sorted(hits.ids)}
    finally:
        await store.close()


def summary_of(report: IngestReport) -> dict:
    return {**report.to_json(), "quarantine": None, "withdrawn": report.withdrawn,
            "files": [dataclasses.asdict(f) for f in report.files], "warnings": sorted(report.warnings)}


async def test_preparing_in_other_processes_gives_the_same_catalogue_report_and_quarantine(
        tmp_path, table, any_format_policy, two_exports, policy, loc_records):
    room, koha = two_exports
    # A deletion, a control number again with another record, and files the rule set quarantines.
    withdrawal = library_copy(loc_records[5], f"{READING_ROOM}-00005", [])
    withdrawal.leader = pymarc.Leader(str(withdrawal.leader)[:5] + "d" + str(withdrawal.leader)[6:])
    again = library_copy(loc_records[7], f"{READING_ROOM}-00003", [])
    extra = write_export(tmp_path / "fy-extra.mrc", [withdrawal, again])
    paths = [room, koha, extra, FIXTURES / "cnmarc" / "sample_cnmarcxml.xml", FIXTURES / "marc21" / "one-marc8.mrc",
             *sorted((FIXTURES / "malformed").iterdir())]
    serial = await ingest_with_jobs(tmp_path / "serial", [paths], table, any_format_policy, 1, batch_size=40)
    # Three processes: two prepare, the files alternating between them, in batches of 40.
    parallel = await ingest_with_jobs(tmp_path / "parallel", [paths], table, any_format_policy, 3, batch_size=40)
    assert summary_of(parallel[0]) == summary_of(serial[0])
    assert serial[0].quarantined > 10 and serial[0].merged >= len(OVERLAP)
    assert [dict(e, file=Path(e["file"]).name) for e in parallel[1]] == [dict(e, file=Path(e["file"]).name) for e in serial[1]]
    assert parallel[2] == serial[2] and serial[2]["hits"]

    # A full ingest of one library with preparing processes withdraws the same contributions.
    smaller = export(tmp_path / "fy-small.mrc", policy, READING_ROOM, READING_ROOM, {n: loc_records[n] for n in range(0, 100)})
    full = [await ingest_with_jobs(tmp_path / f"full{jobs}", [[room, koha], [smaller]], table, policy, jobs, full=True)
            for jobs in (1, 2)]
    assert full[0][0].withdrawn == len(ROOM_HOLDS) - 100
    assert summary_of(full[1][0]) == summary_of(full[0][0]) and full[1][2] == full[0][2]


def processes() -> dict[int, tuple[int, int, str]]:
    """Every process: pid -> (parent pid, session id, command line), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError):
                continue  # ended meanwhile
            found[int(entry.name)] = (int(fields[1]), int(fields[3]), command)
    return found


def preparing_processes() -> list[int]:
    """This process's children that prepare records for an ingest."""
    return [pid for pid, (parent, _, command) in processes().items()
            if parent == os.getpid() and "_preparer_main" in command]


async def test_a_preparing_process_that_dies_ends_the_run_with_an_error_and_whole_records(
        tmp_path, table, policy, loc_records):
    path = distinct_copies(tmp_path / "copies.mrc", loc_records, 3)
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    killed: list[int] = []

    def kill_the_preparer(report: IngestReport) -> None:
        if report.read >= 150 and not killed:  # three batches in, each written (write-behind 50)
            killed.extend(preparing_processes())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
    try:
        with pytest.raises(IngestError, match=r"the process preparing the records ended unexpectedly \(exit code -9\)"):
            await ingest([path], store, table, policy, IngestOptions(
                quarantine_path=tmp_path / "q.jsonl", jobs=2, batch_size=50, write_behind=50), kill_the_preparer)
        assert killed
        # What was written before is whole, and searchable (the bulk load ended in the error).
        stored = await all_records(store)
        assert 100 < len(stored) < 3 * len(loc_records)
        everything = await store.search(SearchRequest(Clause("title", Relation.ANY, "copy"), limit=5_000))
        assert sorted(everything.ids) == sorted(r.id for r in stored)
    finally:
        await store.close()
    assert preparing_processes() == []


def test_cli_jobs_must_be_at_least_one(tmp_path):
    result = federation("ingest", "--config", str(NETWORK_FILE), "--data-dir", str(tmp_path), "--jobs", "0", str(LOC))
    assert result.returncode == 1
    assert "--jobs must be at least 1" in result.stderr


@pytest.mark.slow
def test_cli_ctrl_c_with_jobs_stops_every_process_and_a_rerun_completes(tmp_path, loc_records):
    path = distinct_copies(tmp_path / "copies.mrc", loc_records, 8)
    data = tmp_path / "data"
    command = [str(FEDERATION), "ingest", "--config", str(NETWORK_FILE), "--data-dir", str(data), "--jobs", "2",
               "--batch-size", "50", "--write-behind", "50", str(path)]
    # A session of its own: Ctrl-C on a terminal signals the whole process group.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while records_in(data / DATABASE_NAME) < 200 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    leftover = {pid: command for pid, (_, session, command) in processes().items() if session == process.pid}
    assert leftover == {}  # no preparing process left behind
    # What it wrote is stored, not yet searchable: `stats` says so, `rebuild-index` indexes it.
    config = ["--config", str(NETWORK_FILE), "--data-dir", str(data)]
    stats = json.loads(federation("stats", *config, "--json").stdout)
    assert 200 <= stats["unindexed"] <= stats["totals"]["records"], stats
    assert f"{stats['unindexed']} of the records were written by an ingest that stopped" in federation("stats", *config).stdout
    rebuilt = federation("rebuild-index", *config)
    assert rebuilt.returncode == 0 and f"{stats['unindexed']} records an ingest stopped" in rebuilt.stdout, rebuilt
    assert json.loads(federation("stats", *config, "--json").stdout)["unindexed"] == 0
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"read {8 * len(loc_records)} = " in rerun.stdout and "reconciled" in rerun.stdout
