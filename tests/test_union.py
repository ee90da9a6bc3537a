"""The dedup/merge rules of indexer.union, on the model alone (no store, no files)."""
from __future__ import annotations

import itertools

import pytest

from indexer.model import Contribution, Item, MarcFormat, UnionRecord
from indexer.union import (
    Analysis,
    IdLookupNeeded,
    Incoming,
    MergeSession,
    Outcome,
    choose_master,
    conflicting,
    fingerprint,
    ordered_match_keys,
    union_id,
)

HUB = "GR"
MATCH_POINTS = ("isbn", "issn", "title_author_year")


def marc(title: str, isbn: str | None = None, extra_fields: int = 0, control: str = "") -> dict:
    fields: list[dict] = []
    if control:
        fields.append({"001": control})
    if isbn:
        fields.append({"020": {"ind1": " ", "ind2": " ", "subfields": [{"a": isbn}]}})
    fields.append({"245": {"ind1": "1", "ind2": "0", "subfields": [{"a": title}]}})
    for n in range(extra_fields):
        fields.append({"500": {"ind1": " ", "ind2": " ", "subfields": [{"a": f"note {n}"}]}})
    return {"leader": "00000nam a2200000 a 4500", "fields": fields}


def analysis_of(contribution: Contribution) -> Analysis:
    """A tiny extraction for the tests: title, ISBN, control number and the keys they give."""
    fields: dict[str, list[str]] = {}
    keys: list[str] = []
    for entry in contribution.marc["fields"]:
        (tag, value), = entry.items()
        if tag == "001":
            fields.setdefault("control_number", []).append(value)
        elif tag == "020":
            isbn = value["subfields"][0]["a"]
            fields.setdefault("isbn", []).append(isbn)
            keys.append(f"isbn:{isbn}")
        elif tag == "245":
            title = value["subfields"][0]["a"]
            fields.setdefault("title", []).append(title)
            keys.append(f"work:{title.lower()}")
    return Analysis(fields, tuple(keys))


def incoming(library: str, source_id: str, record: dict, items: int = 1, batch: str = "b1") -> Incoming:
    contribution = Contribution(
        library=library,
        source_id=source_id,
        format=MarcFormat.MARC21,
        marc=record,
        batch=batch,
        items=[Item(barcode=f"{library}{source_id}-{n}", library=library) for n in range(items)],
    )
    contribution.fingerprint = fingerprint(record, contribution.format, contribution.items)
    return Incoming(contribution, analysis_of(contribution))


class Catalogue:
    """A dict standing in for a store, so that tests can run several batches through sessions."""

    def __init__(self) -> None:
        self.records: dict[str, UnionRecord] = {}

    def session(self, batch: list[Incoming]) -> MergeSession:
        session = MergeSession(HUB, MATCH_POINTS, analysis_of)
        # Load everything: a real pipeline loads only what the batch's keys point to.
        session.load(UnionRecord.from_dict(r.to_dict()) for r in self.records.values())
        for entry in batch:
            while ids := session.unknown_ids(entry):
                session.mark_absent([i for i in ids if i not in self.records])
        return session

    def apply(self, session: MergeSession) -> None:
        upserts, deletes = session.changes()
        for record in upserts:
            self.records[record.id] = UnionRecord.from_dict(record.to_dict())
        for record_id in deletes:
            del self.records[record_id]

    def ingest(self, batch: list[Incoming]) -> list[Outcome]:
        session = self.session(batch)
        outcomes = []
        for entry in batch:
            stored = session.contribution(*entry.key)
            if stored is not None and stored.fingerprint == entry.contribution.fingerprint:
                outcomes.append(Outcome.UNCHANGED)
            else:
                outcomes.append(session.place(entry))
        self.apply(session)
        return outcomes

    def withdraw(self, library: str, source_id: str) -> bool:
        session = self.session([])
        withdrawn = session.withdraw(library, source_id)
        self.apply(session)
        return withdrawn

    def holding(self, library: str, source_id: str) -> UnionRecord:
        (record,) = [r for r in self.records.values() if any((c.library, c.source_id) == (library, source_id) for c in r.contributions)]
        return record


ISBN_A = "9787010000017"
ISBN_B = "9787100000024"


def test_same_isbn_from_two_libraries_is_one_union_record_with_both_holdings():
    catalogue = Catalogue()
    outcomes = catalogue.ingest([
        incoming("DW", "d1", marc("Rural revival", ISBN_A), items=2),
        incoming(HUB, "h1", marc("Rural revival", ISBN_A), items=1),
    ])
    assert outcomes == [Outcome.ADDED, Outcome.MERGED]
    (record,) = catalogue.records.values()
    assert record.id == union_id(f"isbn:{ISBN_A}")
    assert sorted(item.library for item in record.items) == ["DW", "DW", HUB]
    assert record.master == (HUB, "h1")  # the hub's record, although it arrived second
    assert record.match_keys == [f"isbn:{ISBN_A}", "work:rural revival"]


def test_ids_do_not_depend_on_input_order():
    def run(order: list[Incoming]) -> dict[str, list[tuple[str, str]]]:
        catalogue = Catalogue()
        catalogue.ingest(order)
        return {rid: sorted((c.library, c.source_id) for c in r.contributions) for rid, r in catalogue.records.items()}

    entries = [
        incoming("DW", "d1", marc("One", ISBN_A)),
        incoming(HUB, "h1", marc("One", ISBN_A)),
        incoming("LQ", "l1", marc("Two", ISBN_B)),
        incoming("LQ", "l2", marc("Three")),
    ]
    results = [run(list(order)) for order in itertools.permutations(entries)]
    assert all(result == results[0] for result in results)
    assert set(results[0]) == {union_id(f"isbn:{ISBN_A}"), union_id(f"isbn:{ISBN_B}"), union_id("work:three")}


def test_master_is_hub_then_most_complete_then_earliest():
    rich = Contribution("DW", "d1", MarcFormat.MARC21, marc("x", extra_fields=5), batch="2")
    poor_hub = Contribution(HUB, "h1", MarcFormat.MARC21, marc("x"), batch="3")
    poorer = Contribution("LQ", "l1", MarcFormat.MARC21, marc("x", extra_fields=1), batch="1")
    same_late = Contribution("AA", "a1", MarcFormat.MARC21, marc("x", extra_fields=5), batch="9")
    assert choose_master([rich, poor_hub, poorer], HUB) is poor_hub
    assert choose_master([rich, poorer, same_late], HUB) is rich
    assert rich.completeness() == (1 + 1) + 5 * (1 + 1)  # 245 and five 500s, one subfield each


def test_record_without_isbn_joins_on_the_work_key_but_different_isbns_stay_apart():
    catalogue = Catalogue()
    outcomes = catalogue.ingest([
        incoming("DW", "d1", marc("Shared title", ISBN_A)),
        incoming("LQ", "l1", marc("Shared title")),          # no ISBN: joins on the work key
        incoming("DM", "m1", marc("Shared title", ISBN_B)),  # another ISBN: another edition
    ])
    assert outcomes == [Outcome.ADDED, Outcome.MERGED, Outcome.ADDED]
    assert catalogue.holding("LQ", "l1").id == catalogue.holding("DW", "d1").id
    assert catalogue.holding("DM", "m1").id != catalogue.holding("DW", "d1").id
    assert conflicting([f"isbn:{ISBN_B}", "work:x"], [f"isbn:{ISBN_A}", "work:x"])
    assert not conflicting(["work:x"], [f"isbn:{ISBN_A}", "work:x"])
    assert not conflicting([f"isbn:{ISBN_B}", "work:x"], ["issn:1234-5679", "work:x"])


def test_fields_are_the_masters_plus_every_contributions_identifiers():
    catalogue = Catalogue()
    catalogue.ingest([
        incoming("DW", "d1", marc("Branch title", ISBN_A, control="d1")),
        incoming(HUB, "h1", marc("Hub title", ISBN_A, control="h1")),
    ])
    (record,) = catalogue.records.values()
    assert record.fields["title"] == ["Hub title"]
    assert record.fields["control_number"] == ["d1", "h1"]
    assert record.fields["isbn"] == [ISBN_A]
    assert set(record.match_keys) == {f"isbn:{ISBN_A}", "work:branch title", "work:hub title"}

    # The hub withdraws: the branch's record becomes master, the hub's identifiers and keys go.
    assert catalogue.withdraw(HUB, "h1")
    (record,) = catalogue.records.values()
    assert record.master == ("DW", "d1")
    assert record.fields["title"] == ["Branch title"]
    assert record.fields["control_number"] == ["d1"]
    assert record.match_keys == [f"isbn:{ISBN_A}", "work:branch title"]


def test_changed_isbn_moves_the_contribution_and_an_emptied_record_is_deleted():
    catalogue = Catalogue()
    catalogue.ingest([
        incoming("DW", "d1", marc("Book", ISBN_A)),
        incoming("LQ", "l1", marc("Book", ISBN_A)),
        incoming("DM", "m1", marc("Other", ISBN_B)),
    ])
    old = catalogue.holding("DW", "d1").id
    # DW corrects its ISBN: it leaves the shared record and joins DM's.
    assert catalogue.ingest([incoming("DW", "d1", marc("Book", ISBN_B))]) == [Outcome.UPDATED]
    assert catalogue.holding("DW", "d1").id == catalogue.holding("DM", "m1").id == union_id(f"isbn:{ISBN_B}")
    assert [c.library for c in catalogue.records[old].contributions] == ["LQ"]
    assert catalogue.records[old].match_keys == [f"isbn:{ISBN_A}", "work:book"]
    # LQ does too: the old record has no contribution left and is deleted.
    assert catalogue.ingest([incoming("LQ", "l1", marc("Book", ISBN_B))]) == [Outcome.UPDATED]
    assert old not in catalogue.records
    assert len(catalogue.records) == 1


def test_updated_record_with_same_keys_keeps_its_union_record_and_id():
    catalogue = Catalogue()
    catalogue.ingest([incoming("DW", "d1", marc("Book", ISBN_A))])
    before = catalogue.holding("DW", "d1").id
    assert catalogue.ingest([incoming("DW", "d1", marc("Book", ISBN_A, extra_fields=2))]) == [Outcome.UPDATED]
    assert list(catalogue.records) == [before]
    assert catalogue.records[before].master_contribution.completeness() == 2 * 2 + 2 * 2


def test_items_only_change_replaces_the_items_and_keeps_the_rest():
    catalogue = Catalogue()
    catalogue.ingest([incoming("DW", "d1", marc("Book", ISBN_A), items=3), incoming(HUB, "h1", marc("Book", ISBN_A))])
    assert catalogue.ingest([incoming("DW", "d1", marc("Book", ISBN_A), items=1)]) == [Outcome.UPDATED]
    (record,) = catalogue.records.values()
    assert sorted(i.barcode for i in record.items) == ["DWd1-0", "GRh1-0"]
    assert record.master == (HUB, "h1")


def test_reingesting_the_same_input_is_unchanged_and_writes_nothing():
    catalogue = Catalogue()
    batch = [incoming("DW", "d1", marc("Book", ISBN_A)), incoming(HUB, "h1", marc("Book", ISBN_A))]
    catalogue.ingest(batch)
    session = catalogue.session(batch)
    for entry in batch:
        assert session.contribution(*entry.key).fingerprint == entry.contribution.fingerprint
    assert session.changes() == ([], [])
    assert catalogue.ingest(batch) == [Outcome.UNCHANGED, Outcome.UNCHANGED]


def test_withdrawing_a_record_created_in_the_same_session_writes_nothing():
    session = MergeSession(HUB, MATCH_POINTS, analysis_of)
    entry = incoming("DW", "d1", marc("Book", ISBN_A))
    session.mark_absent(session.unknown_ids(entry))
    assert session.place(entry) is Outcome.ADDED
    assert session.withdraw("DW", "d1")
    assert not session.withdraw("DW", "d1")
    assert session.changes() == ([], [])


def test_an_id_taken_by_a_record_that_lost_its_key_is_not_reused():
    catalogue = Catalogue()
    catalogue.ingest([incoming("DW", "d1", marc("Book", ISBN_A)), incoming("LQ", "l1", marc("Book"))])
    first = union_id(f"isbn:{ISBN_A}")
    # DW drops the ISBN: the record keeps its id (LQ is still in it) but no longer carries the key.
    catalogue.ingest([incoming("DW", "d1", marc("Book"))])
    assert catalogue.records[first].match_keys == ["work:book"]
    # A new holder of that ISBN gets a record of its own, under the next derived id.
    session = MergeSession(HUB, MATCH_POINTS, analysis_of)
    newcomer = incoming("DM", "m1", marc("Another book", ISBN_A))
    with pytest.raises(IdLookupNeeded) as missing:
        session.place(newcomer)
    assert missing.value.record_id == first
    assert catalogue.ingest([newcomer]) == [Outcome.ADDED]
    assert catalogue.holding("DM", "m1").id == union_id(f"isbn:{ISBN_A}", 1)


def test_match_points_of_the_rule_set_decide_which_keys_count():
    keys = ["work:a", "issn:1234-5679", f"isbn:{ISBN_A}", "other:x", f"isbn:{ISBN_A}"]
    assert ordered_match_keys(keys, MATCH_POINTS) == (f"isbn:{ISBN_A}", "issn:1234-5679", "work:a")
    assert ordered_match_keys(keys, ("issn", "isbn")) == ("issn:1234-5679", f"isbn:{ISBN_A}")
    # Without the work match point, records without ISBN never merge.
    session = MergeSession(HUB, ("isbn",), analysis_of)
    first, second = incoming("DW", "d1", marc("Same")), incoming("LQ", "l1", marc("Same"))
    outcomes = []
    for entry in (first, second):
        session.mark_absent(session.unknown_ids(entry))
        outcomes.append(session.place(entry))
    assert outcomes == [Outcome.ADDED, Outcome.ADDED]
    assert {r.id for r in session.changes()[0]} == {union_id("source:DW/d1"), union_id("source:LQ/l1")}


def test_fingerprint_ignores_serialization_and_sees_content_items_and_salt():
    record = marc("Book", ISBN_A)
    items = [Item(barcode="GR01", library=HUB)]
    base = fingerprint(record, MarcFormat.MARC21, items)
    relaid = dict(record, leader="01234nam a2200321 a 4500")
    assert fingerprint(relaid, "marc21", items) == base
    assert fingerprint(marc("Book!", ISBN_A), "marc21", items) != base
    assert fingerprint(record, "marc21", [Item(barcode="GR02", library=HUB)]) != base
    assert fingerprint(record, "marc21", items, salt="new index table") != base
    assert fingerprint(record, "unimarc", items) != base


def test_item_to_dict_holds_every_field_and_round_trips():
    from dataclasses import fields as dataclass_fields

    from indexer.model import Availability, Item

    item = Item("B1", "GR", tier="hub", call_number="I247/1", location="stacks", status="2",
                availability=Availability.ON_LOAN, due_date="2026-12-01", material_type="book",
                source_library="gr", source_record="rec1", notes="n")
    data = item.to_dict()
    assert list(data) == [f.name for f in dataclass_fields(Item)]
    assert data["availability"] == "on_loan"
    assert Item.from_dict(data) == item


def test_stored_marc_is_read_back_equal_and_a_change_after_reading_is_kept() -> None:
    """Stores keep each contribution's MARC as JSON text (`to_dict(marc_as_json=True)`) and
    decode it only when it is looked at; whatever is read or changed, the record says the same."""
    import json

    def marc(title: str) -> dict:
        return {"leader": "00000nam a2200000 a 4500",
                "fields": [{"001": title}, {"245": {"ind1": "1", "ind2": "0", "subfields": [{"a": title}]}}]}

    record = UnionRecord("u1", [Contribution("A", "a1", MarcFormat.MARC21, marc("主")),
                                Contribution("B", "b1", MarcFormat.MARC21, marc("副"))], ("A", "a1"))
    stored = json.dumps(record.to_dict(marc_as_json=True), ensure_ascii=False)
    assert all(isinstance(c["marc_json"], str) and "marc" not in c for c in json.loads(stored)["contributions"])

    read = UnionRecord.from_dict(json.loads(stored))
    assert read.contributions[1].marc_json() == json.dumps(marc("副"), ensure_ascii=False, separators=(",", ":"))
    assert read == record and read.to_dict() == record.to_dict()

    read.contributions[1].marc["fields"].append({"500": {"ind1": " ", "ind2": " ", "subfields": [{"a": "note"}]}})
    read.contributions[0].marc = marc("改")
    again = UnionRecord.from_dict(json.loads(json.dumps(read.to_dict(marc_as_json=True))))
    assert again.contributions[1].marc["fields"][-1] == {"500": {"ind1": " ", "ind2": " ", "subfields": [{"a": "note"}]}}
    assert again.contributions[0].marc == marc("改")
    # Records stored before (MARC as JSON objects) read the same.
    assert UnionRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_the_master_rule_counts_stored_marc_without_decoding_it_and_follows_a_change() -> None:
    """A contribution's completeness (fields + subfields) goes with its MARC text into the stored
    record, so choosing the master among loaded contributions decodes none of them; once the
    MARC is changed, the count is the changed record's."""
    import json

    def marc(subfields: int) -> dict:
        return {"leader": "00000nam a2200000 a 4500",
                "fields": [{"001": "x"}, {"245": {"ind1": "1", "ind2": "0",
                                                  "subfields": [{"a": f"t{n}"} for n in range(subfields)]}}]}

    poor, rich = Contribution("B", "b1", MarcFormat.MARC21, marc(1)), Contribution("C", "c1", MarcFormat.MARC21, marc(4))
    assert (poor.completeness(), rich.completeness()) == (1 + 1 + 1, 1 + 1 + 4)
    rich.compact()
    assert rich.completeness() == 6
    stored = json.loads(json.dumps(UnionRecord("u1", [poor, rich], ("B", "b1")).to_dict(marc_as_json=True)))
    assert [c["completeness"] for c in stored["contributions"]] == [3, 6]

    read = UnionRecord.from_dict(stored)
    assert choose_master(read.contributions, hub="GR") is read.contributions[1]
    assert all(c.__dict__["_marc"] is None for c in read.contributions)  # nobody's MARC decoded
    read.contributions[1].marc["fields"] = read.contributions[1].marc["fields"][:1]
    assert read.contributions[1].completeness() == 1
    assert choose_master(read.contributions, hub="GR") is read.contributions[0]
    # A stored record without the count (written before it was kept) counts its MARC text.
    del stored["contributions"][1]["completeness"]
    assert UnionRecord.from_dict(stored).contributions[1].completeness() == 6
