"""The Z39.50 BER codec and PQF against PDUs captured from yaz-client and yaz-ztest (yaz 5.34)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.z3950 import codec
from protocols.z3950 import pdu as P
from protocols.z3950.ber import BerError, BerLimits, pdu_length, to_definite
from protocols.z3950.pqf import PqfError, parse_pqf, to_pqf

PDUS = Path(__file__).parent / "data" / "z3950-pdus"
CAPTURED = sorted(PDUS.glob("yaz-*.ber"))


def load(name: str) -> bytes:
    return (PDUS / name).read_bytes()


def test_captured_pdus_are_present():
    assert len(CAPTURED) >= 30


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_every_captured_pdu_frames_decodes_and_round_trips(path: Path):
    data = path.read_bytes()
    assert pdu_length(data) == len(data)
    assert pdu_length(data[:-1]) is None
    decoded = codec.decode(data)
    assert type(decoded).__name__.lower().startswith(path.stem.split("-")[-1].lower()[:4])
    assert codec.decode(codec.encode(decoded)) == decoded


@pytest.mark.parametrize("name", ["yaz-basic-004-searchResponse.ber", "yaz-auth-004-searchResponse.ber",
                                  "yaz-charneg-012-deleteResultSetResponse.ber"])
def test_booleans_are_encoded_as_yaz_writes_them(name: str):
    """searchStatus TRUE is the octet 0x01 as yaz-ztest sent it (not DER's 0xFF, which
    yaz-client prints as -1), so these captured answers re-encode byte for byte."""
    data = load(name)
    assert codec.encode(codec.decode(data)) == data


def test_init_request_with_utf8_proposal():
    init = codec.decode(load("yaz-charneg-001-initRequest.ber"))
    assert isinstance(init, P.InitRequest)
    assert init.charset_proposal == P.CharsetProposal(("UTF-8",), (), True)
    assert {P.Option.SEARCH, P.Option.PRESENT, P.Option.SCAN, P.Option.SORT, P.Option.NEGOTIATION_MODEL} <= init.options
    assert init.versions == (1, 2, 3)
    assert init.implementation_name == "YAZ"


def test_gbk_proposal_arrives_as_private_name():
    init = codec.decode(load("yaz-gbk-001-initRequest.ber"))
    assert init.charset_proposal is not None and init.charset_proposal.charsets == ("GBK",)


def test_yaz_ztest_answers_with_a_private_charset():
    response = codec.decode(load("yaz-charneg-002-initResponse.ber"))
    assert isinstance(response, P.InitResponse) and response.result
    assert response.charset_response == P.CharsetResponse("ISO-8859-1", None, False)


def test_open_authentication():
    init = codec.decode(load("yaz-auth-001-initRequest.ber"))
    assert init.authentication is not None
    assert init.authentication.credentials() == ("user", "secret")


def test_chinese_term_and_every_attribute_type():
    search = codec.decode(load("yaz-charneg-003-searchRequest.ber"))
    assert isinstance(search, P.SearchRequest)
    assert isinstance(search.query, P.RpnQuery)
    node = search.query.root
    assert isinstance(node, P.AttrTerm)
    assert node.term == "图书馆"
    # yaz-client sends attributes in reverse order of typing.
    assert [(a.type, a.value) for a in node.attributes] == [(6, 1), (5, 100), (4, 1), (3, 1), (2, 3), (1, 4)]
    assert node.attribute(1) == 4 and node.attribute(7) is None


def test_not_is_sent_as_and_not():
    search = codec.decode(load("yaz-basic-011-searchRequest.ber"))
    root = search.query.root
    assert isinstance(root, P.RpnOp) and root.op is P.Operator.AND
    assert isinstance(root.right, P.RpnOp) and root.right.op is P.Operator.AND_NOT
    assert to_pqf(search.query) == "@and @attr 1=4 abc @not @attr 1=1003 x y"


def test_opac_record_with_indefinite_lengths():
    data = load("yaz-basic-008-presentResponse.ber")
    assert b"\x80" in data[:4] or to_definite(data) != data  # YAZ used indefinite lengths
    response = codec.decode(data)
    record = response.records[0].record
    assert record.syntax == P.RecordSyntax.OPAC.value
    opac = record.content
    assert isinstance(opac, P.OpacRecord)
    assert opac.bibliographic is not None and opac.bibliographic.content[5:9] == b"nam "
    holding = opac.holdings[0]
    assert holding.call_number == "MLCM 89/00602 (N)"
    assert holding.circulation[0].available_now is True
    assert holding.circulation[0].item_id == "1226176"


def test_sutrs_record_is_text():
    response = codec.decode(load("yaz-basic-010-presentResponse.ber"))
    assert response.records[0].record.content == "This is dummy SUTRS record number 1\n"


def test_sort_and_delete_requests():
    sort = codec.decode(load("yaz-charneg-009-sortRequest.ber"))
    assert sort.input_result_sets == ["1"] and sort.keys[0].ascending
    assert sort.keys[0].attributes[0] == P.Attribute(1, 4)
    delete = codec.decode(load("yaz-charneg-011-deleteResultSetRequest.ber"))
    assert delete == P.DeleteResultSetRequest(False, ["1"])


def test_scan_request():
    scan = codec.decode(load("yaz-basic-013-scanRequest.ber"))
    assert scan.term == "a" and scan.number_of_terms == 20 and scan.preferred_position == 1


def test_built_pdus_round_trip():
    opac = P.OpacRecord(
        P.RetrievalRecord(P.RecordSyntax.USMARC.value, b"00026nam a2200025 a 4500\x1e\x1d"),
        [P.Holdings(nuc_code="GR001", call_number="I247.5/123", shelving_location="中文图书",
                    circulation=[P.Circulation(True, item_id="0001"), P.Circulation(False, item_id="0002",
                                                                                   availability_date="2026-12-01")])],
    )
    pdus = [
        P.InitResponse(True, frozenset({P.Option.SEARCH, P.Option.SCAN}), charset_response=P.CharsetResponse("UTF-8", None, True)),
        P.InitResponse(False, diagnostic=P.Diagnostic(1014, "bad password")),
        P.SearchResponse(3, 1, 2, True, None, P.PresentStatus.SUCCESS,
                         [P.NamePlusRecord("union", P.RetrievalRecord(P.RecordSyntax.OPAC.value, opac))]),
        P.SearchResponse(0, 0, 1, False, 3, P.PresentStatus.FAILURE, None, [P.Diagnostic(114, "9999")]),
        P.PresentResponse(2, 3, P.PresentStatus.PARTIAL_4, [
            P.NamePlusRecord("union", P.Diagnostic(239, "1.2.3")),
            P.NamePlusRecord("union", P.RetrievalRecord(P.RecordSyntax.SUTRS.value, "标题: 图书馆学\n")),
        ]),
        P.ScanResponse(P.ScanStatus.SUCCESS, [P.ScanEntry("图书馆", 3), P.ScanEntry("abc", 1, "ABC")], 1, 0),
        P.SortResponse(P.SortStatus.FAILURE, 3, [P.Diagnostic(237, "x")]),
        P.DeleteResultSetResponse(P.DeleteSetStatus.SUCCESS, [("a", P.DeleteSetStatus.RESULT_SET_DID_NOT_EXIST)]),
        P.Close(P.CloseReason.PROTOCOL_ERROR, "malformed BER"),
        P.PresentRequest("1", 1, 5, "F", None, (P.RecordSyntax.XML.value,)),
    ]
    for pdu in pdus:
        for charset in ("utf-8", "gb18030"):
            assert codec.decode(codec.encode(pdu, charset), charset) == pdu


@pytest.mark.parametrize("data", [
    b"", b"\x30", b"\xb6\x05\x01\x02", b"\xb6\x80\x00", b"\x04\x80\x00\x00", b"\xff\xff\xff",
    b"\xb4\x85\xff\xff\xff\xff\xff", b"\xbf\x30\x00", b"\x00\x00",
])
def test_malformed_input_raises_decode_error(data: bytes):
    with pytest.raises(codec.PduDecodeError):
        codec.decode(data)


def test_framing_rejects_oversized_and_deep_values():
    limits = BerLimits(max_pdu_bytes=100, max_depth=10)
    with pytest.raises(BerError):
        pdu_length(b"\xb6\x82\x10\x00", limits)
    with pytest.raises(BerError):
        to_definite(b"\xa1\x80" * 20 + b"\x00\x00" * 20, limits)


def test_deep_nesting_is_a_decode_error_not_a_recursion_error():
    nested = b"\xa1\x80" * 400 + b"\x00\x00" * 400
    with pytest.raises(codec.PduDecodeError):
        codec.decode(b"\xb6\x80" + nested + b"\x00\x00")


PQF_CASES = [
    "@attr 1=4 computer",
    '@attr 1=4 @attr 4=1 "library science"',
    "@and @attr 1=4 abc @or @attr 1=1003 x y",
    "@not @attr 1=21 a b",
    "@attrset bib-1 @attr 1=4 x",
    "@attr 1=4 @attr 5=1 comput",
    "@set default",
    "@prox 0 3 1 2 k 2 a b",
    "@term numeric @attr 1=31 @attr 2=4 1990",
    "@attr 1=title 图书馆",
    "@attr bib-1 1=4 x",
    '"a \\"quoted\\" term"',
]


@pytest.mark.parametrize("text", PQF_CASES)
def test_pqf_round_trip(text: str):
    query = parse_pqf(text)
    assert parse_pqf(to_pqf(query)) == query


def test_pqf_structure():
    query = parse_pqf("@and @attr 1=4 @attr 2=3 abc @set rs1")
    assert query.root == P.RpnOp(
        P.Operator.AND,
        P.AttrTerm((P.Attribute(1, 4), P.Attribute(2, 3)), "abc"),
        P.ResultSetRef("rs1"),
    )
    assert parse_pqf("@attr 1=title x").root.attributes[0].value == "title"


@pytest.mark.parametrize("text,position", [
    ("", 0), ("@and a", 6), ("@attr 1 x", 6), ("@attr x=4 y", 6), ('"open', 0), ("a b", 2),
    ("@foo a", 0), ("@attrset nosuch a", 9), ("@term numeric abc", 14),
])
def test_pqf_errors_name_the_position(text: str, position: int):
    with pytest.raises(PqfError) as error:
        parse_pqf(text)
    assert error.value.position == position


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_decode_error(data: bytes):
    try:
        codec.decode(data)
    except codec.PduDecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CAPTURED), st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_mutated_captured_pdus_never_escape_decode_error(path: Path, position: int, byte: int):
    data = bytearray(path.read_bytes())
    data[position % len(data)] = byte
    try:
        codec.decode(bytes(data))
    except codec.PduDecodeError:
        pass


def test_search_info_report_round_trips_in_additional_search_info():
    report = [
        P.SubqueryReport("union", False, P.QueryTerm("ok", "广饶县图书馆"), P.QueryTerm("21 of 21 fetched; 0.01 s"), None, 21),
        P.SubqueryReport("GONE", False, P.QueryTerm("failed"), P.QueryTerm("cannot connect"), P.QueryTerm("retry later")),
    ]
    response = P.SearchResponse(30, result_set_status=P.ResultSetStatus.SUBSET, search_info=report,
                                search_info_texts=["target GONE (关闭的目标): failed: cannot connect"])
    for charset in ("utf-8", "gb18030"):
        assert codec.decode(codec.encode(response, charset), charset) == response
    # The SearchInfoReport is an EXTERNAL of searchResult-1 (1.2.840.10003.10.1): explicit [3] and
    # [4] around the QueryExpression's implicit [1] term, the term itself a general [45] term.
    data = codec.encode_search_info([P.SubqueryReport("G", False, P.QueryTerm("x"), count=2)])
    assert data.hex() == "3015" "3013" "810147" "820100" "a308" "a106" "a104" "9f2d0178" "860102"
    assert codec.decode_search_info(data) == [P.SubqueryReport("G", False, P.QueryTerm("x"), count=2)]


def test_an_undecodable_search_info_report_costs_nothing_else():
    good = codec.encode(P.SearchResponse(3, search_info=[P.SubqueryReport("A", count=3)]))
    report = codec.encode_search_info([P.SubqueryReport("A", count=3)])
    # Well-formed BER of another type in its place (an OCTET STRING of the same length).
    broken = good.replace(report, b"\x04" + bytes([len(report) - 2]) + b"x" * (len(report) - 2))
    assert broken != good and len(broken) == len(good)
    decoded = codec.decode(broken)
    assert isinstance(decoded, P.SearchResponse) and decoded.result_count == 3 and decoded.search_info == []
