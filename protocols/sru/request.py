"""SRU request parsing: every parameter of SRU 1.1, 1.2 and 2.0, checked per version.

`parse_request(params)` takes the decoded query-string or form parameters (a mapping from name to
the list of its values) and returns a `SearchRetrieveRequest`, `ScanRequest` or `ExplainRequest`,
or raises `SRUDiagnostic` for the first fatal problem. `version_for(params)` says which version's
envelope a diagnostic must be written in, even when parsing failed.

Version and operation: with a `version` parameter the server answers in that version
(1.1, 1.2, 2.0; others get diagnostic 5 in the nearest envelope). Without one, a request that
names an `operation` is taken as SRU 1.2 and one that does not as SRU 2.0, whose operation
follows from the parameters (`query` -> searchRetrieve, `scanClause` -> scan, else explain).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from protocols.sru.diagnostics import SRUDiagnostic

SUPPORTED_VERSIONS = ("1.1", "1.2", "2.0")
HIGHEST_VERSION = "2.0"

_COMMON = {"operation", "version", "stylesheet", "extraRequestData", "httpAccept", "responseType"}
_PARAMETERS: dict[tuple[str, str], frozenset[str]] = {
    ("searchRetrieve", "1.1"): frozenset(_COMMON | {
        "query", "startRecord", "maximumRecords", "recordPacking", "recordSchema", "recordXPath",
        "resultSetTTL", "sortKeys"}),
    ("searchRetrieve", "1.2"): frozenset(_COMMON | {
        "query", "startRecord", "maximumRecords", "recordPacking", "recordSchema", "recordXPath",
        "resultSetTTL"}),
    ("searchRetrieve", "2.0"): frozenset(_COMMON | {
        "query", "queryType", "startRecord", "maximumRecords", "recordPacking", "recordXMLEscaping",
        "recordSchema", "resultSetTTL", "sortKeys", "renderedBy", "facetLimit", "facetStart",
        "facetSort", "facetCount", "resultCountPrecision"}),
    ("scan", "1.1"): frozenset(_COMMON | {"scanClause", "responsePosition", "maximumTerms"}),
    ("scan", "1.2"): frozenset(_COMMON | {"scanClause", "responsePosition", "maximumTerms"}),
    ("scan", "2.0"): frozenset(_COMMON | {"scanClause", "responsePosition", "maximumTerms", "renderedBy"}),
    ("explain", "1.1"): frozenset(_COMMON | {"recordPacking"}),
    ("explain", "1.2"): frozenset(_COMMON | {"recordPacking"}),
    ("explain", "2.0"): frozenset(_COMMON | {"recordPacking", "recordXMLEscaping", "renderedBy"}),
}
SRU_CONTENT_TYPES = ("application/sru+xml", "text/xml", "application/xml", "*/*", "application/*", "text/*")


@dataclass(frozen=True)
class SortKeySpec:
    """One key of the SRU 1.1 / 2.0 `sortKeys` parameter: `path,schema,ascending,caseSensitive,missingValue`."""

    path: str
    schema: str = ""
    ascending: bool = True
    case_sensitive: bool = False
    missing_value: str = "highValue"


@dataclass(frozen=True)
class FacetSpec:
    """A facet asked for with SRU 2.0 `facetLimit` (and `facetStart` / `facetSort` for the same index)."""

    index: str
    limit: int
    start: int = 1
    sort: str = "recordCount"  # or "alphanumeric"


@dataclass(frozen=True)
class BaseRequest:
    version: str
    operation: str
    stylesheet: str | None = None
    extra: tuple[tuple[str, str], ...] = ()   # x-... extension parameters and extraRequestData, echoed
    http_accept: str | None = None


@dataclass(frozen=True)
class SearchRetrieveRequest(BaseRequest):
    query: str = ""
    query_type: str = "cql"
    start_record: int = 1
    maximum_records: int | None = None         # None: the server's default
    record_packing: str = "xml"                # 1.x: xml | string; 2.0: packed | unpacked
    record_xml_escaping: str = "xml"           # 2.0 (1.x: recordPacking carries this)
    record_schema: str | None = None
    result_set_ttl: int | None = None
    sort_keys: tuple[SortKeySpec, ...] = ()
    sort_keys_text: str | None = None
    facets: tuple[FacetSpec, ...] = ()
    raw: tuple[tuple[str, str], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class ScanRequest(BaseRequest):
    scan_clause: str = ""
    response_position: int = 1
    maximum_terms: int | None = None


@dataclass(frozen=True)
class ExplainRequest(BaseRequest):
    record_packing: str = "xml"
    record_xml_escaping: str = "xml"


SRURequest = SearchRetrieveRequest | ScanRequest | ExplainRequest


def version_for(params: Mapping[str, Sequence[str]]) -> str:
    """The version whose envelope a response (or a diagnostic) to these parameters uses."""
    requested = _first(params, "version")
    if requested is None:
        return "1.2" if _first(params, "operation") is not None else "2.0"
    if requested in SUPPORTED_VERSIONS:
        return requested
    return "1.2" if requested.startswith("1") else HIGHEST_VERSION


def parse_request(params: Mapping[str, Sequence[str]]) -> SRURequest:
    version = version_for(params)
    requested = _first(params, "version")
    if requested is not None and requested not in SUPPORTED_VERSIONS:
        raise SRUDiagnostic(5, HIGHEST_VERSION, f"Unsupported version {requested!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    for name, values in params.items():
        if len(values) > 1 and not name.startswith("x-"):
            raise SRUDiagnostic(6, name, f"parameter {name} given {len(values)} times")
    operation = _first(params, "operation")
    if operation is None:
        if _first(params, "query") is not None:
            operation = "searchRetrieve"
        elif _first(params, "scanClause") is not None:
            operation = "scan"
        else:
            operation = "explain"
    if operation not in ("searchRetrieve", "scan", "explain"):
        raise SRUDiagnostic(4, operation, f"Unsupported operation {operation!r}")
    allowed = _PARAMETERS[(operation, version)]
    for name in params:
        if name.startswith("x-"):
            continue
        if name not in allowed:
            if operation == "searchRetrieve" and name == "sortKeys":
                raise SRUDiagnostic(8, name, "sortKeys is not a parameter of SRU 1.2: use CQL sortBy")
            raise SRUDiagnostic(8, name, f"Unsupported parameter {name} for {operation} in SRU {version}")
    common = dict(
        version=version,
        operation=operation,
        stylesheet=_first(params, "stylesheet"),
        extra=tuple((k, v[0]) for k, v in params.items() if k.startswith("x-") or k == "extraRequestData"),
        http_accept=_http_accept(params),
    )
    if operation == "searchRetrieve":
        return _search_retrieve(params, common)
    if operation == "scan":
        clause = _first(params, "scanClause")
        if clause is None:
            raise SRUDiagnostic(7, "scanClause", "Mandatory parameter not supplied: scanClause")
        return ScanRequest(
            **common,
            scan_clause=clause,
            response_position=_integer(params, "responsePosition", 1, minimum=0),
            maximum_terms=_optional_integer(params, "maximumTerms", minimum=1),
        )
    packing, escaping = _packing(params, version)
    return ExplainRequest(**common, record_packing=packing, record_xml_escaping=escaping)


def _search_retrieve(params: Mapping[str, Sequence[str]], common: dict) -> SearchRetrieveRequest:
    version = common["version"]
    query = _first(params, "query")
    if query is None:
        raise SRUDiagnostic(7, "query", "Mandatory parameter not supplied: query")
    if _first(params, "recordXPath") is not None:
        raise SRUDiagnostic(72, "recordXPath", "XPath retrieval unsupported")
    query_type = _first(params, "queryType") or "cql"
    if query_type not in ("cql", "searchTerms"):
        raise SRUDiagnostic(11, query_type, f"Unsupported query type {query_type!r} (cql, searchTerms)")
    packing, escaping = _packing(params, version)
    precision = _first(params, "resultCountPrecision")
    if precision is not None and precision not in ("exact", "estimate", "maximum", "minimum", "current"):
        raise SRUDiagnostic(6, "resultCountPrecision", f"unknown resultCountPrecision {precision!r}")
    sort_text = _first(params, "sortKeys")
    return SearchRetrieveRequest(
        **common,
        query=query,
        query_type=query_type,
        start_record=_integer(params, "startRecord", 1, minimum=1),
        maximum_records=_optional_integer(params, "maximumRecords", minimum=0),
        record_packing=packing,
        record_xml_escaping=escaping,
        record_schema=_first(params, "recordSchema"),
        result_set_ttl=_optional_integer(params, "resultSetTTL", minimum=0),
        sort_keys=parse_sort_keys(sort_text) if sort_text else (),
        sort_keys_text=sort_text,
        facets=_facets(params),
        raw=tuple((k, v[0]) for k, v in params.items() if v),
    )


def _packing(params: Mapping[str, Sequence[str]], version: str) -> tuple[str, str]:
    """(recordPacking, XML escaping) — in 1.x recordPacking is the escaping (xml | string)."""
    packing = _first(params, "recordPacking")
    if version != "2.0":
        packing = packing or "xml"
        if packing not in ("xml", "string"):
            raise SRUDiagnostic(71, packing, f"Unsupported record packing {packing!r} (xml, string)")
        return packing, packing
    packing = packing or "packed"
    if packing != "packed":
        raise SRUDiagnostic(6, "recordPacking", f"recordPacking {packing!r}: only 'packed' is supported")
    escaping = _first(params, "recordXMLEscaping") or "xml"
    if escaping not in ("xml", "string"):
        raise SRUDiagnostic(71, escaping, f"Unsupported recordXMLEscaping {escaping!r} (xml, string)")
    return packing, escaping


def parse_sort_keys(text: str) -> tuple[SortKeySpec, ...]:
    """SRU 1.1 sortKeys: space-separated keys `path[,schema[,ascending[,caseSensitive[,missingValue]]]]`."""
    keys = []
    for key in text.split():
        parts = key.split(",")
        if not parts[0] or len(parts) > 5:
            raise SRUDiagnostic(6, "sortKeys", f"malformed sort key {key!r}")
        ascending = _flag(parts, 2, True, "ascending")
        case_sensitive = _flag(parts, 3, False, "caseSensitive")
        missing = parts[4] if len(parts) > 4 and parts[4] else "highValue"
        keys.append(SortKeySpec(parts[0], parts[1] if len(parts) > 1 else "", ascending, case_sensitive, missing))
    return tuple(keys)


def _flag(parts: list[str], position: int, default: bool, name: str) -> bool:
    if len(parts) <= position or parts[position] == "":
        return default
    if parts[position] in ("1", "true"):
        return True
    if parts[position] in ("0", "false"):
        return False
    raise SRUDiagnostic(6, "sortKeys", f"{name} must be 0 or 1, not {parts[position]!r}")


def _facets(params: Mapping[str, Sequence[str]]) -> tuple[FacetSpec, ...]:
    """`facetLimit=10:dc.subject,5:dc.date` (count:index pairs); `facetStart` and `facetSort`
    (`alphanumeric:dc.date` / `recordCount:...`) refine the same indexes."""
    limit_text = _first(params, "facetLimit")
    if not limit_text:
        for name in ("facetStart", "facetSort"):
            if _first(params, name):
                raise SRUDiagnostic(6, name, f"{name} needs facetLimit to name the facets")
        return ()
    limits = _pairs(limit_text, "facetLimit")
    starts = {index: value for value, index in _pairs(_first(params, "facetStart") or "", "facetStart")}
    sorts: dict[str, str] = {}
    for entry in filter(None, (_first(params, "facetSort") or "").split(",")):
        order, _, index = entry.partition(":")
        if order not in ("alphanumeric", "recordCount") or not index:
            raise SRUDiagnostic(6, "facetSort", f"facetSort entry {entry!r}: expected alphanumeric:INDEX or recordCount:INDEX")
        sorts[index] = order
    facets = []
    for count, index in limits:
        start_text = starts.get(index, "1")
        facets.append(FacetSpec(index, int(count), _positive(start_text, "facetStart"), sorts.get(index, "recordCount")))
    return tuple(facets)


def _pairs(text: str, name: str) -> list[tuple[str, str]]:
    pairs = []
    for entry in filter(None, text.split(",")):
        value, sep, index = entry.partition(":")
        if not sep or not index or not value.isdigit():
            raise SRUDiagnostic(6, name, f"{name} entry {entry!r}: expected NUMBER:INDEX")
        pairs.append((value, index))
    return pairs


def _positive(text: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise SRUDiagnostic(6, name, f"{name} must be a positive integer")
    return int(text)


def _http_accept(params: Mapping[str, Sequence[str]]) -> str | None:
    accept = _first(params, "httpAccept")
    if accept is None:
        return None
    wanted = [part.split(";")[0].strip() for part in accept.split(",")]
    if not any(w in SRU_CONTENT_TYPES for w in wanted):
        raise SRUDiagnostic(6, "httpAccept", f"cannot answer in {accept!r}; available: application/sru+xml, text/xml")
    return next(w for w in wanted if w in SRU_CONTENT_TYPES)


def _first(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _integer(params: Mapping[str, Sequence[str]], name: str, default: int, *, minimum: int) -> int:
    value = _optional_integer(params, name, minimum=minimum)
    return default if value is None else value


def _optional_integer(params: Mapping[str, Sequence[str]], name: str, *, minimum: int) -> int | None:
    text = _first(params, name)
    if text is None:
        return None
    text = text.strip()
    if not text.lstrip("-").isdigit() or len(text) > 12:
        raise SRUDiagnostic(6, name, f"{name} must be an integer, not {text!r}")
    value = int(text)
    if value < minimum:
        raise SRUDiagnostic(6, name, f"{name} must be at least {minimum}")
    return value
