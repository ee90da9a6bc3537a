"""Holdings extraction: real CNMARC/UNIMARC holdings fields, the shipped Guangrao rule set and
its demo exports (one file per library, in each library's own layout), and the barcode policy."""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from pymarc import Field, Indicators, Record, Subfield

from federation.rules import load_network
from indexer.demo import write_demo_data
from indexer.holdings import STANDARD_LAYOUTS, extract_items, holdings_mapping, status_availability
from indexer.model import Availability, MarcFormat
from indexer.policy import BarcodePolicy, HoldingsMapping
from indexer.readers import read_records

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture(scope="module")
def policy():
    return load_network(ROOT / "config" / "networks" / "guangrao.yaml").to_ingest_policy()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, policy):
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(policy, out, records=300, seed=7)
    return out


def test_demo_exports_every_library_items_in_range_and_mapped(policy, demo_dir):
    total_fields = total_items = 0
    on_loan = reference = 0
    for library in policy.libraries.values():
        path = demo_dir / f"{library.code}.mrc"
        if not path.exists():
            continue
        mapping = holdings_mapping(library, MarcFormat.CNMARC)
        for result in read_records(path):
            assert result.ok, result.error
            holdings = extract_items(result.record, result.format, library, policy)
            fields = result.record.get_fields(mapping.tag)
            assert holdings.problems == [] and not holdings.quarantine
            assert len(holdings.items) == len(fields)
            total_fields += len(fields)
            total_items += len(holdings.items)
            for item, holding in zip(holdings.items, fields):
                owner = policy.libraries[item.library]
                assert item.barcode == holding[mapping.barcode]
                assert owner.owns_barcode(item.barcode)
                assert item.tier == owner.tier
                assert item.source_library == (holding[mapping.library] if mapping.library and holding[mapping.library] else library.code)
                assert policy.library_for_source_code(item.source_library).code == item.library
                assert item.source_record == result.record["001"].data
                if mapping.call_number and holding[mapping.call_number]:
                    assert item.call_number == holding[mapping.call_number]
                if item.location in policy.reference_only_locations and not item.due_date:
                    assert item.availability is Availability.REFERENCE_ONLY
                    reference += 1
                if item.due_date:
                    assert item.availability is Availability.ON_LOAN
                    on_loan += 1
    assert total_items == total_fields > 100
    assert reference > 0


def test_koha_export_source_code_maps_to_network_library(policy, demo_dir):
    koha = policy.libraries["GR-XZBM"]
    assert koha.holdings.tag == "952"
    items = []
    for result in read_records(demo_dir / "GR-XZBM.mrc"):
        items += extract_items(result.record, result.format, koha, policy).items
    assert items and {i.library for i in items} == {"GR-XZBM"}
    assert {i.source_library for i in items} == {"XZBM"}
    statuses = {i.status: i.availability for i in items}
    assert statuses.get("Available", Availability.AVAILABLE) is Availability.AVAILABLE
    if "Checked out" in statuses:
        assert statuses["Checked out"] is Availability.ON_LOAN


def test_real_cnmarc_905_holdings_without_barcodes_are_reported(policy):
    hub = dataclasses.replace(policy.libraries["GR"], holdings=None)
    bnu_policy = dataclasses.replace(
        policy, libraries={**policy.libraries, "GR": dataclasses.replace(hub, source_codes=("BNU",))})
    fields = problems = 0
    for result in read_records(FIXTURES / "cnmarc" / "sample_cnmarcxml.xml"):
        holdings = extract_items(result.record, result.format, bnu_policy.libraries["GR"], bnu_policy)
        count = len(result.record.get_fields("905"))
        fields += count
        # the 905s of this Aleph export are holdings summaries: library BNU, call number, no barcode
        assert holdings.items == []
        assert len(holdings.problems) == count
        assert all("no barcode $b" in p for p in holdings.problems)
        problems += len(holdings.problems)
    assert fields == problems > 0


def test_real_unimarc_955_statements_are_reported_not_lost(policy):
    library = dataclasses.replace(policy.libraries["GR"], holdings=STANDARD_LAYOUTS["955"])
    seen = 0
    for result in itertools.islice(read_records(FIXTURES / "unimarc" / "periouni-3064.mrc"), 300):
        holdings = extract_items(result.record, MarcFormat.UNIMARC, library, policy)
        assert len(holdings.problems) == len(result.record.get_fields("955"))
        seen += len(holdings.problems)
    assert seen > 250


def real_955_records(count: int) -> list[Record]:
    """The first `count` periouni records whose 955s all give a location ($d) and a call number ($e)."""
    chosen = []
    for result in read_records(FIXTURES / "unimarc" / "periouni-3064.mrc"):
        fields = result.record.get_fields("955")
        if fields and all(f.get_subfields("d") and f.get_subfields("e") for f in fields):
            chosen.append(result.record)
            if len(chosen) == count:
                return chosen
    raise AssertionError("not enough 955 holdings in the fixture")


# A library whose system writes the BnF-style 955 (d location, e call number) and puts the item's
# barcode in $f, as the rule set maps it.
LAYOUT_955 = HoldingsMapping(tag="955", barcode="f", call_number="e", location="d")


def with_barcodes(record: Record, first: int) -> tuple[Record, list[tuple[str, str, str]]]:
    """The record with a hub barcode added to each real 955; (barcode, call number, location) per field."""
    expected = []
    for n, field_ in enumerate(record.get_fields("955")):
        code = f"GR{first + n:08d}"  # inside GR's range GR00000001-GR00999999
        field_.add_subfield("f", code)
        expected.append((code, field_.get_subfields("e")[0].strip(), field_.get_subfields("d")[0].strip()))
    return record, expected


def test_real_unimarc_955_call_number_and_location_survive_with_a_barcode(policy):
    hub = dataclasses.replace(policy.libraries["GR"], holdings=LAYOUT_955)
    fields = 0
    for k, original in enumerate(real_955_records(40)):
        record, expected = with_barcodes(original, 1000 + 10 * k)
        holdings = extract_items(record, MarcFormat.UNIMARC, hub, policy)
        assert holdings.problems == [] and not holdings.quarantine
        assert [(i.barcode, i.call_number, i.location) for i in holdings.items] == expected
        assert all(i.library == "GR" and i.tier == "hub" and i.source_record == record["001"].data for i in holdings.items)
        fields += len(expected)
    assert fields >= 40
    # e.g. the first: 955 1 $bvol. 1 no. 1 (1990) -....$cParis$dMagasins/Annexe$eP 8° 5683
    first, _ = with_barcodes(real_955_records(1)[0], 1)
    (item,) = extract_items(first, MarcFormat.UNIMARC, hub, policy).items
    assert (item.call_number, item.location) == ("P 8° 5683", "Magasins/Annexe")


async def test_real_unimarc_955_holdings_survive_ingest_into_the_store(policy, tmp_path):
    from test_readers import iso2709
    from indexer.embedded import EmbeddedStore
    from indexer.indexes import load_index_table
    from indexer.ingest import IngestOptions, ingest

    network = dataclasses.replace(
        policy, accepted_formats=("marc21", "unimarc", "cnmarc"),
        libraries={**policy.libraries, "GR": dataclasses.replace(policy.libraries["GR"], holdings=LAYOUT_955)})
    expected: dict[str, list[tuple[str, str, str]]] = {}
    blob = b""
    for k, original in enumerate(real_955_records(25)):
        record, items = with_barcodes(original, 2000 + 10 * k)
        expected[record["001"].data.strip()] = items
        blob += iso2709(record, "utf-8")
    path = tmp_path / "bnf-serials.mrc"
    path.write_bytes(blob)
    table = load_index_table()
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    try:
        report = await ingest([path], store, table, network, IngestOptions(
            quarantine_path=tmp_path / "q.jsonl", library="GR", skip_unchanged_files=False))
        assert report.reconciled and (report.read, report.quarantined) == (25, 0)
        found = await store.find_by_contribution("GR", sorted(expected))
        assert set(found) == set(expected)
        records = {r.id: r for r in await store.get(sorted(set(found.values())))}
        for source_id, items in expected.items():
            stored = [i for i in records[found[source_id]].items if i.source_record == source_id]
            assert sorted((i.barcode, i.call_number, i.location) for i in stored) == sorted(items)
            assert all(i.library == "GR" and i.tier == "hub" for i in stored)
    finally:
        await store.close()


def record_with(tag: str, *holdings: list[tuple[str, str]]) -> Record:
    record = Record()
    record.add_field(Field(tag="001", data="rec-1"))
    for subfields in holdings:
        record.add_field(Field(tag=tag, indicators=Indicators(" ", " "),
                               subfields=[Subfield(code, value) for code, value in subfields]))
    return record


def test_barcode_policy_reject_quarantine_warn(policy):
    hub = policy.libraries["GR"]
    record = record_with(
        "905",
        [("a", "GRL"), ("b", "GR00000042"), ("c", "成人借阅区"), ("s", "I247.5/123")],
        [("a", "GRL"), ("b", "GR01000007"), ("s", "I247.5/123")],   # in GR-GRJD's range, not the hub's
        [("a", "GRL"), ("b", "XX99"), ("s", "I247.5/123")],
    )
    rejected = extract_items(record, MarcFormat.CNMARC, hub, dataclasses.replace(policy, barcode_policy=BarcodePolicy.REJECT))
    assert [i.barcode for i in rejected.items] == ["GR00000042"]
    assert len(rejected.problems) == 2 and all("rejected" in p for p in rejected.problems)
    assert "in GR-GRJD's range" in rejected.problems[0] and not rejected.quarantine

    quarantined = extract_items(record, MarcFormat.CNMARC, hub, dataclasses.replace(policy, barcode_policy=BarcodePolicy.QUARANTINE))
    assert quarantined.quarantine and "GR01000007" in quarantined.quarantine_reason
    assert len(quarantined.problems) == 2

    warned = extract_items(record, MarcFormat.CNMARC, hub, dataclasses.replace(policy, barcode_policy=BarcodePolicy.WARN))
    assert [i.barcode for i in warned.items] == ["GR00000042", "GR01000007", "XX99"]
    assert len(warned.problems) == 2 and all("warning" in p for p in warned.problems)
    assert {i.library for i in warned.items} == {"GR"} and warned.items[0].source_library == "GRL"


def test_unknown_library_duplicate_and_missing_barcodes(policy):
    hub = policy.libraries["GR"]
    record = record_with(
        "905",
        [("a", "NOWHERE"), ("b", "GR00000001")],
        [("b", "GR00000002")],                    # no library code: the contributing library's
        [("a", "GR-LD"), ("b", "GR00000002")],     # same barcode again
        [("a", "GR-LD"), ("s", "K20/1")],          # no barcode
        [("a", "gr-ld"), ("b", "GR13000001"), ("d", "K20"), ("e", "1")],
    )
    result = extract_items(record, MarcFormat.CNMARC, hub, policy)
    assert [(i.library, i.barcode) for i in result.items] == [("GR", "GR00000002"), ("GR-LD", "GR13000001")]
    assert result.items[1].call_number == "K20/1" and result.items[1].tier == "mobile"
    assert len(result.problems) == 3
    assert "'NOWHERE'" in result.problems[0] and "repeats" in result.problems[1] and "no barcode" in result.problems[2]


def test_marc21_852_koha_952_sirsi_949_and_unimarc_995_layouts(policy):
    court = policy.libraries["GR-FY"]
    marc21 = record_with("852", [("b", "GR-FY"), ("p", "GR12000005"), ("h", "D920.4/7"), ("c", "REF")])
    (item,) = extract_items(marc21, MarcFormat.MARC21, court, policy).items
    assert (item.library, item.call_number, item.location, item.availability) == (
        "GR-FY", "D920.4/7", "REF", Availability.REFERENCE_ONLY)

    koha = policy.libraries["GR-XZBM"]
    record = record_with(
        "952",
        [("a", "XZBM"), ("p", "GR10000001"), ("7", "0")],
        [("a", "XZBM"), ("p", "GR10000002"), ("7", "1")],
        [("a", "XZBM"), ("p", "GR10000003"), ("q", "2026-12-01")],
        [("a", "XZBM"), ("p", "GR10000004"), ("1", "1")],
        [("a", "XZBM"), ("p", "GR10000005"), ("0", "1")],
    )
    items = extract_items(record, MarcFormat.MARC21, koha, policy).items
    assert [i.availability for i in items] == [
        Availability.AVAILABLE, Availability.REFERENCE_ONLY, Availability.ON_LOAN, Availability.LOST, Availability.WITHDRAWN]
    assert items[2].due_date == "2026-12-01"

    sirsi = dataclasses.replace(court, holdings=STANDARD_LAYOUTS["949"])
    record = record_with("949", [("m", "GR-FY"), ("i", "GR12000009"), ("a", "PS3553 .H15"), ("l", "STACKS"), ("s", "IN TRANSIT")])
    (item,) = extract_items(record, MarcFormat.MARC21, sirsi, policy).items
    assert (item.call_number, item.location, item.availability) == ("PS3553 .H15", "STACKS", Availability.IN_TRANSIT)

    unimarc = dataclasses.replace(policy.libraries["GR-LD"], holdings=None)
    record = record_with("995", [("b", "GR-LD"), ("f", "GR13000002"), ("k", "TP311/9"), ("o", "0"), ("r", "LIVRE")])
    (item,) = extract_items(record, MarcFormat.UNIMARC, unimarc, policy).items
    assert (item.barcode, item.call_number, item.material_type, item.availability) == (
        "GR13000002", "TP311/9", "LIVRE", Availability.AVAILABLE)


def test_status_words_and_unrecognised_status(policy):
    assert status_availability("借出") is Availability.ON_LOAN
    assert status_availability("在架") is Availability.AVAILABLE
    assert status_availability("Checked out (due 5/1)") is Availability.ON_LOAN
    assert status_availability("注销") is Availability.WITHDRAWN
    assert status_availability("In transit since 2026-11-20") is Availability.IN_TRANSIT
    assert status_availability("On hold for patron 12") is Availability.ON_HOLD
    assert status_availability("inventory") is None
    assert status_availability("frobnicated") is None
    library = dataclasses.replace(policy.libraries["GR"], holdings=HoldingsMapping(tag="905", library="a", barcode="b", status="f"))
    record = record_with("905", [("a", "GR"), ("b", "GR00000009"), ("f", "frobnicated")])
    result = extract_items(record, MarcFormat.CNMARC, library, policy)
    assert result.items[0].availability is Availability.UNKNOWN and result.items[0].status == "frobnicated"
    assert "not recognised" in result.problems[0]


def test_holdings_in_another_layout_are_reported_not_silently_ignored(policy):
    hub = policy.libraries["GR"]  # reads 905
    record = record_with("852", [("b", "GR"), ("p", "GR00000003")])
    result = extract_items(record, MarcFormat.MARC21, hub, policy)
    assert result.items == []
    assert "852" in result.problems[0] and "reads 905" in result.problems[0]
