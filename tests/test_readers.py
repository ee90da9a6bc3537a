"""Readers on real records: expected values come from pymarc / lxml reading the same files."""
from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tracemalloc
import unicodedata
from pathlib import Path

import pymarc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from indexer.model import MarcFormat
from indexer.readers import ReadResult, read_records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LOC = FIXTURES / "marc21" / "loc-bibliographic-386.mrc"
CNMARC_ISO = FIXTURES / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso"
CNMARC_XML = FIXTURES / "cnmarc" / "sample_cnmarcxml.xml"
UNIMARC = FIXTURES / "unimarc" / "periouni-3064.mrc"
NLC = "{http://www.nlc.cn/}"


def pymarc_dicts(path: Path, **options) -> list[dict]:
    with open(path, "rb") as handle:
        return [r.as_dict() for r in pymarc.MARCReader(handle, **options)]


def ours(path: Path | io.BufferedIOBase, **options) -> list[ReadResult]:
    return list(read_records(path, **options))


def test_loc_386_match_pymarc_field_for_field():
    results = ours(LOC)
    assert len(results) == 386
    assert all(r.ok and r.format is MarcFormat.MARC21 and r.encoding == "utf-8" for r in results)
    assert [r.position for r in results] == list(range(1, 387))
    assert [r.record.as_dict() for r in results] == pymarc_dicts(LOC, to_unicode=True, force_utf8=True)
    # offsets are byte offsets: each raw record sits there in the file
    data = LOC.read_bytes()
    assert all(data[r.offset:r.offset + len(r.raw)] == r.raw for r in results)


@pytest.mark.parametrize("name", ["stanford-30.utf8.mrc", "loc-edge-cases.mrc", "hebrew880s.mrc", "oclc-cjk-880.utf8.mrc"])
def test_other_marc21_utf8_files_match_pymarc(name):
    path = FIXTURES / "marc21" / name
    results = ours(path)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.record.as_dict() for r in results] == pymarc_dicts(path, to_unicode=True, force_utf8=True)


def test_marc8_record_is_converted_like_pymarc():
    path = FIXTURES / "marc21" / "one-marc8.mrc"
    (result,) = ours(path)
    assert result.ok and result.encoding == "marc-8"
    expected = pymarc_dicts(path, to_unicode=True)[0]
    assert result.record.as_dict() == expected
    assert any(ord(c) > 127 for c in json.dumps(expected, ensure_ascii=False))  # real non-ASCII text converted


def test_unimarc_3064_utf8():
    results = ours(UNIMARC)
    assert len(results) == 3064
    assert all(r.ok and r.format is MarcFormat.UNIMARC and r.encoding == "utf-8" for r in results)
    assert [r.record.as_dict() for r in results] == pymarc_dicts(UNIMARC, to_unicode=True, force_utf8=True)


def cnmarc_xml_records() -> list[etree._Element]:
    tree = etree.parse(str(CNMARC_XML))
    return tree.findall(f".//{NLC}record")


def xml_subfields(record: etree._Element, tag: str, code: str) -> list[str]:
    return [
        sub.text or ""
        for field in record.findall(f"{NLC}datafield[@tag='{tag}']")
        for sub in field.findall(f"{NLC}subfield[@code='{code}']")
    ]


def test_cnmarc_iso2709_detected_and_titles_match_the_served_xml():
    results = ours(CNMARC_ISO)
    expected_titles = [xml_subfields(r, "200", "a") for r in cnmarc_xml_records()]
    assert len(results) == len(expected_titles) == 10
    assert all(r.ok and r.format is MarcFormat.CNMARC and r.encoding == "utf-8" for r in results)
    assert [[f["a"] for f in r.record.get_fields("200")] for r in results] == expected_titles
    assert any("中国" in t[0] for t in expected_titles)


def test_cnmarc_xml_sru_response_in_nlc_namespace():
    results = ours(CNMARC_XML)
    xml_records = cnmarc_xml_records()
    assert len(results) == len(xml_records) == 10
    assert all(r.ok and r.format is MarcFormat.CNMARC for r in results)
    for result, element in zip(results, xml_records):
        assert result.record.get_fields("200")[0].get_subfields("a") == xml_subfields(element, "200", "a")
        assert result.record.get_fields("200")[0].get_subfields("A") == xml_subfields(element, "200", "A")
        assert [f.value() for f in result.record.get_fields("001")] == [
            e.text for e in element.findall(f"{NLC}controlfield[@tag='001']")
        ]
        # CNMARC XML writes blanks in the leader as '-'; the record has real blanks
        assert "-" not in str(result.record.leader)
        assert result.raw.startswith(b"<record")


def iso2709(record: pymarc.Record, encoding: str) -> bytes:
    """Serialize a record in ISO 2709 with the given character encoding (pymarc only writes UTF-8/Latin-1)."""
    directory, data, offset = b"", b"", 0
    for field in record.fields:
        if field.is_control_field():
            body = field.data.encode(encoding) + b"\x1e"
        else:
            body = "".join(field.indicators).encode("ascii")
            body += b"".join(b"\x1f" + s.code.encode("ascii") + s.value.encode(encoding) for s in field.subfields)
            body += b"\x1e"
        directory += f"{field.tag}{len(body):04d}{offset:05d}".encode("ascii")
        data += body
        offset += len(body)
    base = 24 + len(directory) + 1
    length = base + len(data) + 1
    leader = f"{length:05d}{str(record.leader)[5:9]} 22{base:05d}{str(record.leader)[17:]}"
    return leader.encode("ascii") + directory + b"\x1e" + data + b"\x1d"


def test_cnmarc_reencoded_to_gb18030_is_detected_and_decoded():
    originals = [r.record for r in ours(CNMARC_ISO)]
    blob = b"".join(iso2709(record, "gb18030") for record in originals)
    with pytest.raises(UnicodeDecodeError):
        blob.decode("utf-8")  # really not UTF-8 any more
    for options in ({}, {"encoding": "gbk"}, {"encoding": "GB18030", "format": "cnmarc"}):
        results = ours(io.BytesIO(blob), **options)
        assert len(results) == 10
        assert all(r.ok and r.format is MarcFormat.CNMARC and r.encoding == "gb18030" if not options
                   else r.ok for r in results)
        assert [r.record.get_fields("200")[0]["a"] for r in results] == [o.get_fields("200")[0]["a"] for o in originals]


def test_gb18030_without_a_chinese_label_is_an_error_not_mojibake():
    record = ours(CNMARC_ISO)[0].record
    record.fields = [f for f in record.fields if f.tag not in ("100", "102", "690", "905", "906", "801")]
    (result,) = ours(io.BytesIO(iso2709(record, "gb18030")))
    assert result.record is None
    assert "cannot decode" in result.error and "utf-8" in result.error


def test_idzebra_marc21_gzip_matches_pymarc():
    path = FIXTURES / "idzebra" / "marc21" / "sample-marc.gz"
    results = ours(path)
    with gzip.open(path, "rb") as handle:
        expected = [r.as_dict() for r in pymarc.MARCReader(handle, to_unicode=True) if r is not None]
    # pymarc also reports the file's trailing bytes (stray terminators) as a truncated record
    assert len(results) == len(expected) == 24
    assert [r.record.as_dict() for r in results] == expected


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "idzebra" / "marcxml").glob("*.xml*")))
def test_idzebra_marcxml_matches_pymarc(name):
    path = FIXTURES / "idzebra" / "marcxml" / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        expected = [r.as_dict() for r in pymarc.parse_xml_to_array(handle)]
    results = ours(path)
    assert len(results) == len(expected) > 0
    assert all(r.ok and r.format is MarcFormat.MARC21 for r in results)
    assert [r.record.as_dict() for r in results] == expected


def test_marcxml_summerland_and_marc_in_json():
    (xml_result,) = ours(FIXTURES / "marc21" / "summerland.marcxml.xml")
    expected = pymarc.parse_xml_to_array(str(FIXTURES / "marc21" / "summerland.marcxml.xml"))[0]
    assert xml_result.record.as_dict() == expected.as_dict()

    path = FIXTURES / "marc21" / "marc-in-json.json"
    (json_result,) = ours(path)
    with open(path, "rb") as handle:
        (expected_json,) = list(pymarc.JSONReader(handle.read().decode("utf-8")))
    assert json_result.ok and json_result.format is MarcFormat.MARC21
    assert json_result.record.as_dict() == expected_json.as_dict()


def test_marc_in_json_lines_and_array_and_a_broken_entry():
    records = [r.record.as_dict() for r in ours(LOC)[:5]]
    lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode("utf-8")
    assert [r.record.as_dict() for r in ours(io.BytesIO(lines))] == records
    array = json.dumps(records, indent=1).encode("utf-8")
    assert [r.record.as_dict() for r in ours(io.BytesIO(array))] == records
    broken = [records[0], {"leader": "short", "fields": []}, records[1]]
    results = ours(io.BytesIO(json.dumps(broken).encode("utf-8")))
    assert [r.ok for r in results] == [True, False, True]
    assert "leader" in results[1].error and results[1].position == 2


def test_truncated_record_is_reported_and_the_next_ones_are_read():
    data = LOC.read_bytes()
    good = ours(LOC)[:3]
    blob = good[0].raw + good[1].raw[: len(good[1].raw) // 2] + good[2].raw
    results = ours(io.BytesIO(blob))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].raw == good[1].raw[: len(good[1].raw) // 2]
    assert results[1].offset == len(good[0].raw)
    assert results[2].record.as_dict() == good[2].record.as_dict()
    assert data  # the file itself is untouched


def test_garbage_between_records_is_isolated():
    good = ours(LOC)[:2]
    blob = good[0].raw + b"\r\nthis is not a record\x1d" + good[1].raw
    results = ours(io.BytesIO(blob))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].raw == b"this is not a record\x1d"


# -- fixtures/malformed: every file, good records in, bad ones with reasons -------------------

MALFORMED = FIXTURES / "malformed"


def test_bad_utf8_byte_is_an_error_naming_field_and_byte():
    (result,) = ours(MALFORMED / "bad_utf_byte.utf8.mrc")
    assert result.record is None and result.raw == (MALFORMED / "bad_utf_byte.utf8.mrc").read_bytes()
    assert "field 300" in result.error and "c0" in result.error


def test_bad_subfield_code_and_bad_indicator_are_errors():
    (subfield,) = ours(MALFORMED / "bad_subfield_code.mrc")
    assert "subfield code 0xe2" in subfield.error
    (indicator,) = ours(MALFORMED / "bad-characters-in-various-fields.mrc")
    assert "indicator 0x14" in indicator.error


def test_records_over_the_iso2709_limits_are_recovered_from_field_terminators():
    results = ours(MALFORMED / "bad_too_long_plus_2.mrc")
    assert len(results) == 3 and all(r.ok for r in results)
    first = results[0].record
    assert len(results[0].raw) > 99_999
    # the directory's entry count is what the record holds
    raw = results[0].raw
    base = int(raw[12:17])
    assert len(first.fields) == (base - 1 - 24) // 12
    assert first.get_fields("991")[-1].get_subfields("a")  # fields past the 99,999-byte offset wrap


def test_oversize_field_file_keeps_good_records():
    path = MALFORMED / "bad_oversize_field_bad_directory.mrc"
    results = ours(path)
    assert len(results) == path.read_bytes().count(b"\x1d") == 5
    assert [r.ok for r in results].count(False) == 1
    bad = next(r for r in results if not r.ok)
    assert "directory" in bad.error


def test_pride_and_prejudice_many_errors():
    path = MALFORMED / "pride-and-prejudice-with-many-errors.mrc"
    results = ours(path, format="marc21")
    assert len(results) == path.read_bytes().count(b"\x1d") == 383
    errors = [r for r in results if not r.ok]
    # 16 with broken directories (what the source says), one whose 852 is neither UTF-8 nor MARC-8
    assert sum("directory" in r.error for r in errors) == 16
    assert [r.position for r in errors if "cannot decode" in r.error] == [374]
    assert "field 852" in results[373].error
    # every record pymarc reads strictly as declared, we read the same
    with open(path, "rb") as handle:
        reader = pymarc.MARCReader(handle, to_unicode=True, permissive=True, utf8_handling="strict")
        strict = [r.as_dict() if r is not None else None for r in reader]
    assert len(strict) == 383
    for ours_result, theirs in zip(results, strict):
        if theirs is not None and ours_result.encoding == "utf-8":
            assert ours_result.record.as_dict() == theirs
    # Records labelled UTF-8 whose bytes are MARC-8 are decoded as MARC-8 (0xE2 = acute accent)
    relabelled = [r for r in results if r.ok and r.encoding == "marc-8" and r.record.leader[9] == "a"]
    assert relabelled
    assert any("préjugé" in r.record.title.lower() for r in relabelled if r.record.title)


def test_unordered_directory_and_blank_leader_codes_are_read():
    for name in ("unordered-directory-entries.mrc", "bad_leaders_10_11.mrc"):
        path = MALFORMED / name
        (result,) = ours(path)
        assert result.ok
        assert result.record.as_dict()["fields"] == pymarc_dicts(path, to_unicode=True)[0]["fields"]


def test_chinese_mangled_multibyte_records():
    """Four copies of one record: MARC-8 with mangled EACC, MARC-8 EACC, MARC-8 with numeric
    character references, UTF-8. The mangled one is an error; the others read the same text."""
    path = MALFORMED / "chinese_mangled_multibyte.mrc"
    results = ours(path)
    assert len(results) == 4
    assert results[0].record is None and "EACC" in results[0].error and "field 880" in results[0].error
    assert [r.encoding for r in results[1:]] == ["marc-8", "marc-8", "utf-8"]
    titles = [[f.value() for f in r.record.get_fields("880") if f["6"].startswith("245")] for r in results[1:]]
    assert titles[0] == titles[1] == titles[2]
    # what the UTF-8 copy says, straight from its bytes
    assert "車輪滾滾" in titles[2][0] and "車輪滾滾".encode("utf-8") in results[3].raw


# -- MARCXML in any namespace --------------------------------------------------------------------

# A MARC record element in any namespace or none: the one that has a leader (an SRU response
# wraps each in another element also named `record`).
XML_RECORDS = "//*[local-name()='record'][*[local-name()='leader']]"


def xml_marc(element: etree._Element) -> dict:
    """The record as the XML says it, by XPath on local names, in pymarc's as_dict() shape."""
    fields = []
    for field in element.xpath("*[local-name()='controlfield' or local-name()='datafield']"):
        if etree.QName(field).localname == "controlfield":
            fields.append({field.get("tag"): field.text or ""})
        else:
            fields.append({field.get("tag"): {
                "ind1": field.get("ind1") or " ", "ind2": field.get("ind2") or " ",
                "subfields": [{sub.get("code"): sub.text or ""} for sub in field.xpath("*[local-name()='subfield']")]}})
    return {"leader": element.xpath("string(*[local-name()='leader'])"), "fields": fields}


def xml_values(element: etree._Element, tag: str, code: str) -> list[str]:
    return element.xpath(f"*[local-name()='datafield'][@tag='{tag}']/*[local-name()='subfield'][@code='{code}']/text()")


@pytest.mark.parametrize("name, namespace", [
    ("sample_unimarcxml.xml", "info:srw/schema/8/unimarcxml-v0.1"),
    # Labelled KORMARC by the dp2 sample server, but the same CNMARC records (200, 690 CLC, 905, 801 CN).
    ("sample_kormarcxml.xml", "http://www.nl.go.kr/kormarc/"),
])
def test_cnmarc_records_in_other_namespaces_are_read_field_for_field(name, namespace):
    path = FIXTURES / "cnmarc" / name
    elements = etree.parse(str(path)).xpath(XML_RECORDS)
    assert len(elements) == 10
    assert {etree.QName(e).namespace for e in elements} == {namespace}
    results = ours(path)
    assert len(results) == len(elements)
    for result, element in zip(results, elements):
        assert result.ok, result.error
        expected = xml_marc(element)
        # the served leader writes blanks as '-'; the record has real blanks
        expected["leader"] = expected["leader"].replace("-", " ")
        assert result.record.as_dict() == expected
        assert result.record["200"].get_subfields("a") == xml_values(element, "200", "a")
        assert [f.value() for f in result.record.get_fields("001")] == \
            element.xpath("*[local-name()='controlfield'][@tag='001']/text()")
        # CNMARC by what the records say (690 CLC class, 801$a CN), not by a namespace it does not have
        assert xml_values(element, "690", "a") and set(xml_values(element, "801", "a")) == {"CN"}
        assert result.format is MarcFormat.CNMARC
    titles = [xml_values(e, "200", "a")[0] for e in elements]
    assert titles[0] == "'94中国发展报告" and all(any("\u4e00" <= c <= "\u9fff" for c in t) for t in titles)
    # the same records as the NLC-namespace response: the namespace does not change a record
    assert [r.record.as_dict() for r in results] == [r.record.as_dict() for r in ours(CNMARC_XML)]


def without_namespaces(data: bytes) -> bytes:
    """The document with every element moved out of its namespace (as some servers send MARCXML)."""
    root = etree.fromstring(data)
    for element in root.iter():
        if isinstance(element.tag, str):
            element.tag = etree.QName(element).localname
    etree.cleanup_namespaces(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("path, expected_format", [
    (FIXTURES / "idzebra" / "marcxml" / "collection-opera-43.xml.gz", MarcFormat.MARC21),
    # a whole SRU response: the wrapping srw `record` and the MARC `record` now have the same name
    (CNMARC_XML, MarcFormat.CNMARC),
])
def test_marcxml_without_a_namespace(path, expected_format):
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    plain = without_namespaces(data)
    assert b"xmlns" not in plain and b"<record>" in plain
    elements = etree.fromstring(plain).xpath(XML_RECORDS)
    assert all(etree.QName(e).namespace is None for e in elements)
    assert len(elements) == len(etree.fromstring(data).xpath(XML_RECORDS)) > 5
    results = ours(io.BytesIO(plain))
    assert len(results) == len(elements)
    title_tag = "245" if expected_format is MarcFormat.MARC21 else "200"
    for result, element in zip(results, elements):
        assert result.ok and result.format is expected_format, result.error
        expected = xml_marc(element)
        expected["leader"] = expected["leader"].replace("-", " ")
        assert result.record.as_dict() == expected
        assert result.record[title_tag].get_subfields("a") == xml_values(element, title_tag, "a")
    # and gzipped
    assert [r.record.as_dict() for r in ours(io.BytesIO(gzip.compress(plain)))] == [r.record.as_dict() for r in results]


def test_marcxml_error_file_reports_the_bad_tag():
    (result,) = ours(MALFORMED / "error.mrc.xml")
    assert result.record is None
    assert "'___'" in result.error and result.raw.startswith(b"<record")


def test_xml_syntax_error_after_good_records():
    text = (FIXTURES / "idzebra" / "marcxml" / "collection-sandburg-1.xml").read_bytes()
    head, _, _ = text.rpartition(b"</collection>")
    broken = head.replace(b"<record", b"<record", 1) + b"<record><leader>oops</collection>"
    results = ours(io.BytesIO(broken))
    assert [r.ok for r in results] == [True, False]
    assert "XML syntax error" in results[1].error


# -- streaming -------------------------------------------------------------------------------


class RepeatingStream(io.RawIOBase):
    """A non-seekable stream that serves `data` `times` times without holding the copies."""

    def __init__(self, data: bytes, times: int):
        self.data, self.times, self.position = data, times, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        total = len(self.data) * self.times
        if self.position >= total:
            return 0
        start = self.position % len(self.data)
        chunk = self.data[start:start + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def test_memory_stays_flat_on_a_long_stream():
    data = LOC.read_bytes()
    tracemalloc.start()
    count = 0
    for result in read_records(RepeatingStream(data, 2)):
        assert result.ok
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 386 * 2
    assert peak < len(data) * 2 // 3  # the input is twice the file; not even one copy is held at once


def test_marc_in_json_lines_resume_after_a_syntax_error_and_a_bad_byte():
    records = [r.record.as_dict() for r in ours(LOC)[:4]]
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]
    lines[1] = lines[1][: len(lines[1]) // 2]                       # truncated line
    lines[2] = lines[2].replace(b"leader", b"le\xffder", 1)           # a byte that is not UTF-8
    results = ours(io.BytesIO(b"\n".join(lines)))
    assert [r.ok for r in results] == [True, False, False, True]
    assert "JSON syntax error" in results[1].error and results[1].offset == 2
    assert "0xff" in results[2].error and b"\xff" in results[2].raw
    assert results[3].record.as_dict() == records[3] and results[3].offset == 4


def yaz_marc8_to_utf8(raw: bytes, tmp_path: Path) -> list[dict]:
    """The records as YAZ's yaz-marcdump converts them (MARC-8 -> UTF-8), read back via MARCXML."""
    source = tmp_path / "marc8.mrc"
    source.write_bytes(raw)
    converted = subprocess.run(
        ["yaz-marcdump", "-i", "marc", "-o", "marcxml", "-f", "MARC-8", "-t", "UTF-8", str(source)],
        check=True, capture_output=True, timeout=60,
    ).stdout
    return [r.record.as_dict() for r in ours(io.BytesIO(converted))]


def nfc_fields(record: dict) -> list:
    return json.loads(unicodedata.normalize("NFC", json.dumps(record["fields"], ensure_ascii=False)))


def test_marc8_conversion_agrees_with_yaz_marcdump(tmp_path):
    assert shutil.which("yaz-marcdump")
    zebra = gzip.decompress((FIXTURES / "idzebra" / "marc21" / "sample-marc.gz").read_bytes())
    eacc = ours(MALFORMED / "chinese_mangled_multibyte.mrc")[1]
    samples = [(FIXTURES / "marc21" / "one-marc8.mrc").read_bytes(), zebra.rstrip(b"\x1d\x00") + b"\x1d", eacc.raw]
    compared = 0
    for raw in samples:
        mine = [r for r in ours(io.BytesIO(raw))]
        assert all(r.ok and r.encoding == "marc-8" for r in mine)
        theirs = yaz_marc8_to_utf8(raw, tmp_path)
        assert len(theirs) == len(mine)
        for result, expected in zip(mine, theirs):
            if any(f.is_control_field() and "\x1f" in f.data for f in result.record.fields):
                continue  # danMARC record in the Zebra sample: YAZ re-structures its 00X fields
            assert nfc_fields(result.record.as_dict()) == nfc_fields(expected)
            compared += 1
    assert compared == 1 + 23 + 1


def iso5426_encode(text: str) -> bytes:
    """Test-side encoder (diacritic before its letter), checked below against YAZ's decoder."""
    spacing = {"£": 0xA3, "©": 0xAD, "Æ": 0xE1, "Ø": 0xE9, "Œ": 0xEA, "æ": 0xF1, "ø": 0xF9, "œ": 0xFA, "ß": 0xFB,
               "«": 0xAB, "»": 0xBB, "’": 0xB9, "‘": 0xA9, "“": 0xAA, "”": 0xBA, "ł": 0xF8, "Ł": 0xE8,
               "\u0098": 0x88, "\u009c": 0x89}
    marks = {"\u0300": 0xC1, "\u0301": 0xC2, "\u0302": 0xC3, "\u0303": 0xC4, "\u0308": 0xC8, "\u030a": 0xCA,
             "\u0327": 0xD0, "\u030c": 0xCF, "\u0328": 0xD3, "\u0306": 0xC6, "\u0304": 0xC5}
    out = bytearray()
    for char in text:
        decomposed = unicodedata.normalize("NFD", char)
        base, combining = decomposed[0], decomposed[1:]
        out += bytes(marks[m] for m in combining)
        out += base.encode("ascii") if base.isascii() else bytes([spacing[base]])
    return bytes(out)


def unimarc_in_iso5426(record: pymarc.Record) -> bytes:
    """ISO 2709 with every value in ISO 5426 and 100$a/26-29 saying so."""
    directory, data, offset = b"", b"", 0
    for field in record.fields:
        if field.is_control_field():
            body = iso5426_encode(field.data) + b"\x1e"
        else:
            values = []
            for sub in field.subfields:
                value = sub.value
                if field.tag == "100" and sub.code == "a":
                    value = value[:26] + "03  " + value[30:]
                values.append(b"\x1f" + sub.code.encode("ascii") + iso5426_encode(value))
            body = "".join(field.indicators).encode("ascii") + b"".join(values) + b"\x1e"
        directory += f"{field.tag}{len(body):04d}{offset:05d}".encode("ascii")
        data += body
        offset += len(body)
    base = 24 + len(directory) + 1
    leader = f"{base + len(data) + 1:05d}{str(record.leader)[5:12]}{base:05d}{str(record.leader)[17:]}"
    return leader.encode("ascii") + directory + b"\x1e" + data + b"\x1d"


def test_unimarc_iso5426_records_are_decoded():
    encodable = []
    for result in read_records(UNIMARC):
        try:
            blob = unimarc_in_iso5426(result.record)
        except (KeyError, UnicodeEncodeError):
            continue  # a character the test-side encoder does not know
        if any(b >= 0x80 for b in blob) and result.record.get_fields("100"):
            encodable.append((result.record, blob))
        if len(encodable) == 40:
            break
    assert len(encodable) == 40
    results = ours(io.BytesIO(b"".join(blob for _, blob in encodable)))
    assert all(r.ok and r.encoding == "iso5426" and r.format is MarcFormat.UNIMARC for r in results)
    for (original, _), result in zip(encodable, results):
        got, expected = nfc_fields(result.record.as_dict()), nfc_fields(original.as_dict())
        assert [f for f in got if "100" not in f] == [f for f in expected if "100" not in f]
        assert result.record.get_fields("100")[0]["a"][26:28] == "03"
    # YAZ decodes the same bytes to the same text
    for (original, _), result in zip(encodable[:10], results):
        raw_title = iso5426_encode(original.get_fields("200")[0]["a"])
        yaz = subprocess.run(["yaz-iconv", "-f", "iso5426", "-t", "utf-8"], input=raw_title,
                             capture_output=True, check=True, timeout=30).stdout
        assert unicodedata.normalize("NFC", yaz.decode("utf-8")) == result.record.get_fields("200")[0]["a"]


def test_iso5426_byte_outside_the_table_is_an_error():
    record = next(read_records(UNIMARC)).record
    blob = unimarc_in_iso5426(record)
    at = blob.index(b"\x1fa", int(blob[12:17])) + 2
    broken = blob[:at] + b"\xe0" + blob[at + 1:]  # 0xE0 is unassigned in ISO 5426
    (result,) = ours(io.BytesIO(broken))
    assert result.record is None and "0xe0" in result.error and "iso5426" in result.error


def test_sru_response_stream_memory_stays_flat():
    """A long SRU response (the served CNMARC-XML, its records repeated) is read record by record."""
    text = CNMARC_XML.read_bytes()
    head, _, rest = text.partition(b"<records>")
    body, _, tail = rest.partition(b"</records>")
    repeats = 40
    document = head + b"<records>" + body * repeats + b"</records>" + tail

    class Chunked(io.RawIOBase):
        def __init__(self):
            self.position = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = document[self.position:self.position + min(len(buffer), 8192)]
            buffer[: len(chunk)] = chunk
            self.position += len(chunk)
            return len(chunk)

    tracemalloc.start()
    count = 0
    for result in read_records(Chunked()):
        assert result.ok and result.format is MarcFormat.CNMARC
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 10 * repeats
    assert peak < len(document) // 4


def test_marc21_chinese_export_in_gb18030():
    """A MARC21 export from a Chinese system: GB18030 bytes, leader/09 blank, language chi."""
    (cjk,) = ours(FIXTURES / "marc21" / "oclc-cjk-880.utf8.mrc")
    record = cjk.record
    record.leader = pymarc.Leader(str(record.leader)[:9] + " " + str(record.leader)[10:])
    blob = iso2709(record, "gb18030")
    (result,) = ours(io.BytesIO(blob))
    assert result.ok and result.encoding == "gb18030" and result.format is MarcFormat.MARC21
    assert result.record.as_dict()["fields"] == cjk.record.as_dict()["fields"]
    # the same bytes, language not Chinese: no guessing, an error naming the field
    record.get_fields("008")[0].data = record["008"].data[:35] + "eng" + record["008"].data[38:]
    (refused,) = ours(io.BytesIO(iso2709(record, "gb18030")))
    assert refused.record is None and "marc-8" in refused.error and "utf-8" in refused.error


# -- property: whatever pymarc writes, we read back; garbage between records costs only itself ----

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x1d\x1e\x1f"),
    min_size=1, max_size=30,
)
_subfield = st.tuples(st.sampled_from("abcdefghxyz0"), _text)
_datafield = st.tuples(st.sampled_from(["100", "245", "260", "500", "650", "700", "880"]),
                       st.lists(_subfield, min_size=1, max_size=4))


@st.composite
def marc_records(draw) -> pymarc.Record:
    record = pymarc.Record(force_utf8=True)
    record.add_field(pymarc.Field(tag="001", data=draw(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True))))
    for tag, subfields in draw(st.lists(_datafield, min_size=1, max_size=6)):
        record.add_field(pymarc.Field(tag=tag, indicators=pymarc.Indicators("1", "0"),
                                      subfields=[pymarc.Subfield(c, v) for c, v in subfields]))
    return record


@settings(max_examples=60, deadline=None)
@given(st.lists(marc_records(), min_size=1, max_size=4), st.binary(max_size=40).filter(lambda b: b"\x1d" not in b))
def test_round_trip_and_resync_property(records, garbage):
    blobs = [r.as_marc() for r in records]
    results = ours(io.BytesIO(b"".join(blobs)))
    assert [r.record.as_dict()["fields"] for r in results] == [r.as_dict()["fields"] for r in records]
    # garbage (terminated) after the first record: reported on its own, the others still read
    noisy = blobs[0] + garbage + b"\x1d" + b"".join(blobs[1:])
    results = ours(io.BytesIO(noisy))
    good = [r for r in results if r.ok]
    assert [r.record.as_dict()["fields"] for r in good] == [r.as_dict()["fields"] for r in records]
    assert len(results) - len(good) <= 1


def test_a_length_that_spans_other_records_does_not_swallow_them():
    good = ours(LOC)[:3]
    blobs = [r.raw for r in good]
    # garbage whose "length" lands exactly on the end of the third record
    span = 10 + len(blobs[0]) + len(blobs[1])
    garbage = f"{span:05d}".encode() + b"xxxx\x1d"
    assert span == len(garbage) + len(blobs[0]) + len(blobs[1])
    results = ours(io.BytesIO(garbage + blobs[0] + blobs[1]))
    assert [r.ok for r in results] == [False, True, True]


@pytest.mark.parametrize("path", sorted(p for p in MALFORMED.iterdir() if p.is_file()), ids=lambda p: p.name)
def test_every_malformed_file_reads_to_the_end(path):
    """Nothing raises; every result is a record or an error with its raw bytes; the raw pieces of
    an ISO 2709 file account for every record terminator in it."""
    results = ours(path)
    assert results
    for result in results:
        assert (result.record is None) == (result.error is not None)
        assert result.raw
        if result.error is not None:
            assert len(result.error) > 15  # a reason, not a bare flag
    if path.suffix == ".mrc":
        data = path.read_bytes()
        assert sum(r.raw.count(b"\x1d") for r in results) == data.rstrip(b"\x1d\x00\r\n ").count(b"\x1d") + 1


def test_input_without_terminators_is_reported_in_bounded_pieces(monkeypatch):
    import indexer.readers as readers

    monkeypatch.setattr(readers, "_MAX_UNTERMINATED", 1 << 16)
    noise = bytes(range(33, 127)) * 3000  # ~280 KB, no record terminator anywhere
    good = ours(LOC)[0].raw
    results = ours(io.BytesIO(noise + good))
    assert all(len(r.raw) <= 1 << 16 for r in results[:-1])
    assert not any(r.ok for r in results[:-1])
    assert b"".join(r.raw for r in results[:-1]) + results[-1].raw == noise + good


def test_marc_in_json_lone_surrogate_is_an_error_naming_the_field():
    # JSON may escape half of a UTF-16 pair: valid JSON, not Unicode text; a whole pair is fine.
    good = {"leader": "00000nam a2200000 a 4500", "fields": [{"001": "J1"}, {"245": {
        "ind1": "1", "ind2": "0", "subfields": [{"a": "Emoji \U0001F4DA title"}]}}]}
    text = json.dumps(good) + "\n"
    assert "\\ud83d\\udcda" in text
    cases = [
        text.replace("Emoji \\ud83d\\udcda", "Broken \\ud800"),
        text.replace('"J1"', '"J\\udfff1"'),
        text.replace('"ind1": "1"', '"ind1": "\\udc00"'),
        text.replace('"00000nam', '"\\ud8000000nam'),
    ]
    results = ours(io.BytesIO((text + "".join(cases) + text).encode("ascii")))
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    assert results[0].record["245"]["a"] == "Emoji \U0001F4DA title"
    assert results[1].error == r"fields[1] (245) $a: lone UTF-16 surrogate \ud800 after 'Broken ' is not a Unicode character"
    assert results[2].error.startswith(r"fields[0] (001): lone UTF-16 surrogate \udfff after 'J'")
    assert results[3].error.startswith(r"fields[1] (245) indicators: lone UTF-16 surrogate \udc00")
    assert results[4].error.startswith(r"leader: lone UTF-16 surrogate \ud800")
    assert [r.position for r in results] == [1, 2, 3, 4, 5, 6]
    assert b"\\ud800" in results[1].raw
