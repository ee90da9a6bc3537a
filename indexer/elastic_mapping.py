"""The Elasticsearch / OpenSearch index for one index table: its settings, its mapping and the
document of each union record.

Elasticsearch never analyses catalogue text here: `indexer.analysis` makes every token and key
in Python, the same code the embedded store uses, and the index stores them pre-analysed (a
whitespace analyzer over token strings, plain keyword fields for keys). That is what makes both
stores answer every query identically; see docs/elasticsearch.md.

Fields of a record document (`<name>` is a canonical index name from the table):

  id, payload                 the union record id (the sort tiebreaker) and the record as JSON
  match_keys, contributions,  dedup keys, `library<US>source_id` of each contribution, the
  contribution_libraries,     contributing libraries, every item barcode, the item count
  barcodes, item_count
  tok.<name>                  text indexes: each value's tokens joined by spaces (positions)
  phr.<name>                  text indexes: the same token string as one keyword, for phrases
                              with masked tokens or anchors (matched with `regexp`)
  key.<name>                  exact_key of each value (item-level indexes: of all items)
  num.<name>                  number and date indexes: the integer values
  facet.<name>                facet indexes: the values as stored (item level: of all items)
  sort.<name>, sort_present.<name>
                              sortable indexes: the first value's key, and 1 if there is one
  items                       nested, one per item: library, tier, barcode (as given) and the
                              tok/phr/key/num fields of every item-level index
  title                       the raw title (standard analyzer) with a `title.cjk` multi-field
                              (CJK bigrams): for Kibana and integrators, never used by the store
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from indexer.analysis import exact_key, index_tokens
from indexer.indexes import IndexDefinition, IndexLevel, IndexTable, IndexType
from indexer.model import Item, UnionRecord
from indexer.values import facet_value, item_value, numeric_value, record_values

MAPPING_FORMAT = 1
TOKEN_ANALYZER = "pretokenized"
CJK_ANALYZER = "cjk_text"
# Lucene refuses a term longer than 32766 UTF-8 bytes and fails the whole document; MARC
# fields are at most 9999 bytes, so only MARCXML/JSON input can come near this.
MAX_TERM_BYTES = 32000
MAX_TOKEN_CHARS = 8191  # 4 bytes per character at most: always under MAX_TERM_BYTES
MAX_RESULT_WINDOW = 10_000
CONTRIBUTION_SEPARATOR = "\x1f"

KEYWORD = {"type": "keyword"}


def _text_field() -> dict[str, Any]:
    return {
        "type": "text",
        "analyzer": TOKEN_ANALYZER,
        "index_options": "positions",
        # A phrase never spans two values of one index: slop is always 0 and values are this far apart.
        "position_increment_gap": 100,
    }


def index_settings(
    number_of_shards: int = 1, number_of_replicas: int | None = None, result_window: int = MAX_RESULT_WINDOW
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "number_of_shards": number_of_shards,
        "max_result_window": result_window,
        # Phrase regexps grow with the phrase (a CJK title is many bigrams).
        "max_regex_length": 65536,
        "mapping": {"nested_objects": {"limit": 100_000}},
        "analysis": {
            "tokenizer": {
                "pretokenized_whitespace": {"type": "whitespace", "max_token_length": MAX_TOKEN_CHARS},
            },
            "analyzer": {
                TOKEN_ANALYZER: {"type": "custom", "tokenizer": "pretokenized_whitespace"},
                CJK_ANALYZER: {
                    "type": "custom",
                    "tokenizer": "standard",
                    "filter": ["cjk_width", "lowercase", "cjk_bigram"],
                },
            },
        },
    }
    if number_of_replicas is not None:
        settings["number_of_replicas"] = number_of_replicas
    return settings


def _index_fields(definitions: Iterable[IndexDefinition]) -> dict[str, dict[str, Any]]:
    """The tok/phr/key/num groups for a set of index definitions."""
    groups: dict[str, dict[str, Any]] = {"tok": {}, "phr": {}, "key": {}, "num": {}}
    for definition in definitions:
        if definition.numeric:
            groups["num"][definition.name] = {"type": "long"}
            continue
        groups["key"][definition.name] = KEYWORD
        if definition.type is IndexType.TEXT:
            groups["tok"][definition.name] = _text_field()
            groups["phr"][definition.name] = KEYWORD
    return {group: {"properties": fields} for group, fields in groups.items() if fields}


def mapping(table: IndexTable) -> dict[str, Any]:
    """The index mapping for `table` (with its fingerprint in `_meta`)."""
    properties: dict[str, Any] = {
        "id": KEYWORD,
        "payload": {"type": "keyword", "index": False, "doc_values": False},
        "match_keys": KEYWORD,
        "contributions": KEYWORD,
        "contribution_libraries": KEYWORD,
        "barcodes": KEYWORD,
        "item_count": {"type": "integer"},
    }
    properties.update(_index_fields(table.record_indexes()))
    # Scan keys of item-level indexes live on the record too, so that scan counts records.
    item_keys = {d.name: KEYWORD for d in table.item_indexes() if not d.numeric}
    if item_keys:
        properties.setdefault("key", {"properties": {}})["properties"].update(item_keys)
    facets = {d.name: KEYWORD for d in table if d.facet}
    if facets:
        properties["facet"] = {"properties": facets}
    sortable = [d for d in table.record_indexes() if d.sortable]
    if sortable:
        properties["sort"] = {"properties": {d.name: {"type": "long"} if d.numeric else KEYWORD for d in sortable}}
        properties["sort_present"] = {"properties": {d.name: {"type": "byte"} for d in sortable}}
    items: dict[str, Any] = {"library": KEYWORD, "tier": KEYWORD, "barcode": KEYWORD}
    items.update(_index_fields(table.item_indexes()))
    properties["items"] = {"type": "nested", "properties": items}
    title = table.get("title")
    if title is not None and title.type is IndexType.TEXT and title.level is IndexLevel.RECORD:
        properties["title"] = {"type": "text", "fields": {"cjk": {"type": "text", "analyzer": CJK_ANALYZER}}}
    body: dict[str, Any] = {"dynamic": "strict", "properties": properties}
    body["_meta"] = {"format": MAPPING_FORMAT, "fingerprint": fingerprint(body)}
    return body


def fingerprint(mapping_body: dict[str, Any]) -> str:
    """A short hash of a mapping (without `_meta`) and the analysis settings it relies on."""
    content = {k: v for k, v in mapping_body.items() if k != "_meta"}
    content["analysis"] = index_settings()["analysis"]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return digest[:16]


# -- values ------------------------------------------------------------------------------------

def clip_term(value: str, limit: int = MAX_TERM_BYTES) -> str:
    """A keyword value cut to what Lucene accepts (on a character boundary)."""
    encoded = value.encode("utf-8")
    if len(encoded) <= limit:
        return value
    return encoded[:limit].decode("utf-8", errors="ignore")


def token_string(tokens: list[str]) -> str:
    """Tokens joined by spaces, as one keyword value (cut at a token boundary if too long)."""
    text = " ".join(t[:MAX_TOKEN_CHARS] for t in tokens)
    if len(text.encode("utf-8")) <= MAX_TERM_BYTES:
        return text
    clipped = clip_term(text)
    return clipped[: clipped.rfind(" ")] if " " in clipped else clipped


def _distinct(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _analysed(definition: IndexDefinition, values: list[str]) -> dict[str, list[Any]]:
    """tok/phr/key/num values of one index for a list of raw values."""
    if definition.numeric:
        numbers = _distinct(n for n in (numeric_value(definition, v) for v in values) if n is not None)
        return {"num": numbers} if numbers else {}
    fields: dict[str, list[Any]] = {"key": _distinct(clip_term(exact_key(v)) for v in values)}
    if definition.type is IndexType.TEXT:
        token_lists = [index_tokens(v) for v in values]
        fields["tok"] = [" ".join(t[:MAX_TOKEN_CHARS] for t in tokens) for tokens in token_lists]
        fields["phr"] = _distinct(token_string(tokens) for tokens in token_lists)
    return fields


def _put(document: dict[str, Any], group: str, name: str, value: Any) -> None:
    document.setdefault(group, {})[name] = value


def item_values(item: Item, definition: IndexDefinition) -> list[str]:
    value = item_value(item, definition)
    return [] if value is None else [value]


def _facet_values(definition: IndexDefinition, values: Iterable[str]) -> list[str]:
    return _distinct(clip_term(f) for f in (facet_value(definition, v) for v in values) if f is not None)


def document(record: UnionRecord, table: IndexTable) -> dict[str, Any]:
    """The Elasticsearch document of a union record."""
    items = record.items
    doc: dict[str, Any] = {
        "id": record.id,
        "payload": json.dumps(record.to_dict(marc_as_json=True), ensure_ascii=False, separators=(",", ":")),
        "match_keys": [clip_term(k) for k in record.match_keys],
        "contributions": [
            clip_term(f"{c.library}{CONTRIBUTION_SEPARATOR}{c.source_id}") for c in record.contributions
        ],
        "contribution_libraries": _distinct(c.library for c in record.contributions),
        "barcodes": _distinct(clip_term(i.barcode) for i in items if i.barcode),
        "item_count": len(items),
    }
    for definition in table.record_indexes():
        values = record_values(record, definition)
        for group, group_values in _analysed(definition, values).items():
            if group_values:
                _put(doc, group, definition.name, group_values)
        if definition.facet:
            facets = _facet_values(definition, values)
            if facets:
                _put(doc, "facet", definition.name, facets)
        if definition.sortable:
            _put_sort_key(doc, definition, values)
        if definition.name == "title" and definition.type is IndexType.TEXT and values:
            doc["title"] = values
    item_docs = []
    for item in items:
        item_doc: dict[str, Any] = {"library": item.library, "tier": item.tier, "barcode": item.barcode}
        for definition in table.item_indexes():
            for group, group_values in _analysed(definition, item_values(item, definition)).items():
                if group_values:
                    _put(item_doc, group, definition.name, group_values)
        item_docs.append(item_doc)
    doc["items"] = item_docs
    for definition in table.item_indexes():
        values = _distinct(v for item in items for v in item_values(item, definition))
        if not definition.numeric and values:
            _put(doc, "key", definition.name, _distinct(clip_term(exact_key(v)) for v in values))
        if definition.facet:
            facets = _facet_values(definition, values)
            if facets:
                _put(doc, "facet", definition.name, facets)
    return doc


def _put_sort_key(doc: dict[str, Any], definition: IndexDefinition, values: list[str]) -> None:
    # Every document gets a sort value (a placeholder when it has none) and a presence flag that
    # sorts first: search_after then never meets a missing (null) sort value.
    key: Any = None
    if definition.numeric:
        key = next((n for n in (numeric_value(definition, v) for v in values) if n is not None), None)
    elif values:
        key = clip_term(exact_key(values[0]))
    present = key is not None
    _put(doc, "sort", definition.name, key if present else (0 if definition.numeric else ""))
    _put(doc, "sort_present", definition.name, 1 if present else 0)
