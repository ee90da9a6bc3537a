"""Availability under the circulation rules of the shipped Guangrao and Gaoming rule sets.

Every copy below carries a barcode from its library's configured range, and every verdict is
checked together with the rule it cites (a key path into the rule set)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from federation.availability import (
    ReaderError,
    Verdict,
    assess,
    identify_reader,
    is_return,
    lookup_barcode,
    lookup_card,
    summarize_holdings,
    token_scope,
)
from federation.rules import Network, load_network
from indexer.model import Availability, Contribution, Item, MarcFormat, UnionRecord

NETWORKS = Path(__file__).resolve().parent.parent / "config" / "networks"


@pytest.fixture(scope="module")
def guangrao() -> Network:
    return load_network(NETWORKS / "guangrao.yaml")


@pytest.fixture(scope="module")
def gaoming() -> Network:
    return load_network(NETWORKS / "gaoming.yaml")


def copy(network: Network, barcode: str, location: str = "借阅室", availability: Availability = Availability.AVAILABLE,
         due_date: str = "") -> Item:
    library = network.library_for_barcode(barcode)
    assert library is not None, f"{barcode} is in no range of {network.id}"
    return Item(barcode=barcode, library=library.code, tier=library.tier, location=location,
                call_number="I247.5/12", availability=availability, due_date=due_date)


def record(*items: Item) -> UnionRecord:
    marc = {"leader": "00000nam  2200000   4500", "fields": [{"001": "B1"}]}
    contribution = Contribution(library=items[0].library, source_id="B1", format=MarcFormat.CNMARC, marc=marc,
                                items=list(items))
    return UnionRecord(id="u-test", contributions=[contribution], master=(items[0].library, "B1"))


def verdicts(answer) -> dict[str, tuple[Verdict, str, int | None]]:
    return {v.barcode: (v.verdict, v.rule, v.transfer_days) for v in answer.items}


# -- Guangrao ---------------------------------------------------------------------------------

def test_guangrao_branch_reader_sees_each_kind_of_copy(guangrao: Network) -> None:
    book = record(
        copy(guangrao, "GR00000100", "中文图书借阅室"),            # hub
        copy(guangrao, "GR03000050", "综合借阅室"),               # the reader's own branch (Dawang)
        copy(guangrao, "GR01000010", "少儿阅览区"),               # another branch
        copy(guangrao, "GR00000101", "地方文献"),                 # hub, reference-only location
        copy(guangrao, "GR13000001", "流动书车"),                 # mobile station
        copy(guangrao, "GR11000001", "阅览室"),                   # community reading room
        copy(guangrao, "GR02000001", availability=Availability.ON_LOAN, due_date="2026-12-01"),
    )
    reader = identify_reader(guangrao, card="37052303000123")
    assert (reader.issuer, reader.pickup) == ("GR-DW", "GR-DW")
    answer = assess(book, guangrao, reader)
    assert verdicts(answer) == {
        "GR00000100": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 3),
        "GR03000050": (Verdict.ON_SHELF_HERE, "item.status", None),
        "GR01000010": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 3),
        "GR00000101": (Verdict.IN_LIBRARY_USE_ONLY, "rules.circulation.reference_only_locations", None),
        "GR13000001": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 3),
        "GR11000001": (Verdict.VISIT_TO_BORROW, "rules.circulation.lending_tiers", None),
        "GR02000001": (Verdict.NOT_AVAILABLE, "item.status", None),
    }
    on_loan = next(v for v in answer.items if v.barcode == "GR02000001")
    assert "due back 2026-12-01" in on_loan.reason
    reading_room = next(v for v in answer.items if v.barcode == "GR11000001")
    assert "reading room" in reading_room.reason and reading_room.pickup == "GR-XYSQ"
    assert answer.summary == {"requestable": 3, "on_shelf_here": 1, "in_library_use_only": 1,
                              "visit_to_borrow": 1, "not_available": 1}


def test_guangrao_hub_reader_gets_configured_transfer_days(guangrao: Network) -> None:
    book = record(
        copy(guangrao, "GR00000100"),
        copy(guangrao, "GR01000010"),   # GR <-> GR-GRJD: 1 day, transfers[0]
        copy(guangrao, "GR13000001"),   # GR <-> GR-LD: 1 day, transfers[2]
        copy(guangrao, "GR05000001"),   # Dingzhuang: the default 3 days
    )
    answer = assess(book, guangrao, identify_reader(guangrao, card="37052300000005"))
    assert verdicts(answer) == {
        "GR00000100": (Verdict.ON_SHELF_HERE, "item.status", None),
        "GR01000010": (Verdict.REQUESTABLE, "rules.circulation.transfers[0]", 1),
        "GR13000001": (Verdict.REQUESTABLE, "rules.circulation.transfers[2]", 1),
        "GR05000001": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 3),
    }
    assert all(v.pickup in ("GR",) for v in answer.items)


def test_guangrao_reader_on_the_book_bus(guangrao: Network) -> None:
    book = record(copy(guangrao, "GR13000001", "流动书车"), copy(guangrao, "GR00000100"))
    reader = identify_reader(guangrao, library="GR-LD")
    assert reader.card is None and reader.pickup == "GR-LD"
    assert verdicts(assess(book, guangrao, reader)) == {
        "GR13000001": (Verdict.ON_SHELF_HERE, "item.status", None),
        "GR00000100": (Verdict.REQUESTABLE, "rules.circulation.transfers[2]", 1),
    }


def test_guangrao_one_card_used_at_another_library(guangrao: Network) -> None:
    reader = identify_reader(guangrao, card="37052303000123", library="GR")
    assert reader.rule == "rules.circulation.one_card" and reader.pickup == "GR"
    answer = assess(record(copy(guangrao, "GR00000100"), copy(guangrao, "GR03000050")), guangrao, reader)
    assert verdicts(answer) == {
        "GR00000100": (Verdict.ON_SHELF_HERE, "rules.circulation.one_card", None),
        "GR03000050": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 3),
    }


def test_guangrao_returns_anywhere(guangrao: Network) -> None:
    answer = assess(record(copy(guangrao, "GR03000050")), guangrao, identify_reader(guangrao, library="GR"))
    assert answer.returns.anywhere and answer.returns.rule == "rules.circulation.return_anywhere"
    assert answer.returns.libraries == tuple(guangrao.libraries)
    assert answer.items[0].return_to == tuple(guangrao.libraries)


def test_guangrao_court_reading_room_and_source_reference_status(guangrao: Network) -> None:
    book = record(copy(guangrao, "GR12000001"), copy(guangrao, "GR04000001", "综合借阅室",
                                                     availability=Availability.REFERENCE_ONLY))
    answer = assess(book, guangrao, identify_reader(guangrao, card="37052304000001"))
    assert verdicts(answer) == {
        "GR12000001": (Verdict.VISIT_TO_BORROW, "rules.circulation.lending_tiers", None),
        "GR04000001": (Verdict.IN_LIBRARY_USE_ONLY, "item.status", None),
    }


# -- rules switched off -------------------------------------------------------------------------

def with_circulation(network: Network, **changes) -> Network:
    rules = dataclasses.replace(network.rules, circulation=dataclasses.replace(network.rules.circulation, **changes))
    return dataclasses.replace(network, rules=rules)


def test_without_one_card_a_card_is_honoured_only_by_its_library(guangrao: Network) -> None:
    strict = with_circulation(guangrao, one_card=False)
    with pytest.raises(ReaderError) as caught:
        identify_reader(strict, card="37052303000123", library="GR")
    assert caught.value.code == "card_not_valid" and caught.value.rule == "rules.circulation.one_card"
    reader = identify_reader(strict, card="37052303000123")
    answer = assess(record(copy(guangrao, "GR11000001"), copy(guangrao, "GR00000100")), strict, reader)
    assert verdicts(answer) == {
        "GR11000001": (Verdict.NOT_LENDABLE_TO_READER, "rules.circulation.one_card", None),
        "GR00000100": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 3),
    }


def test_without_borrow_anywhere_nothing_is_sent(guangrao: Network) -> None:
    local = with_circulation(guangrao, borrow_anywhere=False)
    answer = assess(record(copy(guangrao, "GR00000100")), local, identify_reader(local, card="37052303000123"))
    assert verdicts(answer) == {"GR00000100": (Verdict.VISIT_TO_BORROW, "rules.circulation.borrow_anywhere", None)}


def test_without_return_anywhere_copies_go_home(guangrao: Network) -> None:
    local = with_circulation(guangrao, return_anywhere=False)
    answer = assess(record(copy(guangrao, "GR00000100"), copy(guangrao, "GR03000050")), local,
                    identify_reader(local, library="GR"))
    assert not answer.returns.anywhere and answer.returns.libraries == ()
    assert [v.return_to for v in answer.items] == [("GR",), ("GR-DW",)]


# -- Gaoming ------------------------------------------------------------------------------------

def test_gaoming_culture_station_reader(gaoming: Network) -> None:
    book = record(
        copy(gaoming, "GM00000001", "中文借阅区"),        # hub
        copy(gaoming, "GM01000001"),                      # directly run branch
        copy(gaoming, "GM03000001"),                      # the reader's own culture station
        copy(gaoming, "GM21000001"),                      # a service point of that station
        copy(gaoming, "GM11000001"),                      # self-service library
        copy(gaoming, "GM00000002", "报刊阅览"),          # reference-only location
    )
    answer = assess(book, gaoming, identify_reader(gaoming, card="44060803000001"))
    assert verdicts(answer) == {
        "GM00000001": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 2),
        "GM01000001": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 2),
        "GM03000001": (Verdict.ON_SHELF_HERE, "item.status", None),
        "GM21000001": (Verdict.VISIT_TO_BORROW, "rules.circulation.lending_tiers", None),
        "GM11000001": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 2),
        "GM00000002": (Verdict.IN_LIBRARY_USE_ONLY, "rules.circulation.reference_only_locations", None),
    }


def test_gaoming_hub_reader_transfer_rules(gaoming: Network) -> None:
    book = record(copy(gaoming, "GM01000001"), copy(gaoming, "GM02000001"), copy(gaoming, "GM04000001"))
    answer = assess(book, gaoming, identify_reader(gaoming, card="44060800000077"))
    assert verdicts(answer) == {
        "GM01000001": (Verdict.REQUESTABLE, "rules.circulation.transfers[0]", 1),
        "GM02000001": (Verdict.REQUESTABLE, "rules.circulation.transfers[1]", 1),
        "GM04000001": (Verdict.REQUESTABLE, "rules.circulation.transfer_days", 2),
    }


def test_gaoming_joint_network_member_card(gaoming: Network) -> None:
    reader = identify_reader(gaoming, card="44060000001234")      # 佛山市图书馆
    assert (reader.issuer, reader.joint_network, reader.pickup) == ("FS", "foshan", None)
    assert reader.rule == "joint_networks.foshan.shared_cards"
    book = record(copy(gaoming, "GM00000001"), copy(gaoming, "GM01000001"), copy(gaoming, "GM21000001"))
    answer = assess(book, gaoming, reader)
    assert {v.verdict for v in answer.items} == {Verdict.VISIT_TO_BORROW}
    assert {v.rule for v in answer.items} == {"joint_networks.foshan.shared_cards"}
    # Naming a library of the network makes it the pickup library.
    at_hub = identify_reader(gaoming, card="44060000001234", library="GM")
    assert verdicts(assess(book, gaoming, at_hub)) == {
        "GM00000001": (Verdict.ON_SHELF_HERE, "joint_networks.foshan.shared_cards", None),
        "GM01000001": (Verdict.REQUESTABLE, "rules.circulation.transfers[0]", 1),
        "GM21000001": (Verdict.VISIT_TO_BORROW, "rules.circulation.lending_tiers", None),
    }


def test_gaoming_joint_cards_not_shared(gaoming: Network) -> None:
    joint = dataclasses.replace(gaoming.joint_networks[0], shared_cards=False)
    closed = dataclasses.replace(gaoming, joint_networks=(joint,))
    owner = lookup_card(closed, "44060000001234")
    assert owner.joint_network == "foshan" and "does not share cards" in owner.reason
    with pytest.raises(ReaderError) as caught:
        identify_reader(closed, card="44060000001234")
    assert caught.value.code == "card_not_valid"
    assert caught.value.rule == "joint_networks.foshan.shared_cards"


def test_joint_card_at_a_library_outside_the_joint_network(gaoming: Network) -> None:
    joint = dataclasses.replace(gaoming.joint_networks[0], members=("GM-HC",))
    narrow = dataclasses.replace(gaoming, joint_networks=(joint,))
    with pytest.raises(ReaderError) as caught:
        identify_reader(narrow, card="44060500000001", library="GM-XJXC")
    assert caught.value.code == "card_not_valid" and "GM-XJXC does not take part" in caught.value.message
    reader = identify_reader(narrow, card="44060500000001")
    answer = assess(record(copy(gaoming, "GM00000001"), copy(gaoming, "GM22000001")), narrow, reader)
    assert verdicts(answer) == {
        "GM00000001": (Verdict.NOT_LENDABLE_TO_READER, "joint_networks.foshan.members", None),
        "GM22000001": (Verdict.VISIT_TO_BORROW, "joint_networks.foshan.shared_cards", None),  # under GM-HC
    }


# -- unknown numbers ------------------------------------------------------------------------------

@pytest.mark.parametrize("number, expected", [
    ("37052399000000", "lies in no library's card range; the nearest is GR-XZBM's 37052310000000-37052310999999"),
    ("123", "'123' has 3 digits; card numbers here have 14 digits"),
    ("ABC", "'ABC' does not end in digits"),
    ("", "the card number is empty"),
])
def test_unknown_cards_say_why(guangrao: Network, number: str, expected: str) -> None:
    assert not lookup_card(guangrao, number).found
    assert expected in lookup_card(guangrao, number).reason
    with pytest.raises(ReaderError) as caught:
        identify_reader(guangrao, card=number)
    assert caught.value.code == "unknown_card" and expected in caught.value.message


def test_unknown_library(guangrao: Network) -> None:
    with pytest.raises(ReaderError) as caught:
        identify_reader(guangrao, library="GM")
    assert caught.value.code == "unknown_library" and "'GM' is not a library of guangrao" in caught.value.message
    with pytest.raises(ReaderError):
        identify_reader(guangrao)


def test_barcode_lookups(guangrao: Network, gaoming: Network) -> None:
    found = lookup_barcode(guangrao, "GR13000001")
    assert (found.code, found.tier, found.range) == ("GR-LD", "mobile", "GR13000000-GR13999999")
    assert lookup_barcode(guangrao, "GR10000001").code == "GR-XZBM"     # range written as a mapping
    assert "prefix 'GR' and 8 digits" in lookup_barcode(gaoming, "GR00000001").reason
    missing = lookup_barcode(gaoming, "GM99000000")
    assert not missing.found and "nearest is GM-GH-FWD2's GM28000000-GM28999999" in missing.reason
    card = lookup_card(gaoming, "44060700000001")
    assert (card.code, card.joint_network) == ("FS-SS", "foshan")


# -- token scope and returns -----------------------------------------------------------------------

def test_token_scope_covers_the_library_and_those_under_it(guangrao: Network, gaoming: Network) -> None:
    assert token_scope(guangrao, "GR-DW") == {"GR-DW"}
    assert token_scope(guangrao, "GR-GRJD") == {"GR-GRJD", "GR-XYSQ"}
    assert token_scope(guangrao, "GR") == set(guangrao.libraries)
    assert token_scope(gaoming, "GM-HC") == {"GM-HC", "GM-HC-FWD1", "GM-HC-FWD2"}
    assert token_scope(gaoming, "GM-ZZ1") == {"GM-ZZ1"}


def test_is_return() -> None:
    assert is_return(Availability.ON_LOAN, Availability.AVAILABLE)
    assert is_return(Availability.ON_LOAN, Availability.IN_TRANSIT)
    assert not is_return(Availability.AVAILABLE, Availability.ON_LOAN)
    assert not is_return(Availability.ON_LOAN, Availability.LOST)


def test_holdings_summary_in_rule_set_order(guangrao: Network) -> None:
    items = [copy(guangrao, "GR03000050"), copy(guangrao, "GR00000100"), copy(guangrao, "GR00000101", "古籍"),
             copy(guangrao, "GR00000102", availability=Availability.ON_LOAN)]
    assert summarize_holdings(items, guangrao) == [
        {"library": "GR", "name": "广饶县图书馆 (Guangrao County Library)", "tier": "hub", "copies": 3, "available": 1},
        {"library": "GR-DW", "name": "广饶县图书馆大王分馆 (Dawang Branch)", "tier": "branch", "copies": 1, "available": 1},
    ]
