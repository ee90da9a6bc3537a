"""The demo catalogue generator: real MARC a library system would export, deterministic, streaming.

Every check reads the written files back with pymarc and recomputes what it asserts (ISBN check
digits, range membership, duplicates) independently of the generator.
"""
from __future__ import annotations

import collections
import re
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from pymarc import MARCReader, Record

from federation.rules import load_network
from indexer.demo import DemoDataError, write_demo_data
from indexer.extract import analyse
from indexer.holdings import extract_items
from indexer.indexes import load_index_table
from indexer.model import Availability, MarcFormat
from indexer.policy import HoldingsMapping, IngestPolicy, LibraryPolicy, NumberRange
from indexer.readers import read_records

KOHA = HoldingsMapping(tag="952", library="a", barcode="p", call_number="o", location="c", status="7",
                       due_date="q", material_type="y")
CNMARC_905 = HoldingsMapping(tag="905", library="a", barcode="b", location="c", call_number="s")
REFERENCE_ROOM = "参考工具书阅览室"


def network_policy(*, hub_range: tuple[str, str] = ("GR00000001", "GR00999999")) -> IngestPolicy:
    """A small county network: hub, two branches (one on Koha), a reading room, a book bus."""
    libraries = [
        LibraryPolicy("GR", "hub", (NumberRange(*hub_range),), holdings=CNMARC_905),
        LibraryPolicy("GRDW", "branch", (NumberRange("GR01000001", "GR01099999"),), source_codes=("dawang",),
                      holdings=CNMARC_905),
        LibraryPolicy("GRLA", "branch", (NumberRange("LA0000001", "LA0099999"), NumberRange("LA5000001", "LA5099999")),
                      holdings=KOHA),
        LibraryPolicy("GRXY", "reading_room", (NumberRange("GR07000001", "GR07009999"),), holdings=CNMARC_905),
        LibraryPolicy("GRBUS", "mobile", (NumberRange("GR09000001", "GR09099999"),), holdings=CNMARC_905),
    ]
    return IngestPolicy(hub="GR", libraries={lib.code: lib for lib in libraries},
                        reference_only_locations=(REFERENCE_ROOM,))


def read_file(path: Path) -> list[Record]:
    with open(path, "rb") as file:
        reader = MARCReader(file, to_unicode=True, force_utf8=True)
        records = []
        for record in reader:
            assert record is not None, f"{path}: {reader.current_exception!r}"
            records.append(record)
        return records


def isbn_is_valid(text: str) -> bool:
    digits = text.replace("-", "")
    if re.fullmatch(r"97[89]\d{10}", digits):
        return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0
    if re.fullmatch(r"\d{9}[\dX]", digits):
        return sum((10 - i) * (10 if d == "X" else int(d)) for i, d in enumerate(digits)) % 11 == 0
    return False


def as_isbn13(text: str) -> str:
    digits = text.replace("-", "")
    if len(digits) == 13:
        return digits
    core = "978" + digits[:9]
    return core + str((10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(core)) % 10) % 10)


def in_range(barcode: str, start: str, end: str) -> bool:
    prefix = re.match(r"\D*", start).group(0)  # type: ignore[union-attr]
    width = len(start) - len(prefix)
    tail = barcode[len(prefix):]
    return (barcode.startswith(prefix) and len(tail) == width and tail.isdigit()
            and int(start[len(prefix):]) <= int(tail) <= int(end[len(prefix):]))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    policy = network_policy()
    summary = write_demo_data(policy, out, records=3000, seed=7)
    records = {code: read_file(out / f"{code}.mrc") for code in policy.libraries}
    return policy, out, summary, records


def test_one_file_per_library_with_exactly_the_records_asked_for(demo) -> None:
    policy, out, summary, records = demo
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{code}.mrc" for code in policy.libraries)
    assert sum(len(r) for r in records.values()) == 3000 == summary.records
    for code, output in summary.libraries.items():
        assert output.records == len(records[code]) > 0
    assert summary.works < summary.records  # books are held by several libraries


def test_cnmarc_records_are_well_formed(demo) -> None:
    policy, _, summary, records = demo
    assert summary.libraries["GR"].format is MarcFormat.CNMARC
    for record in records["GR"] + records["GRDW"]:
        assert record.leader[5:9] == "nam0" and record.leader[9] == " "  # UNIMARC: charset not in the leader
        general = record["100"]["a"]
        assert len(general) == 36 and general[26:28] == "50"  # 100$a/26-29: ISO 10646 (UTF-8)
        assert re.fullmatch(r"\d{8}d\d{4}", general[:13])
        assert record["200"]["a"] and record["200"]["f"]
        assert record["210"]["c"].endswith(("出版社", "书局", "印书馆", "Press", "Books", "Media", "Wiley",
                                             "Editions", "Routledge", "Springer"))
        assert record["210"]["d"] == general[9:13]
        assert re.fullmatch(r"[A-Z]{1,2}\d*(\.\d+)?", record["690"]["a"])
        assert record.get_fields("701") and record.get_fields("905")
        assert record["001"].data.startswith(("GR", "GRDW"))
    chinese = [r for r in records["GR"] if r["101"]["a"] == "chi"]
    assert chinese and all(re.search(r"[\u4e00-\u9fff]", r["200"]["a"]) for r in chinese)
    assert all(r["200"]["A"] for r in chinese)  # pinyin title
    assert any(r["101"]["a"] == "eng" for r in records["GR"])  # foreign books catalogued in CNMARC too


def test_marc21_records_are_well_formed(demo) -> None:
    _, _, summary, records = demo
    assert summary.libraries["GRLA"].format is MarcFormat.MARC21
    english = 0
    for record in records["GRLA"]:
        assert record.leader[5:10] == "nam a"
        assert len(record["008"].data) == 40
        language = record["008"].data[35:38]
        assert language in ("chi", "eng")
        for tag in ("100", "245", "260", "952"):
            assert record.get_fields(tag), (tag, record)
        assert record["245"]["c"]
        if language == "eng":
            english += 1
            assert record["082"]["a"]
            assert all(field.indicator2 == "0" for field in record.get_fields("650"))
            assert not re.search(r"[\u4e00-\u9fff]", record.title)
        assert record["084"]["2"] == "clc"
    assert english > 0


def test_isbns_have_valid_check_digits_in_both_printed_forms(demo) -> None:
    _, _, _, records = demo
    forms = collections.Counter()
    for library_records in records.values():
        for record in library_records:
            for field in record.get_fields("010", "020"):
                isbn = field["a"]
                assert isbn_is_valid(isbn), isbn
                forms[len(isbn.replace("-", ""))] += 1
    assert forms[13] > 0 and forms[10] > 0


def holdings_of(record: Record, mapping: HoldingsMapping) -> list[dict[str, str]]:
    return [{code: field[code] for code in field.subfields_as_dict()} for field in record.get_fields(mapping.tag)]


def test_barcodes_fall_in_the_owning_librarys_ranges_and_are_unique(demo) -> None:
    policy, _, summary, records = demo
    seen: set[str] = set()
    for code, library in policy.libraries.items():
        mapping = library.holdings
        assert mapping is not None
        count = 0
        for record in records[code]:
            for item in holdings_of(record, mapping):
                barcode = item[mapping.barcode]
                assert any(in_range(barcode, r.start, r.end) for r in library.barcode_ranges), (code, barcode)
                assert barcode not in seen
                seen.add(barcode)
                expected_source = library.source_codes[0] if library.source_codes else code
                assert item[mapping.library] == expected_source
                classification = record.get("690") or record.get("084")
                assert item[mapping.call_number].startswith(classification["a"] + "/")
                count += 1
        assert count == summary.libraries[code].items
    assert len(seen) == summary.items


def test_the_same_book_is_held_by_several_libraries_sometimes_catalogued_differently(demo) -> None:
    _, _, _, records = demo
    by_isbn: dict[str, list[tuple[str, Record]]] = collections.defaultdict(list)
    for code, library_records in records.items():
        for record in library_records:
            for field in record.get_fields("010", "020"):
                by_isbn[as_isbn13(field["a"])].append((code, record))
    shared = {isbn: holders for isbn, holders in by_isbn.items() if len({c for c, _ in holders}) > 1}
    assert len(shared) > 100
    assert any(len({c for c, _ in holders}) >= 3 for holders in shared.values())
    # the hub's CNMARC and the Koha branch's MARC21 record of one book share the ISBN
    assert any({"GR", "GRLA"} <= {c for c, _ in holders} for holders in shared.values())
    differing_isbn_forms = [h for h in shared.values() if len({r.get_fields("010", "020")[0]["a"] for _, r in h}) > 1]
    assert differing_isbn_forms
    cnmarc_shared = [[r for c, r in h if c != "GRLA"] for h in shared.values()]
    differing_completeness = [rs for rs in cnmarc_shared if len({len(r.get_fields()) for r in rs}) > 1]
    assert differing_completeness


def test_books_without_isbn_repeat_title_author_and_year_across_libraries(demo) -> None:
    _, _, _, records = demo
    keys: dict[tuple[str, str, str], set[str]] = collections.defaultdict(set)
    for code in ("GR", "GRDW", "GRXY", "GRBUS"):
        for record in records[code]:
            if record.get("010") is None:
                keys[(record["200"]["a"], record["701"]["a"], record["210"]["d"])].add(code)
    assert keys and any(int(year) < 1988 for _, _, year in keys)
    assert any(len(codes) > 1 for codes in keys.values())


def test_some_items_are_in_reference_only_locations_and_some_on_loan(demo) -> None:
    policy, _, _, records = demo
    locations = collections.Counter()
    for code in ("GR", "GRDW"):
        for record in records[code]:
            for item in holdings_of(record, CNMARC_905):
                locations[item["c"]] += 1
    assert locations[REFERENCE_ROOM] > 0
    koha_items = [item for record in records["GRLA"] for item in holdings_of(record, KOHA)]
    # Koha: $7 is the numeric not-for-loan code, a loan is a due date in $q
    assert {item["7"] for item in koha_items} == {"0", "1"}
    assert all(item["c"] == REFERENCE_ROOM for item in koha_items if item["7"] == "1")
    on_loan = [item for item in koha_items if "q" in item]
    assert on_loan and all(re.fullmatch(r"\d{4}-\d\d-\d\d", item["q"]) and item["7"] == "0" for item in on_loan)
    # the book bus has no reference room: only the hub and branches shelve reference copies
    bus_locations = {item["c"] for record in records["GRBUS"] for item in holdings_of(record, CNMARC_905)}
    assert REFERENCE_ROOM not in bus_locations


def test_same_seed_writes_byte_identical_files_and_keeps_unchanged_files(tmp_path: Path) -> None:
    policy = network_policy()
    write_demo_data(policy, tmp_path / "a", records=400, seed=3)
    write_demo_data(policy, tmp_path / "b", records=400, seed=3)
    write_demo_data(policy, tmp_path / "c", records=400, seed=4)
    for code in policy.libraries:
        assert (tmp_path / "a" / f"{code}.mrc").read_bytes() == (tmp_path / "b" / f"{code}.mrc").read_bytes()
    assert (tmp_path / "a" / "GR.mrc").read_bytes() != (tmp_path / "c" / "GR.mrc").read_bytes()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}
    write_demo_data(policy, tmp_path / "a", records=400, seed=3)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()} == before


def test_used_up_barcode_range_is_a_clear_error_and_leaves_no_partial_files(tmp_path: Path) -> None:
    policy = network_policy(hub_range=("GR00000001", "GR00000050"))
    with pytest.raises(DemoDataError, match="GR: its barcode ranges are used up"):
        write_demo_data(policy, tmp_path, records=500, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_flat_as_the_record_count_grows(tmp_path: Path) -> None:
    policy = network_policy()

    def peak(records: int) -> int:
        tracemalloc.start()
        try:
            write_demo_data(policy, tmp_path / str(records), records=records, seed=5)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(200), peak(2000)
    assert large < small * 1.5 + 200_000, (small, large)


REPO = Path(__file__).resolve().parent.parent
FEDERATION = REPO / ".venv" / "bin" / "federation"
GUANGRAO = REPO / "config" / "networks" / "guangrao.yaml"


def run_demo_data(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FEDERATION), "demo-data", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_cli_writes_an_export_for_every_library_of_the_guangrao_rule_set(tmp_path: Path) -> None:
    network = load_network(GUANGRAO)
    policy = network.to_ingest_policy()
    result = run_demo_data("--config", str(GUANGRAO), "--records", "1500", "--seed", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1500 records (")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{code}.mrc" for code in network.libraries)
    total = 0
    for code, library in policy.libraries.items():
        records = read_file(tmp_path / f"{code}.mrc")
        total += len(records)
        mapping = library.holdings
        assert mapping is not None
        for record in records:
            for item in holdings_of(record, mapping):
                owner = network.library_for_barcode(item[mapping.barcode])
                assert owner is not None and owner.code == code
                assert policy.library_for_source_code(item[mapping.library]).code == code  # type: ignore[union-attr]
    assert total == 1500
    # libraries whose holdings mapping is MARC21's export MARC21
    marc21 = [code for code, lib in policy.libraries.items() if lib.holdings and lib.holdings.tag in ("852", "952")]
    assert marc21
    for code in marc21:
        assert read_file(tmp_path / f"{code}.mrc")[0].leader[9] == "a"
        assert f"{code} " in result.stdout and "marc21" in result.stdout


def test_cli_reports_a_broken_rule_set_with_its_location(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(GUANGRAO.read_text(encoding="utf-8").replace("tier: hub", "tier: capital", 1), encoding="utf-8")
    result = run_demo_data("--config", str(broken), "--records", "10", "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert re.search(r"broken\.yaml:\d+:\d+: .*tier", result.stderr), result.stderr
    assert not (tmp_path / "out").exists()


def test_the_ingest_side_reads_the_demo_exports_cleanly(tmp_path: Path) -> None:
    """The network's own readers, extraction and holdings rules accept every record and item,
    and the copies of one book in different libraries meet on a match key."""
    network = load_network(GUANGRAO)
    policy = network.to_ingest_policy()
    table = load_index_table()
    write_demo_data(policy, tmp_path, records=1200, seed=11)
    libraries_by_key: dict[str, set[str]] = collections.defaultdict(set)
    availability = collections.Counter()
    for code, library in policy.libraries.items():
        marc21 = library.holdings is not None and library.holdings.tag in ("852", "952")
        for result in read_records(tmp_path / f"{code}.mrc"):
            assert result.ok, result.error
            assert result.format is (MarcFormat.MARC21 if marc21 else MarcFormat.CNMARC)
            assert result.encoding == "utf-8"
            analysis = analyse(result.record, result.format, table)
            assert analysis.fields["title"] and analysis.fields["classification"]
            assert analysis.match_keys
            libraries_by_key[analysis.match_keys[0]].add(code)
            holdings = extract_items(result.record, result.format, library, policy)
            assert holdings.problems == [] and not holdings.quarantine
            assert holdings.items and all(item.library == code for item in holdings.items)
            availability.update(item.availability for item in holdings.items)
    assert {Availability.AVAILABLE, Availability.ON_LOAN, Availability.REFERENCE_ONLY} <= set(availability)
    assert availability[Availability.AVAILABLE] > availability[Availability.ON_LOAN]
    shared = [codes for codes in libraries_by_key.values() if len(codes) > 1]
    assert len(shared) > 100
    assert any(key.startswith("work:") for key, codes in libraries_by_key.items() if len(codes) > 1)
