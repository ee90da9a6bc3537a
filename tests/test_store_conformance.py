"""Both stores answer every canonical query exactly as `indexer.query` defines it.

The same corpus (tests/corpus.py) is loaded once into each store; every case is run against
the store and against `tests/reference.py`, an evaluator written from the query model's
docstring that shares no code with the stores. Hit sets, totals, sorted pages, cursor walks,
facet counts and scan lists must be equal. With `ELASTICSEARCH_URL` set the Elasticsearch
half runs on that cluster instead of the osmem-server stand-in.
"""
from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import AsyncIterator

import pytest
import pytest_asyncio

from corpus import corpus_records, isbn10_of
from es_support import es_store
from indexer.embedded import EmbeddedStore
from indexer.indexes import IndexTable, load_index_table
from indexer.model import Availability, ItemStatusUpdate
from indexer.query import (
    And,
    AndNot,
    Clause,
    FacetRequest,
    ItemMatch,
    MatchAll,
    Or,
    Query,
    Relation,
    ScanRequest,
    SearchRequest,
    SortKey,
)
from indexer.store import QueryNotSupported, Store
from reference import Reference

# Every async test shares the module's event loop with the store fixture (loaded once per store).
module_loop = pytest.mark.asyncio(loop_scope="module")

TABLE: IndexTable = load_index_table()
RECORDS = corpus_records()
REFERENCE = Reference(TABLE, RECORDS)
ALL = 5_000  # a page size larger than the corpus

R = Relation


def c(index: str, relation: Relation, term: str, high: str | None = None, start: bool = False, end: bool = False) -> Clause:
    return Clause(index, relation, term, term_high=high, anchor_start=start, anchor_end=end)


def phrase(index: str, term: str, **anchors: bool) -> Clause:
    return c(index, R.PHRASE, term, start=anchors.get("start", False), end=anchors.get("end", False))


H01_ISBN = "9787040239812"
H11_TITLE = "县域公共图书馆总分馆制建设与一卡通借还服务体系研究暨乡村振兴背景下基层图书馆阅读推广的理论与实践探索"


def right_deep(operator: type[And | Or | AndNot], operands: list[Query]) -> Query:
    query = operands[-1]
    for operand in reversed(operands[:-1]):
        query = operator(operand, query)
    return query


def left_deep(operator: type[And | Or | AndNot], operands: list[Query]) -> Query:
    query = operands[0]
    for operand in operands[1:]:
        query = operator(query, operand)
    return query


QUERIES: list[tuple[str, Query]] = [
    # -- text PHRASE: CJK bigrams, folding, masking, anchors ------------------------------------
    ("title cjk inside longer run", phrase("title", "图书馆")),
    ("title cjk whole run", phrase("title", "图书馆学基础")),
    ("title cjk tail of run", phrase("title", "馆学")),
    ("title cjk single char", phrase("title", "图")),
    ("title cjk single char rare", phrase("title", "学")),
    ("title cjk two runs", phrase("title", "图书馆 分类法")),
    ("title cjk with latin word", phrase("title", "图书馆 history")),
    ("title cjk then masked latin", phrase("title", "图书馆 histor*")),
    ("title cjk fullwidth parenthesis", phrase("title", "第2版")),
    ("title cjk fullwidth digit", phrase("title", "第２版")),
    ("title latin lower", phrase("title", "history")),
    ("title latin upper", phrase("title", "HISTORY")),
    ("title diacritic folded", phrase("title", "muller's")),
    ("title diacritic given", phrase("title", "MÜLLER")),
    ("title fullwidth latin", phrase("title", "ａｂｃ１２３")),
    ("title ascii for fullwidth", phrase("title", "abc123")),
    ("title multiword", phrase("title", "the history of")),
    ("title multiword not adjacent", phrase("title", "history library")),
    ("title multiword cross values", phrase("title", "jiao cheng")),
    ("title pinyin", phrase("title", "tu shu guan")),
    ("title mask ?", phrase("title", "wom?n")),
    ("title mask trailing *", phrase("title", "wom*")),
    ("title mask leading *", phrase("title", "*men")),
    ("title mask inner *", phrase("title", "w*n")),
    ("title mask inner ?", phrase("title", "hist?ry")),
    ("title mask both sides", phrase("title", "*brar*")),
    ("title mask both sides in phrase", phrase("title", "*stor* of")),
    ("title cjk masked both sides", phrase("title", "*书*")),
    ("title mask in phrase", phrase("title", "history of * library")),
    ("title mask token in phrase", phrase("title", "the hist* of")),
    ("title cjk masked right", phrase("title", "图书*")),
    ("title cjk masked left", phrase("title", "*书馆")),
    ("title cjk single masked", phrase("title", "春*")),
    ("title bare star", phrase("title", "*")),
    ("title punctuation only", phrase("title", "::")),
    ("title anchor start", phrase("title", "the history", start=True)),
    ("title anchor start miss", phrase("title", "history", start=True)),
    ("title anchor end", phrase("title", "civilization", end=True)),
    ("title anchor end miss", phrase("title", "library", end=True)),
    ("title both anchors cjk", phrase("title", "图", start=True, end=True)),
    ("title both anchors full", phrase("title", "图书馆学基础", start=True, end=True)),
    ("title anchor start cjk", phrase("title", "图书馆", start=True)),
    ("title anchor end masked", phrase("title", "civ*", end=True)),
    ("title no such word", phrase("title", "xylophone")),
    ("title english generated", phrase("title", "river")),
    ("title english two words", phrase("title", "spring village")),
    ("title cjk generated", phrase("title", "乡村振兴")),
    ("title cjk generated form", phrase("title", "的故事")),
    ("title cjk generated combination", phrase("title", "故乡的故事")),
    ("title cjk masked inside", phrase("title", "图*馆")),
    ("title cjk masked first char", phrase("title", "?书馆")),
    ("title cjk masked run end", phrase("title", "图书馆*学")),
    ("title very long cjk phrase", phrase("title", H11_TITLE)),
    ("title very long cjk phrase anchored", phrase("title", H11_TITLE[:30], start=True)),
    ("title very long cjk phrase off by one", phrase("title", H11_TITLE[1:] + "了")),
    ("title empty key exact", c("title", R.EXACT, "...")),
    # -- ALL / ANY ------------------------------------------------------------------------------
    ("title all", c("title", R.ALL, "history library")),
    ("title all cjk", c("title", R.ALL, "图书馆 基础")),
    ("title all any order", c("title", R.ALL, "libraries women")),
    ("title all masked", c("title", R.ALL, "wom* libr*")),
    ("title all masked both sides", c("title", R.ALL, "*ome* *brar*")),
    ("title all one missing", c("title", R.ALL, "history xylophone")),
    ("title any", c("title", R.ANY, "müller staikos civilization")),
    ("title any cjk", c("title", R.ANY, "小麦 黄河")),
    ("title any with missing word", c("title", R.ANY, "xylophone river")),
    ("title all word without token", c("title", R.ALL, "* river")),
    ("place all of a blank term", c("place", R.ALL, " ")),
    ("place any of an empty term", c("place", R.ANY, "")),
    ("subject all", c("subject", R.ALL, "图书馆 历史")),
    ("subject any", c("subject", R.ANY, "history 教材")),
    ("creator all", c("creator", R.ALL, "smith john")),
    # -- EXACT, ordering, WITHIN, NE on text ---------------------------------------------------
    ("title exact", c("title", R.EXACT, "图书馆学基础")),
    ("title exact folded", c("title", R.EXACT, "THE HISTORY OF THE LIBRARY IN WESTERN CIVILIZATION")),
    ("title exact isbd stripped", c("title", R.EXACT, "Müller's Geschichte der Bibliotheken")),
    ("title exact isbd colon", c("title", R.EXACT, "公共图书馆服务体系")),
    ("title exact partial is no match", c("title", R.EXACT, "图书馆学")),
    ("title exact masked", c("title", R.EXACT, "图书馆*")),
    ("title exact masked left", c("title", R.EXACT, "*civilization")),
    ("title exact masked ?", c("title", R.EXACT, "?")),
    ("title exact masked inner", c("title", R.EXACT, "the * civilization")),
    ("title exact masked both sides", c("title", R.EXACT, "*library*")),
    ("title ne", c("title", R.NE, "图书馆学基础")),
    ("title lt", c("title", R.LT, "m")),
    ("title le", c("title", R.LE, "abc123 全角标题")),
    ("title gt", c("title", R.GT, "the")),
    ("title ge cjk", c("title", R.GE, "图")),
    ("title within", c("title", R.WITHIN, "a", "n")),
    ("title within cjk", c("title", R.WITHIN, "乡", "图书馆学基础")),
    # Bounds that normalize to the empty key are bounds, not "unbounded" (an ES store bug).
    ("title lt empty key", c("title", R.LT, ":")),
    ("title lt empty", c("title", R.LT, "")),
    ("title lt blank", c("title", R.LT, " ")),
    ("title le empty key", c("title", R.LE, ":")),
    ("title le blank", c("title", R.LE, " ")),
    ("title ge empty key", c("title", R.GE, ":")),
    ("title gt empty key", c("title", R.GT, " ")),
    ("creator within blank high", c("creator", R.WITHIN, "吴华 编著", " ")),
    ("creator within both blank", c("creator", R.WITHIN, ":", " ")),
    ("creator within blank low", c("creator", R.WITHIN, " ", "李")),
    ("creator phrase diacritic", phrase("creator", "muller")),
    ("creator phrase cjk", phrase("creator", "吴慰慈")),
    ("creator phrase surname", phrase("creator", "王")),
    ("creator phrase role", phrase("creator", "主编")),
    ("creator exact", c("creator", R.EXACT, "müller, jürgen, 1950-")),
    ("creator masked", phrase("creator", "garc?a")),
    ("creator lt", c("creator", R.LT, "李")),
    ("subject phrase", phrase("subject", "libraries history")),
    ("subject masked", phrase("subject", "biblioth*")),
    ("publisher cjk", phrase("publisher", "出版社")),
    ("publisher latin", phrase("publisher", "oak knoll")),
    ("publisher exact isbd", c("publisher", R.EXACT, "harrassowitz")),
    ("place", phrase("place", "wiesbaden")),
    ("series", phrase("series", "library science")),
    ("notes", phrase("notes", "index")),
    ("notes cjk", phrase("notes", "本书")),
    ("anywhere cjk", phrase("anywhere", "图书馆")),
    ("anywhere isbn copied", phrase("anywhere", H01_ISBN)),
    ("anywhere classification copied", phrase("anywhere", "g250")),
    ("anywhere latin", phrase("anywhere", "history")),
    ("anywhere any", c("anywhere", R.ANY, "müller 小麦")),
    ("anywhere ne", c("anywhere", R.NE, "图书馆学基础")),
    # -- dates (year numbers) --------------------------------------------------------------------
    ("date eq", c("date", R.EXACT, "2008")),
    ("date phrase", phrase("date", "1987")),
    ("date from c2015.", c("date", R.EXACT, "2015")),
    ("date from [1999?]", c("date", R.EXACT, "1999")),
    ("date lt", c("date", R.LT, "1990")),
    ("date le", c("date", R.LE, "1987")),
    ("date gt", c("date", R.GT, "2020")),
    ("date ge", c("date", R.GE, "2010")),
    ("date within", c("date", R.WITHIN, "1990", "2000")),
    ("date within one year", c("date", R.WITHIN, "2004", "2004")),
    ("date between two bounds", And(c("date", R.GE, "2016"), c("date", R.LE, "2019"))),
    ("date between exclusive bounds and a title", And(And(c("date", R.GT, "2015"), phrase("title", "county")),
                                                      c("date", R.LT, "2020"))),
    ("date within and a bound", And(c("date", R.WITHIN, "2000", "2030"), c("date", R.LT, "2012"))),
    ("date bounds that no one year meets", And(c("date", R.GE, "2024"), c("date", R.LE, "2011"))),
    ("date within under or", Or(And(c("date", R.GE, "2016"), c("date", R.LE, "2019")), c("date", R.EXACT, "1987"))),
    ("date ne", c("date", R.NE, "2008")),
    ("date any", c("date", R.ANY, "1998 2004")),
    ("date all", c("date", R.ALL, "1998 2004")),
    # -- keyword indexes -------------------------------------------------------------------------
    ("language eq", c("language", R.EXACT, "chi")),
    ("language folded", phrase("language", "ENG")),
    ("language ne", c("language", R.NE, "chi")),
    ("language any", c("language", R.ANY, "ger fre")),
    ("language all", c("language", R.ALL, "chi eng")),
    ("language masked", c("language", R.EXACT, "?e?")),
    ("language gt", c("language", R.GT, "eng")),
    ("language within", c("language", R.WITHIN, "f", "h")),
    ("language le", c("language", R.LE, "eng")),
    ("language masked both sides", c("language", R.EXACT, "*n*")),
    ("language masked left", c("language", R.EXACT, "*er")),
    ("isbn 13", c("isbn", R.EXACT, H01_ISBN)),
    ("isbn 10 finds 13", c("isbn", R.EXACT, isbn10_of(H01_ISBN))),
    ("isbn hyphenated", phrase("isbn", "978-7-04-023981-2")),
    ("isbn bad check digit", c("isbn", R.EXACT, "9787040239813")),
    ("isbn masked", c("isbn", R.EXACT, "978704*")),
    ("isbn masked left", c("isbn", R.EXACT, "*9812")),
    ("isbn masked both sides", c("isbn", R.EXACT, "*75013*")),
    ("isbn ne", c("isbn", R.NE, H01_ISBN)),
    ("isbn any", c("isbn", R.ANY, f"{H01_ISBN} 9781584560654")),
    ("issn", c("issn", R.EXACT, "00242519")),
    ("identifier isbn", c("identifier", R.EXACT, H01_ISBN)),
    ("identifier issn", c("identifier", R.EXACT, "0024-2519")),
    ("identifier control number", c("identifier", R.EXACT, "012345678")),
    ("control number", c("control_number", R.EXACT, "012345678")),
    ("id", c("id", R.EXACT, "h01")),
    ("id masked", c("id", R.EXACT, "h0*")),
    ("id lt", c("id", R.LT, "h")),
    ("classification", c("classification", R.EXACT, "G250")),
    ("classification folded", c("classification", R.EXACT, "g250")),
    ("classification masked", c("classification", R.EXACT, "G25*")),
    ("classification ge", c("classification", R.GE, "I")),
    ("classification within", c("classification", R.WITHIN, "G", "H")),
    ("classification le", c("classification", R.LE, "G250")),
    ("classification masked left", c("classification", R.EXACT, "*.5")),
    ("classification masked both sides", c("classification", R.EXACT, "*25*")),
    ("clc", c("clc", R.EXACT, "I247.5")),
    ("ddc", c("ddc", R.EXACT, "027.009")),
    ("lcc masked", c("lcc", R.EXACT, "Z72?")),
    ("class top", c("class_top", R.EXACT, "G")),
    ("material type", c("material_type", R.EXACT, "serial")),
    ("material type ne", c("material_type", R.NE, "book")),
    # -- item-level indexes outside an ItemMatch ---------------------------------------------------
    ("library", c("library", R.EXACT, "HUB")),
    ("library folded", phrase("library", "hub")),
    ("library ne: no item there", c("library", R.NE, "HUB")),
    ("library masked", c("library", R.EXACT, "BR*")),
    ("library any", c("library", R.ANY, "SP01 RR01")),
    ("library all: items in both", c("library", R.ALL, "HUB BR01")),
    ("library lt", c("library", R.LT, "BUS1")),
    ("tier", c("tier", R.EXACT, "branch")),
    ("tier mobile", c("tier", R.EXACT, "mobile")),
    ("availability", c("availability", R.EXACT, "available")),
    ("availability ne: none available", c("availability", R.NE, "available")),
    ("barcode", c("barcode", R.EXACT, "HUB0000001")),
    ("call number", c("call_number", R.EXACT, "G250/12")),
    ("call number masked", c("call_number", R.EXACT, "g25*")),
    ("location", c("location", R.EXACT, "少儿阅览室")),
    ("location gt", c("location", R.GT, "外")),
    ("library le", c("library", R.LE, "BR02")),
    ("library ge", c("library", R.GE, "RR01")),
    ("library within", c("library", R.WITHIN, "BR01", "BUS1")),
    ("call number le", c("call_number", R.LE, "C913.68/1")),
    ("call number within", c("call_number", R.WITHIN, "G250", "G259")),
    ("location ge", c("location", R.GE, "少")),
    ("call number masked both sides", c("call_number", R.EXACT, "*254*")),
    ("barcode masked left", c("barcode", R.EXACT, "*0000001")),
    # -- ItemMatch: the same item ------------------------------------------------------------------
    ("item library and available", ItemMatch(And(c("library", R.EXACT, "HUB"), c("availability", R.EXACT, "available")))),
    ("any item library and any item available",
     And(c("library", R.EXACT, "HUB"), c("availability", R.EXACT, "available"))),
    ("item branch on loan", ItemMatch(And(c("tier", R.EXACT, "branch"), c("availability", R.EXACT, "on_loan")))),
    ("item or", ItemMatch(Or(c("library", R.EXACT, "SP01"), c("availability", R.EXACT, "lost")))),
    ("item and not", ItemMatch(AndNot(c("library", R.EXACT, "HUB"), c("availability", R.EXACT, "available")))),
    ("item ne inside", ItemMatch(And(c("library", R.EXACT, "BR01"), c("availability", R.NE, "available")))),
    ("item ne alone inside", ItemMatch(c("availability", R.NE, "available"))),
    ("item any", ItemMatch(MatchAll())),
    ("no items", AndNot(MatchAll(), ItemMatch(MatchAll()))),
    ("item masked call number at hub", ItemMatch(And(c("library", R.EXACT, "HUB"), c("call_number", R.EXACT, "G*")))),
    ("item location and tier", ItemMatch(And(c("location", R.EXACT, "外文书库"), c("tier", R.EXACT, "hub")))),
    ("item nested itemmatch", ItemMatch(ItemMatch(c("tier", R.EXACT, "reading_room")))),
    ("item within and available", ItemMatch(And(c("library", R.WITHIN, "BR01", "BR02"), c("availability", R.EXACT, "available")))),
    ("item le and ge", ItemMatch(And(c("call_number", R.GE, "G"), c("call_number", R.LE, "G254.122/2")))),
    ("item ge not on loan", ItemMatch(AndNot(c("location", R.GE, "外"), c("availability", R.EXACT, "on_loan")))),
    # -- booleans ------------------------------------------------------------------------------------
    ("and", And(phrase("title", "图书馆"), c("date", R.GE, "2000"))),
    ("or", Or(phrase("title", "history"), phrase("creator", "王"))),
    ("and not", AndNot(phrase("title", "图书馆"), c("library", R.EXACT, "HUB"))),
    ("and not item match", AndNot(MatchAll(), ItemMatch(c("availability", R.EXACT, "available")))),
    ("nested", And(Or(c("language", R.EXACT, "eng"), c("language", R.EXACT, "ger")),
                   AndNot(c("date", R.LT, "2010"), c("material_type", R.EXACT, "serial")))),
    ("deep", Or(And(phrase("title", "的故事"), ItemMatch(And(c("tier", R.EXACT, "mobile"), c("availability", R.EXACT, "available")))),
                AndNot(c("class_top", R.EXACT, "G"), Or(c("date", R.GT, "2010"), c("date", R.NE, "2008"))))),
    ("and with empty side", And(phrase("title", "xylophone"), MatchAll())),
    ("or with ne", Or(c("language", R.NE, "chi"), phrase("title", "图书馆"))),
    ("match all", MatchAll()),
    ("and: item match with ne", And(ItemMatch(c("library", R.EXACT, "HUB")), c("language", R.NE, "chi"))),
    ("and: or with and-not of items", And(Or(phrase("title", "图书馆"), phrase("creator", "王")),
                                          AndNot(ItemMatch(c("tier", R.EXACT, "branch")), c("availability", R.EXACT, "lost")))),
    ("and: bare item ne and phrase", And(c("library", R.NE, "HUB"), phrase("title", "history"))),
    ("and: item or-and inside, date", And(ItemMatch(Or(c("library", R.EXACT, "BR01"),
                                                       And(c("tier", R.EXACT, "hub"), c("availability", R.NE, "available")))),
                                          c("date", R.GE, "2000"))),
    ("and: three parts, match all among them", And(And(MatchAll(), c("material_type", R.EXACT, "book")),
                                                   And(ItemMatch(MatchAll()), c("date", R.LT, "2000")))),
    ("any of 600 words", c("title", R.ANY, " ".join(f"nosuchword{n}" for n in range(600)) + " river")),
    ("right-deep or of 150", right_deep(Or, [phrase("title", f"nosuchword{n}") for n in range(150)] + [phrase("title", "river")])),
    # Chains as long as this are flattened for Elasticsearch (its nesting limit): same answers.
    ("left-deep or of 150 item clauses", left_deep(Or, [c("library", R.EXACT, f"NOLIB{n}") for n in range(149)]
                                                   + [c("library", R.EXACT, "BUS1")])),
    ("left-deep and of 150 dates", left_deep(And, [c("date", R.GE, str(1850 + n)) for n in range(150)])),
    ("right-deep and of 150 in one item", ItemMatch(right_deep(And, [c("library", R.NE, f"NOLIB{n}") for n in range(149)]
                                                               + [c("tier", R.EXACT, "mobile")]))),
    ("left-deep and-not chain of 150", left_deep(AndNot, [phrase("title", "图书馆")]
                                                 + [phrase("title", f"nosuchword{n}") for n in range(148)]
                                                 + [Or(c("language", R.EXACT, "eng"), c("date", R.LT, "2000"))])),
    ("left-deep and-not chain", AndNot(AndNot(AndNot(MatchAll(), c("language", R.EXACT, "chi")), c("date", R.LT, "1990")),
                                       c("material_type", R.EXACT, "book"))),
    ("item ne on empty call numbers", ItemMatch(c("call_number", R.NE, "G250/12"))),
    ("item ne location outside", c("location", R.NE, "少儿阅览室")),
]


SORTS: list[tuple[str, SearchRequest]] = [
    ("title asc", SearchRequest(MatchAll(), sort=(SortKey("title"),), limit=ALL)),
    ("title desc", SearchRequest(MatchAll(), sort=(SortKey("title", ascending=False),), limit=ALL)),
    ("date asc missing last", SearchRequest(MatchAll(), sort=(SortKey("date"),), limit=ALL)),
    ("date desc missing first", SearchRequest(MatchAll(), sort=(SortKey("date", False, True),), limit=ALL)),
    ("date asc missing first", SearchRequest(MatchAll(), sort=(SortKey("date", True, True),), limit=ALL)),
    ("creator then date desc", SearchRequest(MatchAll(), sort=(SortKey("creator"), SortKey("date", False)), limit=ALL)),
    ("publisher, filtered", SearchRequest(phrase("title", "图书馆"), sort=(SortKey("publisher"),), limit=ALL)),
    ("classification desc", SearchRequest(c("date", R.GE, "2000"), sort=(SortKey("classification", False),), limit=ALL)),
    ("page of sorted", SearchRequest(MatchAll(), sort=(SortKey("date"), SortKey("title")), offset=17, limit=9)),
    ("page past the end", SearchRequest(MatchAll(), sort=(SortKey("title"),), offset=5000, limit=10)),
    ("item scope sorted", SearchRequest(MatchAll(), sort=(SortKey("title"),), limit=ALL,
                                        item_scope=c("library", R.EXACT, "BR01"))),
    ("item scope and query", SearchRequest(phrase("title", "图书馆"), sort=(SortKey("date", False),), limit=ALL,
                                           item_scope=And(c("tier", R.EXACT, "branch"), c("availability", R.EXACT, "available")))),
]

ALL_FACETS = tuple(FacetRequest(d.name, limit=100) for d in TABLE if d.facet)
FACETS: list[tuple[str, SearchRequest]] = [
    ("every facet, all records", SearchRequest(MatchAll(), facets=ALL_FACETS, limit=0)),
    ("every facet by value", SearchRequest(MatchAll(), facets=tuple(replace(f, order="value") for f in ALL_FACETS), limit=0)),
    ("facets of a query", SearchRequest(phrase("title", "图书馆"), facets=ALL_FACETS, limit=5)),
    ("top 3 years", SearchRequest(c("language", R.EXACT, "chi"), facets=(FacetRequest("date", limit=3),), limit=0)),
    ("library facet of an item query", SearchRequest(c("availability", R.EXACT, "lost"), facets=(FacetRequest("library"),))),
    ("facets in an item scope", SearchRequest(MatchAll(), facets=ALL_FACETS, item_scope=c("library", R.EXACT, "BUS1"))),
    ("facets of no hits", SearchRequest(phrase("title", "xylophone"), facets=ALL_FACETS)),
]

SCANS: list[tuple[str, ScanRequest]] = [
    ("title from h", ScanRequest("title", "h", count=10)),
    ("title position 3", ScanRequest("title", "history", count=8, position=3)),
    ("title from cjk", ScanRequest("title", "图", count=6, position=2)),
    ("title past the end", ScanRequest("title", "\U0010ffff", count=5, position=4)),
    ("title from the start", ScanRequest("title", "", count=5, position=3)),
    ("title from the empty key", ScanRequest("title", "...", count=3, position=1)),
    ("title start term folded", ScanRequest("title", "THE", count=4)),
    ("creator", ScanRequest("creator", "m", count=12, position=6)),
    ("subject", ScanRequest("subject", "图书馆", count=5)),
    ("publisher restricted", ScanRequest("publisher", "", count=20, query=c("language", R.EXACT, "chi"))),
    ("language", ScanRequest("language", "a", count=10)),
    ("isbn from an ISBN-10", ScanRequest("isbn", isbn10_of(H01_ISBN), count=3, position=2)),
    ("classification", ScanRequest("classification", "G25", count=5, position=2)),
    ("library (item level)", ScanRequest("library", "", count=10)),
    ("library in a query", ScanRequest("library", "BR", count=10, position=2, query=phrase("title", "图书馆"))),
    ("call number", ScanRequest("call_number", "I", count=7, position=3)),
    ("call number in an item scope", ScanRequest("call_number", "G", count=5, query=ItemMatch(c("tier", R.EXACT, "hub")))),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["embedded", "elasticsearch"])
async def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    if request.param == "embedded":
        embedded = EmbeddedStore(tmp_path_factory.mktemp("conformance"), TABLE)
        await embedded.open()
        try:
            result = await embedded.upsert(RECORDS)
            assert result.failed == [] and result.succeeded == len(RECORDS)
            yield embedded
        finally:
            await embedded.close()
        return
    async with es_store(TABLE) as elastic:
        result = await elastic.upsert(RECORDS)
        assert result.failed == [] and result.succeeded == len(RECORDS)
        await elastic.refresh()
        yield elastic


def test_enough_cases() -> None:
    assert len(QUERIES) + len(SORTS) + len(FACETS) + len(SCANS) >= 150


def test_corpus_exercises_the_queries() -> None:
    """Most cases must hit something and miss something, or they prove little."""
    totals = [len(REFERENCE.matches(query)) for _, query in QUERIES]
    assert sum(1 for t in totals if 0 < t < len(RECORDS)) >= 0.85 * len(QUERIES)


@module_loop
@pytest.mark.parametrize("name, query", QUERIES, ids=[name for name, _ in QUERIES])
async def test_query(store: Store, name: str, query: Query) -> None:
    expected = REFERENCE.matches(query)
    result = await store.search(SearchRequest(query, limit=ALL))
    assert result.total == len(expected)
    assert sorted(result.ids) == sorted(expected)
    assert result.next_cursor is None


@module_loop
@pytest.mark.parametrize("name, request_", SORTS, ids=[name for name, _ in SORTS])
async def test_sorted_page(store: Store, name: str, request_: SearchRequest) -> None:
    total, page, _ = REFERENCE.search(request_)
    result = await store.search(request_)
    assert result.total == total
    assert result.ids == page


@module_loop
@pytest.mark.parametrize("name, request_", FACETS, ids=[name for name, _ in FACETS])
async def test_facets(store: Store, name: str, request_: SearchRequest) -> None:
    total, _, facets = REFERENCE.search(request_)
    result = await store.search(request_)
    assert result.total == total
    assert result.facets == facets


@module_loop
@pytest.mark.parametrize("name, request_", SCANS, ids=[name for name, _ in SCANS])
async def test_scan(store: Store, name: str, request_: ScanRequest) -> None:
    expected = REFERENCE.scan(request_)
    assert await store.scan(request_) == expected


@module_loop
@pytest.mark.parametrize(
    "sort", [(), (SortKey("date", False), SortKey("title")), (SortKey("creator", True, True),)], ids=["relevance", "date-title", "creator"]
)
async def test_cursor_walk(store: Store, sort: tuple[SortKey, ...]) -> None:
    query = Or(c("language", R.EXACT, "chi"), c("date", R.LT, "1990"))
    expected = REFERENCE.matches(query)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        result = await store.search(SearchRequest(query, sort=sort, limit=37, after=cursor))
        assert result.total == len(expected)
        seen += result.ids
        pages += 1
        cursor = result.next_cursor
        if cursor is None:
            break
    assert pages == -(-len(expected) // 37)
    assert len(seen) == len(set(seen)) and set(seen) == expected
    if sort:
        assert seen == REFERENCE.ordered(expected, sort)


@module_loop
async def test_offset_pages_tile_the_result(store: Store) -> None:
    query = c("tier", R.EXACT, "branch")
    whole = await store.search(SearchRequest(query, limit=ALL))
    pages = []
    for offset in range(0, whole.total, 25):
        pages += (await store.search(SearchRequest(query, offset=offset, limit=25))).ids
    assert pages == whole.ids and set(pages) == REFERENCE.matches(query)


@module_loop
async def test_fetch_and_lookups(store: Store) -> None:
    some = [RECORDS[0], RECORDS[7], RECORDS[-1]]
    fetched = await store.get([some[0].id, "absent", some[1].id, some[2].id])
    assert fetched[1] is None
    assert [r.to_dict() for r in fetched if r] == [r.to_dict() for r in some]
    first = RECORDS[0]
    assert await store.find_by_match_keys(first.match_keys + ["isbn:0000000000000"]) == {k: [first.id] for k in first.match_keys}
    contribution = first.contributions[0]
    assert await store.find_by_contribution(contribution.library, [contribution.source_id, "nope"]) == {
        contribution.source_id: first.id
    }
    expected_ids = sorted(r.id for r in RECORDS if any(c.library == "SP01" for c in r.contributions))
    assert sorted(await store.ids_of_library("SP01")) == expected_ids
    barcodes = [item.barcode for item in first.items]
    assert await store.find_by_barcode(barcodes + ["NOPE"]) == {b: first.id for b in barcodes}


@module_loop
async def test_stats(store: Store) -> None:
    stats = await store.stats()
    assert stats.records == len(RECORDS)
    assert stats.items == sum(len(r.items) for r in RECORDS)
    for attribute, counted in (("library", stats.by_library), ("tier", stats.by_tier)):
        expected: dict[str, dict[str, int]] = {}
        for record in RECORDS:
            for value in {getattr(item, attribute) for item in record.items}:
                expected.setdefault(value, {"records": 0, "items": 0})["records"] += 1
            for item in record.items:
                expected[getattr(item, attribute)]["items"] += 1
        assert counted == expected
    assert "" in stats.by_tier  # an item of a library the network does not know


BAD_REQUESTS = [
    ("unknown index", SearchRequest(phrase("nosuchindex", "x"))),
    ("record index inside ItemMatch", SearchRequest(ItemMatch(phrase("title", "x")))),
    ("number term not a number", SearchRequest(c("date", R.EXACT, "nineteen"))),
    ("within without high", SearchRequest(c("date", R.WITHIN, "1990"))),
    ("sort on a non-sortable index", SearchRequest(MatchAll(), sort=(SortKey("subject"),))),
    ("sort on an item index", SearchRequest(MatchAll(), sort=(SortKey("library"),))),
    ("facet on a non-facet index", SearchRequest(MatchAll(), facets=(FacetRequest("title"),))),
    ("cursor of another sort", SearchRequest(MatchAll(), sort=(SortKey("title"),), after="bm90LWEtY3Vyc29y")),
    ("number beyond 64 bits", SearchRequest(c("date", R.GT, "99999999999999999999999"))),
]


@module_loop
@pytest.mark.parametrize("name, request_", BAD_REQUESTS, ids=[name for name, _ in BAD_REQUESTS])
async def test_bad_request_is_query_not_supported(store: Store, name: str, request_: SearchRequest) -> None:
    with pytest.raises(QueryNotSupported):
        await store.search(request_)


@module_loop
async def test_scan_of_a_numeric_index_is_refused(store: Store) -> None:
    with pytest.raises(QueryNotSupported):
        await store.scan(ScanRequest("date", "2000"))


@module_loop
async def test_item_status_update_is_visible_to_the_next_search(store: Store) -> None:
    """Runs last on the shared corpus: it changes one item (and puts it back)."""
    record = next(r for r in RECORDS if r.id == "h01")
    item = next(i for i in record.items if i.library == "BR01")
    available_at_branch = ItemMatch(And(c("barcode", R.EXACT, item.barcode), c("availability", R.EXACT, "available")))
    assert (await store.search(SearchRequest(available_at_branch))).ids == []
    outcomes = await store.update_items([
        ItemStatusUpdate(item.barcode, Availability.AVAILABLE, status="returned", location="成人借阅室"),
        ItemStatusUpdate("NO-SUCH-BARCODE", Availability.AVAILABLE),
    ])
    assert [(o.barcode, o.applied, o.record_id) for o in outcomes] == [
        (item.barcode, True, "h01"), ("NO-SUCH-BARCODE", False, None)
    ]
    assert (await store.search(SearchRequest(available_at_branch))).ids == ["h01"]
    stored = (await store.get(["h01"]))[0]
    assert stored is not None
    updated = next(i for i in stored.items if i.barcode == item.barcode)
    assert (updated.availability, updated.status) == (Availability.AVAILABLE, "returned")
    # The bibliographic part is untouched and still found.
    assert "h01" in (await store.search(SearchRequest(phrase("title", "图书馆学基础")))).ids
    await store.update_items([ItemStatusUpdate(item.barcode, item.availability, status=item.status)])
    assert (await store.search(SearchRequest(available_at_branch))).ids == []


@module_loop
async def test_a_tampered_cursor_is_query_not_supported(store: Store) -> None:
    request = SearchRequest(MatchAll(), sort=(SortKey("title"),), limit=3)
    cursor = (await store.search(request)).next_cursor
    assert cursor is not None
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data["v"] = [{"x": 1} for _ in data["v"]]
    tampered = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    with pytest.raises(QueryNotSupported):
        await store.search(replace(request, after=tampered))
