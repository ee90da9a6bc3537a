"""The shared test corpus of union records for store tests.

`corpus_records()` is what the conformance suite loads into every store:
- handmade records that pin down edge cases (CJK runs inside longer titles, diacritics and
  full-width forms, ISBD punctuation, ISBN-10 vs ISBN-13, records without dates or items,
  one work held by several libraries with different availability per item);
- generated county-library records (Chinese and English titles, authors, CLC classes,
  years, ISBNs with valid check digits, items across the tiers of a network), deterministic
  for a seed;
- the real MARC21 (LoC), CNMARC and UNIMARC fixtures, read and extracted by the indexer's
  own readers and extraction, when those modules are present in the tree.
"""
from __future__ import annotations

import functools
import hashlib
import random
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from indexer.demo import write_demo_data
from indexer.extract import analyse, contribution_analyzer, control_number
from indexer.holdings import extract_items
from indexer.indexes import IndexTable, load_index_table
from indexer.model import Availability, Contribution, Item, MarcFormat, UnionRecord
from indexer.policy import IngestPolicy
from indexer.readers import read_records
from indexer.union import Incoming, MergeSession, fingerprint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# A small county network: code -> tier.
LIBRARIES: dict[str, str] = {
    "HUB": "hub",
    "BR01": "branch",
    "BR02": "branch",
    "SP01": "service_point",
    "RR01": "reading_room",
    "BUS1": "mobile",
}


def isbn13(core12: str) -> str:
    total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(core12))
    return core12 + str((10 - total % 10) % 10)


def isbn10_of(isbn: str) -> str:
    """The ISBN-10 form of a 978 ISBN-13."""
    core = isbn[3:12]
    total = sum((10 - i) * int(c) for i, c in enumerate(core))
    check = (11 - total % 11) % 11
    return core + ("X" if check == 10 else str(check))


def _item(barcode: str, library: str, availability: Availability, call_number: str = "", location: str = "",
          status: str = "") -> Item:
    return Item(
        barcode=barcode,
        library=library,
        tier=LIBRARIES[library],
        call_number=call_number,
        location=location,
        status=status or availability.value,
        availability=availability,
        material_type="book",
        source_library=library,
    )


def make_record(
    record_id: str,
    fields: dict[str, list[str]],
    items: Iterable[Item] = (),
    library: str = "HUB",
    marc_format: MarcFormat = MarcFormat.CNMARC,
) -> UnionRecord:
    items = list(items)
    by_library: dict[str, list[Item]] = {}
    for item in items:
        by_library.setdefault(item.library, []).append(item)
    contributions = [Contribution(library, record_id, marc_format, {"leader": "", "fields": []}, items=by_library.pop(library, []))]
    for other, other_items in sorted(by_library.items()):
        contributions.append(Contribution(other, f"{other}-{record_id}", marc_format, {"leader": "", "fields": []},
                                          items=other_items))
    match_keys = [f"isbn:{v}" for v in fields.get("isbn", [])] + [f"work:{record_id}"]
    return UnionRecord(record_id, contributions, (library, record_id), fields=fields, match_keys=match_keys)


A = Availability


def handmade_records() -> list[UnionRecord]:
    """Records chosen for the edge cases of the query semantics."""
    return [
        make_record("h01", {
            "title": ["图书馆学基础", "Tu shu guan xue ji chu"],
            "creator": ["吴慰慈 编著"],
            "subject": ["图书馆学 教材"],
            "publisher": ["高等教育出版社"],
            "place": ["北京"],
            "date": ["2008"],
            "language": ["chi"],
            "isbn": ["9787040239812"],
            "classification": ["G250"],
            "clc": ["G250"],
            "class_top": ["G"],
            "material_type": ["book"],
            "control_number": ["012345678"],
        }, [
            _item("HUB0000001", "HUB", A.AVAILABLE, "G250/12", "中文图书借阅区"),
            _item("BR010000001", "BR01", A.ON_LOAN, "G250/12", "成人借阅室"),
        ]),
        make_record("h02", {
            "title": ["公共图书馆服务体系 :", "总分馆制研究 /"],
            "creator": ["李国新"],
            "subject": ["公共图书馆 服务体系 研究"],
            "publisher": ["国家图书馆出版社"],
            "date": ["c2015."],
            "language": ["chi"],
            "isbn": ["9787501355235"],
            "classification": ["G258.2"],
            "clc": ["G258.2"],
            "class_top": ["G"],
            "material_type": ["book"],
        }, [
            _item("BR020000001", "BR02", A.AVAILABLE, "G258.2/3"),
            _item("SP010000001", "SP01", A.IN_TRANSIT, "G258.2/3"),
        ]),
        make_record("h03", {
            "title": ["Müller's Geschichte der Bibliotheken."],
            "creator": ["Müller, Jürgen, 1950-"],
            "subject": ["Libraries History", "Bibliothèques Histoire"],
            "publisher": ["Harrassowitz,"],
            "place": ["Wiesbaden :"],
            "date": ["1998"],
            "language": ["ger"],
            "isbn": ["9783447040150"],
            "classification": ["Z721", "027.009"],
            "ddc": ["027.009"],
            "lcc": ["Z721"],
            "class_top": ["000"],
            "material_type": ["book"],
            "notes": ["Includes bibliographical references (p. 301-320) and index."],
        }, [_item("HUB0000002", "HUB", A.REFERENCE_ONLY, "Z721 .M85 1998", "外文书库")], marc_format=MarcFormat.MARC21),
        make_record("h04", {
            "title": ["ＡＢＣ１２３ 全角标题"],
            "creator": ["张三"],
            "date": ["2020"],
            "language": ["chi"],
            "material_type": ["book"],
            "class_top": ["I"],
            "classification": ["I247.5"],
            "clc": ["I247.5"],
        }, [_item("BUS10000001", "BUS1", A.AVAILABLE, "I247.5/88")]),
        make_record("h05", {
            "title": ["The history of the library in western civilization"],
            "creator": ["Staikos, K. Sp."],
            "subject": ["Libraries History", "Civilization, Western"],
            "publisher": ["Oak Knoll Press"],
            "place": ["New Castle, Del."],
            "date": ["2004"],
            "language": ["eng"],
            "isbn": ["9781584560654"],
            "series": ["History of the library ; v. 1"],
            "classification": ["Z722"],
            "lcc": ["Z722"],
            "class_top": ["Z"],
            "material_type": ["book"],
        }, [
            _item("HUB0000003", "HUB", A.ON_LOAN, "Z722 .S73 2004"),
            _item("RR010000001", "RR01", A.AVAILABLE, "Z722 .S73 2004"),
        ], marc_format=MarcFormat.MARC21),
        make_record("h06", {
            # No date, no language, no items: NE and missing-sort-key cases.
            "title": ["Woman and women in libraries"],
            "creator": ["Anonymous"],
            "material_type": ["serial"],
            "issn": ["0024-2519"],
        }, [], marc_format=MarcFormat.MARC21),
        make_record("h07", {
            "title": ["图书馆 history 双语读本"],
            "creator": ["王五", "Smith, John"],
            "subject": ["图书馆 历史"],
            "date": ["1987"],
            "language": ["chi", "eng"],
            "classification": ["G259"],
            "clc": ["G259"],
            "class_top": ["G"],
            "material_type": ["book"],
        }, [
            _item("HUB0000004", "HUB", A.LOST),
            _item("BR010000002", "BR01", A.AVAILABLE),
            _item("BR020000002", "BR02", A.ON_HOLD),
        ]),
        make_record("h08", {
            "title": ["图"],
            "creator": ["佚名"],
            "date": ["1900"],
            "material_type": ["map"],
            "class_top": ["K"],
        }, [_item("SP010000002", "SP01", A.MISSING)]),
        make_record("h09", {
            "title": ["Womens studies: a reader"],
            "creator": ["Woman, A."],
            "date": ["[1999?]"],
            "language": ["eng"],
            "isbn": ["9780131276415"],
            "material_type": ["book"],
            "class_top": ["C"],
        }, [_item("BUS10000002", "BUS1", A.ON_LOAN, "C913.68/1")], marc_format=MarcFormat.MARC21),
        make_record("h10", {
            "title": ["中国图书馆分类法", "Zhong guo tu shu guan fen lei fa"],
            "creator": ["国家图书馆《中国图书馆分类法》编辑委员会 编"],
            "subject": ["图书分类法 中国"],
            "date": ["2010"],
            "language": ["chi"],
            "isbn": ["9787501342860"],
            "classification": ["G254.122"],
            "clc": ["G254.122"],
            "class_top": ["G"],
            "material_type": ["book"],
        }, [
            _item("HUB0000005", "HUB", A.AVAILABLE, "G254.122/2"),
            _item("HUB0000006", "HUB", A.ON_LOAN, "G254.122/2"),
            _item("RR010000002", "RR01", A.REFERENCE_ONLY, "G254.122/2"),
        ]),
        make_record("h11", {
            # Longer than any join chain: a phrase query for the whole title has 47 tokens.
            "title": ["县域公共图书馆总分馆制建设与一卡通借还服务体系研究暨乡村振兴背景下基层图书馆阅读推广的理论与实践探索"],
            "creator": ["课题组 编"],
            "date": ["2023"],
            "language": ["chi"],
            "material_type": ["book"],
        }, [_item("SP010000003", "SP01", A.AVAILABLE, "", "")]),
        make_record("h12", {
            # Values without any token, and one whose key is empty.
            "title": ["...", "——"],
            "creator": ["[s.n.]"],
            "material_type": ["book"],
        }, [
            _item("RR010000003", "RR01", A.ON_LOAN, "", "阅览室"),
            # A copy reported under a code the network does not know: no tier.
            Item("XX0000001", "XX", "", availability=A.UNKNOWN, source_library="xx"),
        ]),
        make_record("h13", {
            # Two years and none between them: `date >= 2016 and date <= 2019` holds (each bound by
            # another year), `date within "2016 2019"` does not.
            "title": ["Reprint of a county gazetteer"],
            "date": ["2010", "2025"],
            "language": ["eng"],
            "material_type": ["book"],
        }, [_item("HUB0000007", "HUB", A.AVAILABLE, "K295.2/1")]),
    ]


_TOPICS = ("图书馆", "阅读推广", "乡村振兴", "小麦", "丝绸之路", "黄河", "春天", "故乡", "月光", "县域经济",
           "家庭农场", "合同法", "民法典", "信息检索", "儿童文学")
_FORMS = ("基础", "概论", "教程", "的故事", "研究", "实务", "十讲", "指南", "散记", "简史")
_CLASSES = ("G250", "G252", "G254", "I247.5", "I267", "I287.5", "K20", "K928.9", "D923", "F320.3", "S512.1",
            "TP311", "R161", "O1", "B82")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "明华建国平芳丽军伟静强磊敏燕红"
_PUBLISHERS = ("人民文学出版社", "中国农业出版社", "国家图书馆出版社", "山东人民出版社", "Oak Knoll Press",
               "Libraries Unlimited")
_ENGLISH_WORDS = ("library", "reading", "river", "spring", "village", "history", "garden", "children",
                  "science", "stories", "women", "light", "county", "field")
_LANGUAGES = ("chi", "chi", "chi", "eng", "jpn", "ger", "fre")
_AVAILABILITY = (A.AVAILABLE, A.AVAILABLE, A.AVAILABLE, A.ON_LOAN, A.ON_LOAN, A.IN_TRANSIT, A.ON_HOLD,
                 A.REFERENCE_ONLY, A.LOST, A.MISSING)
_LOCATIONS = ("中文图书借阅区", "少儿阅览室", "报刊阅览室", "流动书架", "外文书库")


def generated_records(count: int = 400, seed: int = 20260101) -> list[UnionRecord]:
    """County-library-like records, the same for the same seed."""
    rng = random.Random(seed)
    libraries = list(LIBRARIES)
    records = []
    barcode = 0
    for n in range(count):
        chinese = rng.random() < 0.75
        if chinese:
            title = rng.choice(_TOPICS) + rng.choice(_FORMS)
            if rng.random() < 0.3:
                title += f"（第{rng.randint(1, 3)}版）"
            creator = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))
            creators = [creator + rng.choice(("著", " 主编", " 编著"))]
        else:
            words = rng.sample(_ENGLISH_WORDS, rng.randint(2, 4))
            title = " ".join(words).capitalize() + rng.choice(("", " /", ".", " :"))
            creators = [f"{rng.choice(('Smith', 'Müller', 'Lee', 'García', 'Brown'))}, {rng.choice('ABCDEJ')}."]
        record_class = rng.choice(_CLASSES)
        fields: dict[str, list[str]] = {
            "title": [title],
            "creator": creators,
            "subject": [rng.choice(_TOPICS) + " " + rng.choice(("研究", "教材", "通俗读物", "history"))],
            "publisher": [rng.choice(_PUBLISHERS)],
            "classification": [record_class],
            "clc": [record_class],
            "class_top": [record_class[0]],
            "material_type": [rng.choice(("book", "book", "book", "serial", "score", "map"))],
        }
        if rng.random() < 0.9:
            fields["date"] = [rng.choice(("{}", "c{}.", "[{}]", "{}-{}")).format(rng.randint(1950, 2024), 2025)]
        if rng.random() < 0.85:
            fields["language"] = [rng.choice(_LANGUAGES)]
        if rng.random() < 0.8:
            isbn = isbn13(f"9787{rng.randint(10000000, 99999999)}")
            fields["isbn"] = [isbn]
        if rng.random() < 0.2:
            fields["notes"] = [f"本书共{rng.randint(2, 30)}章" if chinese else "Includes index."]
        if rng.random() < 0.15:
            fields["series"] = [rng.choice(("县域文库", "Library science series", "农家书屋丛书"))]
        items = []
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
            barcode += 1
            library = rng.choice(libraries)
            items.append(_item(
                f"{library}G{barcode:06d}", library, rng.choice(_AVAILABILITY),
                f"{record_class}/{rng.randint(1, 99)}", rng.choice(_LOCATIONS),
            ))
        record_id = "g" + hashlib.sha1(f"{seed}:{n}".encode()).hexdigest()[:10]
        owner = items[0].library if items and rng.random() < 0.5 else "HUB"
        records.append(make_record(record_id, fields, items, library=owner))
    return records


# Real exports: (file under fixtures/, the library that sent it, how many records to take).
REAL_SOURCES: tuple[tuple[str, str, int | None], ...] = (
    ("marc21/loc-bibliographic-386.mrc", "HUB", None),
    ("marc21/oclc-cjk-880.utf8.mrc", "BR01", None),
    ("marc21/stanford-30.utf8.mrc", "BR02", None),
    ("marc21/one-marc8.mrc", "SP01", None),
    ("cnmarc/dp2_sru_sample_cnmarcxml.iso", "HUB", None),
    ("cnmarc/sample_cnmarcxml.xml", "RR01", None),
    ("unimarc/periouni-3064.mrc", "BUS1", 600),
)
DEMO_NETWORK = Path(__file__).resolve().parent.parent / "config" / "networks" / "guangrao.yaml"


def _contributions(path: Path, library: str, limit: int | None, policy: IngestPolicy | None,
                   table: IndexTable) -> Iterator[Incoming]:
    taken = 0
    for result in read_records(path):
        if result.record is None or result.format is None:
            continue  # a broken record: the readers' tests cover those
        if limit is not None and taken >= limit:
            return
        record = result.record
        marc_format = MarcFormat(result.format)
        items: list[Item] = []
        if policy is not None:
            holdings = extract_items(record, marc_format, policy.libraries[library], policy, default_library=library)
            items = holdings.items
        source_id = control_number(record, marc_format) or f"{path.name}#{result.position}"
        marc = record.as_dict()
        contribution = Contribution(library, source_id, marc_format, marc,
                                    fingerprint=fingerprint(marc, marc_format, items), items=items)
        taken += 1
        yield Incoming(contribution, analyse(record, marc_format, table))


def merge(incomings: Iterable[Incoming], table: IndexTable, hub: str = "HUB") -> list[UnionRecord]:
    """Union records of contributions, deduplicated by the indexer's own merge rules (in memory)."""
    session = MergeSession(hub=hub, match_points=("isbn", "issn", "title_author_year"),
                           analyze=contribution_analyzer(table))
    for incoming in incomings:
        if session.record_of(*incoming.key) is not None:
            continue  # the same control number twice in one export: keep the first
        session.mark_absent(session.unknown_ids(incoming))
        session.place(incoming)
    upserts, _ = session.changes()
    return upserts


@functools.lru_cache(maxsize=None)
def real_records() -> tuple[UnionRecord, ...]:
    """The real MARC21, CNMARC and UNIMARC fixtures as union records (no items: LoC and the
    others export bibliographic records only)."""
    table = load_index_table()
    incomings = [
        incoming
        for name, library, limit in REAL_SOURCES
        for incoming in _contributions(FIXTURES / name, library, limit, None, table)
    ]
    return tuple(merge(incomings, table))


@functools.lru_cache(maxsize=None)
def demo_records(count: int = 600, seed: int = 7) -> tuple[UnionRecord, ...]:
    """`federation demo-data` output for the Guangrao network, read back with holdings."""
    from federation.rules import load_network

    network = load_network(DEMO_NETWORK)
    policy = network.to_ingest_policy()
    table = load_index_table()
    with tempfile.TemporaryDirectory() as directory:
        write_demo_data(policy, directory, records=count, seed=seed)
        incomings = [
            incoming
            for path in sorted(Path(directory).glob("*.mrc"))
            for incoming in _contributions(path, path.stem, None, policy, table)
        ]
    return tuple(merge(incomings, table, hub=policy.hub))


def small_corpus() -> list[UnionRecord]:
    """Handmade and generated records only (about 400): quick to build, for store mechanics."""
    return handmade_records() + generated_records()


def corpus_records() -> list[UnionRecord]:
    """The conformance corpus: handmade, generated, real fixtures and demo data."""
    return handmade_records() + generated_records() + list(real_records()) + list(demo_records())
