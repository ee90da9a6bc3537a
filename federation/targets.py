"""Remote targets of the `federated` database: one adapter per rule-set `Target`.

An adapter does everything that is particular to one target, so that the federation
(`federation.federated`) sees only canonical queries going out and contributions coming back:

- query mapping: the canonical query (`indexer.query`) becomes CQL for an SRU target (index
  names from the target's `index_map`, else the index table's standard CQL name: `dc.*`,
  `bath.*`, `cql.serverChoice`) or a Type-1 query with Bib-1 attributes for a Z39.50 target
  (use attributes from `bib1_map`, else the table's first Bib-1 use). An index the target has
  no name for raises `QueryNotTranslatable` naming it: the federation reports that for this
  target only;
- retrieval: SRU `recordSchema` (default marcxml) and version; Z39.50 preferred record syntax
  (default USMARC for MARC21, UNIMARC otherwise), character-set negotiation, credentials
  (`username` + the password in the environment variable `password_env`);
- records: decoded with the target's `format` and `encoding` (UTF-8, MARC-8, GB18030) by the
  indexer's own readers, analysed by the same extraction as ingestion (`indexer.extract`), and
  their items read by the same holdings code (`indexer.holdings`) with the target's `holdings`
  layout; library codes in the items are mapped by `library_map`, unmapped ones become the
  target's code. A record without item data still says the target holds the work: it gets one
  holdings-only item at the target (no barcode, availability unknown).

Adapters fetch up to `fetch_limit` records per search and fill a `TargetAnswer` as they go, so
that a search cut off by the deadline still has the records that did arrive. Retries and the
circuit breaker are the federation's business; adapters raise `TargetFailure` (transport,
protocol, garbage) or `TargetDiagnostic` (the target answered, with an error diagnostic).
"""
from __future__ import annotations

import abc
import asyncio
import io
import os
from dataclasses import dataclass, field
from typing import Mapping, Protocol

import aiohttp
from lxml import etree
from pymarc import Record

from indexer.extract import analyse, control_number
from indexer.holdings import extract_items, holdings_mapping
from indexer.indexes import IndexDefinition, IndexLevel, IndexTable
from indexer.model import Availability, Contribution, Item, MarcFormat
from indexer.policy import BarcodePolicy, IngestPolicy, LibraryPolicy
from indexer.query import And, AndNot, ItemMatch, MatchAll, Or, Query, Relation
from indexer.readers import MarcReadError, normalize_encoding, parse_iso2709, read_records
from indexer.union import Incoming
from protocols.cql.render import quote
from protocols.sru.client import ClientDiagnostic, SRUClient, SRUClientError
from protocols.z3950 import pdu as P
from protocols.z3950.client import Z3950Client

# CQL context sets every SRU server is expected to know; our own `net.` set is not among them.
STANDARD_CQL_PREFIXES = ("dc.", "bath.", "cql.", "rec.")
# Indexes whose values only this network knows (union record ids): never sent to a target unless mapped.
NETWORK_ONLY_INDEXES = frozenset({"id"})
SRU_PAGE_SIZE = 100
Z3950_PAGE_SIZE = 50

_SYNTAX_NAMES = {
    "usmarc": P.RecordSyntax.USMARC.value, "marc21": P.RecordSyntax.USMARC.value,
    "unimarc": P.RecordSyntax.UNIMARC.value, "cnmarc": P.RecordSyntax.UNIMARC.value,
    "xml": P.RecordSyntax.XML.value, "marcxml": P.RecordSyntax.XML.value,
}
_Z3950_CHARSETS = {"utf-8": "UTF-8", "gb18030": "GB18030", "marc8": None}

_CQL_RELATIONS = {
    Relation.PHRASE: "=", Relation.ALL: "all", Relation.ANY: "any", Relation.EXACT: "==",
    Relation.NE: "<>", Relation.LT: "<", Relation.LE: "<=", Relation.GT: ">", Relation.GE: ">=",
}
_BIB1_ORDERING = {Relation.LT: 1, Relation.LE: 2, Relation.GE: 4, Relation.GT: 5, Relation.NE: 6}


class TargetProblem(Exception):
    """Something that stopped one target from answering."""


class QueryNotTranslatable(TargetProblem):
    """The query uses an index (or construct) the target has no equivalent for."""


class TargetDiagnostic(TargetProblem):
    """The target answered the search with an error diagnostic."""


class TargetLacksIndex(TargetDiagnostic):
    """The target's diagnostic says it does not have an index the query uses (Bib-1 114, SRU 15/16)."""


# Diagnostics that mean "this index (or its context set) is not here".
BIB1_UNSUPPORTED_USE = frozenset({114})
SRU_UNSUPPORTED_INDEX = frozenset({15, 16})


def z3950_diagnostic(diagnostics: list[P.Diagnostic], fallback: str) -> TargetDiagnostic:
    text = "; ".join(f"Bib-1 {d}" for d in diagnostics) or fallback
    if any(d.code in BIB1_UNSUPPORTED_USE for d in diagnostics):
        return TargetLacksIndex(text)
    return TargetDiagnostic(text)


def sru_diagnostic(diagnostics: list[ClientDiagnostic]) -> TargetDiagnostic:
    text = "; ".join(str(d) for d in diagnostics)
    if any(d.code in SRU_UNSUPPORTED_INDEX for d in diagnostics):
        return TargetLacksIndex(text)
    return TargetDiagnostic(text)


class TargetFailure(TargetProblem):
    """Transport or protocol failure: refused, closed, unreadable answer."""


class TargetLike(Protocol):
    """What `federation.rules.Target` provides."""

    code: str
    name: str
    protocol: str
    url: str
    format: str
    encoding: str
    timeout: float
    sru_version: str
    record_schema: str | None
    record_syntax: str | None
    index_map: dict[str, str]
    bib1_map: dict[str, int]
    holdings: object
    library_map: dict[str, str]
    max_concurrent: int
    retries: int
    fetch_limit: int
    username: str | None
    password_env: str | None

    @property
    def z3950_address(self) -> tuple[str, int, str] | None: ...


@dataclass
class RemoteRecord:
    """One record a target sent, read and analysed (or the reason it could not be)."""

    position: int
    incoming: Incoming | None = None
    error: str = ""


@dataclass
class TargetAnswer:
    """Filled in while a target is searched: `total` once the search answered, records as they arrive."""

    total: int | None = None
    records: list[RemoteRecord] = field(default_factory=list)

    @property
    def fetched(self) -> int:
        return len(self.records)

    @property
    def usable(self) -> list[Incoming]:
        return [r.incoming for r in self.records if r.incoming is not None]


# -- query mapping -----------------------------------------------------------------------------


def _remote_name(target_map: Mapping[str, object], definition: IndexDefinition) -> object | None:
    for name in (definition.name, *definition.cql):
        if name in target_map:
            return target_map[name]
    return None


def cql_index(definition: IndexDefinition, target: TargetLike) -> str:
    mapped = _remote_name(target.index_map, definition)
    if mapped is not None:
        return str(mapped)
    for name in definition.cql:
        if name.lower().startswith(STANDARD_CQL_PREFIXES):
            return name
    raise QueryNotTranslatable(f"index {definition.name!r} has no CQL name at {target.code} (add it to index_map)")


def bib1_use(definition: IndexDefinition, target: TargetLike) -> int:
    mapped = _remote_name(target.bib1_map, definition)
    if mapped is not None:
        return int(mapped)  # type: ignore[call-overload]
    if definition.bib1:
        return definition.bib1[0]
    raise QueryNotTranslatable(f"index {definition.name!r} has no Bib-1 use attribute at {target.code} (add it to bib1_map)")


def _definition(table: IndexTable, name: str, target: TargetLike) -> IndexDefinition:
    definition = table.get(name)
    if definition is None:
        raise QueryNotTranslatable(f"index {name!r} is not in the index table")
    mapped = _remote_name(target.index_map if target.protocol == "sru" else target.bib1_map, definition)
    if mapped is None and definition.level is IndexLevel.ITEM:
        raise QueryNotTranslatable(f"holdings index {name!r} cannot be searched at {target.code}")
    if mapped is None and definition.name in NETWORK_ONLY_INDEXES:
        raise QueryNotTranslatable(f"index {name!r} holds this network's own identifiers, unknown at {target.code}")
    return definition


def _cql_term(term: str, anchor_start: bool = False, anchor_end: bool = False) -> str:
    escaped = term.replace("\\", "\\\\").replace("^", "\\^")
    return quote(("^" if anchor_start else "") + escaped + ("^" if anchor_end else ""))


def query_to_cql(query: Query, table: IndexTable, target: TargetLike) -> str:
    """The canonical query as CQL in the target's index names."""
    if isinstance(query, MatchAll):
        return "cql.allRecords = 1"
    if isinstance(query, ItemMatch):
        return query_to_cql(query.query, table, target)
    if isinstance(query, (And, Or, AndNot)):
        operator = {And: "and", Or: "or", AndNot: "not"}[type(query)]
        return f"({query_to_cql(query.left, table, target)} {operator} {query_to_cql(query.right, table, target)})"
    definition = _definition(table, query.index, target)
    index = cql_index(definition, target)
    if query.relation is Relation.WITHIN:
        return f"{index} within {quote(f'{query.term} {query.term_high or query.term}')}"
    relation = _CQL_RELATIONS[query.relation]
    return f"{index} {relation} {_cql_term(query.term, query.anchor_start, query.anchor_end)}"


def _attr_term(use: int, term: str, *, relation: int = 3, structure: int | None = None,
               position: int | None = None, completeness: int | None = None) -> P.AttrTerm:
    attributes = [P.Attribute(1, use), P.Attribute(2, relation)]
    if position is not None:
        attributes.append(P.Attribute(3, position))
    if structure is not None:
        attributes.append(P.Attribute(4, structure))
    masked = "*" in term or "?" in term
    if masked:
        stripped = term.strip("*")
        inner = "?" in stripped or "*" in stripped
        if not inner and term.endswith("*") and term.startswith("*") and stripped:
            attributes.append(P.Attribute(5, 3))
            term = stripped
        elif not inner and term.endswith("*") and stripped:
            attributes.append(P.Attribute(5, 1))
            term = stripped
        elif not inner and term.startswith("*") and stripped:
            attributes.append(P.Attribute(5, 2))
            term = stripped
        else:
            # Z39.58 masking: `?` any run (here: `*`), `#` one character (here: `?`).
            attributes.append(P.Attribute(5, 104))
            term = term.replace("?", "#").replace("*", "?")
    else:
        attributes.append(P.Attribute(5, 100))
    if completeness is not None:
        attributes.append(P.Attribute(6, completeness))
    return P.AttrTerm(tuple(attributes), term)


def _chain(op: P.Operator, nodes: list[P.RpnNode]) -> P.RpnNode:
    node = nodes[0]
    for other in nodes[1:]:
        node = P.RpnOp(op, node, other)
    return node


def _rpn(query: Query, table: IndexTable, target: TargetLike) -> P.RpnNode:
    if isinstance(query, MatchAll):
        return P.AttrTerm((P.Attribute(1, 1016), P.Attribute(2, 103)), "")
    if isinstance(query, ItemMatch):
        return _rpn(query.query, table, target)
    if isinstance(query, (And, Or, AndNot)):
        op = {And: P.Operator.AND, Or: P.Operator.OR, AndNot: P.Operator.AND_NOT}[type(query)]
        return P.RpnOp(op, _rpn(query.left, table, target), _rpn(query.right, table, target))
    definition = _definition(table, query.index, target)
    use = bib1_use(definition, target)
    relation = query.relation
    if relation is Relation.WITHIN:
        return P.RpnOp(P.Operator.AND, _attr_term(use, query.term, relation=4),
                       _attr_term(use, query.term_high or query.term, relation=2))
    if relation in _BIB1_ORDERING:
        return _attr_term(use, query.term, relation=_BIB1_ORDERING[relation])
    if relation is Relation.EXACT:
        return _attr_term(use, query.term, position=1, structure=1, completeness=3)
    words = query.term.split()
    if relation in (Relation.ALL, Relation.ANY) and len(words) > 1:
        op = P.Operator.AND if relation is Relation.ALL else P.Operator.OR
        return _chain(op, [_attr_term(use, word, structure=2) for word in words])
    if len(words) > 1:
        return _attr_term(use, query.term, structure=1, position=1 if query.anchor_start else None)
    return _attr_term(use, query.term, structure=2, position=1 if query.anchor_start else None)


def query_to_rpn(query: Query, table: IndexTable, target: TargetLike) -> P.RpnQuery:
    """The canonical query as a Type-1 query with Bib-1 attributes in the target's use numbers."""
    return P.RpnQuery(_rpn(query, table, target))


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordReader:
    """Turns a target's records into analysed contributions, by the ingestion rules."""

    target: TargetLike
    table: IndexTable
    policy: IngestPolicy          # the network's (tiers of mapped libraries, reference-only locations)

    @property
    def marc_format(self) -> MarcFormat:
        return MarcFormat(self.target.format)

    @property
    def encoding(self) -> str:
        return normalize_encoding(self.target.encoding)

    def from_iso2709(self, position: int, data: bytes) -> RemoteRecord:
        try:
            record, fmt, _ = parse_iso2709(data, self.marc_format, self.encoding)
        except (MarcReadError, ValueError, IndexError) as error:
            return RemoteRecord(position, error=f"record {position}: {error}")
        return self.from_record(position, record, fmt)

    def from_xml(self, position: int, data: bytes) -> RemoteRecord:
        try:
            results = list(read_records(io.BytesIO(data), format=self.marc_format))
        except (MarcReadError, ValueError) as error:
            return RemoteRecord(position, error=f"record {position}: {error}")
        readable = [r for r in results if r.record is not None]
        if not readable:
            reason = results[0].error if results else "no MARC record in the XML"
            return RemoteRecord(position, error=f"record {position}: {reason}")
        return self.from_record(position, readable[0].record, readable[0].format or self.marc_format)

    def from_record(self, position: int, record: Record, fmt: MarcFormat) -> RemoteRecord:
        target = self.target
        try:
            analysis = analyse(record, fmt, self.table)
            source_id = control_number(record, fmt) or f"#{position}"
            items = self.items(record, fmt, source_id)
        except Exception as error:  # a remote record that breaks extraction is reported, never fatal
            return RemoteRecord(position, error=f"record {position}: cannot extract: {type(error).__name__}: {error}")
        contribution = Contribution(library=target.code, source_id=source_id, format=fmt, marc=record.as_dict(),
                                    batch="federated", items=items)
        return RemoteRecord(position, Incoming(contribution, analysis))

    def items(self, record: Record, fmt: MarcFormat, source_id: str) -> list[Item]:
        target = self.target
        own = LibraryPolicy(code=target.code, tier="", holdings=target.holdings)  # type: ignore[arg-type]
        mapping = holdings_mapping(own, fmt)
        remote_codes: set[str] = set()
        for holding in record.get_fields(mapping.tag):
            if not holding.is_control_field() and mapping.library:
                remote_codes.update(v.strip() for v in holding.get_subfields(mapping.library) if v.strip())
        mapped: dict[str, list[str]] = {}
        unmapped: list[str] = []
        for code in sorted(remote_codes):
            local = target.library_map.get(code)
            if local is None or local == target.code:
                unmapped.append(code)
            else:
                mapped.setdefault(local, []).append(code)
        libraries = {target.code: LibraryPolicy(target.code, "", source_codes=tuple(unmapped), holdings=own.holdings)}
        for local, codes in mapped.items():
            known = self.policy.libraries.get(local)
            libraries[local] = LibraryPolicy(local, known.tier if known else "", source_codes=tuple(codes))
        policy = IngestPolicy(hub=self.policy.hub, libraries=libraries, barcode_policy=BarcodePolicy.WARN,
                              reference_only_locations=self.policy.reference_only_locations)
        result = extract_items(record, fmt, libraries[target.code], policy, default_library=target.code)
        items = list(result.items)
        for item in items:
            item.source_record = item.source_record or source_id
        if not items:
            items.append(Item(barcode="", library=target.code, status="held (no item data)",
                              availability=Availability.UNKNOWN, source_library=target.code,
                              source_record=source_id, notes=f"held by {target.name}"))
        return items


# -- adapters ---------------------------------------------------------------------------------


def target_password(target: TargetLike, environ: Mapping[str, str]) -> str | None:
    return environ.get(target.password_env) if target.password_env else None


class TargetAdapter(abc.ABC):
    """Searches one target; subclasses speak its protocol."""

    def __init__(self, target: TargetLike, table: IndexTable, policy: IngestPolicy,
                 environ: Mapping[str, str] | None = None):
        self.target = target
        self.table = table
        self.reader = RecordReader(target, table, policy)
        self.environ = os.environ if environ is None else environ

    @abc.abstractmethod
    def translate(self, query: Query) -> object:
        """The query in the target's language; `QueryNotTranslatable` if it has no equivalent."""

    @abc.abstractmethod
    async def search(self, translated: object, answer: TargetAnswer, timeout: float) -> None:
        """Search with a translated query and fetch up to the fetch limit into `answer`;
        `timeout` bounds each exchange. Raises `TargetDiagnostic` or `TargetFailure`."""


class SharedSession:
    """One aiohttp client session for every SRU target (connection pooling), opened on first use
    so that it is created inside the running event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SRUTargetAdapter(TargetAdapter):
    def __init__(self, target: TargetLike, table: IndexTable, policy: IngestPolicy,
                 environ: Mapping[str, str] | None = None, session: SharedSession | None = None):
        super().__init__(target, table, policy, environ)
        self.session = session

    def translate(self, query: Query) -> str:
        return query_to_cql(query, self.table, self.target)

    async def search(self, translated: object, answer: TargetAnswer, timeout: float) -> None:
        target = self.target
        client = SRUClient(target.url, version=target.sru_version, timeout=timeout, username=target.username,
                           password=target_password(target, self.environ),
                           session=self.session.get() if self.session is not None else None)
        schema = target.record_schema or "marcxml"
        try:
            start = 1
            page = min(SRU_PAGE_SIZE, target.fetch_limit)
            while True:
                try:
                    response = await client.search_retrieve(str(translated), start_record=start,
                                                            maximum_records=page, record_schema=schema)
                except SRUClientError as error:
                    raise TargetFailure(str(error)) from error
                if response.fatal:
                    raise sru_diagnostic(response.diagnostics)
                if answer.total is None:
                    answer.total = response.number_of_records
                for offset, record in enumerate(response.records):
                    position = record.position or start + offset
                    if record.data is None:
                        reason = str(record.diagnostic) if record.diagnostic else "empty recordData"
                        answer.records.append(RemoteRecord(position, error=f"record {position}: {reason}"))
                    else:
                        answer.records.append(self.reader.from_xml(position, etree.tostring(record.data)))
                wanted = min(answer.total, target.fetch_limit)
                if answer.fetched >= wanted or not response.records:
                    return
                start = response.next_record_position or start + len(response.records)
                if start > wanted:
                    return
                page = min(SRU_PAGE_SIZE, wanted - answer.fetched)
        finally:
            await client.close()


class Z3950TargetAdapter(TargetAdapter):
    def translate(self, query: Query) -> P.RpnQuery:
        return query_to_rpn(query, self.table, self.target)

    def _syntax(self) -> str:
        if self.target.record_syntax:
            name = self.target.record_syntax.strip().lower()
            return _SYNTAX_NAMES.get(name, self.target.record_syntax)
        return P.RecordSyntax.USMARC.value if self.target.format == "marc21" else P.RecordSyntax.UNIMARC.value

    def _authentication(self) -> P.Authentication | None:
        if not self.target.username:
            return None
        return P.Authentication(user=self.target.username, password=target_password(self.target, self.environ))

    async def search(self, translated: object, answer: TargetAnswer, timeout: float) -> None:
        target = self.target
        address = target.z3950_address
        if address is None:
            raise TargetFailure(f"{target.url!r} is not tcp:HOST:PORT/DATABASE")
        host, port, database = address
        client = Z3950Client(host, port, database=database, timeout=timeout,
                             charset=_Z3950_CHARSETS.get(target.encoding, "UTF-8"),
                             authentication=self._authentication())
        try:
            try:
                await client.connect()
            except P.Z3950Error as error:
                raise TargetFailure(str(error)) from error
            if client.init_response is not None and client.init_response.charset_response is None \
                    and target.encoding == "gb18030":
                client.charset = "gb18030"   # no negotiation: terms go in the target's own charset
            syntax = self._syntax()
            try:
                # The first page rides on the search response where the target piggybacks records.
                found = await client.search(translated, preferred_syntax=syntax,  # type: ignore[arg-type]
                                            piggyback=min(Z3950_PAGE_SIZE, target.fetch_limit),
                                            element_set=target.element_set or "F")
            except P.Z3950Error as error:
                raise TargetFailure(str(error)) from error
            if found.diagnostics or not found.response.search_status:
                raise z3950_diagnostic(found.diagnostics, "search failed")
            answer.total = found.count
            wanted = min(found.count, target.fetch_limit)
            position = 1
            for entry in (found.response.records or [])[:wanted]:
                answer.records.append(self._record(position, entry))
                position += 1
            while position <= wanted:
                count = min(Z3950_PAGE_SIZE, wanted - position + 1)
                try:
                    page = await client.present(found.result_set, position, count, syntax=syntax,
                                                element_set=target.element_set or "F")
                except P.Z3950Error as error:
                    raise TargetFailure(str(error)) from error
                records = page.records or []
                if not records:
                    if page.diagnostics:
                        raise z3950_diagnostic(page.diagnostics, "present failed")
                    break
                for entry in records:
                    answer.records.append(self._record(position, entry))
                    position += 1
        except BaseException:
            await _close_quickly(client, 0.05)   # failed or cancelled: do not wait on the target
            raise
        await _close_quickly(client, 0.5)

    def _record(self, position: int, entry: P.NamePlusRecord) -> RemoteRecord:
        record = entry.record
        if isinstance(record, P.Diagnostic):
            return RemoteRecord(position, error=f"record {position}: Bib-1 {record}")
        content = record.content
        if isinstance(content, P.OpacRecord):
            content = content.bibliographic.content if content.bibliographic is not None else b""
        if not isinstance(content, bytes):
            return RemoteRecord(position, error=f"record {position}: syntax {record.syntax} is not MARC")
        if record.syntax in (P.RecordSyntax.XML.value, P.RecordSyntax.TEXT_XML.value):
            return self.reader.from_xml(position, content)
        return self.reader.from_iso2709(position, content)


async def _close_quickly(client: Z3950Client, patience: float) -> None:
    """Close politely if the target answers within `patience`; the connection is dropped either way."""
    try:
        await asyncio.wait_for(client.close(), patience)
    except (asyncio.TimeoutError, OSError, P.Z3950Error):
        return


def create_adapter(target: TargetLike, table: IndexTable, policy: IngestPolicy, *,
                   environ: Mapping[str, str] | None = None,
                   session: SharedSession | None = None) -> TargetAdapter:
    if target.protocol == "sru":
        return SRUTargetAdapter(target, table, policy, environ, session)
    if target.protocol == "z3950":
        return Z3950TargetAdapter(target, table, policy, environ)
    raise ValueError(f"target {target.code}: unknown protocol {target.protocol!r}")
