"""Deterministic demo catalogues: the MARC exports a network's libraries would send.

`write_demo_data(policy, out_dir, records=N, seed=S)` writes one ISO 2709 (UTF-8) file per
library of the rule set, `<code>.mrc`, holding exactly N bibliographic records in all. The
same seed gives byte-identical files. Each library exports in its system's format: CNMARC
with 905 holdings by default, MARC21 when its holdings mapping names 852, 952 or 949. The
books are the mix a Chinese county library holds (Chinese fiction, children's books,
agriculture, law, local travel, library science, a share of English titles), and one book
is usually held by several libraries: the hub catalogues it and the branches copy its
record, sometimes with small differences (ISBN-10 against ISBN-13, a missing summary or
subject), so that deduplication and master-record choice are exercised. Books published
before 1988 carry no ISBN and merge by title, author and year. Barcodes are taken in
sequence from the owning library's ranges; some items sit in the rule set's
reference-only locations.

Generation streams: one work at a time goes to the files of the libraries that hold it,
so memory stays flat however many records are asked for.
"""
from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pymarc import Field, Indicators, Leader, Record, Subfield

from indexer.demo_vocab import (
    CHINESE_PUBLISHERS,
    CHINESE_ROLES,
    CHINESE_SUBJECTS,
    ENGLISH_FICTION_NOUNS,
    ENGLISH_FICTION_TITLES,
    ENGLISH_GIVEN_NAMES,
    ENGLISH_NONFICTION_TITLES,
    ENGLISH_PUBLISHERS,
    ENGLISH_SUBJECTS,
    ENGLISH_SURNAMES,
    GIVEN_NAME_CHARACTERS,
    LOCATIONS_BY_TIER,
    MARC21_PLACE_CODES,
    PUBLISHERS_BY_CLASS,
    SURNAMES,
    Publisher,
    Word,
)
from indexer.model import MarcFormat
from indexer.policy import HoldingsMapping, IngestPolicy, LibraryPolicy, NumberRange

MARC21_HOLDINGS_TAGS = frozenset({"852", "952", "949"})
# (tag, subfield) where Koha exports its numeric "not for loan" code (0: loanable).
KOHA_NOT_FOR_LOAN = frozenset({("952", "7"), ("995", "o")})

# How an export lays out its items when the rule set gives no override for the library.
DEFAULT_HOLDINGS = {
    MarcFormat.CNMARC: HoldingsMapping(tag="905", library="a", barcode="b", location="c", call_number="s"),
    MarcFormat.MARC21: HoldingsMapping(tag="852", library="b", barcode="p", location="c", call_number="h"),
}

# Chance that a library of a tier holds a given Chinese book (the hub holds most of the collection).
HOLDING_CHANCE = {
    "hub": 0.75,
    "branch": 0.22,
    "service_point": 0.06,
    "reading_room": 0.10,
    "mobile": 0.12,
    "self_service": 0.15,
}
COPIES_BY_TIER = {"hub": (1, 1, 2, 2, 3), "branch": (1, 1, 2)}
ENGLISH_SHARE = 0.12              # of works
NO_ISBN_BEFORE = 1988             # the Chinese ISBN came in 1987; older books carry a 统一书号
ISBN13_FROM = 2007                # books from 2007 on print ISBN-13
VARIANT_CHANCE = 0.3              # a copied record differs slightly from the one it was copied from
ON_LOAN_CHANCE = 0.12
REFERENCE_CHANCE = 0.08
PROVINCE_CODES = {
    "北京": "110000", "上海": "310000", "南京": "320000", "杭州": "330000", "济南": "370000",
    "昆明": "530000", "广州": "440000", "南昌": "360000",
}


class DemoDataError(ValueError):
    """The rule set cannot hold the demo catalogue asked for (e.g. a barcode range is used up)."""


@dataclass(frozen=True)
class Author:
    name: str        # as a heading: 王建国 / Smith, John
    pinyin: str      # Wang Jianguo; empty for Latin names
    role: str        # 著, 主编, ... / author
    display: str     # as the title page gives it: 王建国 / John Smith


@dataclass(frozen=True)
class Work:
    """One book, before any library catalogues it."""

    number: int
    language: str               # ISO 639-2: chi | eng
    title: str
    title_pinyin: str           # empty for English books
    subtitle: str
    authors: tuple[Author, ...]
    publisher: Publisher
    year: int
    isbn13: str | None
    pages: int
    height_cm: int
    price: str                  # CNY45.00 / USD29.95
    clc: str
    ddc: str
    heading: str
    subdivision: str
    fiction: bool
    illustrated: bool
    summary: str
    book_number: int            # 种次号: the book's number within its class, for call numbers
    catalogued: str             # YYYYMMDD the first library catalogued it

    @property
    def call_number(self) -> str:
        return f"{self.clc}/{self.book_number}"

    def isbn_as_printed(self) -> str | None:
        """ISBN-13 hyphenated for books from 2007, ISBN-10 before (as the book's verso shows it)."""
        if self.isbn13 is None:
            return None
        if self.year >= ISBN13_FROM or not self.isbn13.startswith("978"):
            return hyphenate(self.isbn13, self.publisher)
        return hyphenate(isbn10_of(self.isbn13), self.publisher)


@dataclass
class Variant:
    """How one library's copy of a record departs from the original cataloguing."""

    isbn_form: str = "printed"      # printed | other (ISBN-10 <-> ISBN-13) | compact (no hyphens)
    with_summary: bool = True
    with_subject: bool = True
    with_physical: bool = True


@dataclass(frozen=True)
class HeldItem:
    barcode: str
    call_number: str
    location: str
    on_loan: bool
    due_date: str


@dataclass
class LibraryOutput:
    """What was written for one library."""

    code: str
    format: MarcFormat
    path: Path
    records: int = 0
    items: int = 0


@dataclass
class DemoSummary:
    records: int
    works: int
    items: int
    libraries: dict[str, LibraryOutput] = field(default_factory=dict)


def isbn13_check(first12: str) -> str:
    total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(first12))
    return str((10 - total % 10) % 10)


def isbn10_of(isbn13: str) -> str:
    core = isbn13[3:12]
    total = sum((10 - i) * int(c) for i, c in enumerate(core))
    check = (11 - total % 11) % 11
    return core + ("X" if check == 10 else str(check))


def hyphenate(isbn: str, publisher: Publisher) -> str:
    """Split an ISBN at its group and registrant (known from the publisher's prefix)."""
    group_and_registrant = publisher.isbn_prefix[3:]
    group, registrant = group_and_registrant[0], group_and_registrant[1:]
    if len(isbn) == 13:
        title = isbn[len(publisher.isbn_prefix):12]
        return f"{isbn[:3]}-{group}-{registrant}-{title}-{isbn[12]}"
    title = isbn[len(group_and_registrant):9]
    return f"{group}-{registrant}-{title}-{isbn[9]}"


class _WorkFactory:
    """Invents books; keeps only per-publisher and per-class counters, so memory stays flat."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._titles_issued: dict[str, int] = {}
        self._isbn_offsets: dict[str, int] = {}
        self._book_numbers: dict[str, int] = {}
        self._chinese_weights = [s.weight for s in CHINESE_SUBJECTS]
        self._english_weights = [s.weight for s in ENGLISH_SUBJECTS]
        by_name = {p.name: p for p in CHINESE_PUBLISHERS}
        self._publishers_of = {
            s.clc: tuple(by_name[name] for name in PUBLISHERS_BY_CLASS.get(s.clc, ())) or CHINESE_PUBLISHERS
            for s in CHINESE_SUBJECTS
        }

    def make(self, number: int) -> Work:
        if self._rng.random() < ENGLISH_SHARE:
            return self._english(number)
        return self._chinese(number)

    def _year(self) -> int:
        return max(1978, 2025 - int(self._rng.expovariate(1 / 9)))

    def _catalogued(self, year: int) -> str:
        cat_year = self._rng.randint(max(year, 2003), 2025)
        return f"{cat_year}{self._rng.randint(1, 12):02d}{self._rng.randint(1, 28):02d}"

    def _isbn(self, publishers: tuple[Publisher, ...], chosen: Publisher) -> tuple[Publisher, str]:
        """The next unused ISBN of the publisher, or of the next publisher with numbers left."""
        start = publishers.index(chosen)
        for step in range(len(publishers)):
            publisher = publishers[(start + step) % len(publishers)]
            issued = self._titles_issued.get(publisher.isbn_prefix, 0)
            if issued >= publisher.title_numbers:
                continue
            if publisher.isbn_prefix not in self._isbn_offsets:
                self._isbn_offsets[publisher.isbn_prefix] = self._rng.randrange(publisher.title_numbers)
            self._titles_issued[publisher.isbn_prefix] = issued + 1
            title_number = (self._isbn_offsets[publisher.isbn_prefix] + issued) % publisher.title_numbers
            width = 12 - len(publisher.isbn_prefix)
            first12 = f"{publisher.isbn_prefix}{title_number:0{width}d}"
            return publisher, first12 + isbn13_check(first12)
        raise DemoDataError("the demo publishers' ISBN ranges are used up; ask for fewer records")

    def _book_number(self, clc: str) -> int:
        self._book_numbers[clc] = self._book_numbers.get(clc, 0) + 1
        return self._book_numbers[clc]

    def _chinese_name(self) -> tuple[Word, Word]:
        surname = self._rng.choice(SURNAMES)
        given = self._rng.choice(GIVEN_NAME_CHARACTERS)
        if self._rng.random() < 0.7:
            given = given + self._rng.choice(GIVEN_NAME_CHARACTERS)
        return surname, given

    def _chinese(self, number: int) -> Work:
        rng = self._rng
        subject = rng.choices(CHINESE_SUBJECTS, weights=self._chinese_weights)[0]
        title = rng.choice(subject.topics) + rng.choice(subject.forms)
        if subject.fiction:
            subtitle = rng.choice(("长篇小说", "", "", "")) if subject.clc.startswith("I247") else ""
            role = "著"
        else:
            subtitle = rng.choice(("", "", "", "理论与实践", "图解版", "案例分析"))
            role = rng.choices([r for r, _ in CHINESE_ROLES], weights=[w for _, w in CHINESE_ROLES])[0]
        authors = []
        for _ in range(1 if rng.random() < 0.8 else 2):
            surname, given = self._chinese_name()
            name = surname.zh + given.zh
            pinyin = f"{surname.pinyin.replace(' ', '').capitalize()} {given.pinyin.replace(' ', '').capitalize()}"
            authors.append(Author(name, pinyin, role, name))
        candidates = self._publishers_of[subject.clc]
        publisher = rng.choices(candidates, weights=[p.weight for p in candidates])[0]
        year = self._year()
        isbn13 = None
        if year >= NO_ISBN_BEFORE and rng.random() > 0.02:
            publisher, isbn13 = self._isbn(CHINESE_PUBLISHERS, publisher)
        summary = (f"本书讲述了{title.zh}里普通人的生活与情感。" if subject.fiction
                   else f"本书系统介绍了{subject.heading.zh}的基本知识、方法与实践经验。")
        return Work(
            number=number, language="chi", title=title.zh,
            title_pinyin=" ".join(s.capitalize() for s in title.pinyin.split()),
            subtitle=subtitle, authors=tuple(authors), publisher=publisher, year=year, isbn13=isbn13,
            pages=rng.randint(96, 560), height_cm=rng.choice((21, 23, 24, 26)) if not subject.fiction else 21,
            price=f"CNY{rng.randint(18, 98)}.{rng.choice(('00', '00', '80', '50'))}",
            clc=subject.clc, ddc="", heading=subject.heading.zh, subdivision=subject.subdivision,
            fiction=subject.fiction, illustrated=rng.random() < 0.4, summary=summary,
            book_number=self._book_number(subject.clc), catalogued=self._catalogued(year),
        )

    def _english(self, number: int) -> Work:
        rng = self._rng
        subject = rng.choices(ENGLISH_SUBJECTS, weights=self._english_weights)[0]
        if subject.fiction:
            pattern, subtitle = rng.choice(ENGLISH_FICTION_TITLES)
            title = pattern.format(noun=rng.choice(ENGLISH_FICTION_NOUNS).lower())
            title = title[0].upper() + title[1:]
        else:
            pattern, subtitle = rng.choice(ENGLISH_NONFICTION_TITLES)
            title = pattern.format(topic=subject.topic)
        authors = []
        for _ in range(1 if rng.random() < 0.75 else 2):
            given, surname = rng.choice(ENGLISH_GIVEN_NAMES), rng.choice(ENGLISH_SURNAMES)
            authors.append(Author(f"{surname}, {given}", "", "author", f"{given} {surname}"))
        publisher = rng.choices(ENGLISH_PUBLISHERS, weights=[p.weight for p in ENGLISH_PUBLISHERS])[0]
        year = max(1990, self._year())
        publisher, isbn13 = self._isbn(ENGLISH_PUBLISHERS, publisher)
        summary = (f"A story of {title.lower()}." if subject.fiction
                   else f"Covers the principles and practice of {subject.topic.lower()}.")
        return Work(
            number=number, language="eng", title=title, title_pinyin="", subtitle=subtitle,
            authors=tuple(authors), publisher=publisher, year=year, isbn13=isbn13,
            pages=rng.randint(120, 640), height_cm=rng.choice((20, 23, 24, 25)),
            price=f"USD{rng.randint(12, 89)}.{rng.choice(('95', '99', '00'))}",
            clc=subject.clc, ddc=subject.ddc, heading=subject.heading, subdivision=subject.subdivision,
            fiction=subject.fiction, illustrated=rng.random() < 0.3, summary=summary,
            book_number=self._book_number(subject.clc), catalogued=self._catalogued(year),
        )


class _Barcodes:
    """Hands out a library's barcodes in sequence through its ranges."""

    def __init__(self, library: LibraryPolicy) -> None:
        self._library = library
        self._ranges = sorted(library.barcode_ranges, key=lambda r: (NumberRange.split(r.start) or ("", 0, 0)))
        self._range_index = 0
        self._next: int | None = None
        self._fallback = 0

    def take(self) -> str:
        if not self._ranges:
            self._fallback += 1
            return f"{self._library.code}{self._fallback:08d}"
        while self._range_index < len(self._ranges):
            current = self._ranges[self._range_index]
            low, high = NumberRange.split(current.start), NumberRange.split(current.end)
            if low is None or high is None:
                raise DemoDataError(f"library {self._library.code}: barcode range {current.start}-{current.end} "
                                    "has no numeric part")
            value = low[1] if self._next is None else self._next
            if value <= high[1]:
                self._next = value + 1
                return f"{low[0]}{value:0{low[2]}d}"
            self._range_index += 1
            self._next = None
        raise DemoDataError(f"library {self._library.code}: its barcode ranges are used up; "
                            "ask for fewer records or widen the ranges")


class _Export:
    """One library's export file, written to a temporary name and moved into place when complete."""

    def __init__(self, library: LibraryPolicy, out_dir: Path, reference_locations: tuple[str, ...]) -> None:
        self.library = library
        mapping = library.holdings
        if mapping is not None and mapping.tag in MARC21_HOLDINGS_TAGS:
            self.format = MarcFormat.MARC21
        elif mapping is not None:
            self.format = MarcFormat.CNMARC
        else:
            self.format = MarcFormat.CNMARC
            mapping = DEFAULT_HOLDINGS[MarcFormat.CNMARC]
        self.mapping = mapping
        self.source_code = library.source_codes[0] if library.source_codes else library.code
        self.barcodes = _Barcodes(library)
        self.locations = LOCATIONS_BY_TIER.get(library.tier, ("综合借阅室",))
        self.reference_locations = reference_locations if library.tier in ("hub", "branch") else ()
        self.output = LibraryOutput(library.code, self.format, out_dir / f"{library.code}.mrc")
        self._temporary = out_dir / f".{library.code}.mrc.partial"
        self._file: BinaryIO = open(self._temporary, "wb")

    def write(self, record: Record, items: int) -> None:
        self._file.write(record.as_marc())
        self.output.records += 1
        self.output.items += items

    def finish(self) -> None:
        """Move the file into place unless an identical one is already there (keeps its mtime)."""
        self._file.close()
        if self.output.path.exists() and _same_content(self.output.path, self._temporary):
            self._temporary.unlink()
        else:
            os.replace(self._temporary, self.output.path)

    def abandon(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return _digest(a) == _digest(b)


def _digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def write_demo_data(policy: IngestPolicy, out_dir: str | Path, *, records: int, seed: int) -> DemoSummary:
    """Write `records` bibliographic records, spread over one export file per library."""
    if records < 0:
        raise DemoDataError("the number of records must not be negative")
    if not policy.libraries:
        raise DemoDataError("the rule set has no libraries")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    exports = [_Export(library, out, policy.reference_only_locations) for library in policy.libraries.values()]
    summary = DemoSummary(records=0, works=0, items=0)
    try:
        factory = _WorkFactory(rng)
        cataloguer = _Cataloguer(rng, policy.hub)
        number = 0
        while summary.records < records:
            number += 1
            work = factory.make(number)
            holders = _holders(rng, work, exports, policy.hub)[: records - summary.records]
            summary.works += 1
            for position, export in enumerate(holders):
                variant = Variant() if position == 0 else cataloguer.variant(work)
                items = _items(rng, work, export)
                record = cataloguer.record(work, export, variant, items)
                export.write(record, len(items))
                summary.records += 1
                summary.items += len(items)
    except BaseException:
        for export in exports:
            export.abandon()
        raise
    for export in exports:
        export.finish()
        summary.libraries[export.library.code] = export.output
    return summary


def _holders(rng: random.Random, work: Work, exports: list[_Export], hub: str) -> list[_Export]:
    """The libraries that hold the work, the cataloguing library first (the hub when it holds it)."""
    holders = []
    for export in exports:
        chance = HOLDING_CHANCE.get(export.library.tier, 0.1)
        if work.language == "eng":
            chance *= 1.5 if export.format is MarcFormat.MARC21 else 0.4
        if rng.random() < chance:
            holders.append(export)
    if not holders:
        holders.append(next((e for e in exports if e.library.code == hub), exports[0]))
    holders.sort(key=lambda e: e.library.code != hub)
    return holders


def _items(rng: random.Random, work: Work, export: _Export) -> list[HeldItem]:
    copies = rng.choice(COPIES_BY_TIER.get(export.library.tier, (1,)))
    items = []
    for _ in range(copies):
        if export.reference_locations and rng.random() < REFERENCE_CHANCE:
            location, on_loan = rng.choice(export.reference_locations), False
        else:
            location, on_loan = rng.choice(export.locations), rng.random() < ON_LOAN_CHANCE
        due = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" if on_loan else ""
        items.append(HeldItem(export.barcodes.take(), work.call_number, location, on_loan, due))
    return items


class _Cataloguer:
    """Turns a work into the record a library's system would export for it."""

    def __init__(self, rng: random.Random, hub: str) -> None:
        self._rng = rng
        self._hub = hub
        self._control_numbers: dict[str, int] = {}

    def variant(self, work: Work) -> Variant:
        rng = self._rng
        if rng.random() >= VARIANT_CHANCE:
            return Variant()
        variant = Variant()
        change = rng.choice(("isbn", "summary", "subject", "physical", "isbn"))
        if change == "isbn" and work.isbn13 is not None:
            variant.isbn_form = rng.choice(("other", "compact"))
        elif change == "summary":
            variant.with_summary = False
        elif change == "subject":
            variant.with_subject = False
        else:
            variant.with_physical = False
        return variant

    def _control_number(self, code: str) -> str:
        self._control_numbers[code] = self._control_numbers.get(code, 0) + 1
        return f"{code}{self._control_numbers[code]:08d}"

    def record(self, work: Work, export: _Export, variant: Variant, items: list[HeldItem]) -> Record:
        if export.format is MarcFormat.MARC21:
            return self._marc21(work, export, variant, items)
        return self._cnmarc(work, export, variant, items)

    @staticmethod
    def _isbn(work: Work, variant: Variant) -> str | None:
        printed = work.isbn_as_printed()
        if printed is None or variant.isbn_form == "printed":
            return printed
        if variant.isbn_form == "compact":
            return printed.replace("-", "")
        if len(printed.replace("-", "")) == 10:
            return hyphenate(work.isbn13, work.publisher)  # type: ignore[arg-type]
        if work.isbn13 and work.isbn13.startswith("978"):
            return hyphenate(isbn10_of(work.isbn13), work.publisher)
        return printed

    def _timestamp(self, work: Work) -> str:
        return f"{work.catalogued}{self._rng.randint(8, 17):02d}{self._rng.randint(0, 59):02d}" \
               f"{self._rng.randint(0, 59):02d}.0"

    # -- CNMARC ---------------------------------------------------------------------------------
    def _cnmarc(self, work: Work, export: _Export, variant: Variant, items: list[HeldItem]) -> Record:
        record = Record(to_unicode=False, force_utf8=True)
        # UNIMARC leader/09 is undefined (blank): the character set is in 100$a/26-29 ("50" = UTF-8).
        record.leader = Leader("     nam0 22        4500")
        add = record.add_field
        add(Field(tag="001", data=self._control_number(export.library.code)))
        add(Field(tag="005", data=self._timestamp(work)))
        isbn = self._isbn(work, variant)
        if isbn is not None:
            add(_df("010", "  ", ("a", isbn), ("d", work.price)))
        script = "ea" if work.language == "chi" else "ba"
        add(_df("100", "  ", ("a", f"{work.catalogued}d{work.year}    em y0chiy50      {script}")))
        add(_df("101", "0 ", ("a", work.language)))
        if work.language == "chi":
            add(_df("102", "  ", ("a", "CN"), ("b", PROVINCE_CODES.get(work.publisher.place, "110000"))))
        else:
            add(_df("102", "  ", ("a", "US" if "," in work.publisher.place else "GB")))
        illustration = "a   " if work.illustrated else "y   "
        literature = "a" if work.fiction else "y"
        add(_df("105", "  ", ("a", f"{illustration}z   000{literature}y")))
        add(_df("106", "  ", ("a", "r")))
        title = [("a", work.title)]
        if work.title_pinyin:
            title.append(("A", work.title_pinyin))
        if work.subtitle:
            title.append(("e", work.subtitle))
        title.append(("f", _responsibility(work)))
        add(_df("200", "1 ", *title))
        add(_df("210", "  ", ("a", work.publisher.place), ("c", work.publisher.name), ("d", str(work.year))))
        if variant.with_physical:
            physical = [("a", f"{work.pages}页" if work.language == "chi" else f"{work.pages} p.")]
            if work.illustrated:
                physical.append(("c", "图" if work.language == "chi" else "ill."))
            physical.append(("d", f"{work.height_cm}cm"))
            add(_df("215", "  ", *physical))
        if variant.with_summary and work.number % 3 != 0:
            add(_df("330", "  ", ("a", work.summary)))
        if variant.with_subject:
            subject = [("a", work.heading)]
            if work.subdivision:
                subject.append(("x", work.subdivision))
            add(_df("606", "0 ", *subject))
        if work.ddc:
            add(_df("676", "  ", ("a", work.ddc), ("v", "23")))
        add(_df("690", "  ", ("a", work.clc), ("v", "5")))
        for author in work.authors:
            if work.language == "chi":
                add(_df("701", " 0", ("a", author.name), ("A", author.pinyin), ("4", author.role)))
            else:
                surname, given = author.name.split(", ")
                add(_df("701", " 1", ("a", surname), ("b", given), ("4", "著")))
        add(_df("801", " 0", ("a", "CN"), ("b", export.source_code), ("c", work.catalogued)))
        for item in items:
            add(self._holding(work, export, item, chinese_status=True))
        return record

    # -- MARC21 ---------------------------------------------------------------------------------
    def _marc21(self, work: Work, export: _Export, variant: Variant, items: list[HeldItem]) -> Record:
        record = Record(to_unicode=True, force_utf8=True, leader="     nam a22     4a 4500")
        add = record.add_field
        add(Field(tag="001", data=self._control_number(export.library.code)))
        add(Field(tag="005", data=self._timestamp(work)))
        chinese = work.language == "chi"
        place_code = "cc " if chinese else MARC21_PLACE_CODES.get(work.publisher.place, "xx ")
        literary = "1" if work.fiction else "0"
        illustrations = "a   " if work.illustrated else "    "
        fixed = f"{work.catalogued[2:]}s{work.year}    {place_code}{illustrations}{' ' * 7}000 {literary} {work.language} d"
        add(Field(tag="008", data=fixed))
        isbn = self._isbn(work, variant)
        if isbn is not None:
            add(_df("020", "  ", ("a", isbn), ("c", work.price)))
        add(_df("040", "  ", ("a", export.source_code), ("b", work.language), ("c", export.source_code)))
        if work.ddc:
            add(_df("082", "04", ("a", work.ddc), ("2", "23")))
        # Chinese libraries shelve every book by CLC, foreign ones included.
        add(_df("084", "  ", ("a", work.clc), ("2", "clc")))
        first = work.authors[0]
        add(_df("100", "1 ", ("a", first.name + ("" if chinese else ",")), ("e", first.role + ".")))
        skip = _nonfiling(work.title)
        statement = _responsibility(work)
        title = [("a", work.title + (" :" if work.subtitle else " /"))]
        if work.subtitle:
            title.append(("b", work.subtitle + " /"))
        title.append(("c", statement + "."))
        add(_df("245", f"1{skip}", *title))
        add(_df("260", "  ", ("a", work.publisher.place + " :"), ("b", work.publisher.name + ","),
                ("c", f"{work.year}.")))
        if variant.with_physical:
            pages = f"{work.pages}页" if chinese else f"{work.pages} p."
            physical = [("a", pages + (" :" if work.illustrated else " ;"))]
            if work.illustrated:
                physical.append(("b", ("图" if chinese else "ill.") + " ;"))
            physical.append(("c", f"{work.height_cm} cm."))
            add(_df("300", "  ", *physical))
        if variant.with_summary and work.number % 3 != 0:
            add(_df("520", "  ", ("a", work.summary)))
        if variant.with_subject:
            subject = [("a", work.heading)]
            if work.subdivision:
                subject.append(("x", work.subdivision))
            if chinese:
                add(_df("650", " 7", *subject, ("2", "cct")))
            else:
                add(_df("650", " 0", *subject))
        for author in work.authors[1:]:
            add(_df("700", "1 ", ("a", author.name + ("" if chinese else ",")), ("e", author.role + ".")))
        for item in items:
            add(self._holding(work, export, item, chinese_status=False))
        return record

    def _holding(self, work: Work, export: _Export, item: HeldItem, *, chinese_status: bool) -> Field:
        mapping = export.mapping
        values: dict[str, str] = {}
        if export.format is MarcFormat.CNMARC and mapping.tag == "905":
            values["d"], values["e"] = work.clc, str(work.book_number)  # class and book number, as 905 splits them
        if mapping.library:
            values[mapping.library] = export.source_code
        if mapping.barcode:
            values[mapping.barcode] = item.barcode
        if mapping.call_number:
            values[mapping.call_number] = item.call_number
        if mapping.location:
            values[mapping.location] = item.location
        if mapping.status:
            if (mapping.tag, mapping.status) in KOHA_NOT_FOR_LOAN:
                # Koha keeps a numeric not-for-loan code here; a loan shows only as the due date.
                values[mapping.status] = "1" if item.location in export.reference_locations else "0"
            elif chinese_status:
                values[mapping.status] = "借出" if item.on_loan else "在架"
            else:
                values[mapping.status] = "Checked out" if item.on_loan else "Available"
        if mapping.due_date and item.on_loan:
            values[mapping.due_date] = item.due_date
        if mapping.material_type:
            values[mapping.material_type] = "图书" if chinese_status else "BK"
        subfields = [Subfield(code, values[code]) for code in sorted(values, key=_subfield_order)]
        return Field(tag=mapping.tag, indicators=Indicators(" ", " "), subfields=subfields)


def _subfield_order(code: str) -> tuple[int, str]:
    return (0 if code.isalpha() else 1, code)


def _df(tag: str, indicators: str, *subfields: tuple[str, str]) -> Field:
    return Field(tag=tag, indicators=Indicators(indicators[0], indicators[1]),
                 subfields=[Subfield(code, value) for code, value in subfields])


def _responsibility(work: Work) -> str:
    names = [a.display for a in work.authors]
    if work.language == "chi":
        return "，".join(names) + work.authors[0].role
    return "by " + " and ".join(names)


def _nonfiling(title: str) -> str:
    for article in ("The ", "An ", "A "):
        if title.startswith(article):
            return str(len(article))
    return "0"

