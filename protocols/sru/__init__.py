"""SRU 1.1 / 1.2 / 2.0: request parsing, response writers, diagnostics, ZeeRex explain.

No storage knowledge: the application (`federation.app`) parses with `parse_request`, runs the
operation, and writes the answer with the `write_*` functions.
"""
from protocols.sru.diagnostics import DIAGNOSTIC_SET, MESSAGES, SRUDiagnostic
from protocols.sru.explain import ExplainIndex, ExplainInfo, ExplainSchema, explain_element
from protocols.sru.request import (
    ExplainRequest,
    FacetSpec,
    ScanRequest,
    SearchRetrieveRequest,
    SortKeySpec,
    SRURequest,
    parse_request,
    version_for,
)
from protocols.sru.response import (
    EchoedScan,
    EchoedSearchRetrieve,
    FacetResult,
    FacetTerm,
    ResponseRecord,
    ScanTermResult,
    SearchRetrieveResult,
    SurrogateRecord,
    content_type,
    write_diagnostic,
    write_explain,
    write_scan,
    write_search_retrieve,
)

__all__ = [
    "DIAGNOSTIC_SET", "MESSAGES", "SRUDiagnostic",
    "ExplainIndex", "ExplainInfo", "ExplainSchema", "explain_element",
    "ExplainRequest", "FacetSpec", "ScanRequest", "SearchRetrieveRequest", "SortKeySpec", "SRURequest",
    "parse_request", "version_for",
    "EchoedScan", "EchoedSearchRetrieve", "FacetResult", "FacetTerm", "ResponseRecord", "ScanTermResult",
    "SearchRetrieveResult", "SurrogateRecord", "content_type", "write_diagnostic", "write_explain",
    "write_scan", "write_search_retrieve",
]
