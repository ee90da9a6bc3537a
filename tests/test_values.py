"""indexer.values: the values both stores index, and UnionRecord.apply_status (live item status)."""
from __future__ import annotations

from dataclasses import replace

from indexer.indexes import IndexType, load_index_table
from indexer.model import Availability, Contribution, Item, ItemStatusUpdate, MarcFormat, UnionRecord
from indexer.query import FacetRequest
from indexer.values import facet_value, item_value, numeric_value, ordered_facet, record_values

TABLE = load_index_table()


def test_numbers_and_years_within_64_bits():
    date = TABLE.get("date")
    number = replace(date, name="count", type=IndexType.NUMBER)  # the shipped table has no number index
    assert numeric_value(date, "c1998.") == 1998
    assert numeric_value(date, "n.d.") is None
    assert numeric_value(number, " 042 ") == 42
    assert numeric_value(number, "-9223372036854775808") == -(2**63)
    assert numeric_value(number, "9223372036854775808") is None
    assert numeric_value(number, "1" * 5000) is None  # beyond int()'s digit limit: not indexed, no error
    assert numeric_value(number, "0" * 5000 + "7") == 7
    assert facet_value(date, "[2003?]") == "2003" and facet_value(TABLE.get("title"), "Ａ") == "Ａ"


def _record() -> UnionRecord:
    items = [Item("B1", "GR", location="stacks"), Item("B2", "GR-DW")]
    contribution = Contribution("GR", "r1", MarcFormat.CNMARC, {"leader": "", "fields": []}, items=items)
    return UnionRecord("u1", [contribution], ("GR", "r1"), fields={"title": ["书", "书"], "creator": ["王"]})


def test_record_values_item_values_and_facet_order():
    record = _record()
    assert record_values(record, TABLE.get("title")) == ["书"]
    assert record_values(record, TABLE.get("id")) == ["u1"]
    assert [item_value(i, TABLE.get("library")) for i in record.items] == ["GR", "GR-DW"]
    facet = ordered_facet(TABLE.get("date"), FacetRequest("date", limit=2), {"1999": 3, "2001": 3, "10": 1})
    assert [(v.value, v.count) for v in facet.values] == [("1999", 3), ("2001", 3)]
    facet = ordered_facet(TABLE.get("date"), FacetRequest("date", order="value"), {"1999": 3, "10": 1})
    assert [v.value for v in facet.values] == ["10", "1999"]


def test_apply_status_changes_only_the_item_with_the_barcode():
    record = _record()
    assert record.apply_status(ItemStatusUpdate("B2", Availability.ON_LOAN, "loaned", "2026-12-01"))
    b1, b2 = record.items
    assert (b2.availability, b2.status, b2.due_date, b2.location) == (Availability.ON_LOAN, "loaned", "2026-12-01", "")
    assert b1.availability is Availability.UNKNOWN
    assert record.apply_status(ItemStatusUpdate("B1", Availability.AVAILABLE, location="reading room"))
    assert b1.location == "reading room"
    assert not record.apply_status(ItemStatusUpdate("B9", Availability.LOST))
