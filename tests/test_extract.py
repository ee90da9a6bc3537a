"""Extraction on real records. Expected values are computed here from the raw record (pymarc
fields, lxml on the served XML), with an independent ISBN check, not copied from the output."""
from __future__ import annotations

import gzip
import io
import re
import unicodedata
from pathlib import Path

import pymarc
import pytest
from lxml import etree

from indexer.extract import (
    analyse,
    author_key,
    contribution_analyzer,
    control_number,
    extract_fields,
    match_keys,
    non_filing_prefix,
)
from indexer.indexes import load_index_table
from indexer.model import Contribution, MarcFormat
from indexer.readers import read_records
from indexer.union import Analysis

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NLC = "{http://www.nlc.cn/}"


@pytest.fixture(scope="module")
def table():
    return load_index_table()


def strip_isbd(text: str) -> str:
    return re.sub(r"[\s/:;=,.]+$", "", text.strip())


def isbn13(value: str) -> str | None:
    """Independent ISBN check: 10 or 13 digits at the start, valid check digit -> ISBN-13."""
    digits = re.sub(r"[^0-9Xx]", "", value.split("(")[0].split(" ")[0]).upper()
    if len(digits) == 10 and digits[:9].isdigit():
        total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(digits))
        if total % 11:
            return None
        digits = "978" + digits[:9]
    elif len(digits) == 13 and digits.isdigit():
        if sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(digits)) % 10:
            return None
        return digits
    else:
        return None
    return digits + str((10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(digits)) % 10) % 10)


def loc_records():
    return [r for r in read_records(FIXTURES / "marc21" / "loc-bibliographic-386.mrc")]


def test_loc_titles_authors_isbns_dates(table):
    with open(FIXTURES / "marc21" / "loc-bibliographic-386.mrc", "rb") as handle:
        theirs = list(pymarc.MARCReader(handle, to_unicode=True, force_utf8=True))
    ours = loc_records()
    assert len(ours) == len(theirs) == 386
    with_isbn = with_author = 0
    for result, record in zip(ours, theirs):
        fields = extract_fields(result.record, MarcFormat.MARC21, table)
        title_a = strip_isbd(record["245"]["a"])
        assert fields["title"][0].startswith(title_a), (fields["title"], title_a)
        if record.get("100") is not None:
            with_author += 1
            assert fields["creator"][0].startswith(strip_isbd(record["100"]["a"]))
        expected_isbns = [isbn13(v) for f in record.get_fields("020") for v in f.get_subfields("a")]
        expected_isbns = list(dict.fromkeys(i for i in expected_isbns if i))
        assert fields.get("isbn", []) == expected_isbns
        with_isbn += bool(expected_isbns)
        year = record["008"].data[7:11]
        # (every LoC record here has 001, 008 and 245)
        if year.isdigit():
            assert fields["date"] == [year]
        assert fields["control_number"] == [record["001"].data.strip()]
        language = record["008"].data[35:38]
        if re.fullmatch(r"[a-z]{3}", language):
            assert fields["language"][0] == language
    assert with_isbn > 100 and with_author > 150  # the assertions above really ran on many records


def test_loc_classifications(table):
    seen_lcc = seen_ddc = 0
    for result in loc_records():
        record = result.record
        fields = extract_fields(record, MarcFormat.MARC21, table)
        for field in record.get_fields("082"):
            for number in field.get_subfields("a"):
                # stored without LC's segmentation marks, so 620.0023 finds 620/.0023
                assert strip_isbd(number).replace("/", "").replace("'", "") in fields["ddc"]
            seen_ddc += 1
        for field in record.get_fields("050"):
            expected = " ".join(v.strip() for v in field.get_subfields("a", "b"))
            assert strip_isbd(expected) in fields["lcc"]
            seen_lcc += 1
    assert seen_lcc > 100 and seen_ddc > 50


def cnmarc_xml_elements():
    return etree.parse(str(FIXTURES / "cnmarc" / "sample_cnmarcxml.xml")).findall(f".//{NLC}record")


def subs(element, tag, code):
    return [
        s.text or ""
        for f in element.findall(f"{NLC}datafield[@tag='{tag}']")
        for s in f.findall(f"{NLC}subfield[@code='{code}']")
    ]


def pymarc_records(path: Path) -> list[pymarc.Record]:
    """The records of an idzebra example file as pymarc reads them (not the project's reader)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        if ".xml" in path.suffixes:
            return pymarc.parse_xml_to_array(handle)
        return [r for r in pymarc.MARCReader(handle, to_unicode=True) if r is not None]


IDZEBRA = FIXTURES / "idzebra"


@pytest.mark.parametrize("relative, counts", [
    # (records, with a 1XX main entry, with a valid ISBN), counted below from the record data
    ("marc21/sample-marc.gz", (24, 15, 5)),
    ("marcxml/collection-opera-43.xml.gz", (43, 27, 9)),
    ("marcxml/collection-2.xml.gz", (2, 0, 0)),
    ("marcxml/collection-sandburg-1.xml", (1, 1, 1)),
])
def test_idzebra_example_titles_authors_isbns(table, relative, counts):
    path = IDZEBRA / relative
    theirs = pymarc_records(path)
    ours = list(read_records(path))
    assert len(ours) == len(theirs)
    with_author = with_isbn = 0
    for result, record in zip(ours, theirs):
        assert result.ok and result.format is MarcFormat.MARC21
        fields = extract_fields(result.record, MarcFormat.MARC21, table)
        assert fields["title"][0].startswith(strip_isbd(record["245"]["a"])), (fields["title"], record["245"])
        main_entry = record.get_fields("100", "110", "111")
        if main_entry:
            with_author += 1
            assert fields["creator"][0].startswith(strip_isbd(main_entry[0]["a"])), (fields["creator"], main_entry[0])
        isbns = [isbn13(v) for f in record.get_fields("020") for v in f.get_subfields("a")]
        isbns = list(dict.fromkeys(i for i in isbns if i))
        assert fields.get("isbn", []) == isbns
        with_isbn += bool(isbns)
        # (the last record of sample-marc.gz has a subfield delimiter inside its 001: "00\x1faD000015937";
        # a control character is no part of a searchable control number)
        assert fields["control_number"] == [re.sub(r"[\x00-\x1f]", "", record["001"].data).strip()]
    assert (len(theirs), with_author, with_isbn) == counts


def test_idzebra_example_records_by_hand(table):
    """A few records whose values are read off the files (yaz-marcdump / the XML) and written here."""
    def fields_of(relative: str, position: int) -> dict[str, list[str]]:
        result = list(read_records(IDZEBRA / relative))[position]
        return extract_fields(result.record, MarcFormat.MARC21, table)

    sandburg = fields_of("marcxml/collection-sandburg-1.xml", 0)
    # 245 $aArithmetic /  100 $aSandburg, Carl,$d1878-1967.  020 $a0152038655 : $15.95
    assert sandburg["title"][0] == "Arithmetic"
    assert sandburg["creator"][0].startswith("Sandburg, Carl")
    assert sandburg["isbn"] == ["9780152038656"]
    opera = fields_of("marcxml/collection-opera-43.xml.gz", 1)
    # 245 13 $aIl cammino della tradizione :$bil tradizionalismo italiano, 1920-1990 /  100 $aTosca, Pino.
    assert opera["title"][0].startswith("Il cammino della tradizione")
    assert opera["creator"][0] == "Tosca, Pino"
    ray = fields_of("marcxml/collection-2.xml.gz", 0)
    # 245 04 $aThe Great Ray Charles$h[sound recording].  no 1XX; 700 $aCharles, Ray,$d1930-$4prf
    assert ray["title"][0] == "The Great Ray Charles"
    assert ray["creator"][0].startswith("Charles, Ray")
    feminism = fields_of("marcxml/collection-opera-43.xml.gz", 27)
    # 245 00 $aGlobal feminism :...; 020 $a9780814727355 (cloth) $a0814727352 (cloth) $a9780814727362 (pbk.)
    # $a0814727360 (pbk.): each ISBN-10 is the ISBN-13 before it, so two ISBNs
    assert feminism["title"][0].startswith("Global feminism")
    assert feminism["isbn"] == ["9780814727355", "9780814727362"]


def test_cnmarc_fields_match_the_served_xml(table):
    results = list(read_records(FIXTURES / "cnmarc" / "sample_cnmarcxml.xml"))
    for result, element in zip(results, cnmarc_xml_elements(), strict=True):
        fields = extract_fields(result.record, MarcFormat.CNMARC, table)
        assert fields["title"][0].startswith(strip_isbd(subs(element, "200", "a")[0]))
        for pinyin in subs(element, "200", "A"):  # pinyin title is searchable
            assert strip_isbd(pinyin) in fields["title"]
        for name in subs(element, "701", "a") + subs(element, "711", "a"):
            assert any(value.startswith(name) for value in fields["creator"])
        assert fields.get("isbn", []) == list(dict.fromkeys(filter(None, map(isbn13, subs(element, "010", "a")))))
        assert fields["clc"] == list(dict.fromkeys(subs(element, "690", "a")))
        assert fields["class_top"] == [subs(element, "690", "a")[0][0]]
        assert fields["publisher"] == [strip_isbd(v) for v in subs(element, "210", "c")]
        assert fields["date"] == [re.search(r"\d{4}", subs(element, "210", "d")[0]).group()]
        assert fields["language"] == subs(element, "101", "a")
        assert fields["material_type"] == ["book"]
        control = element.find(f"{NLC}controlfield[@tag='001']").text
        assert control_number(result.record, MarcFormat.CNMARC) == control


def test_cnmarc_iso_xml_and_gb18030_give_the_same_analysis(table):
    from test_readers import iso2709

    xml = [analyse(r.record, r.format, table) for r in read_records(FIXTURES / "cnmarc" / "sample_cnmarcxml.xml")]
    iso_results = list(read_records(FIXTURES / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso"))
    iso = [analyse(r.record, r.format, table) for r in iso_results]
    gb = b"".join(iso2709(r.record, "gb18030") for r in iso_results)
    gb_results = list(read_records(io.BytesIO(gb)))
    assert {r.encoding for r in gb_results} == {"gb18030"}
    regb = [analyse(r.record, r.format, table) for r in gb_results]
    assert [a.fields["title"] for a in xml] == [a.fields["title"] for a in iso] == [a.fields["title"] for a in regb]
    assert [a.match_keys for a in xml] == [a.match_keys for a in iso] == [a.match_keys for a in regb]


def test_unimarc_serials_titles_and_issns(table):
    results = list(read_records(FIXTURES / "unimarc" / "periouni-3064.mrc"))
    with_issn = 0
    for result in results:
        record = result.record
        fields = extract_fields(record, MarcFormat.UNIMARC, table)
        titles = [v for f in record.get_fields("200") for v in f.get_subfields("a")]
        if titles:
            expected = re.sub("[\u200e\u200f\x88\x89\x98\x9c]", "", strip_isbd(titles[0]))
            assert fields["title"][0].startswith(expected[:20])
        issns = [v for f in record.get_fields("011") for v in f.get_subfields("a")]
        valid = []
        for value in issns:
            digits = value.replace("-", "").strip().upper()[:8]
            if re.fullmatch(r"\d{7}[\dX]", digits):
                check = (11 - sum(int(c) * (8 - i) for i, c in enumerate(digits[:7])) % 11) % 11
                if ("X" if check == 10 else str(check)) == digits[7]:
                    valid.append(f"{digits[:4]}-{digits[4:]}")
        assert fields.get("issn", []) == list(dict.fromkeys(valid))
        with_issn += bool(valid)
        assert any(k.startswith("issn:") for k in match_keys(fields)) == bool(valid)
    assert with_issn > 1000


def test_alternate_script_880_titles_and_names(table):
    (cjk,) = list(read_records(FIXTURES / "marc21" / "oclc-cjk-880.utf8.mrc"))
    fields = extract_fields(cjk.record, MarcFormat.MARC21, table)
    linked = [f for f in cjk.record.get_fields("880") if f["6"].startswith("245")]
    assert linked and strip_isbd(linked[0]["a"]) in " ".join(fields["title"])
    assert any(unicodedata.name(c, "").startswith("CJK") for c in " ".join(fields["title"]))
    (hebrew,) = list(read_records(FIXTURES / "marc21" / "hebrew880s.mrc"))
    hebrew_fields = extract_fields(hebrew.record, MarcFormat.MARC21, table)
    assert any("HEBREW" in unicodedata.name(c, "") for c in " ".join(hebrew_fields["title"]))


def test_marc8_record_extracts_converted_text(table):
    (result,) = list(read_records(FIXTURES / "marc21" / "one-marc8.mrc"))
    with open(FIXTURES / "marc21" / "one-marc8.mrc", "rb") as handle:
        (theirs,) = list(pymarc.MARCReader(handle, to_unicode=True))
    fields = extract_fields(result.record, MarcFormat.MARC21, table)
    assert fields["title"][0].startswith(strip_isbd(theirs["245"]["a"]))


def test_match_keys_and_work_key(table):
    fields = {"title": ["Summerland"], "creator": ["Chabon, Michael."], "date": ["2002"],
              "isbn": ["9780786808779"], "issn": ["0955-2359"]}
    assert match_keys(fields) == ["isbn:9780786808779", "issn:0955-2359", "work:summerland|chabon|2002"]
    # CJK: the same book catalogued with spaces, full-width digits and a role word in the name
    a = match_keys({"title": ["中国 发展报告"], "creator": ["国家统计局编"], "date": ["1994"]})
    b = match_keys({"title": ["中国发展报告"], "creator": ["国家统计局"], "date": ["1994"]})
    assert a == b == ["work:中国发展报告|国家统计局|1994"]
    assert match_keys({"creator": ["x"]}) == []
    assert author_key("Ye, Hanao, 1952-") == "ye" and author_key("李文") == "李文"


def test_analyse_and_contribution_analyzer_agree(table):
    analyzer = contribution_analyzer(table)
    for result in loc_records()[:40]:
        direct = analyse(result.record, result.format, table)
        assert isinstance(direct, Analysis)
        contribution = Contribution(library="L", source_id=control_number(result.record, result.format) or "",
                                    format=result.format, marc=result.record.as_dict())
        again = analyzer(contribution)
        assert again.fields == direct.fields and again.match_keys == direct.match_keys
        assert [k for k in direct.match_keys if not k.startswith("work:")] == [
            k for k in match_keys(dict(direct.fields)) if not k.startswith("work:")]


def test_control_number_falls_back_to_035(table):
    (result,) = list(read_records(FIXTURES / "marc21" / "marc-in-json.json"))
    assert control_number(result.record, MarcFormat.MARC21) == result.record["001"].data
    result.record.remove_fields("001")
    expected = [v for f in result.record.get_fields("035") for v in f.get_subfields("a")]
    assert expected and control_number(result.record, MarcFormat.MARC21) == expected[0]


def test_work_key_files_under_the_title_without_its_article(table):
    articles = 0
    for result in loc_records():
        title = result.record.get_fields("245")[0]
        count = int(title.indicator2) if title.indicator2.isdigit() else 0
        (work,) = [k for k in analyse(result.record, MarcFormat.MARC21, table).match_keys if k.startswith("work:")]
        skipped = title["a"][:count].strip().lower()
        if count:
            articles += 1
            assert not work.startswith(f"work:{skipped} "), (work, skipped)
    assert articles > 10

    def book(title_a: str, ind2: str) -> pymarc.Record:
        record = pymarc.Record()
        record.add_field(pymarc.Field(tag="008", data="020805s2002    nyu    j      000 1 eng  "))
        record.add_field(pymarc.Field(tag="100", indicators=pymarc.Indicators("1", " "),
                                      subfields=[pymarc.Subfield("a", "Fitzgerald, F. Scott.")]))
        record.add_field(pymarc.Field(tag="245", indicators=pymarc.Indicators("1", ind2),
                                      subfields=[pymarc.Subfield("a", title_a)]))
        return record

    with_article = analyse(book("The great Gatsby /", "4"), MarcFormat.MARC21, table)
    without = analyse(book("Great Gatsby /", "0"), MarcFormat.MARC21, table)
    assert with_article.fields["title"] == ["The great Gatsby"]  # the shown title keeps its article
    assert with_article.match_keys == without.match_keys == ("work:great gatsby|fitzgerald|2002",)


def test_unimarc_non_sorting_markers(table):
    results = list(read_records(FIXTURES / "unimarc" / "periouni-3064.mrc"))
    marked = [r for r in results if any("\x9c" in v for f in r.record.get_fields("200", "452") for v in f.get_subfields("a", "t"))]
    assert marked  # real records carry U+009C (NSE)
    for result in results:
        fields = extract_fields(result.record, MarcFormat.UNIMARC, table)
        assert not any("\x9c" in v or "\x98" in v for values in fields.values() for v in values)
    for result in marked:
        prefix = non_filing_prefix(result.record, MarcFormat.UNIMARC)
        for key in analyse(result.record, MarcFormat.UNIMARC, table).match_keys:
            if key.startswith("work:") and prefix.strip():
                assert not key.startswith("work:" + prefix.strip().lower())


# -- parallel titles and pinyin names (UNIMARC 200$d, CNMARC $A subfields) ------------------------

def test_unimarc_parallel_titles_and_cnmarc_pinyin_names_are_extracted(table):
    parallel = 0
    for result in read_records(FIXTURES / "unimarc" / "periouni-3064.mrc"):
        for value in [v for f in result.record.get_fields("200") for v in f.get_subfields("d")]:
            expected = re.sub("[\u200e\x98\x9c]", "", value).lstrip("= ").rstrip(" .")
            titles = extract_fields(result.record, MarcFormat.UNIMARC, table)["title"]
            assert expected in titles
            parallel += 1
    assert parallel == 74
    pinyin_titles = pinyin_names = 0
    for result, element in zip(read_records(FIXTURES / "cnmarc" / "sample_cnmarcxml.xml"), cnmarc_xml_elements()):
        fields = extract_fields(result.record, MarcFormat.CNMARC, table)
        for pinyin in subs(element, "200", "A"):
            assert pinyin in fields["title"]
            pinyin_titles += 1
        for pinyin in subs(element, "701", "A") + subs(element, "711", "A"):
            assert pinyin in fields.get("creator", [])
            pinyin_names += 1
    assert (pinyin_titles, pinyin_names) == (9, 14)
