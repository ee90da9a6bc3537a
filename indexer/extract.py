"""Index values and match keys from a bibliographic record, by format profile.

Everything a record contributes to the search indexes comes from the source specs of
`config/indexes.yaml` (`indexer.indexes.FieldSource`): `extract_fields` walks the record-level
indexes of the table, takes each source in order, normalizes values with the index's own
normalizer and value map, and drops duplicates. `copy_from` indexes (`anywhere`,
`identifier`) are filled by the stores, not here.

`match_keys` turns the extracted values into the dedup keys `indexer.union` merges on:
`isbn:<ISBN-13>`, `issn:<NNNN-NNNN>` and one `work:<title>|<author>|<year>` key built from the
normalized title proper (filed without its leading article: MARC21 245 second indicator,
UNIMARC non-sorting markers), the first author's name and the year (CJK-aware: CJK text keeps
its characters without spaces; statements of responsibility lose their role words). Control
characters and bidi marks never reach an index value.
"""
from __future__ import annotations

import re
from typing import Callable

from pymarc import Field, Record

from indexer.analysis import fold, is_cjk
from indexer.indexes import FieldSource, IndexDefinition, IndexTable
from indexer.model import Contribution, MarcFormat
from indexer.readers import record_from_json
from indexer.union import Analysis

# Subfields that carry linkage or control data, never text: left out of "all subfields" specs.
_CONTROL_SUBFIELDS = frozenset("0123456789")
# ISBD punctuation a cataloguer puts before the next element: `Title /`, `Place :`, `Name,`.
_TRAILING_PUNCTUATION = re.compile(r"[\s/:;=,]+$")
# ISBD punctuation that introduces an element: `= Parallel title`, `: other title information`.
_LEADING_PUNCTUATION = re.compile(r"^[\s=:;/,]+")
_TRAILING_PERIOD = re.compile(r"(?<=[^\s.A-Z])\.$")
# Role words ending a statement of responsibility (著, 主编, 译, ...); single characters that also
# end personal names (文, 图, 校) are left alone.
_CJK_ROLE_SUFFIX = re.compile(r"(?:等|主编|编著|编译|著译|译注|校注|整理|改编|编写|编绘|撰文|绘图|选编|合著|著|编|译|撰)+$")
# C0/C1 controls (UNIMARC non-sorting markers U+0088/89/98/9C among them) and bidi marks.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e]")
# UNIMARC: text before NSE (or between NSB and NSE) does not file: `La \x9cRecherche`.
_UNIMARC_NON_SORTING = re.compile("^[\x88\x98]?([^\x89\x9c]*)[\x89\x9c]")
_LATIN_WORD = re.compile(r"[^\W_]+")


def _strip_controls(value: str) -> str:
    return _CONTROLS.sub("", value)


def _clean(value: str) -> str:
    value = _LEADING_PUNCTUATION.sub("", value)
    value = _TRAILING_PUNCTUATION.sub("", value.strip())
    return _TRAILING_PERIOD.sub("", value).strip()


def _linked_to(field: Field, tag: str) -> bool:
    link = field.get("6") or ""
    return link[:3] == tag


FieldsByTag = dict[str, list[Field]]


def fields_by_tag(record: Record) -> FieldsByTag:
    """The record's fields grouped by tag, in record order: one pass, where asking the record
    for each index's tags scans all its fields once per tag."""
    grouped: FieldsByTag = {}
    for field in record.fields:
        grouped.setdefault(field.tag, []).append(field)
    return grouped


def source_values(record: Record, source: FieldSource, by_tag: FieldsByTag | None = None) -> list[str]:
    """The raw values one source spec selects in a record, in field order."""
    if source.tag == "LDR":
        leader = str(record.leader)
        return [leader[source.positions[0]:source.positions[1] + 1]] if source.positions else [leader]
    values: list[str] = []
    fields = record.get_fields(source.tag) if by_tag is None else by_tag.get(source.tag, ())
    for field in fields:
        if field.is_control_field():
            data = field.data or ""
            values.append(data[source.positions[0]:source.positions[1] + 1] if source.positions else data)
            continue
        if source.linked_tag is not None and not _linked_to(field, source.linked_tag):
            continue
        if source.condition is not None:
            code, wanted = source.condition
            if wanted not in field.get_subfields(code):
                continue
        if source.subfield_positions is not None:
            start, end = source.subfield_positions
            first = next((s.value for s in field.subfields if s.code in source.subfields), None)
            if first is not None:
                values.append(first[start:end + 1])
            continue
        wanted_codes = source.subfields
        parts = [
            s.value.strip()
            for s in field.subfields
            if (s.code in wanted_codes if wanted_codes else s.code not in _CONTROL_SUBFIELDS) and s.value.strip()
        ]
        if len(wanted_codes) == 1:
            values.extend(parts)  # one subfield named: each occurrence is a value (082 $a $a, 200 $A $A)
        elif parts:
            values.append(" ".join(parts))
    return values


def index_values(record: Record, marc_format: MarcFormat, definition: IndexDefinition,
                 by_tag: FieldsByTag | None = None) -> list[str]:
    """The values a record holds in one index, normalized and deduplicated."""
    values: list[str] = []
    seen: set[str] = set()
    for source in definition.sources(MarcFormat(marc_format).value):
        for raw in source_values(record, source, by_tag):
            raw = _strip_controls(raw)
            text = _clean(raw) if definition.type.value == "text" else raw
            normalized = definition.normalize_value(text)
            if normalized is None or normalized in seen:
                continue
            seen.add(normalized)
            values.append(normalized)
            if definition.single:
                return values
    return values


def extract_fields(record: Record, marc_format: MarcFormat, table: IndexTable) -> dict[str, list[str]]:
    """Canonical index name -> values for every record-level index the record has values in."""
    fields: dict[str, list[str]] = {}
    by_tag = fields_by_tag(record)
    for definition in table.record_indexes():
        values = index_values(record, marc_format, definition, by_tag)
        if values:
            fields[definition.name] = values
    return fields


def control_number(record: Record, marc_format: MarcFormat | None = None) -> str | None:
    """The record's id in its library's system: 001, else the first 035$a (all formats)."""
    for field in record.get_fields("001"):
        if field.is_control_field() and (field.data or "").strip():
            return field.data.strip()
    for field in record.get_fields("035"):
        for value in field.get_subfields("a"):
            if value.strip():
                return value.strip()
    return None


# -- match keys ----------------------------------------------------------------------------


def _key_text(value: str) -> str:
    """Folded words joined by one space; no space between two CJK characters."""
    words = _LATIN_WORD.findall(fold(value))
    text = " ".join(words)
    return re.sub(r"(?<=[\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff]) (?=[\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff])", "", text)


def author_key(value: str) -> str:
    """A name as the work key compares it: a CJK name without its role words; a Latin inverted
    heading (`Surname, Forename, 1952-`) by its surname; any other name (corporate bodies,
    `Forename Surname` statements) by all its words. Qualifiers in parentheses and dates are dropped."""
    value = re.sub(r"\([^)]*\)|\[[^]]*\]|\d+", " ", value).strip(" ,.-")
    if sum(is_cjk(c) for c in value) * 2 >= len(value.replace(" ", "")) > 0:
        first = "".join(c for c in value if is_cjk(c) or c.isspace()).split()[0]
        return _CJK_ROLE_SUFFIX.sub("", first) or first
    if "," in value:
        words = _LATIN_WORD.findall(fold(value.split(",", 1)[0]))
        return " ".join(words)
    return _key_text(value)


def work_key(fields: dict[str, list[str]], *, title: str | None = None) -> str | None:
    """`work:<title>|<author>|<year>`; `title` overrides the first title value (its filing form)."""
    titles = fields.get("title") or []
    title_text = _key_text(title if title is not None else titles[0] if titles else "")
    if not title_text:
        return None
    creators = fields.get("creator") or []
    author = author_key(creators[0]) if creators else ""
    year = (fields.get("date") or [""])[0]
    return f"work:{title_text}|{author}|{year}"


def match_keys(fields: dict[str, list[str]], *, filing_title: str | None = None) -> list[str]:
    """Dedup keys: every ISBN and ISSN, then the work key (on `filing_title` if given)."""
    keys = [f"isbn:{isbn}" for isbn in fields.get("isbn", ())]
    keys += [f"issn:{issn}" for issn in fields.get("issn", ())]
    work = work_key(fields, title=filing_title)
    if work is not None:
        keys.append(work)
    return keys


def non_filing_prefix(record: Record, marc_format: MarcFormat) -> str:
    """The leading article the title proper does not file under: MARC21 245 second indicator
    (`The `), UNIMARC/CNMARC non-sorting markers in 200$a."""
    if MarcFormat(marc_format) is MarcFormat.MARC21:
        for title in record.get_fields("245"):
            count = int(title.indicator2) if title.indicator2.isdigit() else 0
            return (title.get_subfields("a") or [""])[0][:count]
        return ""
    for title in record.get_fields("200"):
        match = _UNIMARC_NON_SORTING.match((title.get_subfields("a") or [""])[0])
        return match.group(1) if match else ""
    return ""


def analyse(record: Record, marc_format: MarcFormat, table: IndexTable) -> Analysis:
    fields = extract_fields(record, marc_format, table)
    filing_title = None
    prefix = _strip_controls(non_filing_prefix(record, marc_format))
    titles = fields.get("title") or []
    if prefix.strip() and titles and titles[0].startswith(prefix):
        filing_title = titles[0][len(prefix):]
    return Analysis(fields=fields, match_keys=tuple(match_keys(fields, filing_title=filing_title)))


def contribution_analyzer(table: IndexTable) -> Callable[[Contribution], Analysis]:
    """The `indexer.union.Analyzer` that re-extracts a stored contribution's MARC-in-JSON."""
    def analyse_contribution(contribution: Contribution) -> Analysis:
        return analyse(record_from_json(contribution.marc), contribution.format, table)

    return analyse_contribution
