"""Record presentation and serializations on real fixture records: MARC with the union id and
852/905 holdings, ISO 2709 read back by pymarc and yaz-marcdump, MARCXML read back by pymarc,
Dublin Core, ISO 20775 and SUTRS."""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pymarc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from federation.records import Directory, dublin_core, holdings_locations, presentation_marc, record_json
from indexer.model import Availability, Contribution, Item, MarcFormat, UnionRecord
from protocols.records import (
    MARC21_SLIM_NAMESPACE,
    UNIMARC_XML_NAMESPACE,
    dc_element,
    iso20775_element,
    marcxml_element,
    to_iso2709,
    to_sutrs,
)
from protocols.records.iso2709 import RecordTooLong

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DIRECTORY = Directory("guangrao", "GR", {"GR": "广饶县图书馆", "GR-DW": "大王分馆"}, {"GR": "hub", "GR-DW": "branch"})


def first_record(path: Path) -> pymarc.Record:
    with open(path, "rb") as handle:
        return next(pymarc.MARCReader(handle, to_unicode=True, force_utf8=True))


def union_of(record: pymarc.Record, marc_format: MarcFormat) -> UnionRecord:
    items = [
        Item("GR00000001", "GR", "hub", "I247.5/1", "中文图书借阅室", availability=Availability.AVAILABLE),
        Item("GR03000007", "GR-DW", "branch", "I247.5/1", "综合借阅室", availability=Availability.ON_LOAN,
             due_date="2026-12-01"),
        Item("GR00000002", "GR", "hub", "I247.5/1", "工具书阅览室", availability=Availability.REFERENCE_ONLY),
    ]
    contribution = Contribution("GR", record["001"].data, marc_format, record.as_dict(), items=items[:1] + items[2:])
    other = Contribution("GR-DW", "DW-1", marc_format, record.as_dict(), items=[items[1]])
    return UnionRecord("u-test-1", [contribution, other], ("GR", record["001"].data),
                       fields={"title": ["图书馆学教程"], "isbn": ["9787047310255"], "date": ["2024"]})


@pytest.fixture(scope="module")
def marc21() -> UnionRecord:
    return union_of(first_record(FIXTURES / "marc21" / "loc-bibliographic-386.mrc"), MarcFormat.MARC21)


@pytest.fixture(scope="module")
def cnmarc() -> UnionRecord:
    return union_of(first_record(FIXTURES / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso"), MarcFormat.CNMARC)


def test_marc21_presentation_has_union_id_852_holdings_and_source_ids(marc21):
    data = presentation_marc(marc21, DIRECTORY)
    record = next(pymarc.MARCReader(io.BytesIO(to_iso2709(data)), to_unicode=True))
    assert record["001"].data == "u-test-1" and record["003"].data == "guangrao"
    assert [f.get("a") for f in record.get_fields("035") if f.get("a", "").startswith("(GR")] == [
        f"(GR){marc21.master[1]}", "(GR-DW)DW-1"]
    holdings = record.get_fields("852")
    assert [(f["b"], f["p"], f.get_subfields("z")) for f in holdings] == [
        ("GR", "GR00000001", ["available"]),
        ("GR", "GR00000002", ["reference_only"]),
        ("GR-DW", "GR03000007", ["on_loan", "due 2026-12-01"]),
    ]
    assert all(f["a"] == "GR" and f["h"] == "I247.5/1" for f in holdings)
    assert [f.tag for f in record.fields[-3:]] == ["852"] * 3


def test_cnmarc_presentation_replaces_source_905_with_live_holdings(cnmarc):
    data = presentation_marc(cnmarc, DIRECTORY)
    record = next(pymarc.MARCReader(io.BytesIO(to_iso2709(data, unimarc=True)), to_unicode=True, force_utf8=True))
    assert record["001"].data == "u-test-1"
    holdings = record.get_fields("905")
    assert [(f.get("a"), f.get("b"), f.get("z"), f.get("y")) for f in holdings] == [
        ("GR", "GR00000001", "available", None),
        ("GR", "GR00000002", "reference_only", None),
        ("GR-DW", "GR03000007", "on_loan", "2026-12-01"),
    ]
    assert "BNU" not in {f["a"] for f in holdings}   # the source system's 905 is gone
    assert record["200"]["a"] == first_record(FIXTURES / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso")["200"]["a"]


def test_iso2709_is_read_by_yaz_marcdump(marc21, tmp_path):
    path = tmp_path / "record.mrc"
    path.write_bytes(to_iso2709(presentation_marc(marc21, DIRECTORY)))
    done = subprocess.run(["yaz-marcdump", "-i", "marc", "-o", "line", str(path)], capture_output=True, timeout=30)
    text = done.stdout.decode("utf-8")
    assert done.returncode == 0, done.stderr
    assert "001 u-test-1" in text and "852    $a GR $b GR-DW" in text
    xml = subprocess.run(["yaz-marcdump", "-i", "marc", "-o", "marcxml", str(path)], capture_output=True, timeout=30)
    assert etree.fromstring(xml.stdout).find(".//{*}controlfield[@tag='001']").text == "u-test-1"


def test_iso2709_lengths_count_utf8_bytes_and_refuse_oversize():
    record = {"leader": "00000nam a2200000   4500", "fields": [{"001": "x"}, {"245": {
        "ind1": "1", "ind2": "0", "subfields": [{"a": "图书馆学教程"}]}}]}
    data = to_iso2709(record)
    assert int(data[:5]) == len(data)
    assert data[9:10] == b"a"
    assert next(pymarc.MARCReader(io.BytesIO(data), to_unicode=True))["245"]["a"] == "图书馆学教程"
    huge = {"leader": "", "fields": [{"500": {"ind1": " ", "ind2": " ", "subfields": [{"a": "x" * 9000}]}}] * 12}
    with pytest.raises(RecordTooLong):
        to_iso2709(huge)


def test_iso2709_in_gbk_and_gb18030_counts_their_bytes_and_keeps_every_character():
    # U+20BB7 (𠮷) is outside GBK but inside GB18030.
    record = {"leader": "00000nam a2200000   4500", "fields": [{"001": "x"}, {"245": {
        "ind1": "1", "ind2": "0", "subfields": [{"a": "图书馆学教程"}, {"c": "吉𠮷"}]}}]}
    gbk = to_iso2709(record, encoding="gbk")
    assert int(gbk[:5]) == len(gbk)
    assert gbk[9:10] == b" "
    assert "图书馆学教程".encode("gbk") in gbk
    assert "吉".encode("gbk") + b"&#x20BB7;" in gbk
    parsed = next(pymarc.MARCReader(io.BytesIO(gbk), to_unicode=True, file_encoding="gbk"))
    assert parsed["245"]["a"] == "图书馆学教程" and parsed["245"]["c"] == "吉&#x20BB7;"
    gb18030 = to_iso2709(record, encoding="GB18030")
    assert int(gb18030[:5]) == len(gb18030)
    assert next(pymarc.MARCReader(io.BytesIO(gb18030), to_unicode=True, file_encoding="gb18030"))["245"]["c"] == "吉𠮷"
    unimarc = to_iso2709({"leader": "00000nam0 2200000   450 ", "fields": [{"200": {
        "ind1": "1", "ind2": " ", "subfields": [{"a": "图书馆"}]}}]}, unimarc=True, encoding="gbk")
    assert unimarc[5:9] == b"nam0" and "图书馆".encode("gbk") in unimarc
    with pytest.raises(LookupError):
        to_iso2709(record, encoding="no-such-codec")


def test_marcxml_round_trips_through_pymarc(marc21, cnmarc):
    element = marcxml_element(presentation_marc(marc21, DIRECTORY))
    assert element.tag == f"{{{MARC21_SLIM_NAMESPACE}}}record"
    parsed = pymarc.parse_xml_to_array(io.BytesIO(etree.tostring(element)))[0]
    assert parsed["001"].data == "u-test-1" and len(parsed.get_fields("852")) == 3
    unimarc = marcxml_element(presentation_marc(cnmarc, DIRECTORY), unimarc=True)
    assert unimarc.tag == f"{{{UNIMARC_XML_NAMESPACE}}}record"
    assert len(unimarc.findall(f"{{{UNIMARC_XML_NAMESPACE}}}datafield[@tag='905']")) == 3


def test_xml_forms_drop_characters_xml_cannot_carry():
    element = marcxml_element({"leader": "", "fields": [{"500": {"ind1": " ", "ind2": " ", "subfields": [
        {"a": "bell\x07 and nul\x00 gone"}]}}]})
    assert element.findtext(".//{*}subfield") == "bell and nul gone"


def test_dublin_core_iso20775_json_sutrs(marc21):
    dc = dc_element(dublin_core(marc21))
    values = [(etree.QName(e).localname, e.text) for e in dc]
    assert ("title", "图书馆学教程") in values and ("identifier", "urn:isbn:9787047310255") in values
    assert ("identifier", "union:u-test-1") in values
    holdings = iso20775_element(holdings_locations(marc21.items, DIRECTORY))
    ns = {"h": "http://www.loc.gov/standards/iso20775/"}
    hub, branch = holdings.findall("h:holding", ns)
    assert hub.findtext("h:institutionIdentifier/h:value", namespaces=ns) == "GR"
    assert hub.findtext("h:physicalLocation", namespaces=ns) == "广饶县图书馆"
    assert hub.findtext("h:holdingSimple/h:copiesSummary/h:copiesCount", namespaces=ns) == "2"
    statuses = [s.findtext("h:availabilityStatus", namespaces=ns)
                for s in hub.iterfind(".//h:copyInformation/h:availabilityInformation/h:status", ns)]
    assert statuses == ["1", "1"]
    assert branch.findtext(".//h:availabilityInformation/h:status/h:availabilityStatus", namespaces=ns) == "2"
    assert branch.findtext(".//h:dateTimeAvailable", namespaces=ns) == "2026-12-01"
    data = record_json(marc21, DIRECTORY)
    assert [(g["library"], len(g["items"])) for g in data["holdings"]] == [("GR", 2), ("GR-DW", 1)]
    assert data["marc"]["fields"][0] == {"001": "u-test-1"}
    text = to_sutrs(presentation_marc(marc21, DIRECTORY))
    assert "001 u-test-1" in text and "852    $a GR $b GR-DW $c 综合借阅室" in text
    with pytest.raises(ValueError):
        dc_element([("author", "x")])


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40))
def test_xml_text_drops_exactly_the_characters_xml_cannot_carry(value: str) -> None:
    from protocols.records.marcxml import xml_text

    def allowed(c: str) -> bool:
        return c in "\t\n\r" or " " <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000"

    assert xml_text(value) == "".join(c for c in value if allowed(c))


_ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=30)


@given(tag=_ANY_TEXT, indicator=_ANY_TEXT, code=_ANY_TEXT, value=_ANY_TEXT, control=_ANY_TEXT, leader_text=_ANY_TEXT)
def test_marcxml_text_serialization_parses_back_to_the_values(tag, indicator, code, value, control, leader_text) -> None:
    """MARCXML is written as text (not through lxml): whatever the values hold (markup, quotes,
    CR/LF/tab, controls, surrogates), the XML is well-formed and an XML parser reads back each
    value with only the characters XML cannot carry dropped."""
    from protocols.records.marcxml import marcxml_bytes, xml_text

    record = {"leader": leader_text, "fields": [
        {tag: control},
        {tag: {"ind1": indicator, "ind2": "&", "subfields": [{code: value}, {"b": "<&>\"'\r\n\t"}]}},
    ]}
    for unimarc in (False, True):
        root = etree.fromstring(marcxml_bytes(record, unimarc=unimarc))
        namespace = UNIMARC_XML_NAMESPACE if unimarc else MARC21_SLIM_NAMESPACE
        assert root.tag == f"{{{namespace}}}record"
        leader_element, controlfield, datafield = list(root)
        assert (leader_element.text or "") == xml_text((leader_text + " " * 24)[:24])
        assert controlfield.get("tag") == xml_text(tag) and (controlfield.text or "") == xml_text(control)
        assert datafield.get("ind1") == xml_text((indicator or " ")[0]) and datafield.get("ind2") == "&"
        first, second = list(datafield)
        assert first.get("code") == xml_text(code) and (first.text or "") == xml_text(value)
        assert second.text == "<&>\"'\r\n\t"


def test_marcxml_text_serialization_equals_a_tree_built_with_lxml(marc21, cnmarc):
    from protocols.records.marcjson import ControlField, fields, leader
    from protocols.records.marcxml import marcxml_bytes, xml_text

    def built(marc, namespace):
        root = etree.Element(f"{{{namespace}}}record", nsmap={None: namespace})
        etree.SubElement(root, f"{{{namespace}}}leader").text = xml_text(leader(marc))
        for field in fields(marc):
            if isinstance(field, ControlField):
                etree.SubElement(root, f"{{{namespace}}}controlfield", tag=field.tag).text = xml_text(field.value)
                continue
            data = etree.SubElement(root, f"{{{namespace}}}datafield", tag=field.tag, ind1=field.ind1, ind2=field.ind2)
            for code, value in field.subfields:
                etree.SubElement(data, f"{{{namespace}}}subfield", code=code).text = xml_text(value)
        return root

    for record, unimarc, namespace in ((marc21, False, MARC21_SLIM_NAMESPACE), (cnmarc, True, UNIMARC_XML_NAMESPACE)):
        marc = presentation_marc(record, DIRECTORY)
        written = etree.fromstring(marcxml_bytes(marc, unimarc=unimarc))
        assert etree.tostring(written, method="c14n") == etree.tostring(built(marc, namespace), method="c14n")


@given(tag=_ANY_TEXT, indicator=_ANY_TEXT, code=_ANY_TEXT, value=_ANY_TEXT, control=_ANY_TEXT,
       encoding=st.sampled_from(["utf-8", "gbk", "gb18030", "latin-1"]))
def test_iso2709_equals_a_field_by_field_writer(tag, indicator, code, value, control, encoding) -> None:
    """to_iso2709 encodes each field at once; a writer that encodes every part apart (the
    obvious reading of ISO 2709) gives the same bytes, whatever the values and the encoding."""
    import codecs

    from protocols.records.iso2709 import _encode_with_references
    from protocols.records.marcjson import ControlField, fields

    record = {"leader": "00000nam a2200000 a 4500", "fields": [
        {tag: control}, {"245": {"ind1": indicator, "ind2": "0", "subfields": [{code: value}, {"b": "第二"}]}}]}

    def reference() -> bytes:
        codec = codecs.lookup(encoding).name
        encode = (lambda text: text.encode("utf-8")) if codec == "utf-8" else (
            lambda text: _encode_with_references(text, codec))
        directory, data = b"", b""
        for field in fields(record):
            if isinstance(field, ControlField):
                body = encode(field.value) + b"\x1e"
            else:
                body = encode(field.ind1 + field.ind2) + b"".join(
                    b"\x1f" + encode(c)[:1] + encode(v) for c, v in field.subfields) + b"\x1e"
            directory += (field.tag + "000")[:3].encode("ascii", "replace") + b"%04d%05d" % (len(body), len(data))
            data += body
        return directory + b"\x1e" + data + b"\x1d"

    try:
        written = to_iso2709(record, encoding=encoding)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            reference()
        return
    assert written[24:] == reference()
