"""The query mix, drawn from the benchmark's own records so that every query finds something.

Kinds (the issue's list): title word, author, ISBN, subject, two title words ANDed, a title
phrase, a publication year range, a title word AND a holding library. Each query is written
in CQL for SRU and PQF for Z39.50, the same for both servers except for the holding library:
we know it by its network code (Bib-1 1044), Zebra by the export's 852$b (Bib-1 56 in the
benchmark's profile).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pymarc

from benchmarks.zebra import LIBRARY_ATTRIBUTE as ZEBRA_LIBRARY_ATTRIBUTE

OUR_LIBRARY_ATTRIBUTE = 1044
KINDS = ("title", "author", "isbn", "subject", "title_and", "phrase", "year_range", "title_library")
RECORD_TERMINATOR = b"\x1d"
ENGLISH_STOPWORDS = frozenset("a an and the of in on for to with from by at as is are its into".split())
_CJK = re.compile(r"[\u3400-\u9fff]+")
_LATIN_WORD = re.compile(r"[A-Za-z]{4,}")


@dataclass(frozen=True)
class BenchQuery:
    kind: str
    cql: str
    pqf_ours: str
    pqf_zebra: str
    cql_zebra: str = ""         # where it differs from `cql`

    def cql_for(self, zebra: bool) -> str:
        return self.cql_zebra if zebra and self.cql_zebra else self.cql

    def pqf_for(self, zebra: bool) -> str:
        return self.pqf_zebra if zebra else self.pqf_ours


def _cql_term(term: str) -> str:
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pqf_term(term: str) -> str:
    return '"' + term.replace('"', "") + '"'


def _clause(use: int, term: str, *, extra: str = "") -> str:
    return f"@attr 1={use} {extra}{_pqf_term(term)}"


def sample_records(files: Sequence[Path], count: int, seed: int) -> list[tuple[str, pymarc.Record]]:
    """`count` (library code, record) pairs spread over the files (`<library code>.mrc`, ISO 2709
    in UTF-8), chosen with a fixed seed; only the chosen records are decoded."""
    def chunks(path: Path) -> list[bytes]:
        return [chunk + RECORD_TERMINATOR for chunk in path.read_bytes().split(RECORD_TERMINATOR) if chunk.strip()]

    # Two passes, one file in memory at a time (a 1M-record catalogue is half a gigabyte).
    sizes = [len(chunks(path)) for path in files]
    rng = random.Random(seed)
    positions = rng.sample(range(sum(sizes)), min(count, sum(sizes)))
    wanted: dict[int, int] = {position: rank for rank, position in enumerate(positions)}
    chosen: list[tuple[str, bytes] | None] = [None] * len(positions)
    first = 0
    for path, size in zip(files, sizes):
        in_file = [(position - first, rank) for position, rank in wanted.items() if first <= position < first + size]
        if in_file:
            records = chunks(path)
            for offset, rank in in_file:
                chosen[rank] = (path.stem, records[offset])
        first += size
    return [(library, pymarc.Record(data=data, to_unicode=True, force_utf8=True))
            for library, data in (entry for entry in chosen if entry is not None)]


def _subfield(record: pymarc.Record, tag: str, code: str) -> str:
    for field in record.get_fields(tag):
        values = field.get_subfields(code)
        if values:
            return values[0]
    return ""


def _clean(text: str) -> str:
    return re.sub(r"[\s/:;,.=]+$", "", text).strip()


def _title_words(title: str, rng: random.Random) -> list[str]:
    """Search words of a title: two-character pieces of Chinese runs, Latin words of 4+ letters."""
    words = [w for w in _LATIN_WORD.findall(title) if w.lower() not in ENGLISH_STOPWORDS]
    for run in _CJK.findall(title):
        if len(run) >= 2:
            start = rng.randrange(0, len(run) - 1)
            words.append(run[start:start + 2])
    return words


def _phrase(title: str, rng: random.Random) -> str | None:
    runs = [r for r in _CJK.findall(title) if len(r) >= 4]
    if runs:
        run = rng.choice(runs)
        length = min(len(run), rng.randint(3, 5))
        start = rng.randrange(0, len(run) - length + 1)
        return run[start:start + length]
    words = title.split()
    if len(words) >= 3:
        start = rng.randrange(0, len(words) - 1)
        return _clean(" ".join(words[start:start + 2]))
    return None


def _queries_for(library: str, record: pymarc.Record, rng: random.Random) -> Iterator[BenchQuery]:
    title = _clean(_subfield(record, "245", "a"))
    words = _title_words(title, rng)
    if words:
        word = rng.choice(words)
        yield BenchQuery("title", f"dc.title={_cql_term(word)}", _clause(4, word), _clause(4, word))
    if len(words) >= 2:
        first, second = rng.sample(words, 2)
        cql = f"dc.title={_cql_term(first)} and dc.title={_cql_term(second)}"
        pqf = f"@and {_clause(4, first)} {_clause(4, second)}"
        yield BenchQuery("title_and", cql, pqf, pqf)
    phrase = _phrase(title, rng)
    if phrase:
        yield BenchQuery("phrase", f"dc.title={_cql_term(phrase)}", _clause(4, phrase), _clause(4, phrase))
    author = _clean(_subfield(record, "100", "a"))
    if author:
        name = author.split(",")[0].strip() if "," in author else author
        yield BenchQuery("author", f"dc.creator={_cql_term(name)}", _clause(1003, name), _clause(1003, name))
    isbn = _clean(_subfield(record, "020", "a")).split(" ")[0]
    if isbn:
        yield BenchQuery("isbn", f"bath.isbn={_cql_term(isbn)}", _clause(7, isbn), _clause(7, isbn))
    subject = _clean(_subfield(record, "650", "a"))
    if subject:
        yield BenchQuery("subject", f"dc.subject={_cql_term(subject)}", _clause(21, subject), _clause(21, subject))
    year_text = record["008"].data[7:11] if record["008"] else ""
    if year_text.isdigit():
        low = int(year_text) - rng.randint(0, 3)
        high = low + rng.randint(1, 5)
        cql = f"dc.date>={low} and dc.date<={high}"
        pqf = (f"@and @attr 1=30 @attr 2=4 @attr 4=109 {low} "
               f"@attr 1=30 @attr 2=2 @attr 4=109 {high}")
        yield BenchQuery("year_range", cql, pqf, pqf)
    # The export's own code for the library (852$b, e.g. GRL) is what Zebra indexes; the union
    # catalogue knows the library by its network code (the file's name, e.g. GR).
    source_code = _subfield(record, "852", "b")
    if words and source_code:
        word = rng.choice(words)
        yield BenchQuery("title_library", f"dc.title={_cql_term(word)} and net.library={_cql_term(library)}",
                         f"@and {_clause(4, word)} {_clause(OUR_LIBRARY_ATTRIBUTE, library)}",
                         f"@and {_clause(4, word)} {_clause(ZEBRA_LIBRARY_ATTRIBUTE, source_code)}",
                         f"dc.title={_cql_term(word)} and net.library={_cql_term(source_code)}")


def build_mix(files: Sequence[Path], *, per_kind: int = 40, seed: int = 11, distinct: bool = False) -> list[BenchQuery]:
    """`per_kind` queries of every kind, interleaved in a fixed shuffled order. `distinct`: no
    query twice (a kind with fewer different queries in the records, such as year ranges, has
    fewer); otherwise a query drawn twice stays twice, as popular queries recur."""
    rng = random.Random(seed)
    by_kind: dict[str, list[BenchQuery]] = {kind: [] for kind in KINDS}
    seen: set[str] = set()
    for library, record in sample_records(files, per_kind * 20, seed):
        for query in _queries_for(library, record, rng):
            if len(by_kind[query.kind]) < per_kind and not (distinct and query.cql in seen):
                by_kind[query.kind].append(query)
                seen.add(query.cql)
    missing = [kind for kind, queries in by_kind.items() if not queries]
    if missing:
        raise RuntimeError(f"no records to draw {', '.join(missing)} queries from")
    mix = [query for queries in by_kind.values() for query in queries]
    rng.shuffle(mix)
    return mix


def save(mix: Sequence[BenchQuery], path: Path) -> None:
    path.write_text(json.dumps([asdict(q) for q in mix], ensure_ascii=False, indent=1), encoding="utf-8")


def load(path: Path) -> list[BenchQuery]:
    return [BenchQuery(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]
