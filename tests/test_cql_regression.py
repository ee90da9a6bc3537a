"""The cql-java regression suite (tests/data/cql-java-regression/NN/MM.{cql,xcql}).

A case whose .xcql is XML must parse to that XCQL (compared as element trees, whitespace-insensitive);
a case whose .xcql holds cql-java's error message must be rejected with that message. Files cql-java
itself has disabled (``*.cql.disabled``) are not part of its suite and are not collected.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from protocols.cql import XCQL_NS, CQLSyntaxError, parse, to_xcql, xcql_element

SUITE = Path(__file__).parent / "data" / "cql-java-regression"
CASES = sorted(SUITE.glob("*/*.cql"))


def canonical(element: etree._Element) -> tuple:
    """An element tree as nested tuples: tag, stripped text, children (whitespace-only text ignored)."""
    return (
        etree.QName(element).localname,
        (element.text or "").strip() if len(element) == 0 else "",
        tuple(canonical(child) for child in element),
    )


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_suite_is_complete() -> None:
    # 12 groups; the count guards against the data directory being emptied or moved.
    assert len({path.parent for path in CASES}) == 12
    assert len(CASES) == 92
    assert all(path.with_suffix(".xcql").is_file() for path in CASES)


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_cql_java_case(path: Path) -> None:
    query_text = path.read_text(encoding="utf-8").rstrip("\n")
    expected = path.with_suffix(".xcql").read_text(encoding="utf-8").strip()
    if expected.startswith("<"):
        query = parse(query_text)
        produced = etree.fromstring(to_xcql(query))
        assert canonical(produced) == canonical(etree.fromstring(expected))
        # The namespaced form SRU embeds has the same shape.
        namespaced = xcql_element(query, namespace=XCQL_NS)
        assert etree.QName(namespaced).namespace == XCQL_NS
        assert canonical(namespaced) == canonical(produced)
    else:
        with pytest.raises(CQLSyntaxError) as caught:
            parse(query_text)
        assert caught.value.message == expected
        assert 0 <= caught.value.position <= len(query_text)
