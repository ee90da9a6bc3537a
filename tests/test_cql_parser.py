"""Unit cases for each CQL feature, error messages with positions, and a fuzz of random and mutated queries."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from protocols.cql import (
    DEFAULT_MAX_DEPTH,
    SERVER_CHOICE,
    XCQL_NS,
    Boolean,
    CQLSyntaxError,
    Modifier,
    PrefixAssignment,
    QualifiedIndex,
    Query,
    Relation,
    SearchClause,
    SortKey,
    SyntaxProblem,
    clauses_in_scope,
    map_clauses,
    parse,
    qualify,
    quote,
    sort_keys_in_scope,
    to_cql,
    to_xcql,
    xcql_element,
)

REGRESSION_QUERIES = sorted(
    path.read_text(encoding="utf-8").rstrip("\n")
    for path in (Path(__file__).parent / "data" / "cql-java-regression").glob("*/*.cql")
)


def clause(query: Query) -> SearchClause:
    assert isinstance(query.root, SearchClause)
    return query.root


# --- search clauses ---------------------------------------------------------------------------------


def test_bare_term_gets_server_choice_and_equals_marked_implicit() -> None:
    root = clause(parse("图书馆"))
    assert (root.index, root.relation, root.term, root.implicit) == (SERVER_CHOICE, Relation("="), "图书馆", True)


def test_explicit_index_and_relation_are_not_implicit() -> None:
    root = clause(parse("dc.title = 图书馆"))
    assert (root.index, root.relation.name, root.term, root.implicit) == ("dc.title", "=", "图书馆", False)
    # Written out in full, the default is still explicit.
    assert clause(parse("cql.serverChoice = x")).implicit is False


@pytest.mark.parametrize("relation", ["=", "==", "<>", "<", ">", "<=", ">=", "any", "all", "adj", "within", "encloses"])
def test_every_cql_1_2_relation(relation: str) -> None:
    root = clause(parse(f"dc.date {relation} 2001"))
    assert (root.index, root.relation.name, root.term) == ("dc.date", relation, "2001")


def test_relation_names_keep_their_case_and_compare_case_insensitively() -> None:
    relation = clause(parse("title ANY fish")).relation
    assert relation.name == "ANY"
    assert relation.base == "any"


def test_dotted_word_after_index_is_a_relation() -> None:
    root = clause(parse("title cql.string fish"))
    assert (root.index, root.relation.name, root.term) == ("title", "cql.string", "fish")


def test_exact_is_not_a_cql_1_2_relation() -> None:
    # cql-java (and CQL 1.2) dropped `exact`: the words become one server-choice term.
    root = clause(parse("title exact fish"))
    assert (root.index, root.term, root.implicit) == (SERVER_CHOICE, "title exact fish", True)


def test_relation_modifiers_with_and_without_values() -> None:
    relation = clause(parse("dc.title any/stem/locale=zh_CN/Rel.Algorithm=CORI 图书馆")).relation
    assert relation.modifiers == (
        Modifier("stem"),
        Modifier("locale", "=", "zh_CN"),
        Modifier("rel.algorithm", "=", "CORI"),
    )
    assert relation.modifier("LOCALE") == Modifier("locale", "=", "zh_CN")
    assert relation.modifier("fuzzy") is None


def test_modifier_value_may_be_quoted_and_use_any_comparison() -> None:
    relation = clause(parse('title =/x.y<>"a b" c')).relation
    assert relation.modifiers == (Modifier("x.y", "<>", "a b"),)


def test_unquoted_words_run_together_into_one_term() -> None:
    assert clause(parse("title = fish  chips")).term == "fish chips"
    assert clause(parse('title = fish "and" chips')).term == "fish and chips"


def test_keywords_are_symbols_where_a_symbol_is_expected() -> None:
    root = clause(parse("prox = and"))
    assert (root.index, root.term) == ("prox", "and")
    query = parse("sortby sortby sortby")
    assert clause(query).term == "sortby"
    assert query.sort_keys == (SortKey("sortby"),)


# --- terms ------------------------------------------------------------------------------------------


def test_quoted_term_keeps_backslash_escapes_verbatim() -> None:
    assert clause(parse(r'"say \"hi\" \\ now"')).term == r"say \"hi\" \\ now"


def test_masking_characters_are_left_for_the_consumer() -> None:
    assert clause(parse("title=^图书*馆?^")).term == "^图书*馆?^"
    assert clause(parse(r'title="a\*b\?"')).term == r"a\*b\?"


def test_quoted_term_may_hold_operators_and_be_empty() -> None:
    assert clause(parse('"a and (b) / c=d"')).term == "a and (b) / c=d"
    assert clause(parse('title = ""')).term == ""


def test_terms_record_their_position() -> None:
    query = parse('dc.title = "x"  and  author=y')
    assert isinstance(query.root, Boolean)
    assert query.root.position == 16
    assert query.root.left.position == 11  # type: ignore[union-attr]
    assert query.root.right.position == 28  # type: ignore[union-attr]
    assert parse("a and b") == parse("a   and  b")  # positions take no part in equality


# --- booleans ---------------------------------------------------------------------------------------


def test_booleans_are_case_insensitive_and_left_associative() -> None:
    query = parse("a OR b And c nOt d")
    root = query.root
    assert isinstance(root, Boolean) and root.op == "not"
    assert isinstance(root.left, Boolean) and root.left.op == "and"
    assert isinstance(root.left.left, Boolean) and root.left.left.op == "or"
    assert clause(Query(root.right)).term == "d"


def test_parentheses_group() -> None:
    root = parse("a or (b and c)").root
    assert isinstance(root, Boolean) and root.op == "or"
    assert isinstance(root.right, Boolean) and root.right.op == "and"


def test_prox_and_boolean_modifiers() -> None:
    root = parse("cat PROX/Unit=Word/distance<=3/ordered hat").root
    assert isinstance(root, Boolean) and root.op == "prox"
    assert root.modifiers == (Modifier("unit", "=", "Word"), Modifier("distance", "<=", "3"), Modifier("ordered"))
    root = parse("a and/rel.combine=sum b").root
    assert isinstance(root, Boolean) and root.modifiers == (Modifier("rel.combine", "=", "sum"),)


def test_parenthesised_terms_inherit_index_and_relation() -> None:
    root = parse("title any/stem (fish or 图书馆)").root
    assert isinstance(root, Boolean)
    for side, term in ((root.left, "fish"), (root.right, "图书馆")):
        assert side == SearchClause("title", Relation("any", (Modifier("stem"),)), term)
    bare = parse("(a or b)").root
    assert isinstance(bare, Boolean) and bare.left.implicit and bare.right.implicit  # type: ignore[union-attr]


# --- prefix assignments -----------------------------------------------------------------------------


def test_top_level_prefixes_belong_to_the_query() -> None:
    query = parse('>dc="info:srw/cql-context-set/1/dc-v1.1" >"urn:default" dc.title=x')
    assert query.prefixes == (
        PrefixAssignment("dc", "info:srw/cql-context-set/1/dc-v1.1"),
        PrefixAssignment(None, "urn:default"),
    )
    assert clause(query).prefixes == ()


def test_nested_prefixes_belong_to_the_node_they_scope() -> None:
    query = parse('a and (>p="urn:p" b or c)')
    root = query.root
    assert isinstance(root, Boolean)
    assert root.right.prefixes == (PrefixAssignment("p", "urn:p"),)
    assert root.left.prefixes == ()


def test_clauses_are_qualified_through_the_assignments_in_scope() -> None:
    query = parse('>dc="urn:outer" dc.title=a and (>DC="urn:inner" dc.title=b) and title=c and bath.author=d')
    qualified = [(c.term, q) for c, q in clauses_in_scope(query)]
    assert qualified == [
        ("a", QualifiedIndex("dc", "title", "urn:outer")),
        ("b", QualifiedIndex("dc", "title", "urn:inner")),
        ("c", QualifiedIndex(None, "title", None)),
        ("d", QualifiedIndex("bath", "author", None)),
    ]
    assert qualified[1][1].key == ("urn:inner", "title")
    assert qualified[3][1].key == ("bath", "author")


def test_unnamed_assignment_sets_the_context_set_of_unprefixed_indexes() -> None:
    query = parse('>"urn:net" title=a and dc.title=b and c')
    keys = [q.key for _, q in clauses_in_scope(query)]
    assert keys == [("urn:net", "title"), ("dc", "title"), ("cql", "serverChoice")]


def test_qualify_splits_at_the_first_dot_only() -> None:
    assert qualify("net.holdings.library", ()) == QualifiedIndex("net", "holdings.library", None)
    assert qualify(".odd", ()) == QualifiedIndex(None, ".odd", None)


def test_sort_keys_see_only_top_level_assignments() -> None:
    query = parse('>dc="urn:a" (>dc="urn:b" dc.title=x) sortby dc.date/sort.descending title')
    keys = list(sort_keys_in_scope(query))
    assert [key for key, _ in keys] == [
        SortKey("dc.date", (Modifier("sort.descending"),)),
        SortKey("title"),
    ]
    assert [q.key for _, q in keys] == [("urn:a", "date"), (None, "title")]


# --- sortBy -----------------------------------------------------------------------------------------


def test_sortby_keys_and_modifiers() -> None:
    text = "a and b SORTBY dc.date/sort.descending/sort.missingValue=1970 dc.title/sort.respectCase"
    query = parse(text)
    assert isinstance(query.root, Boolean)
    assert query.sort_keys == (
        SortKey("dc.date", (Modifier("sort.descending"), Modifier("sort.missingvalue", "=", "1970"))),
        SortKey("dc.title", (Modifier("sort.respectcase"),)),
    )
    assert [key.position for key in query.sort_keys] == [text.index("dc.date"), text.index("dc.title")]


# --- XCQL -------------------------------------------------------------------------------------------


def test_xcql_text_and_namespaced_element() -> None:
    query = parse('>dc="urn:x" dc.title any/stem "a<b" and 图书馆 sortby dc.date/sort.descending')
    text = to_xcql(query)
    root = etree.fromstring(text)
    assert root.tag == "triple"
    assert root.findtext("prefixes/prefix/identifier") == "urn:x"
    assert root.findtext("leftOperand/searchClause/term") == "a<b"
    assert root.findtext("leftOperand/searchClause/relation/modifiers/modifier/type") == "stem"
    assert root.findtext("rightOperand/searchClause/index") == SERVER_CHOICE
    assert root.findtext("rightOperand/searchClause/term") == "图书馆"
    assert root.findtext("sortKeys/key/modifiers/modifier/type") == "sort.descending"
    element = xcql_element(query, namespace=XCQL_NS)
    assert element.findtext(f"{{{XCQL_NS}}}rightOperand/{{{XCQL_NS}}}searchClause/{{{XCQL_NS}}}term") == "图书馆"


# --- CQL text and rewriting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ('title = "fish"', "title = fish"),
        ("(((a or b) or c) and d)", "a or b or c and d"),
        ("a or (b and c)", "a or (b and c)"),
        ("title any/stem (fish or 图书馆)", "title any/stem fish or title any/stem 图书馆"),
        ('all contains any', '"all contains any"'),
        ('>dc="urn:x" (>dc="urn:y" dc.title=a) SORTBY dc.date/Sort.Descending', '>dc=urn:x (>dc=urn:y dc.title = a) sortby dc.date/sort.descending'),
        ("a and >p=u b", "a and (>p=u b)"),
        ('x =/distance<"a b" ""', 'x =/distance<"a b" ""'),
        ('ab"c', 'ab"c'),
    ],
)
def test_to_cql_is_canonical_and_parses_back_to_the_same_tree(text: str, canonical: str) -> None:
    query = parse(text)
    assert to_cql(query) == canonical
    assert parse(canonical) == query


def test_quote_escapes_only_what_it_must() -> None:
    backslash = "\\"
    assert quote("图书馆") == "图书馆"
    assert quote('ab"c') == 'ab"c'
    assert quote("") == '""'
    assert quote("a b" + backslash + "*") == '"a b' + backslash + '*"'
    assert quote('a "b"') == '"a ' + backslash + '"b' + backslash + '""'
    assert quote('"a') == '"' + backslash + '"a"'
    assert quote("a b" + backslash) == '"a b' + backslash * 2 + '"'


def test_map_clauses_renames_indexes_for_a_remote_target() -> None:
    query = parse('>dc="info:srw/cql-context-set/1/dc-v1.1" dc.title=图书馆 and (bath.author=鲁迅 or 书) sortby dc.date')
    local_to_remote = {"title": "bib.title", "author": "bib.name"}

    def rewrite(found: SearchClause, qualified: QualifiedIndex) -> SearchClause:
        if found.implicit:
            return found
        return SearchClause(local_to_remote[qualified.name], found.relation, found.term)

    remote = map_clauses(query, rewrite)
    assert to_cql(remote) == (
        '>dc="info:srw/cql-context-set/1/dc-v1.1" bib.title = 图书馆 and (bib.name = 鲁迅 or 书) sortby dc.date'
    )


# --- errors -----------------------------------------------------------------------------------------


SYNTAX, PARENTHESES, QUOTES, CHARACTER = (
    SyntaxProblem.SYNTAX,
    SyntaxProblem.PARENTHESES,
    SyntaxProblem.QUOTES,
    SyntaxProblem.CHARACTER,
)


@pytest.mark.parametrize(
    ("text", "message", "position", "problem"),
    [
        ("", "expected index or term, got EOF", 0, SYNTAX),
        ("cat or", "expected index or term, got EOF", 6, SYNTAX),
        ("(a", "expected ')', got EOF", 2, PARENTHESES),
        ("a)", "junk after end: ')'", 1, PARENTHESES),
        ("a / b", "expected boolean, got '/'", 2, SYNTAX),
        ("title = ", "expected index or term, got EOF", 8, SYNTAX),
        ("title = (", "expected index or term, got EOF", 9, PARENTHESES),
        ("(a or", "expected index or term, got EOF", 5, PARENTHESES),
        ('title = "abc', "unterminated string", 8, QUOTES),
        ('"abc\\', "unterminated string", 0, QUOTES),
        ("a b = c", "unexpected relation '='", 4, SYNTAX),
        ('a and/"x" b', 'expected modifier, got string: "x"', 6, QUOTES),
        ("a and/ = b", "expected modifier, got '='", 7, SYNTAX),
        ("title =/stem= ) x", "expected modifier value, got ')'", 14, PARENTHESES),
        ("x sortby", "no sort keys", 8, SYNTAX),
        ("x sortby (", "expected sort index, got '('", 9, PARENTHESES),
        ("x sortby a/", "expected modifier, got EOF", 11, SYNTAX),
        ("> = x", "expected prefix-name, got '='", 2, SYNTAX),
        (">dc= x", "expected index or term, got EOF", 6, SYNTAX),
        (">dc=(x) y", "expected prefix-identifier, got '('", 4, PARENTHESES),
        ("a\x00b", "character U+0000 is not allowed in a query", 1, CHARACTER),
        ("a <> <> b", "expected index or term, got <>", 5, SYNTAX),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str, position: int, problem: SyntaxProblem) -> None:
    with pytest.raises(CQLSyntaxError) as caught:
        parse(text)
    assert (caught.value.message, caught.value.position, caught.value.problem) == (message, position, problem)
    assert str(caught.value) == f"{message} (at character {position})"


def test_nesting_is_capped_with_a_syntax_error() -> None:
    deepest = DEFAULT_MAX_DEPTH - 1
    assert clause(parse("(" * deepest + "a" + ")" * deepest)).term == "a"
    with pytest.raises(CQLSyntaxError, match="nested more than"):
        parse("(" * 100_000 + "a" + ")" * 100_000)
    with pytest.raises(CQLSyntaxError, match="nested more than"):
        parse('a and >p="u" ' * 10_000 + "b")
    with pytest.raises(CQLSyntaxError, match="nested more than 10 levels") as caught:
        parse("(" * 11 + "a" + ")" * 11, max_depth=10)
    assert caught.value.problem is SyntaxProblem.TOO_DEEP


def test_long_boolean_chains_are_capped_but_a_long_or_list_parses() -> None:
    chain = " or ".join(f"isbn{i}" for i in range(DEFAULT_MAX_DEPTH))
    query = parse(chain)
    assert len(list(clauses_in_scope(query))) == DEFAULT_MAX_DEPTH
    # Even inside an SRU envelope, the deepest XCQL stays within libxml2's default nesting limit.
    envelope = ["searchRetrieveResponse", "echoedSearchRetrieveRequest", "xQuery"]
    wrapped = "".join(f"<{tag}>" for tag in envelope) + to_xcql(query) + "".join(f"</{t}>" for t in reversed(envelope))
    assert etree.fromstring(wrapped).find("echoedSearchRetrieveRequest/xQuery/triple") is not None
    with pytest.raises(CQLSyntaxError, match="nested more than") as caught:
        parse(chain + " or one_more or two_more")
    assert caught.value.position > len(chain)


# --- fuzz -------------------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=300,
    deadline=timedelta(milliseconds=400),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)

CQL_PIECES = st.sampled_from(
    [
        "(", ")", "/", "<", ">", "=", "==", "<>", "<=", ">=", '"', "\\", " ", "  ", "\t", ".", "*", "?", "^",
        "and", "or", "not", "prox", "sortby", "any", "all", "adj", "within", "exact", "dc.title", "title",
        "cql.serverChoice", "图书馆", "a", "b", "1", ">dc=", '"urn:x"', "/stem", "/distance<3", "\u3000", "\x00",
    ]
)


def check_parse_is_total(text: str) -> None:
    """Either a query whose XCQL and scope walk work, or a CQLSyntaxError with a sensible position."""
    try:
        query = parse(text)
    except CQLSyntaxError as error:
        assert 0 <= error.position <= len(text)
        assert error.message
        return
    assert etree.fromstring(to_xcql(query)).tag in ("searchClause", "triple")
    for found, qualified in clauses_in_scope(query):
        assert 0 <= found.position <= len(text)
        assert qualified.name
    assert parse(text) == query
    canonical = to_cql(query)
    again = parse(canonical, max_depth=10 * DEFAULT_MAX_DEPTH)
    assert to_cql(again) == canonical
    if '"' not in text and "\\" not in text:
        assert again == query


@FUZZ
@given(st.text(max_size=80))
def test_fuzz_random_text(text: str) -> None:
    check_parse_is_total(text)


@FUZZ
@given(st.lists(CQL_PIECES, max_size=30).map("".join))
def test_fuzz_cql_shaped_text(text: str) -> None:
    check_parse_is_total(text)


@st.composite
def mutated_regression_query(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(REGRESSION_QUERIES))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(CQL_PIECES)
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + 1 :]
        elif action == "replace":
            text = text[:at] + piece + text[at + 1 :]
        else:
            text = text[:at] + text[at:] + text[at:]
    return text


@FUZZ
@given(mutated_regression_query())
def test_fuzz_mutated_regression_queries(text: str) -> None:
    check_parse_is_total(text)


@settings(max_examples=50, deadline=timedelta(milliseconds=400), derandomize=True)
@given(st.integers(0, 3000), st.sampled_from(["(", ">p=u (", "a or (", ">x "]))
def test_fuzz_deep_nesting_never_overflows(depth: int, opener: str) -> None:
    check_parse_is_total(opener * depth + "z" + ")" * depth)
