"""Our Z39.50 server driven by yaz-client and zoomsh (non-interactive) over a real catalogue: the
Guangrao demo exports plus real CNMARC and MARC21 fixtures, ingested into the embedded store.
Expected hit counts are computed from the input files with pymarc, never from the store."""
from __future__ import annotations

import asyncio
import hashlib
import io
import importlib.metadata
import re
from dataclasses import replace

import pymarc
import pytest
from lxml import etree

from federation.rules import AuthSettings, AuthToken
from federation.z3950service import BRIEF_UNIMARC_TAGS
from indexer.analysis import normalize_isbn
from protocols.z3950 import pdu as P
from protocols.z3950.client import Z3950Client
from protocols.z3950.server import ServerLimits
from sru_support import build_catalogue, input_records, library_tiers, rule_set
from z3950_support import Z3950ThreadServer, marcdump_xml, running_server, yaz_client, zoomsh

MARC = {"m": "http://www.loc.gov/MARC21/slim"}
SECRET = "z3950-test-token"


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return build_catalogue(tmp_path_factory.mktemp("z3950-catalogue"))


@pytest.fixture(scope="module")
def inputs(catalogue):
    return input_records(catalogue)


def with_token(network):
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    return replace(network, auth=AuthSettings((AuthToken("GR", digest),)))


@pytest.fixture(scope="module")
def server(catalogue):
    with Z3950ThreadServer(catalogue, network_hook=with_token) as running:
        yield running


def hits(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"Number of hits: (\d+)", output)]


def isbns(record) -> list[str]:
    raw = record.subfields("010", "a") if record.unimarc else record.subfields("020", "a")
    return [i for i in (normalize_isbn(r) for r in raw) if i]


# -- init -------------------------------------------------------------------------------------

def test_utf8_negotiation_and_init_options(server):
    output = yaz_client(server, [], charset="UTF-8")
    assert "Connection accepted by v3 target" in output
    assert "Accepted character set : UTF-8" in output
    assert "Name   : union-federation Z39.50 server" in output
    assert f"Version: {importlib.metadata.version('union-federation')}" in output
    options = re.search(r"Options: (.*)", output).group(1).split()
    assert {"search", "present", "delSet", "scan", "sort", "namedResultSets", "negotiationModel"} <= set(options)


@pytest.mark.parametrize("charset", ["ISO-8859-1", None])
def test_without_utf8_or_gbk_records_come_in_utf8_with_leader_09_a(server, tmp_path, charset):
    """A proposal of another set is answered with UTF-8, said plainly; no negotiation at all also gets UTF-8."""
    marc_file = tmp_path / "out.mrc"
    output = yaz_client(server, ["find @attr 1=4 geography", "format usmarc", "show 1+2"],
                        charset=charset, marc_file=marc_file)
    if charset:
        assert "Accepted character set : UTF-8" in output
    else:
        assert "Accepted character set" not in output and "negotiationModel" not in output
    assert [raw[9:10] for raw in marc_file.read_bytes().split(b"\x1d") if raw] == [b"a", b"a"]
    root = etree.fromstring(marcdump_xml(marc_file))
    assert len(root.findall("m:record", MARC)) == 2


def test_gbk_is_accepted_when_proposed(server, inputs):
    output = yaz_client(server, ["find @attr 1=4 图书馆"], charset="GBK")
    assert "Accepted character set : GBK" in output
    assert hits(output) == [len({r.work for r in inputs if "图书馆" in r.title})]


UTF8_ENCODING_LEVEL = "encodingLevel OID: 1 0 10646 1 0 8"     # ISO 10646 UTF-8 (Z39.50-1995 Amendment 3)


def apdu(log: str, name: str) -> str:
    """One PDU of zoomsh's APDU log (`set apdulog 1`), from its name to its closing brace."""
    found = re.search(rf"^{name} \{{\n(.*?)^\}}$", log, re.M | re.S)
    assert found, f"no {name} in the APDU log:\n{log}"
    return found.group(1)


def test_zoomsh_negotiates_utf8(server, inputs):
    """The APDU log shows the negotiation itself: zoomsh proposes UTF-8 and our Init response
    selects it, records included; without `set charset` neither side says anything about it."""
    done = zoomsh(server, ["search @attr 1=4 图书馆"], settings=("set charset UTF-8", "set apdulog 1"))
    assert done.returncode == 0, done.stdout + done.stderr
    expected = len({r.work for r in inputs if "图书馆" in r.title})
    assert re.findall(r": (\d+) hits$", done.stdout, re.M) == [str(expected)]
    log = done.stdout + done.stderr
    proposal = apdu(log, "initRequest")
    assert re.search(r"OID: 1 2 840 10003 15 3\b.*proposal \{.*proposedCharSets \{\s*iso10646 \{\s*"
                     + UTF8_ENCODING_LEVEL, proposal, re.S), proposal
    response = apdu(log, "initResponse")
    assert re.search(r"OID: 1 2 840 10003 15 3\b.*response \{\s*selectedCharSets \{\s*iso10646 \{\s*"
                     + UTF8_ENCODING_LEVEL + r"\s*\}\s*\}\s*recordsInSelectedCharSets TRUE", response, re.S), response
    # The Chinese term went out as UTF-8 bytes.
    assert "general OCTETSTRING(len=9) \\XE5\\X9B\\XBE\\XE4\\XB9\\XA6\\XE9\\XA6\\X86" in apdu(log, "searchRequest")
    plain = zoomsh(server, ["search @attr 1=4 图书馆"], settings=("set apdulog 1",))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    quiet = plain.stdout + plain.stderr
    assert "proposedCharSets" not in apdu(quiet, "initRequest") and "selectedCharSets" not in apdu(quiet, "initResponse")


def test_authentication_against_the_rule_set(server):
    accepted = yaz_client(server, ["find @attr 1=4 图书馆"], user=f"GR/{SECRET}")
    assert "Connection accepted" in accepted and hits(accepted)
    rejected = yaz_client(server, [], user="GR/wrong")
    assert "Connection rejected" in rejected
    assert "code=1011 (Init/AC: Bad Userid and/or Password)" in rejected
    other_library = yaz_client(server, [], user=f"GR-DW/{SECRET}")
    assert "Connection rejected" in other_library


# -- search: each attribute type ---------------------------------------------------------------

def test_use_attribute_with_a_chinese_term(server, inputs):
    expected = len({r.work for r in inputs if "图书馆" in r.title})
    assert expected > 0
    output = yaz_client(server, ["find @attr 1=4 图书馆", "find @attr 1=4 @attr 4=1 图书馆"])
    assert hits(output) == [expected, expected]


def test_use_attribute_isbn_and_library(server, inputs):
    record = next(r for r in inputs if r.unimarc and isbns(r))
    isbn = isbns(record)[0]
    held_at_fy = {r.work for r in inputs if "GR-FY" in r.holdings_libraries}
    output = yaz_client(server, [f"find @attr 1=7 {isbn}", "find @attr 1=1044 GR-FY"])
    assert hits(output) == [1, len(held_at_fy)]


def test_truncation(server, inputs):
    prefix = "978710"
    right = {r.work for r in inputs if any(i.startswith(prefix) for i in isbns(r))}
    isbn = next(i for r in inputs for i in isbns(r))
    suffix = isbn[-5:]
    left = {r.work for r in inputs if any(i.endswith(suffix) for i in isbns(r))}
    output = yaz_client(server, [
        f"find @attr 1=7 @attr 5=1 {prefix}",
        f"find @attr 1=7 @attr 5=2 {suffix}",
        f"find @attr 1=7 @attr 5=3 {isbn[4:10]}",
        f"find @attr 1=7 @attr 5=101 {prefix}#",
        f"find @attr 1=7 @attr 5=104 {isbn[:-1]}#",
        f"find @attr 1=7 @attr 5=100 {prefix}",
    ])
    counts = hits(output)
    assert counts[0] == len(right) > 0
    assert counts[1] == len(left) > 0
    assert counts[2] >= 1
    assert counts[3] == len(right)
    assert counts[4] >= 1
    assert counts[5] == 0


def test_relation_attributes_partition_the_dated_records(server):
    year = 2010
    output = yaz_client(server, [
        f"find @attr 1=31 @attr 2=1 {year}",
        f"find @attr 1=31 @attr 2=2 {year}",
        f"find @attr 1=31 @attr 2=3 {year}",
        f"find @attr 1=31 @attr 2=4 {year}",
        f"find @attr 1=31 @attr 2=5 {year}",
        f"find @attr 1=31 @attr 2=6 {year}",
        "find @attr 1=1016 @attr 2=103 x",
    ])
    lt, le, eq, ge, gt, ne, total = hits(output)
    assert lt > 0 and gt > 0 and eq > 0
    assert le == lt + eq and ge == gt + eq
    assert ne == total - eq
    assert lt + eq + gt <= total


def test_position_structure_and_completeness(server, inputs):
    expected = len({r.work for r in inputs if "图书馆" in r.title})
    title = next(r.title for r in inputs if not r.unimarc and len(re.findall(r"[a-z]+", r.title.lower())) >= 3)
    first, second = re.findall(r"[a-z]+", title.lower())[:2]
    isbn = next(i for r in inputs for i in isbns(r))
    output = yaz_client(server, [
        "find @attr 1=4 @attr 3=1 图书馆",
        "find @attr 1=4 @attr 3=3 图书馆",
        f'find @attr 1=4 @attr 4=1 "{first} {second}"',
        f'find @attr 1=4 @attr 4=6 "{first} {second}"',
        f'find @attr 1=4 @attr 4=105 "{first} {second}"',
        f"find @attr 1=7 @attr 6=3 {isbn}",
        f"find @attr 1=7 @attr 4=3 {isbn}",
        "find @attr 1=31 @attr 4=4 2010",
        f'find @attr 1=4 @attr 4=2 "{first} {second}"',
        "find @attr 1=31 @attr 4=5 2010",
        f"find @attr 1=7 @attr 4=109 {isbn}",
        "find @attr 1=4 @attr 6=1 图书馆",
    ])
    anchored, anywhere, phrase, words, free, complete, key, year, word, date, numeric, incomplete = hits(output)
    assert anchored <= anywhere == incomplete == expected
    assert 0 < phrase <= words == free == word
    assert complete == key == numeric == 1
    assert year == date > 0


def test_boolean_operators_and_result_set_references(server, inputs):
    output = yaz_client(server, [
        "find @attr 1=4 图书馆",
        "find @attr 1=1044 GR",
        "find @and @set 1 @set 2",
        "find @or @set 1 @set 2",
        "find @not @set 1 @set 2",
    ])
    title, at_hub, both, either, only_title = hits(output)
    assert both + only_title == title
    assert either == title + at_hub - both


def test_unsupported_attributes_give_bib1_diagnostics(server):
    output = yaz_client(server, [
        "find @attr 1=9999 x",
        "find @attr 2=99 @attr 1=4 x",
        "find @attr 3=9 @attr 1=4 x",
        "find @attr 4=99 @attr 1=4 x",
        "find @attr 5=102 @attr 1=4 x",
        "find @attr 6=9 @attr 1=4 x",
        "find @attr 9=1 @attr 1=4 x",
        "find @attr 1=31 @attr 2=4 abc",
        "find @prox 0 1 1 2 k 2 a b",
        "find @attr gils 1=4 x",
        "find @set nosuchset",
    ])
    for code, addinfo in [(114, "9999"), (117, "99"), (119, "9"), (118, "99"), (120, "102"), (122, "9"),
                          (113, "9"), (125, "abc"), (110, "prox"), (121, "1.2.840.10003.3.5"), (30, "nosuchset")]:
        assert f"[{code}]" in output and f"addinfo '{addinfo}'" in output, (code, output)


def test_unknown_database(server):
    output = yaz_client(server, ["find @attr 1=4 x"], database="nosuchdb")
    assert "[235]" in output and "addinfo 'nosuchdb'" in output


def test_library_and_tier_databases(server, inputs):
    held = {r.work for r in inputs if "GR-DW" in r.holdings_libraries}
    output = yaz_client(server, ["find @attr 1=1016 @attr 2=103 x"], database="GR-DW")
    assert hits(output) == [len(held)]


def opac_holdings(output: str) -> list[dict[str, str]]:
    """yaz-client's display of OPAC holdings entries ("Data holdings N" blocks) as field -> value."""
    blocks = re.findall(r"^Data holdings \d+\n(.*?)(?=^Data holdings |^nextResultSetPosition|^\[|\Z)", output, re.M | re.S)
    return [dict(re.findall(r"^ ?(\w+): (.*)$", block, re.M)) for block in blocks]


@pytest.mark.parametrize("tier", ["hub", "branch", "mobile"])
def test_tier_databases_give_only_what_the_tier_holds(server, inputs, tier):
    """A tier database finds the works with an item in one of the tier's libraries (the tier of
    each library read from the rule set) and shows only those items."""
    members = {code for code, t in library_tiers().items() if t == tier}
    held = {r.work for r in inputs if members & set(r.holdings_libraries)}
    titled = {r.work for r in inputs if "图书馆" in r.title} & held
    everything = {r.work for r in inputs}
    assert 0 < len(held) < len(everything)
    shown = min(3, len(held))
    output = yaz_client(server, ["find @attr 1=4 图书馆", "find @attr 1=1016 @attr 2=103 x",
                                 "format opac", f"show 1+{shown}"], database=tier)
    assert hits(output) == [len(titled), len(held)]
    holdings = opac_holdings(output)
    assert holdings and {h["nucCode"] for h in holdings} <= members
    assert output.count("Record type: OPAC") == shown


# -- present -----------------------------------------------------------------------------------

def test_present_usmarc_checked_by_yaz_marcdump(server, inputs, tmp_path):
    marc_file = tmp_path / "out.mrc"
    output = yaz_client(server, ["find @attr 1=4 geography", "format usmarc", "show 1+3"], marc_file=marc_file)
    (count,) = hits(output)
    assert count >= 3
    root = etree.fromstring(marcdump_xml(marc_file))
    records = root.findall("m:record", MARC)
    assert len(records) == 3
    for record in records:
        assert record.findtext("m:leader", namespaces=MARC)[9] == "a"
        assert re.fullmatch(r"u[0-9a-z]+", record.findtext("m:controlfield[@tag='001']", namespaces=MARC))
        title = " ".join(record.xpath("m:datafield[@tag='245' or @tag='246' or @tag='740']//text()", namespaces=MARC))
        assert "geograph" in title.lower()
        # Every item shows its availability in 852 $z (these Library of Congress records have none).
        for holdings in record.findall("m:datafield[@tag='852']", MARC):
            assert holdings.find("m:subfield[@code='z']", MARC) is not None


def test_present_unimarc_checked_by_yaz_marcdump(server, tmp_path):
    marc_file = tmp_path / "out.mrc"
    output = yaz_client(server, ["find @attr 1=4 图书馆", "format unimarc", "show 1+2"], marc_file=marc_file)
    assert "Record type: Unimarc" in output
    root = etree.fromstring(marcdump_xml(marc_file))
    records = root.findall("m:record", MARC)
    assert len(records) == 2
    for record in records:
        title = "".join(record.xpath("m:datafield[@tag='200']/m:subfield[@code='a']/text()", namespaces=MARC))
        assert "图书馆" in title
        assert record.findall("m:datafield[@tag='905']", MARC)


def test_gbk_session_gets_marc_in_gbk_checked_by_yaz_marcdump(server, tmp_path):
    marc_file = tmp_path / "out.mrc"
    output = yaz_client(server, ["find @attr 1=4 图书馆", "format unimarc", "show 1+2"],
                        charset="GBK", marc_file=marc_file)
    assert "Accepted character set : GBK" in output
    raw = marc_file.read_bytes()
    assert "图书馆".encode("gbk") in raw and "图书馆".encode("utf-8") not in raw
    root = etree.fromstring(marcdump_xml(marc_file, source_charset="GBK"))
    records = root.findall("m:record", MARC)
    assert len(records) == 2
    for record in records:
        title = "".join(record.xpath("m:datafield[@tag='200']/m:subfield[@code='a']/text()", namespaces=MARC))
        assert "图书馆" in title
        # The holdings' shelving locations (905 $c) are Chinese too, and in GBK like the rest.
        locations = record.xpath("m:datafield[@tag='905']/m:subfield[@code='c']/text()", namespaces=MARC)
        assert locations and all(re.search(r"[\u4e00-\u9fff]", location) for location in locations)


def test_gbk_session_gets_marc21_with_a_blank_leader_09(server, tmp_path):
    marc_file = tmp_path / "out.mrc"
    output = yaz_client(server, ["find @attr 1=4 geography", "format usmarc", "show 1+2"],
                        charset="GBK", marc_file=marc_file)
    assert "Accepted character set : GBK" in output
    # Not UCS, so leader/09 is blank as sent (yaz-marcdump's conversion would set it to 'a').
    assert [raw[9:10] for raw in marc_file.read_bytes().split(b"\x1d") if raw] == [b" ", b" "]
    root = etree.fromstring(marcdump_xml(marc_file, source_charset="GBK"))
    records = root.findall("m:record", MARC)
    assert len(records) == 2
    for record in records:
        title = " ".join(record.xpath("m:datafield[@tag='245']//text()", namespaces=MARC))
        assert "geograph" in title.lower()


def test_present_xml_sutrs_opac_and_brief(server):
    output = yaz_client(server, [
        "find @attr 1=4 图书馆",
        "format xml", "show 1",
        "format sutrs", "show 1",
        "format opac", "show 1",
    ])
    assert "Record type: XML" in output and 'xmlns="info:srw/schema/8/unimarcxml-v0.1"' in output
    assert "Record type: SUTRS" in output
    assert "Record type: OPAC" in output and "nucCode: GR" in output
    # availableNow is BOOLEAN TRUE as YAZ writes it (0x01); 0xFF would print as -1.
    assert re.search(r"availableNow: [10]\b", output) and "availableNow: -1" not in output
    assert "itemId: GR" in output and "callNumber: " in output
    brief = yaz_client(server, ["find @attr 1=4 图书馆", "format unimarc", "elements B", "show 1"])
    full = yaz_client(server, ["find @attr 1=4 图书馆", "format unimarc", "elements F", "show 1"])
    brief_tags = re.findall(r"^(\d{3}) ", brief, re.M)
    full_tags = re.findall(r"^(\d{3}) ", full, re.M)
    assert {"001", "200", "905"} <= set(brief_tags) < set(full_tags)
    assert set(brief_tags) <= BRIEF_UNIMARC_TAGS


@pytest.mark.parametrize("library, cnmarc_master", [
    ("GR", True),          # items in CNMARC 905
    ("GR-FY", True),       # items in MARC21 852, of a work that also has CNMARC records
    ("GR-XZBM", False),    # items in Koha's 952, of a work catalogued in MARC21 only
])
def test_opac_holdings_of_known_items_and_their_marc(server, inputs, tmp_path, library, cnmarc_master):
    """Every item of one work, from the input files: owning library, its name, shelving location,
    exact call number and barcode in the OPAC holdings; the OPAC record's MARC (checked by
    yaz-marcdump) carries the same items in 905 (CNMARC) or 852 (MARC21)."""
    record = next(r for r in inputs if r.path.stem == library and r.items and r.record["001"]
                  and any(other.unimarc for other in inputs if other.work == r.work) == cnmarc_master)
    items = [item for r in inputs if r.work == record.work for item in r.items]
    names = {entry["code"]: entry["names"]["zh"] for entry in rule_set()["libraries"]}
    tiers = library_tiers()
    marc_file = tmp_path / "opac.mrc"
    output = yaz_client(server, [f"find @attr 1=1032 {record.record['001'].data}", "format opac", "show 1"],
                        marc_file=marc_file)
    assert hits(output) == [1]
    assert "Record type: OPAC" in output
    holdings = {h["itemId"]: h for h in opac_holdings(output)}
    assert set(holdings) == {item["barcode"] for item in items}
    for item in items:
        entry = holdings[item["barcode"]]
        assert entry["nucCode"] == item["library"]
        assert entry["localLocation"] == names[item["library"]]
        assert entry["shelvingLocation"] == item["location"]
        assert entry["callNumber"] == item["call_number"]
    # The bibliographic part of the OPAC record, as yaz-client saved it, read back by yaz-marcdump.
    (marc,) = etree.fromstring(marcdump_xml(marc_file)).findall("m:record", MARC)
    union_id = marc.findtext("m:controlfield[@tag='001']", namespaces=MARC)
    assert re.fullmatch(r"u[0-9a-z]+", union_id) and f"\n001 {union_id}\n" in output
    sources = marc.xpath("m:datafield[@tag='035']/m:subfield[@code='a']/text()", namespaces=MARC)
    assert f"({library}){record.record['001'].data}" in sources
    # The work is presented in its master record's format (a MARC21 export's items join a CNMARC
    # master): items in 905 for CNMARC, 852 for MARC21.
    assert (marc.find("m:datafield[@tag='200']", MARC) is not None) == cnmarc_master
    assert (marc.find("m:datafield[@tag='245']", MARC) is None) == cnmarc_master
    if cnmarc_master:
        tag, codes = "905", {"library": "a", "barcode": "b", "location": "c", "call_number": "s", "tier": "x"}
        title = "".join(marc.xpath("m:datafield[@tag='200']/m:subfield[@code='a']/text()", namespaces=MARC))
    else:
        tag, codes = "852", {"library": "b", "barcode": "p", "location": "c", "call_number": "h", "tier": "x"}
        title = "".join(marc.xpath("m:datafield[@tag='245']/m:subfield[@code='a']/text()", namespaces=MARC))
    assert title.strip(" /:;,.") in {r.title.strip(" /:;,.") for r in inputs if r.work == record.work}
    in_marc = sorted(tuple(field.findtext(f"m:subfield[@code='{code}']", namespaces=MARC) for code in codes.values())
                     for field in marc.findall(f"m:datafield[@tag='{tag}']", MARC))
    assert in_marc == sorted((i["library"], i["barcode"], i["location"], i["call_number"], tiers[i["library"]])
                             for i in items)


def test_zoomsh_opac_record(server):
    done = zoomsh(server, ["search @attr 1=4 图书馆", "show 0 1"],
                  settings=("set charset UTF-8", "set preferredRecordSyntax opac"))
    assert done.returncode == 0, done.stderr
    assert "<opacRecord>" in done.stdout and "<availableNow value=" in done.stdout


def test_unsupported_syntax_and_element_set(server):
    output = yaz_client(server, ["find @attr 1=4 图书馆", "format 1.2.840.10003.5.1000.1", "show 1",
                                 "format usmarc", "elements Q", "show 1"])
    assert "[239] Record syntax not supported -- v3 addinfo '1.2.840.10003.5.1000.1'" in output
    assert "[25]" in output and "addinfo 'Q'" in output


def test_query_depth_diagnostic_108_names_the_limit(server):
    """ServerLimits.max_query_depth is 50: 49 nested @and (depth 50) pass, 50 (depth 51) give 108."""
    def nested(operators: int) -> str:
        return "find " + "@and " * operators + "@attr 1=4 a " * (operators + 1)

    output = yaz_client(server, [nested(49), nested(50), "find @attr 1=4 图书馆"])
    deepest, too_deep, after = hits(output)
    assert deepest > 0 and too_deep == 0 and after > 0      # the session goes on
    assert re.findall(r"\[(\d+)\].*addinfo '(.*)'", output) == [("108", "nested deeper than 50")]


def test_present_out_of_range(server):
    output = yaz_client(server, ["find @attr 1=4 图书馆", "show 99"])
    assert "[13]" in output


# -- scan, sort, delete, close -----------------------------------------------------------------

def test_scan(server, inputs):
    output = yaz_client(server, ["scan @attr 1=4 图书馆"])
    entries = re.findall(r"^[* ] (.+) \((\d+)\)$", output, re.M)
    assert len(entries) == 20
    assert entries[0][0].startswith("图书馆")
    keys = [e[0] for e in entries]
    assert keys == sorted(keys) and all(int(n) > 0 for _, n in entries)
    done = zoomsh(server, ["scan @attr 1=4 geography"])
    assert done.returncode == 0 and "geography" in done.stdout


def scan_responses(output: str) -> list[tuple[int, int, list[tuple[str, int, bool]]]]:
    """Each scan yaz-client printed: (entries, position, [(term, count, marked as the start)])."""
    found = []
    for part in output.split("Received ScanResponse")[1:]:
        head = re.search(r"^(\d+) entries, position=(\d+)", part, re.M)
        terms = re.findall(r"^([* ]) (\S.*) \((\d+)\)$", part.split("Elapsed")[0], re.M)
        found.append((int(head.group(1)), int(head.group(2)), [(t, int(n), mark == "*") for mark, t, n in terms]))
    return found


def test_scan_size_and_preferred_position_with_yaz_client(server, inputs):
    """`scansize` (number of terms) and `scanpos` (preferred position) against the keys and
    record counts computed from the input files: library codes and normalized ISBNs."""
    libraries: dict[str, set] = {}
    for r in inputs:
        for code in r.holdings_libraries:
            libraries.setdefault(code.lower(), set()).add(r.work)
    library_keys = sorted(libraries)
    isbn_works: dict[str, set] = {}
    for r in inputs:
        for isbn in isbns(r):
            isbn_works.setdefault(isbn, set()).add(r.work)
    isbn_keys = sorted(isbn_works)
    output = yaz_client(server, [
        "scanpos 2", "scansize 3", "scan @attr 1=1044 GR-DW",
        "scanpos 1", "scansize 5", "scan @attr 1=1044 GR",
        "scanpos 3", "scansize 4", "scan @attr 1=7 9787",
    ])
    around, first, isbn_scan = scan_responses(output)
    at = library_keys.index("gr-dw")
    assert around == (3, 2, [(k, len(libraries[k]), k == "gr-dw") for k in library_keys[at - 1:at + 2]])
    assert first == (5, 1, [(k, len(libraries[k]), k == "gr") for k in library_keys[:5]])
    start = next(n for n, k in enumerate(isbn_keys) if k >= "9787")
    window = isbn_keys[start - 2:start + 2]
    assert isbn_scan == (4, 3, [(k, len(isbn_works[k]), n == 2) for n, k in enumerate(window)])


def test_scan_diagnostics(server):
    output = yaz_client(server, ["scan @attr 1=1016 x", "scan @attr 1=9999 x"])
    assert "[114]" in output


def test_sort_by_date(server, tmp_path):
    output = yaz_client(server, ["find @attr 1=4 图书馆", "sort 1=31 >", "format unimarc", "show 1+2"])
    assert "status=success" in output
    years = [int(y) for y in re.findall(r"^210 .*\$d (\d{4})", output, re.M)]
    assert len(years) == 2 and years == sorted(years, reverse=True)
    failing = yaz_client(server, ["find @attr 1=4 图书馆", "sort 1=1016 <"])
    assert "status=failure" in failing and "[207]" in failing and "addinfo '1016 is not a sort key'" in failing


def test_delete_and_close(server):
    output = yaz_client(server, ["find @attr 1=4 图书馆", "delete 1", "show 1", "close"])
    assert "Got deleteResultSetResponse status=0" in output
    assert "[30]" in output
    assert "Reason: finished" in output


# -- limits, piggybacking, with the project's own client -----------------------------------------

async def test_piggybacked_records(catalogue, inputs):
    expected = len({r.work for r in inputs if "图书馆" in r.title})
    async with running_server(catalogue) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            small = await client.search("@attr 1=4 图书馆", piggyback=expected,
                                        preferred_syntax=P.RecordSyntax.UNIMARC.value, element_set="B")
            assert small.count == expected
            assert small.response.number_of_records_returned == expected == len(small.response.records)
            assert small.response.next_result_set_position == expected + 1
            medium = await client.search("@attr 1=4 geography", piggyback=2)
            assert medium.count > 2 and medium.response.number_of_records_returned == 2
            assert all(isinstance(r.record, P.RetrievalRecord) for r in medium.response.records)
            none = await client.search("@attr 1=4 geography")
            assert none.response.records is None


async def test_numbers_beyond_the_store_are_a_diagnostic_and_the_session_goes_on(catalogue):
    async with running_server(catalogue) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            for digits in (23, 5000):
                found = await client.search(f"@attr 1=31 @attr 2=5 {'9' * digits}")
                assert found.count == 0
                [(code, addinfo)] = [(d.code, d.addinfo) for d in found.diagnostics]
                assert code == 3 and addinfo.startswith("index 'date'")   # the store's reason
            assert (await client.search("@attr 1=31 @attr 2=5 2000")).count > 0


async def test_result_set_and_query_depth_limits(catalogue):
    limits = ServerLimits(max_result_sets=3, max_query_depth=10)
    async with running_server(catalogue, limits) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            for n in range(3):
                assert (await client.search("@attr 1=4 geography")).diagnostics == []
            fourth = await client.search("@attr 1=4 geography")
            assert fourth.diagnostics == [P.Diagnostic(112, "3")]
            again = await client.search("@attr 1=4 图书馆", result_set="1")
            assert again.diagnostics == [] and again.count > 0
            deep = "@and " * 12 + "@attr 1=4 a " * 13
            too_deep = await client.search(deep.strip(), result_set="2")
            assert too_deep.diagnostics[0].code == 108
            ok_depth = "@and " * 5 + "@attr 1=4 a " * 6
            assert (await client.search(ok_depth.strip(), result_set="3")).diagnostics == []


async def test_message_size_limits_present(catalogue):
    async with running_server(catalogue, ServerLimits(preferred_message_size=8192)) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            found = await client.search("@attr 1=1016 @attr 2=103 x")
            page = await client.present(found.result_set, 1, 50)
            assert 0 < page.number_of_records_returned < 50
            assert page.present_status is P.PresentStatus.PARTIAL_2
            assert page.next_result_set_position == 1 + page.number_of_records_returned


async def test_idle_connections_are_closed(catalogue):
    async with running_server(catalogue, ServerLimits(idle_timeout=0.3)) as server:
        client = Z3950Client("127.0.0.1", server.port, database="union")
        await client.connect()
        await asyncio.sleep(0.6)
        with pytest.raises(P.Z3950Error, match="LACK_OF_ACTIVITY"):
            await client.search("@attr 1=4 a")


async def test_gbk_session_sends_text_in_gbk(catalogue):
    async with running_server(catalogue) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union", charset="GBK") as client:
            negotiated = client.init_response.charset_response
            # Text and records go in GBK.
            assert negotiated == P.CharsetResponse("GBK", None, True)
            assert client.charset == "gbk"
            found = await client.search("@attr 1=4 图书馆")
            assert found.count > 0
            page = await client.present(found.result_set, 1, 1, syntax=P.RecordSyntax.SUTRS.value)
            assert "图书馆" in page.records[0].record.content
            page = await client.present(found.result_set, 1, 1, syntax=P.RecordSyntax.XML.value)
            xml = page.records[0].record.content
            assert xml.startswith(b"<?xml version='1.0' encoding='GBK'?>") and "图书馆".encode("gbk") in xml
            assert "图书馆" in "".join(etree.fromstring(xml).itertext())
            page = await client.present(found.result_set, 1, 1, syntax=P.RecordSyntax.OPAC.value)
            assert "图书馆".encode("gbk") in page.records[0].record.content.bibliographic.content
            scan = await client.scan("@attr 1=4 图书馆", count=3)
            assert scan.entries[0].term.startswith("图书馆")


async def test_gb18030_session_gets_records_in_gb18030(catalogue):
    async with running_server(catalogue) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union", charset="GB18030") as client:
            assert client.init_response.charset_response == P.CharsetResponse("GB18030", None, True)
            found = await client.search("@attr 1=4 图书馆")
            page = await client.present(found.result_set, 1, 2, syntax=P.RecordSyntax.UNIMARC.value)
            for entry in page.records:
                data = entry.record.content
                assert int(data[:5]) == len(data) and "图书馆".encode("gb18030") in data
                record = next(pymarc.MARCReader(io.BytesIO(data), to_unicode=True, file_encoding="gb18030"))
                assert "图书馆" in record["200"]["a"]
            xml = (await client.present(found.result_set, 1, 1, syntax=P.RecordSyntax.XML.value)).records[0].record.content
            assert xml.startswith(b"<?xml version='1.0' encoding='GB18030'?>")
            assert "图书馆" in "".join(etree.fromstring(xml).itertext())


async def test_gbk_text_is_gbk_on_the_wire(catalogue):
    from protocols.z3950 import codec
    from protocols.z3950.pqf import parse_pqf
    from protocols.z3950.stream import PduReader

    async with running_server(catalogue) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        pdus = PduReader(reader)
        try:
            init = P.InitRequest(options=frozenset({P.Option.SEARCH, P.Option.PRESENT, P.Option.NEGOTIATION_MODEL}),
                                 charset_proposal=P.CharsetProposal(("GBK",), (), True))
            search = P.SearchRequest(parse_pqf("@attr 1=4 图书馆"), ["union"])
            present = P.PresentRequest("default", 1, 1, preferred_record_syntax=P.RecordSyntax.SUTRS.value)
            raw = []
            for request in (init, search, present):
                writer.write(codec.encode(request, "gbk"))
                raw.append(await asyncio.wait_for(pdus.read(), 10))
        finally:
            writer.close()
        assert codec.decode(raw[1]).result_count > 0
        assert "图书馆".encode("gbk") in raw[2] and "图书馆".encode("utf-8") not in raw[2]


async def test_client_sees_the_rejection_diagnostic(catalogue):
    async with running_server(catalogue) as server:
        client = Z3950Client("127.0.0.1", server.port, database="union",
                             authentication=P.Authentication(open="GR/wrong"))
        with pytest.raises(P.Z3950Error, match="rejected") as error:
            await client.connect()
        assert error.value.diagnostic == P.Diagnostic(1011, "bad user id or password")


async def test_shutdown_tells_connected_clients(catalogue):
    async with running_server(catalogue) as server:
        client = Z3950Client("127.0.0.1", server.port, database="union", timeout=5)
        await client.connect()
        assert (await client.search("@attr 1=4 图书馆")).count > 0
        server.close()
        await server.wait_closed()
        assert server.sessions == 0
        with pytest.raises(P.Z3950Error, match="SHUTDOWN|closed"):
            await client.search("@attr 1=4 图书馆")


def test_zoomsh_piggyback_needs_no_present(server):
    done = zoomsh(server, ["search @attr 1=4 geography", "show 0 2"],
                  settings=("set charset UTF-8", "set apdulog 1", "set count 2", "set preferredRecordSyntax usmarc"))
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "mediumSetPresentNumber 2" in log
    assert re.search(r"searchResponse \{[^}]*numberOfRecordsReturned 2", log)
    assert "presentRequest" not in log
    assert done.stdout.count("0 database=union syntax=USmarc") >= 1 and "1 database=union syntax=USmarc" in done.stdout


async def test_scan_preferred_position(catalogue, inputs):
    async with running_server(catalogue) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            first = await client.scan("@attr 1=4 图书馆", count=5, position=1)
            middle = await client.scan("@attr 1=4 图书馆", count=5, position=3)
            assert first.position_of_term == 1 and middle.position_of_term == 3
            assert [e.term for e in middle.entries][2:] == [e.term for e in first.entries][:3]
            assert middle.entries[1].term < "图书馆" <= middle.entries[2].term
            library = await client.scan("@attr 1=1044 GR", count=50, databases=["union"])
            assert {"gr", "gr-dw"} <= {e.term for e in library.entries}
            # Each library's count is the number of works it holds, from the input files.
            counts = {e.term: e.occurrences for e in library.entries}
            for code in ("GR", "GR-DW", "GR-LD"):
                assert counts[code.lower()] == len({r.work for r in inputs if code in r.holdings_libraries}) > 0
            stepped = await client.scan("@attr 1=4 图书馆", count=5, step=1)
            assert stepped.status is P.ScanStatus.FAILURE
            assert [(d.code, d.addinfo) for d in stepped.diagnostics] == [(205, "1")]
