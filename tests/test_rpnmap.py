"""Bib-1 RPN -> canonical query mapping against the shipped index table (config/indexes.yaml)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.rpnmap import rpn_to_query, scan_index, sort_keys
from indexer.indexes import load_index_table
from indexer.query import And, AndNot, Clause, ItemMatch, MatchAll, Or, Relation, SortKey
from protocols.z3950.diagnostics import Bib1Diagnostic
from protocols.z3950.pdu import Attribute, AttrTerm, RpnOp, Operator, RpnQuery, SortKeySpec
from protocols.z3950.pqf import parse_pqf

TABLE = load_index_table()


def mapped(pqf: str, **kwargs):
    return rpn_to_query(parse_pqf(pqf), TABLE, **kwargs)


@pytest.mark.parametrize("pqf,expected", [
    ("@attr 1=4 图书馆", Clause("title", Relation.ALL, "图书馆")),
    ("@attr 1=1003 彭勇洋", Clause("creator", Relation.ALL, "彭勇洋")),
    ("@attr 1=21 教材", Clause("subject", Relation.ALL, "教材")),
    ('"plain words"', Clause("anywhere", Relation.ALL, "plain words")),
    ("@attr 1=title x", Clause("title", Relation.ALL, "x")),
    ("@attr 1=dc.creator x", Clause("creator", Relation.ALL, "x")),
    # relation
    ("@attr 1=31 @attr 2=1 2000", Clause("date", Relation.LT, "2000")),
    ("@attr 1=31 @attr 2=2 2000", Clause("date", Relation.LE, "2000")),
    ("@attr 1=31 @attr 2=3 2000", Clause("date", Relation.PHRASE, "2000")),
    ("@attr 1=31 @attr 2=4 2000", Clause("date", Relation.GE, "2000")),
    ("@attr 1=31 @attr 2=5 2000", Clause("date", Relation.GT, "2000")),
    ("@attr 1=31 @attr 2=6 2000", Clause("date", Relation.NE, "2000")),
    ("@attr 1=4 @attr 2=102 x", Clause("title", Relation.ALL, "x")),
    ("@attr 1=4 @attr 2=103 x", MatchAll()),
    # position
    ('@attr 1=4 @attr 3=1 "a b"', Clause("title", Relation.PHRASE, "a b", anchor_start=True)),
    ('@attr 1=4 @attr 3=2 "a b"', Clause("title", Relation.PHRASE, "a b", anchor_start=True)),
    ('@attr 1=4 @attr 3=3 "a b"', Clause("title", Relation.ALL, "a b")),
    # structure
    ('@attr 1=4 @attr 4=1 "a b"', Clause("title", Relation.PHRASE, "a b")),
    ('@attr 1=4 @attr 4=2 "a b"', Clause("title", Relation.ALL, "a b")),
    ('@attr 1=4 @attr 4=6 "a b"', Clause("title", Relation.ALL, "a b")),
    ('@attr 1=4 @attr 4=3 "a b"', Clause("title", Relation.EXACT, "a b")),
    ('@attr 1=4 @attr 4=108 "a b"', Clause("title", Relation.EXACT, "a b")),
    ("@attr 1=31 @attr 4=4 1999", Clause("date", Relation.PHRASE, "1999")),
    ("@attr 1=7 @attr 4=109 7-04-578048-X", Clause("isbn", Relation.EXACT, "7-04-578048-X")),
    # truncation
    ("@attr 1=4 @attr 5=1 comput", Clause("title", Relation.ALL, "comput*")),
    ("@attr 1=4 @attr 5=2 puter", Clause("title", Relation.ALL, "*puter")),
    ("@attr 1=4 @attr 5=3 mpute", Clause("title", Relation.ALL, "*mpute*")),
    ("@attr 1=4 @attr 5=100 c*t?", Clause("title", Relation.ALL, "c t")),
    ("@attr 1=4 @attr 5=101 com#er", Clause("title", Relation.ALL, "com*er")),
    ("@attr 1=4 @attr 5=104 wom#n?", Clause("title", Relation.ALL, "wom?n*")),
    ("@attr 1=4 @attr 5=104 comp?3", Clause("title", Relation.ALL, "comp*")),
    # completeness
    ('@attr 1=4 @attr 6=1 "a b"', Clause("title", Relation.ALL, "a b")),
    ('@attr 1=4 @attr 6=2 "a b"', Clause("title", Relation.EXACT, "a b")),
    ('@attr 1=4 @attr 6=3 "a b"', Clause("title", Relation.EXACT, "a b")),
    # keyword indexes compare whole values
    ("@attr 1=7 9787040000000", Clause("isbn", Relation.EXACT, "9787040000000")),
    ("@attr 1=1044 GR-DW", Clause("library", Relation.EXACT, "GR-DW")),
    # numbers: canonical digits, whatever their length (the store refuses what it cannot hold)
    ("@attr 1=31 @attr 2=4 0002000", Clause("date", Relation.GE, "2000")),
    ("@attr 1=31 @attr 2=1 -007", Clause("date", Relation.LT, "-7")),
    ("@attr 1=31 @attr 2=5 -000", Clause("date", Relation.GT, "0")),
    ("@attr 1=31 @attr 2=5 " + "9" * 5000, Clause("date", Relation.GT, "9" * 5000)),
])
def test_operands(pqf, expected):
    assert mapped(pqf) == expected


def test_booleans_and_same_item_conditions():
    assert mapped("@and @attr 1=4 a @attr 1=1003 b") == And(Clause("title", Relation.ALL, "a"), Clause("creator", Relation.ALL, "b"))
    assert mapped("@or @attr 1=4 a @attr 1=1003 b") == Or(Clause("title", Relation.ALL, "a"), Clause("creator", Relation.ALL, "b"))
    assert mapped("@not @attr 1=4 a @attr 1=1003 b") == AndNot(Clause("title", Relation.ALL, "a"), Clause("creator", Relation.ALL, "b"))
    # Two item-level conditions joined by AND hold for one and the same item.
    assert mapped("@and @attr 1=1044 GR @attr 1=1044 GR-DW") == ItemMatch(
        And(Clause("library", Relation.EXACT, "GR"), Clause("library", Relation.EXACT, "GR-DW")))


def test_result_set_references():
    earlier = Clause("title", Relation.ALL, "x")
    assert mapped("@and @set s1 @attr 1=4 y", result_sets={"s1": earlier}) == And(earlier, Clause("title", Relation.ALL, "y"))
    with pytest.raises(Bib1Diagnostic) as missing:
        mapped("@set s2", result_sets={"s1": earlier})
    assert (missing.value.code, missing.value.addinfo) == (30, "s2")
    with pytest.raises(Bib1Diagnostic) as unsupported:
        mapped("@set s1")
    assert unsupported.value.code == 18


@pytest.mark.parametrize("pqf,code,addinfo", [
    ("@attr 1=9999 x", 114, "9999"),
    ("@attr 1=nosuchindex x", 114, "nosuchindex"),
    ("@attr 2=100 @attr 1=4 x", 117, "100"),
    ("@attr 3=4 @attr 1=4 x", 119, "4"),
    ("@attr 4=103 @attr 1=4 x", 118, "103"),
    ("@attr 4=4 @attr 1=4 x", 123, "structure 4 with use title"),
    ("@attr 5=102 @attr 1=4 x", 120, "102"),
    ("@attr 5=1 @attr 1=31 19", 120, "1"),
    ("@attr 6=4 @attr 1=4 x", 122, "4"),
    ("@attr 8=1 @attr 1=4 x", 113, "8"),
    ("@attr 2=a @attr 1=4 x", 117, "a"),
    ("@attr 1=31 nineteen", 125, "nineteen"),
    ("@attr gils 1=4 x", 121, "1.2.840.10003.3.5"),
    ("@attrset gils @attr 1=4 x", 121, "1.2.840.10003.3.5"),
    ("@prox 0 1 1 2 k 2 a b", 110, "prox"),
])
def test_unsupported_gives_the_bib1_diagnostic(pqf, code, addinfo):
    with pytest.raises(Bib1Diagnostic) as error:
        mapped(pqf)
    assert (error.value.code, error.value.addinfo) == (code, addinfo)


def test_deep_trees_map_without_recursion():
    node = AttrTerm((Attribute(1, 4),), "x")
    for _ in range(5000):
        node = RpnOp(Operator.OR, node, AttrTerm((Attribute(1, 4),), "y"))
    query = rpn_to_query(RpnQuery(node), TABLE)
    assert isinstance(query, Or)


def test_scan_and_sort():
    assert scan_index((Attribute(1, 4),), TABLE).name == "title"
    assert scan_index((Attribute(1, 1044),), TABLE).name == "library"
    for attributes, code in [((), 116), ((Attribute(1, 1016),), 114), ((Attribute(1, 4), Attribute(5, 1)), 120)]:
        with pytest.raises(Bib1Diagnostic) as error:
            scan_index(attributes, TABLE)
        assert error.value.code == code
    assert sort_keys([SortKeySpec((Attribute(1, 31),), ascending=False), SortKeySpec(sort_field="title")], TABLE) == (
        SortKey("date", False), SortKey("title", True))
    with pytest.raises(Bib1Diagnostic) as error:
        sort_keys([SortKeySpec((Attribute(1, 21),))], TABLE)
    assert error.value.code == 207


# -- fuzz: any attributes and term map to a query or a Bib-1 diagnostic, nothing else ------------

_VALUES = st.one_of(
    st.integers(-3, 130), st.sampled_from([1003, 1016, 1044, 4, 7, 8, 12, 21, 31, 1035, 9999, 2**31 - 1]),
    st.text(max_size=12), st.sampled_from(["title", "dc.creator", "net.library", "bath.isbn", ""]),
    st.lists(st.one_of(st.integers(0, 200), st.text(max_size=6)), max_size=3).map(tuple),
)
_ATTRIBUTES = st.lists(st.builds(Attribute, st.integers(0, 9), _VALUES,
                                 st.one_of(st.none(), st.sampled_from(["1.2.840.10003.3.1", "1.2.3"]))),
                       max_size=6).map(tuple)
_TERMS = st.one_of(st.text(max_size=30), st.integers(-10**30, 10**30).map(str), st.text("0123456789-", max_size=6000),
                   st.sampled_from(["图书馆", "comput#r", "?", "#", "*", "a?3b", "", " "]))


@settings(max_examples=400, deadline=None)
@given(attributes=_ATTRIBUTES, term=_TERMS)
def test_fuzz_any_attributes_map_or_give_a_bib1_diagnostic(attributes, term):
    try:
        query = rpn_to_query(RpnQuery(AttrTerm(attributes, term)), TABLE)
    except Bib1Diagnostic as diagnostic:
        assert diagnostic.code > 0
    else:
        assert query is not None
    for mapping in (lambda: scan_index(attributes, TABLE, None), lambda: sort_keys([SortKeySpec(attributes)], TABLE)):
        try:
            assert mapping() is not None
        except Bib1Diagnostic as diagnostic:
            assert diagnostic.code > 0
