"""An asyncio SRU client (aiohttp): searchRetrieve, scan and explain over HTTP GET, SRU 1.1,
1.2 and 2.0.

    async with SRUClient("http://127.0.0.1:8080/union", version="1.2") as client:
        answer = await client.search_retrieve('dc.title = "图书馆"', maximum_records=10,
                                              record_schema="marcxml")
        answer.number_of_records, [r.data for r in answer.records]

Responses are read by element local names, so every namespace real servers use works
(`http://www.loc.gov/zing/srw/`, the slash-less variant some servers send, and the OASIS
SRU 2.0 namespaces). Records come back as lxml elements (recordPacking `xml`) or parsed from
their escaped text (`string`). Diagnostics the server sends are returned with the response
(`fatal` says whether the request failed: a diagnostic outside records and no records);
transport failures, HTTP errors, timeouts and documents that are not SRU responses raise
`SRUClientError`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Sequence

import aiohttp
from lxml import etree

SRU_VERSIONS = ("1.1", "1.2", "2.0")
DIAGNOSTIC_PREFIX = "info:srw/diagnostic/1/"
MAX_RESPONSE_BYTES = 64 << 20

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False)


class SRUClientError(Exception):
    """The request could not be completed: connection, HTTP status, timeout, or not an SRU answer."""


@dataclass(frozen=True)
class ClientDiagnostic:
    uri: str
    details: str = ""
    message: str = ""

    @property
    def code(self) -> int | None:
        """The number of a diagnostic from the standard SRU list, else None."""
        if self.uri.startswith(DIAGNOSTIC_PREFIX):
            tail = self.uri[len(DIAGNOSTIC_PREFIX):]
            return int(tail) if tail.isdigit() else None
        return None

    def __str__(self) -> str:
        text = self.uri
        if self.message:
            text += f" {self.message}"
        if self.details:
            text += f" ({self.details})"
        return text


@dataclass
class ClientRecord:
    schema: str
    packing: str
    position: int | None
    data: etree._Element | None          # the recordData's element (None: a surrogate diagnostic)
    identifier: str = ""
    diagnostic: ClientDiagnostic | None = None


@dataclass
class SearchRetrieveAnswer:
    version: str
    number_of_records: int
    records: list[ClientRecord] = field(default_factory=list)
    next_record_position: int | None = None
    result_set_id: str | None = None
    result_set_ttl: int | None = None
    result_count_precision: str | None = None
    diagnostics: list[ClientDiagnostic] = field(default_factory=list)
    extra_response_data: list[etree._Element] = field(default_factory=list)
    url: str = ""

    @property
    def fatal(self) -> bool:
        return bool(self.diagnostics) and not self.records and self.number_of_records == 0


@dataclass(frozen=True)
class ClientScanTerm:
    value: str
    number_of_records: int | None
    display_term: str = ""


@dataclass
class ScanAnswer:
    version: str
    terms: list[ClientScanTerm] = field(default_factory=list)
    diagnostics: list[ClientDiagnostic] = field(default_factory=list)


class SRUClient:
    def __init__(
        self,
        base_url: str,
        *,
        version: str = "1.2",
        timeout: float = 30.0,
        username: str | None = None,
        password: str | None = None,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        if version not in SRU_VERSIONS:
            raise ValueError(f"SRU version {version!r} is not one of {', '.join(SRU_VERSIONS)}")
        self.base_url = base_url
        self.version = version
        self.timeout = timeout
        self.headers = {"Accept": "application/xml, text/xml"}
        if username:
            self.headers["Authorization"] = aiohttp.encode_basic_auth(username, password or "")
        self.max_response_bytes = max_response_bytes
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> "SRUClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # -- operations -------------------------------------------------------------------------
    async def search_retrieve(
        self,
        query: str,
        *,
        start_record: int = 1,
        maximum_records: int = 10,
        record_schema: str | None = None,
        record_packing: str = "xml",
        sort_keys: str | None = None,
        result_set_ttl: int | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> SearchRetrieveAnswer:
        params: list[tuple[str, str]] = [
            ("version", self.version), ("operation", "searchRetrieve"), ("query", query),
            ("startRecord", str(start_record)), ("maximumRecords", str(maximum_records)),
        ]
        if record_schema:
            params.append(("recordSchema", record_schema))
        if self.version == "2.0":
            # 2.0 splits 1.x's recordPacking: recordXMLEscaping says xml/string.
            params.append(("recordXMLEscaping", record_packing))
        else:
            params.append(("recordPacking", record_packing))
        if sort_keys:
            params.append(("sortKeys", sort_keys))
        if result_set_ttl is not None:
            params.append(("resultSetTTL", str(result_set_ttl)))
        params.extend(extra)
        root, url = await self._get(params)
        if _local(root) != "searchRetrieveResponse":
            raise SRUClientError(f"{url}: expected a searchRetrieveResponse, got <{_local(root)}>")
        return parse_search_retrieve(root, url)

    async def scan(self, scan_clause: str, *, response_position: int = 1, maximum_terms: int = 20) -> ScanAnswer:
        params = [("version", self.version), ("operation", "scan"), ("scanClause", scan_clause),
                  ("responsePosition", str(response_position)), ("maximumTerms", str(maximum_terms))]
        root, url = await self._get(params)
        if _local(root) != "scanResponse":
            raise SRUClientError(f"{url}: expected a scanResponse, got <{_local(root)}>")
        return parse_scan(root)

    async def explain(self) -> etree._Element:
        """The explainResponse element as sent."""
        root, url = await self._get([("version", self.version), ("operation", "explain")])
        if _local(root) != "explainResponse":
            raise SRUClientError(f"{url}: expected an explainResponse, got <{_local(root)}>")
        return root

    async def _get(self, params: list[tuple[str, str]]) -> tuple[etree._Element, str]:
        session = self._client_session()
        url = self.base_url
        try:
            async with asyncio.timeout(self.timeout):
                async with session.get(url, params=params, headers=self.headers) as response:
                    url = str(response.url)
                    if response.status >= 400:
                        root = _try_parse(await _read_limited(response, 1 << 20))
                        # Some servers send a proper diagnostic document with a 4xx status.
                        if root is not None and _local(root).endswith("Response"):
                            return root, url
                        raise SRUClientError(f"{url}: HTTP {response.status} {response.reason}")
                    body_bytes = await _read_limited(response, self.max_response_bytes + 1)
        except TimeoutError as error:
            raise SRUClientError(f"{url}: no answer within {self.timeout} s") from error
        except aiohttp.ClientError as error:
            raise SRUClientError(f"{url}: {type(error).__name__}: {error}") from error
        if len(body_bytes) > self.max_response_bytes:
            raise SRUClientError(f"{url}: the response exceeds {self.max_response_bytes} bytes")
        try:
            root = etree.fromstring(body_bytes, _PARSER)
        except etree.XMLSyntaxError as error:
            raise SRUClientError(f"{url}: the response is not XML: {error}") from error
        return root, url


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to `limit` bytes (more means too large; the caller refuses it)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)


# -- parsing (public, so recorded responses can be read without a server) ----------------------


def _local(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return etree.QName(tag).localname


def _child(parent: etree._Element, name: str) -> etree._Element | None:
    for child in parent:
        if _local(child) == name:
            return child
    return None


def _children(parent: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in parent if _local(child) == name]


def _text(parent: etree._Element, name: str) -> str | None:
    child = _child(parent, name)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _int(parent: etree._Element, name: str) -> int | None:
    text = _text(parent, name)
    if text is None or not text.lstrip("-").isdigit():
        return None
    return int(text)


def _try_parse(data: bytes) -> etree._Element | None:
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError:
        return None


def parse_diagnostic(element: etree._Element) -> ClientDiagnostic:
    return ClientDiagnostic(_text(element, "uri") or "", _text(element, "details") or "",
                            _text(element, "message") or "")


def parse_search_retrieve(root: etree._Element, url: str = "") -> SearchRetrieveAnswer:
    """A searchRetrieveResponse element (any SRU version and namespace) as plain data."""
    diagnostics_holder = _child(root, "diagnostics")
    diagnostics = [parse_diagnostic(d) for d in diagnostics_holder if _local(d) == "diagnostic"] \
        if diagnostics_holder is not None else []
    count = _int(root, "numberOfRecords")
    if count is None and not diagnostics:
        raise SRUClientError(f"{url}: searchRetrieveResponse without a numeric numberOfRecords")
    answer = SearchRetrieveAnswer(
        version=_text(root, "version") or "2.0",
        # A failed search may leave the count out (some 1.x servers do): then nothing was found.
        number_of_records=count or 0,
        diagnostics=diagnostics,
        next_record_position=_int(root, "nextRecordPosition"),
        result_set_id=_text(root, "resultSetId"),
        result_set_ttl=_int(root, "resultSetTTL") or _int(root, "resultSetIdleTime"),
        result_count_precision=_text(root, "resultCountPrecision"),
        url=url,
    )
    records = _child(root, "records")
    if records is not None:
        for record in _children(records, "record"):
            answer.records.append(_record(record))
    extra = _child(root, "extraResponseData")
    if extra is not None:
        answer.extra_response_data = [e for e in extra if isinstance(e.tag, str)]
    return answer


def _record(record: etree._Element) -> ClientRecord:
    schema = _text(record, "recordSchema") or ""
    packing = _text(record, "recordPacking") or _text(record, "recordXMLEscaping") or "xml"
    position = _int(record, "recordPosition")
    # The record's identifier: `recordIdentifier` in the record (2.0) or inside extraRecordData (1.x).
    identifier = _text(record, "recordIdentifier") or ""
    extra = _child(record, "extraRecordData")
    if not identifier and extra is not None:
        found = next((e for e in extra.iter() if _local(e) == "recordIdentifier" and e.text), None)
        identifier = found.text.strip() if found is not None else ""
    holder = _child(record, "recordData")
    data: etree._Element | None = None
    if holder is not None:
        elements = [child for child in holder if isinstance(child.tag, str)]
        if elements:
            data = elements[0]
        elif holder.text and holder.text.strip():
            # recordPacking string: the record is escaped XML text.
            data = _try_parse(holder.text.strip().encode("utf-8"))
    diagnostic = None
    if data is not None and _local(data) == "diagnostic":
        diagnostic, data = parse_diagnostic(data), None
    return ClientRecord(schema, packing, position, data, identifier, diagnostic)


def parse_scan(root: etree._Element) -> ScanAnswer:
    answer = ScanAnswer(version=_text(root, "version") or "2.0")
    terms = _child(root, "terms")
    if terms is not None:
        for term in _children(terms, "term"):
            answer.terms.append(ClientScanTerm(_text(term, "value") or "", _int(term, "numberOfRecords"),
                                               _text(term, "displayTerm") or ""))
    diagnostics = _child(root, "diagnostics")
    if diagnostics is not None:
        answer.diagnostics = [parse_diagnostic(d) for d in diagnostics if _local(d) == "diagnostic"]
    return answer
