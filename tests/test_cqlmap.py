"""CQL -> canonical query mapping: every relation, modifier, masking and anchoring rule, sort keys,
and the SRU diagnostic number of every refusal."""
from __future__ import annotations

import pytest

from federation.cqlmap import CQLMapper
from indexer.indexes import load_index_table
from indexer.query import And, AndNot, Clause, ItemMatch, MatchAll, Or, Relation, SortKey
from protocols.sru import SRUDiagnostic
from protocols.sru.request import parse_sort_keys


@pytest.fixture(scope="module")
def mapper() -> CQLMapper:
    return CQLMapper(load_index_table())


def mapped(mapper: CQLMapper, text: str):
    return mapper.map_text(text).query


def diagnostic(mapper: CQLMapper, text: str) -> SRUDiagnostic:
    with pytest.raises(SRUDiagnostic) as caught:
        mapper.map_text(text)
    return caught.value


@pytest.mark.parametrize("text, expected", [
    ("title=图书馆", Clause("title", Relation.PHRASE, "图书馆")),
    ("dc.title = cat", Clause("title", Relation.PHRASE, "cat")),
    ("bath.title adj \"the cat\"", Clause("title", Relation.PHRASE, "the cat")),
    ("dc.title == \"The cat\"", Clause("title", Relation.EXACT, "The cat")),
    ("dc.title all \"cat dog\"", Clause("title", Relation.ALL, "cat dog")),
    ("dc.title any \"cat dog\"", Clause("title", Relation.ANY, "cat dog")),
    ("dc.title <> cat", Clause("title", Relation.NE, "cat")),
    ("dc.date < 1990", Clause("date", Relation.LT, "1990")),
    ("dc.date <= 1990", Clause("date", Relation.LE, "1990")),
    ("dc.date > 1990", Clause("date", Relation.GT, "1990")),
    ("dc.date >= 1990", Clause("date", Relation.GE, "1990")),
    ("dc.date within \"2000 1990\"", Clause("date", Relation.WITHIN, "1990", term_high="2000")),
    ("cat", Clause("anywhere", Relation.PHRASE, "cat")),
    ("cql.serverChoice all \"a b\"", Clause("anywhere", Relation.ALL, "a b")),
    ("bath.isbn=7-5037-1744-0", Clause("isbn", Relation.PHRASE, "7-5037-1744-0")),
    ("rec.id=abc", Clause("id", Relation.PHRASE, "abc")),
    ("cql.allRecords=1", MatchAll()),
    ("TITLE=cat", Clause("title", Relation.PHRASE, "cat")),
])
def test_relations_and_indexes(mapper, text, expected):
    assert mapped(mapper, text) == expected


def test_modifiers(mapper):
    assert mapped(mapper, "dc.title =/string \"The Cat\"") == Clause("title", Relation.EXACT, "The Cat")
    assert mapped(mapper, "dc.title ==/word cat") == Clause("title", Relation.PHRASE, "cat")
    assert mapped(mapper, "dc.title all/string \"a b\"") == Clause("title", Relation.EXACT, "a b")
    assert mapped(mapper, "dc.title =/ignoreCase/relevant cat") == Clause("title", Relation.PHRASE, "cat")
    assert mapped(mapper, "dc.title =/cql.masked cat*") == Clause("title", Relation.PHRASE, "cat*")
    assert mapped(mapper, "dc.title =/unmasked cat*") == Clause("title", Relation.PHRASE, "cat ")


def test_masking_escapes_and_anchors(mapper):
    assert mapped(mapper, "dc.title=ca?s*") == Clause("title", Relation.PHRASE, "ca?s*")
    assert mapped(mapper, r'dc.title="c\*t"') == Clause("title", Relation.PHRASE, "c t")
    assert mapped(mapper, r'dc.title="say \"hi\""') == Clause("title", Relation.PHRASE, 'say "hi"')
    assert mapped(mapper, 'dc.title="^the cat"') == Clause("title", Relation.PHRASE, "the cat", anchor_start=True)
    assert mapped(mapper, 'dc.title="the cat^"') == Clause("title", Relation.PHRASE, "the cat", anchor_end=True)
    assert mapped(mapper, 'dc.title=="^the cat^"') == Clause("title", Relation.EXACT, "the cat")


def test_prefix_assignments(mapper):
    assert mapped(mapper, '>x="info:srw/cql-context-set/1/dc-v1.1" x.title=cat') == Clause("title", Relation.PHRASE, "cat")
    assert mapped(mapper, '>"info:srw/cql-context-set/1/dc-v1.1" title=cat') == Clause("title", Relation.PHRASE, "cat")
    assert diagnostic(mapper, '>x="info:example/unknown" x.title=cat').code == 15


def test_booleans_and_same_copy_grouping(mapper):
    title = Clause("title", Relation.PHRASE, "cat")
    assert mapped(mapper, "title=cat or title=dog") == Or(title, Clause("title", Relation.PHRASE, "dog"))
    assert mapped(mapper, "title=cat not title=dog") == AndNot(title, Clause("title", Relation.PHRASE, "dog"))
    library = Clause("library", Relation.PHRASE, "GR")
    available = Clause("availability", Relation.PHRASE, "available")
    assert mapped(mapper, "title=cat and net.library=GR and net.availability=available") == And(
        title, ItemMatch(And(library, available)))
    assert mapped(mapper, "net.library=GR and title=cat and net.availability=available") == And(
        title, ItemMatch(And(library, available)))
    assert mapped(mapper, "title=cat and net.library=GR") == And(title, library)
    assert mapped(mapper, "net.library=GR not net.availability=on_loan") == ItemMatch(
        AndNot(library, Clause("availability", Relation.PHRASE, "on_loan")))


@pytest.mark.parametrize("text, code", [
    ("foo.title=cat", 15),
    ("dc.nonsense=cat", 16),
    ("nonsense=cat", 16),
    ("dc.title encloses cat", 19),
    ("dc.title =/respectCase cat", 20),
    ("dc.title =/stem cat", 20),
    ("dc.title =/locale=fr cat", 20),
    ("dc.title =/string/word cat", 21),
    ("dc.title =/masked/unmasked cat", 21),
    ("dc.title=\"the ^cat\"", 32),
    ("dc.title any \"^cat\"", 31),
    ("dc.date=nineteen", 36),
    ("dc.date within 1990", 36),
    ("dc.title=a prox dc.title=b", 39),
    ("dc.title=a and/rel.sum dc.title=b", 46),
    ("dc.title=", 10),
    ("(dc.title=cat", 13),
    ("dc.title=\"cat", 14),
    ("title=cat sortby dc.subject", 88),
    ("title=cat sortby dc.title/sort.respectCase", 91),
    ("title=cat sortby dc.title/sort.missingFail", 92),
    ("title=cat sortby dc.title/sort.funny", 82),
    ("title=cat sortby dc.nothing", 16),
])
def test_diagnostics(mapper, text, code):
    assert diagnostic(mapper, text).code == code


def test_sort_by(mapper):
    result = mapper.map_text("title=cat sortby dc.date/sort.descending dc.title/sort.missingLow")
    assert result.sort == (SortKey("date", False, False), SortKey("title", True, True))
    result = mapper.map_text("title=cat sortby dc.date/sort.descending/sort.missingLow")
    assert result.sort == (SortKey("date", False, False),)
    result = mapper.map_text("title=cat sortby dc.date/sort.descending/sort.missingHigh")
    assert result.sort == (SortKey("date", False, True),)


def test_sru_sort_keys(mapper):
    assert mapper.sort_keys(parse_sort_keys("dc.title,,1 dc.date,,0,0,lowValue")) == (
        SortKey("title", True, False), SortKey("date", False, False))
    with pytest.raises(SRUDiagnostic) as caught:
        mapper.sort_keys(parse_sort_keys("dc.title,,1,1"))
    assert caught.value.code == 91
    with pytest.raises(SRUDiagnostic) as caught:
        mapper.sort_keys(parse_sort_keys("dc.title,,1,0,abort"))
    assert caught.value.code == 92
    with pytest.raises(SRUDiagnostic) as caught:
        parse_sort_keys("dc.title,,maybe")
    assert caught.value.code == 6
