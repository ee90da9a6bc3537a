"""config/indexes.yaml, the one table of search indexes (issue 2): it has every index the issue
names, with its CQL names, Bib-1 use attributes, MARC21 and UNIMARC/CNMARC sources, type and
sort / scan / facet flags; and a broken table is refused with the key path of the mistake."""
from __future__ import annotations

import copy

import pytest
import yaml

from indexer.indexes import DEFAULT_INDEX_TABLE, IndexLevel, IndexTable, IndexTableError, IndexType, load_index_table

TABLE = load_index_table()
RAW = yaml.safe_load(DEFAULT_INDEX_TABLE.read_text(encoding="utf-8"))

# (CQL name, Bib-1 use or None, canonical index, type) the issue requires at least.
REQUIRED = [
    ("cql.serverChoice", 1016, "anywhere", IndexType.TEXT),
    ("cql.anywhere", 1016, "anywhere", IndexType.TEXT),
    ("dc.title", 4, "title", IndexType.TEXT),
    ("dc.creator", 1003, "creator", IndexType.TEXT),
    ("dc.subject", 21, "subject", IndexType.TEXT),
    ("dc.publisher", 1018, "publisher", IndexType.TEXT),
    ("dc.date", 31, "date", IndexType.DATE),
    ("dc.language", 54, "language", IndexType.KEYWORD),
    ("dc.identifier", None, "identifier", IndexType.KEYWORD),
    ("bath.isbn", 7, "isbn", IndexType.KEYWORD),
    ("bath.issn", 8, "issn", IndexType.KEYWORD),
    ("bath.possessingInstitution", 1044, "library", IndexType.KEYWORD),
    ("rec.id", 12, "id", IndexType.KEYWORD),
    ("net.classification", 20, "classification", IndexType.KEYWORD),
    ("net.library", 1044, "library", IndexType.KEYWORD),
    ("net.tier", None, "tier", IndexType.KEYWORD),
    ("net.availability", None, "availability", IndexType.KEYWORD),
    ("net.barcode", None, "barcode", IndexType.KEYWORD),
    ("net.callNumber", None, "call_number", IndexType.KEYWORD),
]


@pytest.mark.parametrize(("cql", "use", "name", "kind"), REQUIRED, ids=[r[0] for r in REQUIRED])
def test_the_issues_indexes_are_in_the_table(cql: str, use: int | None, name: str, kind: IndexType) -> None:
    definition = TABLE.by_cql(cql)
    assert definition is not None and definition.name == name
    assert definition.type is kind
    if use is not None:
        assert TABLE.by_bib1(use) is definition


def test_context_sets_and_the_default_index() -> None:
    assert set(TABLE.context_sets) == {"cql", "dc", "bath", "rec", "net"}
    assert TABLE.context_sets["dc"] == "info:srw/cql-context-set/1/dc-v1.1"
    assert TABLE.default_index == "anywhere"
    assert TABLE.by_cql("title") is TABLE["title"]  # unprefixed: dc first


def test_bibliographic_indexes_have_marc21_and_unimarc_sources() -> None:
    for name in ("title", "creator", "subject", "publisher", "date", "language", "isbn", "issn", "classification"):
        definition = TABLE[name]
        assert definition.marc21 and definition.sources("unimarc") and definition.sources("cnmarc"), name
    assert [s.tag for s in TABLE["clc"].sources("cnmarc")] == ["690"]      # CLC from CNMARC 690
    assert {s.tag for s in TABLE["ddc"].marc21} == {"082"} and {s.tag for s in TABLE["lcc"].marc21} == {"050"}


def test_the_networks_own_indexes_are_item_level_with_their_flags() -> None:
    for name in ("library", "tier", "availability", "barcode", "call_number"):
        assert TABLE[name].level is IndexLevel.ITEM, name
    assert {d.name for d in TABLE if d.facet} >= {
        "library", "tier", "date", "language", "class_top", "material_type", "availability"}
    assert {"library", "call_number", "title", "creator", "subject", "classification"} <= {
        d.name for d in TABLE if d.scannable}
    assert {"title", "creator", "date"} <= {d.name for d in TABLE if d.sortable}


def broken(edit) -> dict:
    data = copy.deepcopy(RAW)
    edit(data)
    return data


def index_at(data: dict, name: str) -> dict:
    return next(entry for entry in data["indexes"] if entry["name"] == name)


BROKEN = [
    ("unknown top-level key", lambda d: d.update(stores=1), "stores", "unknown key"),
    ("unknown index key", lambda d: index_at(d, "title").update(sortabel=True), "indexes[1].sortabel", "unknown key"),
    ("duplicate name", lambda d: index_at(d, "creator").update(name="title"), "indexes[2].name",
     "duplicate index name 'title'"),
    ("CQL name twice", lambda d: index_at(d, "subject").update(cql=["dc.title"]), "indexes[3].cql",
     "CQL name 'dc.title' already used by 'title'"),
    ("undeclared context set", lambda d: index_at(d, "title").update(cql=["marc.title"]), "indexes[1].cql",
     "prefix 'marc' is not a declared context set"),
    ("bad type", lambda d: index_at(d, "date").update(type="datetime"), "indexes[8].type",
     "'datetime' is not one of text, keyword, number, date"),
    ("bad Bib-1 use", lambda d: index_at(d, "title").update(bib1=[4, "six"]), "indexes[1].bib1[1]",
     "must be a positive integer"),
    ("copy from nowhere", lambda d: index_at(d, "anywhere").update(copy_from=["title", "nope"]),
     "indexes[0].copy_from", "unknown index 'nope'"),
    ("unknown default", lambda d: d.update(default_index="everything"), "default_index", "unknown index 'everything'"),
    ("Bib-1 use twice", lambda d: index_at(d, "subject").update(bib1=[21, 4]), "indexes[3].bib1[1]",
     "Bib-1 use 4 already maps to 'title'"),
]


@pytest.mark.parametrize(("case", "edit", "path", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_table_names_the_key_path(case: str, edit, path: str, message: str) -> None:
    with pytest.raises(IndexTableError) as caught:
        IndexTable.from_data(broken(edit))
    assert caught.value.path == path
    assert message in caught.value.message, caught.value.message


def test_a_broken_table_file_names_file_line_and_column(tmp_path) -> None:
    text = DEFAULT_INDEX_TABLE.read_text(encoding="utf-8")
    broken_text = text.replace("    bib1: [21, 29, 25, 27]\n", "    bib1: [21, 29, 4, 27]\n", 1)
    assert broken_text != text
    path = tmp_path / "indexes.yaml"
    path.write_text(broken_text, encoding="utf-8")
    with pytest.raises(IndexTableError) as caught:
        load_index_table(path)
    error = caught.value
    line_number = broken_text[: broken_text.index("[21, 29, 4, 27]")].count("\n") + 1
    line = broken_text.splitlines()[line_number - 1]
    assert (error.file, error.line, error.column) == (str(path), line_number, line.index("4, 27") + 1)
    assert str(error).startswith(f"{path}:{line_number}:{line.index('4, 27') + 1}: indexes[3].bib1[2]: ")

    path.write_text(text.replace("  - name: title\n", "  - name: title\n   bad: [\n", 1), encoding="utf-8")
    with pytest.raises(IndexTableError) as caught:
        load_index_table(path)
    assert caught.value.file == str(path) and caught.value.line > 0 and "YAML syntax" in str(caught.value)
