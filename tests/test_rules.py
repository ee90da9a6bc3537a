"""The network rule set: the shipped networks load and answer lookups; every class of mistake in a
broken copy of a shipped file is reported with the right file:line:column and key path."""
from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.rules import ConfigError, ConfigProblem, load_network, parse_number_range
from federation.yamlsource import YamlSyntaxError, parse_yaml
from indexer.policy import BarcodePolicy, NumberRange

NETWORKS = Path(__file__).resolve().parent.parent / "config" / "networks"
SEED_TEXT = {
    # Names the networks' own reports give (issue 2, part 5); each must appear in a library's Chinese name.
    "guangrao": ["广饶街道", "乐安街道", "大王", "稻庄", "丁庄", "李鹊", "大码头", "花官", "陈官", "县直部门",
                 "西苑社区", "法院", "流动"],
    "yuanjiang": ["澧江", "红河", "甘庄", "曼来", "因远", "咪哩", "羊街", "那诺", "龙潭", "洼垤"],
    "gaoming": ["西江新城", "银海", "荷城", "明城", "杨和", "更合"],
}


def shipped(name: str) -> Path:
    return NETWORKS / f"{name}.yaml"


# ---------------------------------------------------------------------------------------------
# The shipped networks


@pytest.mark.parametrize("name", sorted(SEED_TEXT))
def test_shipped_network_loads_with_the_libraries_its_report_names(name: str) -> None:
    network = load_network(shipped(name))
    assert network.id == name
    assert network.libraries[network.hub].tier == "hub"
    chinese_names = [library.names.zh for library in network.libraries.values()]
    for fragment in SEED_TEXT[name]:
        assert any(fragment in zh for zh in chinese_names), fragment
    assert network.example_ranges is True
    for library in network.libraries.values():
        assert library.parent is None or library.parent in network.libraries
        assert library.barcode_ranges, f"{library.code} has no barcode range"


def test_guangrao_tiers_match_the_report() -> None:
    network = load_network(shipped("guangrao"))
    counts = {tier: len(members) for tier, members in network.by_tier().items()}
    # 1 county hub, 9 township branches + 1 county-departments branch, 2 reading rooms, 1 mobile station
    assert counts == {"hub": 1, "branch": 10, "reading_room": 2, "mobile": 1}
    assert network.tier_of("GR-LD") == "mobile"
    assert network.ancestors("GR-FY") == ["GR-XZBM", "GR"]


def test_yuanjiang_tiers_match_the_report() -> None:
    network = load_network(shipped("yuanjiang"))
    counts = {tier: len(members) for tier, members in network.by_tier().items()}
    assert counts == {"hub": 1, "branch": 10, "service_point": 10}
    assert network.rules.barcode_policy is BarcodePolicy.QUARANTINE
    # every number carries the county's division code part (city and county standardisation)
    for library in network.libraries.values():
        assert all(r.start.startswith("0428") for r in library.barcode_ranges)
        assert all(r.start.startswith("530428") for r in library.card_ranges)


def test_gaoming_is_a_foshan_joint_library_member() -> None:
    network = load_network(shipped("gaoming"))
    counts = {tier: len(members) for tier, members in network.by_tier().items()}
    assert counts["hub"] == 1 and counts["branch"] == 6 and counts["self_service"] == 5
    assert counts["service_point"] >= 1
    (foshan,) = network.joint_networks
    assert foshan.names.zh == "佛山市联合图书馆"
    assert set(foshan.members) == {"GM", "GM-HC", "GM-MC", "GM-YHE", "GM-GH"}
    joint, member = network.joint_member_for_card("44060500001234")
    assert (joint.id, member.code) == ("foshan", "FS-NH")
    assert network.library_for_card("44060500001234") is None
    assert network.joint_member_for_card("44060803000001") is None  # a Gaoming card, not an outside one


def test_lookups_by_barcode_card_and_tier() -> None:
    network = load_network(shipped("guangrao"))
    assert network.library_for_barcode("GR03001234").code == "GR-DW"
    assert network.library_for_barcode("GR10000000").code == "GR-XZBM"   # mapping-form range
    assert network.library_for_barcode("GR3001234") is None              # one digit short
    assert network.library_for_barcode("XX03001234") is None
    assert network.library_for_card("37052300000001").code == "GR"
    assert network.library_for_card("37052399000000") is None
    assert network.lends_across_network("GR-LD") is True
    assert network.lends_across_network("GR-XYSQ") is False
    assert network.is_reference_only_location(" 地方文献 ") is True
    assert network.is_reference_only_location("ref") is True
    assert network.is_reference_only_location("") is False
    assert network.transfer_days("GR-DW", "GR-DW") == 0
    assert network.transfer_days("GR-LD", "GR") == 1 == network.transfer_days("GR", "GR-LD")
    assert network.transfer_days("GR-DW", "GR-CG") == network.rules.circulation.transfer_days == 3
    assert [child.code for child in network.children("GR-GRJD")] == ["GR-XYSQ"]


def test_auth_tokens_are_matched_by_sha256() -> None:
    network = load_network(shipped("guangrao"))
    assert network.auth.library_for_token("example-token-GR-DW") == "GR-DW"
    assert network.auth.library_for_token("example-token-GR-DW ") is None
    assert network.auth.library_for_token("") is None
    for token in network.auth.tokens:
        assert re.fullmatch(r"[0-9a-f]{64}", token.sha256)
    text = shipped("guangrao").read_text(encoding="utf-8")
    assert hashlib.sha256(b"example-token-GR").hexdigest() in text


def test_ingest_policy_carries_ranges_and_holdings_mappings() -> None:
    network = load_network(shipped("guangrao"))
    policy = network.to_ingest_policy()
    assert policy.hub == "GR"
    assert list(policy.libraries) == list(network.libraries)
    assert policy.barcode_policy is BarcodePolicy.WARN
    assert policy.accepted_formats == ("cnmarc", "marc21")
    assert policy.required_fields == {"cnmarc": ("001", "200"), "marc21": ("001", "245")}
    assert "地方文献" in policy.reference_only_locations
    # the hub's CNMARC 905 is the default; the Koha branch and the court reading room override it
    assert policy.libraries["GR-DW"].holdings.tag == "905"
    assert policy.libraries["GR-DW"].holdings.barcode == "b"
    koha = policy.libraries["GR-XZBM"].holdings
    assert (koha.tag, koha.library, koha.barcode, koha.call_number, koha.status) == ("952", "a", "p", "o", "7")
    assert policy.libraries["GR-FY"].holdings.tag == "852"
    assert policy.libraries["GR-DW"].owns_barcode("GR03000000")
    assert policy.libraries["GR-DW"].tier == "branch"
    assert policy.library_for_source_code("grl").code == "GR"
    assert policy.library_for_source_code("XZBM").code == "GR-XZBM"


def test_store_settings_from_file_environment_and_command_line(tmp_path: Path) -> None:
    network = load_network(shipped("gaoming"))
    assert network.store_settings({}).kind == "embedded"
    assert network.store_settings({}).path == "var/gaoming"
    assert network.store_settings({}, data_dir=tmp_path).path == str(tmp_path)
    es = network.store_settings({"ELASTICSEARCH_URL": "http://127.0.0.1:9200", "ELASTICSEARCH_FLAVOR": "opensearch"})
    assert (es.kind, es.url, es.flavor, es.index_prefix) == ("elasticsearch", "http://127.0.0.1:9200", "opensearch", "gaoming")
    forced = network.store_settings({"ELASTICSEARCH_URL": "http://127.0.0.1:9200"}, override_kind="embedded")
    assert forced.kind == "embedded"
    with pytest.raises(ValueError, match="ELASTICSEARCH_URL"):
        network.store_settings({}, override_kind="elasticsearch")
    with pytest.raises(ValueError, match="ELASTICSEARCH_FLAVOR"):
        network.store_settings({"ELASTICSEARCH_FLAVOR": "solr"})


def test_targets_of_the_shipped_networks() -> None:
    (target,) = load_network(shipped("gaoming")).targets
    assert (target.code, target.protocol, target.format, target.encoding) == ("FSLIB", "z3950", "cnmarc", "gb18030")
    assert target.enabled is False
    assert target.z3950_address == ("z3950.example.org", 210, "fslib")
    assert target.bib1_map["dc.title"] == 4
    assert target.circuit_breaker.failures == 3
    assert target.fetch_limit == 500
    (sru,) = load_network(shipped("guangrao")).targets
    assert (sru.protocol, sru.sru_version, sru.z3950_address) == ("sru", "1.2", None)
    assert load_network(shipped("yuanjiang")).targets == []


# ---------------------------------------------------------------------------------------------
# Number ranges


def test_number_range_forms() -> None:
    assert parse_number_range("GR0100000-GR0199999") == NumberRange("GR0100000", "GR0199999")
    assert parse_number_range(" 0001 - 0999 ") == NumberRange("0001", "0999")
    assert parse_number_range("GR-0001-GR-0999") == NumberRange("GR-0001", "GR-0999")
    assert parse_number_range({"prefix": "GR", "digits": 7, "start": 100000, "end": 199999}) == \
        NumberRange("GR0100000", "GR0199999")
    assert parse_number_range({"digits": 4, "start": 1, "end": 20}) == NumberRange("0001", "0020")


@pytest.mark.parametrize(("value", "message"), [
    ("GR0199999-GR0100000", "start is greater than end"),
    ("GR01A0000-GR0199999", "non-digit prefix followed by digits"),
    ("GRA-GRB", "expected START-END"),
    ("GR0100000-GX0199999", "prefixes differ"),
    ("GR0100000-GR199999", "different numbers of digits"),
    (12345, "expected a string START-END"),
    ({"prefix": "GR", "digits": 4, "start": 1, "end": 99999}, "more than 4 digits"),
    ({"prefix": "G1", "digits": 4, "start": 1, "end": 2}, "without digits"),
    ({"digits": 4, "start": 1}, "missing end"),
    ({"digits": 4, "start": 1, "end": 2, "step": 1}, "unknown key 'step'"),
    ({"digits": 4, "start": "one", "end": 2}, "non-negative whole number"),
])
def test_malformed_number_ranges(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_number_range(value)


# ---------------------------------------------------------------------------------------------
# The YAML layer


def test_yaml_positions_and_duplicate_keys() -> None:
    document = parse_yaml("a: 1\nb:\n  - x: 2\n    x: 3\n  - 905\n", "t.yaml")
    assert document.value == {"a": 1, "b": [{"x": 2}, 905]}
    assert (document.value_position(("b", 0, "x")).line, document.value_position(("b", 0, "x")).column) == (3, 8)
    assert document.key_position(("b", 0, "x")).column == 5
    assert document.value_position(("b", 1)).line == 5
    (duplicate,) = document.duplicate_keys
    assert duplicate[0] == ("b", 0, "x") and duplicate[1].line == 4 and duplicate[2].line == 3


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", "t.yaml")
    assert caught.value.line >= 2 and str(caught.value).startswith("t.yaml:")


@pytest.mark.parametrize(("text", "message"), [
    ("a: &x [1, *x]\n", "an alias refers to a value that contains it"),
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ("a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{b}: &{b} [" + ",".join([f"*{a}"] * 10) + "]\n" for a, b in zip("abcde", "bcdef")),
     "aliases expanding too far"),
    ("? [1, 2]\n: x\n", "mapping keys must be plain scalars"),
])
def test_yaml_documents_that_cannot_be_a_rule_set(text: str, message: str) -> None:
    with pytest.raises(YamlSyntaxError, match=message):
        parse_yaml(text, "t.yaml")


def test_yaml_merge_keys_override_without_being_duplicates() -> None:
    document = parse_yaml("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\n", "t.yaml")
    assert document.value["use"] == {"x": 1, "y": 3}
    assert document.duplicate_keys == []


# ---------------------------------------------------------------------------------------------
# Broken copies of the shipped files


def break_copy(tmp_path: Path, name: str, *edits: tuple[str, str]) -> tuple[Path, str]:
    """Write a copy of a shipped network with each (old, new) replaced once; old must occur exactly once."""
    text = shipped(name).read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"test edit {old!r} is not unique in {name}.yaml"
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def where(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based line and column of the n-th occurrence of needle."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_network(path)
    for problem in caught.value.problems:
        assert problem.file == str(path)
    assert str(caught.value).splitlines() == [str(p) for p in caught.value.problems]
    return caught.value.problems


def the_problem(path: Path) -> ConfigProblem:
    problems = problems_of(path)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


# (file, edits, key path, message fragment, text in the broken copy the problem points at)
UNKNOWN_KEYS = [
    ("guangrao", [("\nstore:\n", "\nstores:\n")], "stores", "unknown key 'stores'", "stores:"),
    ("guangrao", [("  example_ranges: true", "  example_range: true")], "network.example_range",
     "unknown key 'example_range'", "example_range:"),
    ("guangrao", [("    tier: mobile\n", "    tier: mobile\n    colour: red\n")], "libraries[13].colour",
     "unknown key 'colour'", "colour:"),
    ("guangrao", [("library: a, barcode: p, call_number: o", "library: a, barcodes: p, call_number: o")],
     "libraries[10].holdings.barcodes", "unknown key 'barcodes'", "barcodes:"),
    ("guangrao", [("    transfer_days: 3", "    transfer_day: 3")], "rules.circulation.transfer_day",
     "unknown key 'transfer_day'", "transfer_day:"),
    ("guangrao", [("  barcode_policy: warn", "  barcode_policy: warn\n  loan_days: 30")], "rules.loan_days",
     "unknown key 'loan_days'", "loan_days:"),
    ("guangrao", [("  path: var/guangrao", "  path: var/guangrao\n  compress: true")], "store.compress",
     "unknown key 'compress'", "compress:"),
    ("guangrao", [("    record_schema: marcxml", "    record_schema: marcxml\n    proxy: none")],
     "targets[0].proxy", "unknown key 'proxy'", "proxy:"),
    ("guangrao", [("note: Dawang branch (example)", "token: secret")], "auth.tokens[1].token",
     "unknown key 'token'", "token: secret"),
    ("guangrao", [("{prefix: GR, digits: 8, start: 10000000, end: 10999999}",
                   "{prefix: GR, digits: 8, first: 10000000, end: 10999999}")],
     "libraries[10].barcode_ranges[0].first", "unknown key 'first'", "first:"),
    ("guangrao", [("names: {zh: 广饶县图书馆大王分馆, en: Dawang Branch}", "names: {zh: 广饶县图书馆大王分馆, fr: Dawang}")],
     "libraries[3].names.fr", "unknown key 'fr'", "fr:"),
    ("gaoming", [("    shared_cards: true", "    shared_card: true")], "joint_networks[0].shared_card",
     "unknown key 'shared_card'", "shared_card:"),
    ("gaoming", [("      - {between: [GM, GM-YH], days: 1}", "      - {between: [GM, GM-YH], day: 1}")],
     "rules.circulation.transfers[1].day", "unknown key 'day'", "day: 1}"),
    ("gaoming", [("circuit_breaker: {failures: 3,", "circuit_breaker: {fails: 3,")],
     "targets[0].circuit_breaker.fails", "unknown key 'fails'", "fails:"),
]


@pytest.mark.parametrize(("name", "edits", "key", "message", "anchor"), UNKNOWN_KEYS,
                         ids=[case[2] for case in UNKNOWN_KEYS])
def test_unknown_keys_at_every_level(tmp_path: Path, name: str, edits: list[tuple[str, str]], key: str,
                                     message: str, anchor: str) -> None:
    path, text = break_copy(tmp_path, name, *edits)
    problems = problems_of(path)
    mine = [p for p in problems if p.message.startswith(message)]
    assert len(mine) == 1, "\n".join(map(str, problems))
    assert mine[0].key_path == key
    assert (mine[0].line, mine[0].column) == where(text, anchor)


SINGLE_PROBLEMS = [
    # duplicate library codes
    ("guangrao", [("  - code: GR-HG\n", "  - code: GR-DW\n")], "libraries[8].code",
     "duplicate library code 'GR-DW' (first used at line", ("GR-DW", 2)),
    # unknown parent
    ("guangrao", [("    parent: GR-GRJD\n", "    parent: GR-NOPE\n")], "libraries[11].parent",
     "parent 'GR-NOPE' is not a library code", ("GR-NOPE", 1)),
    # missing parent
    ("yuanjiang", [("    tier: service_point\n    parent: YJ-LT\n", "    tier: service_point\n")], "libraries[19]",
     "missing required key 'parent'", ("code: YJ-LT-FWD", 1)),
    # the hub with a parent
    ("gaoming", [("    tier: hub\n", "    tier: hub\n    parent: GM-HC\n")], "libraries[0].parent",
     "the hub has no parent", ("GM-HC\n", 1)),
    # a library that is its own parent
    ("gaoming", [("  - code: GM-ZZ3\n    names: {zh: 高明区自助图书馆3号（示例）, en: Gaoming Self-service Library No. 3 (example)}\n"
                  "    tier: self_service\n    parent: GM\n",
                  "  - code: GM-ZZ3\n    names: {zh: 高明区自助图书馆3号（示例）, en: Gaoming Self-service Library No. 3 (example)}\n"
                  "    tier: self_service\n    parent: GM-ZZ3\n")],
     "libraries[9].parent", "library 'GM-ZZ3' is its own parent", ("GM-ZZ3\n", 2)),
    # overlapping barcode ranges between libraries
    ("guangrao", [("[GR13000000-GR13999999]", "[GR09500000-GR09599999]")], "libraries[13].barcode_ranges[0]",
     "barcode range GR09500000-GR09599999 overlaps GR09000000-GR09999999 of library 'GR-CG'", ("GR09500000", 1)),
    # overlapping card ranges between libraries
    ("yuanjiang", [("card_ranges: [53042810000000-53042810999999]", "card_ranges: [53042809500000-53042810999999]")],
     "libraries[10].card_ranges[0]", "card range 53042809500000-53042810999999 overlaps 53042809000000-53042809999999 "
     "of library 'YJ-LT'", ("53042809500000", 1)),
    # a card range of this network overlapping an outside joint-network member's
    ("gaoming", [("card_ranges: [44060700000001-44060799999999]", "card_ranges: [44060803500000-44060803599999]")],
     "joint_networks[0].other_members[4].card_ranges[0]", "overlaps 44060803000000-44060803999999 of library 'GM-HC'",
     ("44060803500000", 1)),
    # malformed ranges
    ("guangrao", [("[GR05000000-GR05999999]", "[GR05999999-GR05000000]")], "libraries[5].barcode_ranges[0]",
     "start is greater than end", ("GR05999999", 1)),
    ("guangrao", [("[GR05000000-GR05999999]", "[GR05000000-GR0599999X]")], "libraries[5].barcode_ranges[0]",
     "expected START-END", ("GR05000000-GR0599999X", 1)),
    ("guangrao", [("[GR05000000-GR05999999]", "[GR05000000-GR05999999X]")], "libraries[5].barcode_ranges[0]",
     "expected START-END", ("GR05000000-GR05999999X", 1)),
    ("guangrao", [("[GR05000000-GR05999999]", "[GR05000000-GX05999999]")], "libraries[5].barcode_ranges[0]",
     "prefixes differ", ("GR05000000-GX", 1)),
    ("guangrao", [("[GR05000000-GR05999999]", "[GR05000000-GR5999999]")], "libraries[5].barcode_ranges[0]",
     "different numbers of digits (8 and 7)", ("GR05000000-GR5999999", 1)),
    ("guangrao", [("{prefix: GR, digits: 8, start: 10000000, end: 10999999}",
                   "{prefix: GR, digits: 7, start: 10000000, end: 10999999}")], "libraries[10].barcode_ranges[0]",
     "more than 7 digits", ("{prefix: GR, digits: 7", 1)),
    # bad tier
    ("guangrao", [("    tier: mobile\n", "    tier: bookbus\n")], "libraries[13].tier",
     "'bookbus' is not one of: hub, branch, service_point, reading_room, mobile, self_service", ("bookbus", 1)),
    # bad store kind
    ("guangrao", [("  kind: embedded\n", "  kind: sqlite\n")], "store.kind",
     "'sqlite' is not one of: embedded, elasticsearch", ("sqlite", 1)),
    # elasticsearch store without an http URL
    ("guangrao", [("  kind: embedded\n  path: var/guangrao\n", "  kind: elasticsearch\n  url: localhost:9200\n")],
     "store.url", "is not an http:// or https:// URL", ("localhost:9200", 1)),
    # bad target URLs
    ("guangrao", [("url: http://sru.example.org/dongying", "url: tcp:sru.example.org:210/dongying")], "targets[0].url",
     "an SRU target needs http(s)://host[:port]/path", ("tcp:sru", 1)),
    ("guangrao", [("url: http://sru.example.org/dongying", "url: http:///dongying")], "targets[0].url",
     "an SRU target needs http(s)://host[:port]/path", ("http:///", 1)),
    ("gaoming", [("url: tcp:z3950.example.org:210/fslib", "url: tcp:z3950.example.org:210")], "targets[0].url",
     "a Z39.50 target needs tcp:HOST:PORT/DATABASE", ("tcp:z3950", 1)),
    ("gaoming", [("url: tcp:z3950.example.org:210/fslib", "url: http://z3950.example.org/fslib")], "targets[0].url",
     "a Z39.50 target needs tcp:HOST:PORT/DATABASE", ("http://z3950", 1)),
    ("gaoming", [("url: tcp:z3950.example.org:210/fslib", "url: tcp:z3950.example.org:99999/fslib")],
     "targets[0].url", "a Z39.50 target needs tcp:HOST:PORT/DATABASE", ("tcp:z3950", 1)),
    ("gaoming", [("    protocol: z3950\n", "    protocol: http\n")], "targets[0].protocol",
     "'http' is not one of: sru, z3950", ("http\n", 1)),
    # bad enum values
    ("guangrao", [("  barcode_policy: warn", "  barcode_policy: ignore")], "rules.barcode_policy",
     "'ignore' is not one of: reject, quarantine, warn", ("ignore", 1)),
    ("guangrao", [("    formats: [cnmarc, marc21]", "    formats: [cnmarc, usmarc]")], "rules.cataloguing.formats[1]",
     "'usmarc' is not one of: marc21, unimarc, cnmarc", ("usmarc", 1)),
    ("guangrao", [("    classification: clc ", "    classification: bliss ")], "rules.cataloguing.classification",
     "'bliss' is not one of", ("bliss", 1)),
    ("guangrao", [("    lending_tiers: [hub, branch, mobile]", "    lending_tiers: [hub, branch, bus]")],
     "rules.circulation.lending_tiers[2]", "'bus' is not one of", ("bus]", 1)),
    ("guangrao", [("  match_points: [isbn, issn, title_author_year]", "  match_points: [isbn, lccn]")],
     "rules.match_points[1]", "'lccn' is not one of: isbn, issn, title_author_year, work", ("lccn", 1)),
    ("gaoming", [("    encoding: gb18030\n", "    encoding: big5\n")], "targets[0].encoding",
     "'big5' is not one of: utf-8, marc8, gb18030", ("big5", 1)),
    ("guangrao", [("    one_card: true", "    one_card: sometimes")], "rules.circulation.one_card",
     "expected true or false", ("sometimes", 1)),
    ("yuanjiang", [("    transfer_days: 5 ", "    transfer_days: -1 ")], "rules.circulation.transfer_days",
     "expected a whole number from 0 to 365, got -1", ("-1", 1)),
    # a MARC tag YAML read as a number
    ("guangrao", [('      cnmarc: ["001", "200"]', '      cnmarc: [001, "200"]')],
     "rules.cataloguing.required_fields.cnmarc[0]", "got the number 1 (quote it", ("001,", 1)),
    # references to libraries that do not exist
    ("gaoming", [("members: [GM, GM-HC, GM-MC, GM-YHE, GM-GH]", "members: [GM, GM-HC, GM-MC, GM-YHE, GM-XX]")],
     "joint_networks[0].members[4]", "'GM-XX' is not a library code", ("GM-XX", 1)),
    ("guangrao", [("{between: [GR, GR-LD], days: 1}", "{between: [GR, GR-LDX], days: 1}")],
     "rules.circulation.transfers[2].between[1]", "'GR-LDX' is not a library code", ("GR-LDX", 1)),
    ("gaoming", [("library_map: {FSTSG: FS,", "library_map: {FSTSG: FOSHAN,")], "targets[0].library_map.FSTSG",
     "'FOSHAN' is neither a library code", ("FOSHAN", 1)),
    # tokens: unknown library, plain token instead of a digest
    ("guangrao", [("{library: GR-DW, sha256:", "{library: GR-DX, sha256:")], "auth.tokens[1].library",
     "'GR-DX' is not a library code", ("GR-DX", 1)),
    ("guangrao", [("sha256: ab00345df3fe866a3c9a1974b27630460e858265004dcbd1c601b48927017f69",
                   "sha256: example-token-GR-DW")], "auth.tokens[1].sha256",
     "expected the SHA-256 hex digest of the token", ("example-token-GR-DW,", 1)),
    # a target code that is already a library code
    ("guangrao", [("  - code: DYL\n", "  - code: GR-DW\n")], "targets[0].code",
     "target code 'GR-DW' is already a library code", ("GR-DW\n", 2)),
    # YAML itself: a repeated key
    ("gaoming", [("    record_syntax: unimarc\n", "    record_syntax: unimarc\n    timeout: 9\n")],
     "targets[0].timeout", "duplicate key (first given at line", ("timeout: 9", 1)),
]


@pytest.mark.parametrize(("name", "edits", "key", "message", "anchor"), SINGLE_PROBLEMS,
                         ids=[f"{case[0]}-{case[2]}-{case[3][:30]}" for case in SINGLE_PROBLEMS])
def test_each_mistake_is_named_with_its_position(tmp_path: Path, name: str, edits: list[tuple[str, str]], key: str,
                                                 message: str, anchor: tuple[str, int]) -> None:
    path, text = break_copy(tmp_path, name, *edits)
    problem = the_problem(path)
    assert problem.key_path == key
    assert message in problem.message, problem.message
    assert (problem.line, problem.column) == where(text, *anchor), str(problem)


def test_two_hubs(tmp_path: Path) -> None:
    path, text = break_copy(tmp_path, "gaoming", ("    tier: branch\n    parent: GM\n    barcode_ranges: [GM01",
                                                  "    tier: hub\n    barcode_ranges: [GM01"))
    problem = the_problem(path)
    assert problem.key_path == "libraries[1].tier"
    assert problem.message.startswith("second hub 'GM-XJXC' (the hub is 'GM'")
    assert problem.line == where(text, "tier: hub", 2)[0]


def test_no_hub_at_all(tmp_path: Path) -> None:
    path, text = break_copy(tmp_path, "yuanjiang", ("    tier: hub\n", "    tier: branch\n    parent: YJ-LJ\n"))
    problems = {p.key_path: p for p in problems_of(path)}
    assert problems["libraries"].message == "no library has tier 'hub' (a network has exactly one)"
    assert problems["network.hub"].message == "hub 'YJ' has tier 'branch', not 'hub'"
    assert (problems["network.hub"].line, problems["network.hub"].column) == where(text, "YJ\n")
    # with no hub above it, the old hub and its new parent now form a cycle
    assert problems["libraries[0].parent"].message == "parent cycle: YJ -> YJ-LJ -> YJ"
    assert len(problems) == 3


def test_parent_cycle(tmp_path: Path) -> None:
    # 荷城 -> its service point 1 -> 荷城: a cycle that never reaches the hub
    path, text = break_copy(tmp_path, "gaoming", (
        "    tier: branch\n    parent: GM\n    barcode_ranges: [GM03", "    tier: branch\n    parent: GM-HC-FWD1\n"
        "    barcode_ranges: [GM03"))
    problem = the_problem(path)
    assert problem.key_path == "libraries[3].parent"
    assert problem.message == "parent cycle: GM-HC -> GM-HC-FWD1 -> GM-HC"
    assert (problem.line, problem.column) == where(text, "GM-HC-FWD1\n")


def test_yaml_syntax_error_in_a_rule_set(tmp_path: Path) -> None:
    path, text = break_copy(tmp_path, "guangrao", ("    tier: mobile\n", "    tier: [mobile\n"))
    problem = the_problem(path)
    assert problem.key_path == "(document)"
    assert problem.line >= where(text, "[mobile")[0]
    assert "flow sequence" in problem.message


def test_not_a_file(tmp_path: Path) -> None:
    problem = the_problem(tmp_path / "missing.yaml")
    assert "No such file" in problem.message


def test_every_problem_is_collected_not_just_the_first(tmp_path: Path) -> None:
    path, text = break_copy(
        tmp_path, "guangrao",
        ("  example_ranges: true", "  example_range: true"),
        ("    tier: mobile\n", "    tier: bookbus\n"),
        ("  kind: embedded\n", "  kind: sqlite\n"),
        ("  barcode_policy: warn", "  barcode_policy: ignore"),
        ("[GR05000000-GR05999999]", "[GR05999999-GR05000000]"),
        ("url: http://sru.example.org/dongying", "url: ftp://sru.example.org/dongying"),
    )
    problems = problems_of(path)
    assert [p.key_path for p in problems] == [
        "network.example_range", "libraries[5].barcode_ranges[0]", "libraries[13].tier",
        "rules.barcode_policy", "store.kind", "targets[0].url",
    ]
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_readme_example_is_a_valid_rule_set(tmp_path: Path) -> None:
    readme = (NETWORKS.parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The rule set"):]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(example, encoding="utf-8")
    network = load_network(path)
    assert {tier: len(members) for tier, members in network.by_tier().items()} == \
        {"hub": 1, "branch": 2, "reading_room": 1, "mobile": 1}
    assert network.to_ingest_policy().libraries["GR-XZBM"].holdings.tag == "952"
    assert network.joint_member_for_card("37050000000123")[1].code == "DY"
    assert network.targets[0].enabled is False


# ---------------------------------------------------------------------------------------------
# Robustness: any damage to a valid file is a ConfigError with positions, never a crash


def _all_paths(value: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_all_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_all_paths(item, (*prefix, index)))
    return found


def _replace_at(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    value[path[0]] = _replace_at(value[path[0]], path[1:], new)  # type: ignore[index]
    return value


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**15, 10**15), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(["GR", "hub", "GR01000000-GR01999999", "tcp:h:1/d", "http://h/x", "905"]),
)
_JUNK = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["code", "tier", "x", "names", "zh"]), inner,
                                                 max_size=3)), max_leaves=6)


_FUZZ_BASE = yaml.safe_load(shipped("gaoming").read_text(encoding="utf-8"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_damage_is_a_config_error_with_positions(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    base = _FUZZ_BASE
    path = data.draw(st.sampled_from(_all_paths(base)), label="path")
    damaged = _replace_at(copy.deepcopy(base), path, data.draw(_JUNK, label="junk"))
    target = tmp_path_factory.getbasetemp() / "fuzz-gaoming.yaml"
    target.write_text(yaml.safe_dump(damaged, allow_unicode=True), encoding="utf-8")
    try:
        network = load_network(target)
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.line >= 1 and problem.column >= 1 and problem.key_path and problem.message
    else:
        assert network.hub in network.libraries


def test_federation_section_and_target_element_set(tmp_path: Path) -> None:
    from federation.federated import FederatedSearch
    from indexer.indexes import load_index_table

    assert load_network(shipped("gaoming")).federation.deadline == 10.0  # the default when the section is absent
    path, _ = break_copy(
        tmp_path, "gaoming",
        ("store:\n", "federation: {deadline: 2.5, result_set_ttl: 60, local_fetch_limit: 200}\n\nstore:\n"),
        ("    record_syntax: unimarc\n", "    record_syntax: unimarc\n    element_set: marcxml\n"),
    )
    network = load_network(path)
    assert (network.federation.deadline, network.federation.result_set_ttl, network.federation.local_fetch_limit) \
        == (2.5, 60, 200)
    assert network.targets[0].element_set == "marcxml"
    # the federated database takes its deadline and TTL from the rule set unless given settings
    federated = FederatedSearch(network, load_index_table(), store=None)  # type: ignore[arg-type]
    assert (federated.settings.deadline, federated.settings.result_set_ttl, federated.settings.local_fetch_limit) \
        == (2.5, 60, 200)


def test_federation_section_mistakes(tmp_path: Path) -> None:
    path, text = break_copy(tmp_path, "gaoming", ("store:\n", "federation: {deadline: 0, timeout: 3}\n\nstore:\n"))
    problems = {p.key_path: p for p in problems_of(path)}
    assert set(problems) == {"federation.deadline", "federation.timeout"}
    assert (problems["federation.deadline"].line, problems["federation.deadline"].column) == where(text, "0, timeout")
    assert "unknown key" in problems["federation.timeout"].message

    path, text = break_copy(tmp_path, "guangrao", ("    protocol: sru\n", "    protocol: sru\n    element_set: F\n"))
    problem = the_problem(path)
    assert problem.key_path.endswith("element_set") and "Z39.50 targets only" in problem.message
