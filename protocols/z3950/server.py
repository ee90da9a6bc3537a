"""An asyncio Z39.50 server (target): one `Session` per connection, calling a `Backend`.

The server knows the protocol only: init (options, message sizes, implementation id/name/
version, character-set negotiation, authentication through the backend), named result sets
with per-session limits, piggybacked records, present with element sets B/F and record
syntax choice, scan, sort, delete result set and close. What a database, a query, a record or
a scan term is belongs to the backend, which raises `Bib1Diagnostic` for anything it cannot do.

Robustness: every PDU is framed and size-checked before decoding; malformed BER or an APDU
outside the supported set gets Close(protocolError) on that connection only; an idle
connection gets Close(lackOfActivity); a backend failure becomes a diagnostic in the response
of the operation that hit it.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

from protocols.z3950 import codec
from protocols.z3950 import pdu as P
from protocols.z3950 import diagnostics as D
from protocols.z3950.ber import BerError, BerLimits
from protocols.z3950.diagnostics import Bib1Diagnostic
from protocols.z3950.stream import PduReader

log = logging.getLogger(__name__)

ELEMENT_SETS = ("B", "F")
DEFAULT_SYNTAX = P.RecordSyntax.USMARC.value
PYTHON_CHARSETS = {"UTF-8": "utf-8", "GBK": "gbk", "GB18030": "gb18030"}


@dataclass(frozen=True)
class ServerLimits:
    # Largest PDU accepted from a client (also the largest preferred message size granted).
    max_pdu_bytes: int = 1024 * 1024
    max_result_sets: int = 20
    max_query_depth: int = 50
    idle_timeout: float = 600.0
    max_records_per_present: int = 1000
    max_scan_terms: int = 500
    preferred_message_size: int = 1024 * 1024
    exceptional_record_size: int = 4 * 1024 * 1024

    def ber_limits(self) -> BerLimits:
        # An RPN level nests three constructed values; leave room for the PDU envelope.
        return BerLimits(max_pdu_bytes=self.max_pdu_bytes, max_depth=3 * self.max_query_depth + 16)


@dataclass(frozen=True)
class Implementation:
    id: str = "UFZ"
    name: str = "union-federation Z39.50 server"
    version: str = "1.0"


@dataclass
class SessionInfo:
    """What a backend may want to know about the association making a request."""

    peer: str
    charset: str = "utf-8"            # Python codec of the negotiated character set
    charset_name: str = "UTF-8"       # as negotiated
    user: str | None = None


@dataclass(frozen=True)
class SearchReport:
    """What a search says besides its count, for the SearchResponse: `result_set_status`
    (sent with a successful search: YAZ's `estimate` for an estimated count, `subset` for a
    count that is a minimum because part of the search failed), and additionalSearchInfo (sent
    only in a version 3 association): a searchResult-1 SearchInfoReport and characterInfo texts."""

    result_set_status: P.ResultSetStatus | None = None
    search_info: tuple[P.SubqueryReport, ...] = ()
    texts: tuple[str, ...] = ()


class ResultSetHandle(Protocol):
    """A backend's result set: its size, and optionally (an attribute `report`, None when
    there is nothing to say) a `SearchReport` the search response carries."""

    @property
    def size(self) -> int: ...


@dataclass
class ScanOutcome:
    entries: list[P.ScanEntry]
    position: int  # 1-based position of the start term (or where it would be) in `entries`


class Backend(Protocol):
    """What the server calls; every method may raise `Bib1Diagnostic`."""

    def record_syntaxes(self) -> Sequence[str]:
        """OIDs of the record syntaxes it can return."""

    async def authenticate(self, authentication: P.Authentication | None, peer: str) -> bool:
        """True to accept the association (None: the client sent no idAuthentication)."""

    async def search(self, databases: Sequence[str], query: P.RpnQuery,
                     result_sets: Mapping[str, ResultSetHandle], session: SessionInfo) -> ResultSetHandle:
        """Run a Type-1 query; `result_sets` resolves result set references in it."""

    async def present(self, result_set: ResultSetHandle, start: int, count: int, syntax: str,
                      element_set: str, session: SessionInfo) -> list[P.NamePlusRecord]:
        """Records `start` (1-based) .. start+count-1 in `syntax`, a Diagnostic for any that
        cannot be given, in the negotiated `session.charset`. The server has checked the
        range, syntax and element set."""

    async def scan(self, databases: Sequence[str], attributes: tuple[P.Attribute, ...], attribute_set: str | None,
                   term: str, count: int, position: int, session: SessionInfo) -> ScanOutcome: ...

    async def sort(self, result_set: ResultSetHandle, keys: Sequence[P.SortKeySpec],
                   session: SessionInfo) -> ResultSetHandle: ...


class _CloseSession(Exception):
    def __init__(self, reason: P.CloseReason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _State:
    initialized: bool = False
    options: frozenset[P.Option] = frozenset()
    preferred_message_size: int = 0
    exceptional_record_size: int = 0
    result_sets: dict[str, ResultSetHandle] = field(default_factory=dict)
    version_3: bool = False           # version 3 is in force (additionalSearchInfo may be sent)


class Session:
    """One association: reads PDUs in order and answers each."""

    def __init__(self, server: "Z3950Server", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.backend = server.backend
        self.limits = server.limits
        self.writer = writer
        self.pdus = PduReader(reader, self.limits.ber_limits())
        peer = writer.get_extra_info("peername")
        self.info = SessionInfo(peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer))
        self.state = _State()

    async def run(self) -> None:
        try:
            while True:
                try:
                    data = await asyncio.wait_for(self.pdus.read(), self.limits.idle_timeout)
                except asyncio.TimeoutError:
                    raise _CloseSession(P.CloseReason.LACK_OF_ACTIVITY, f"idle for {self.limits.idle_timeout:g} s")
                except BerError as error:
                    raise _CloseSession(P.CloseReason.PROTOCOL_ERROR, f"malformed BER: {error}")
                except asyncio.IncompleteReadError:
                    return
                if data is None:
                    return
                request = self._decode(data)
                if isinstance(request, P.Close):
                    await self._send(P.Close(P.CloseReason.FINISHED, reference_id=request.reference_id))
                    return
                if not self.state.initialized and not isinstance(request, P.InitRequest):
                    raise _CloseSession(P.CloseReason.PROTOCOL_ERROR, "the first PDU must be an InitRequest")
                if self.state.initialized and isinstance(request, P.InitRequest):
                    raise _CloseSession(P.CloseReason.PROTOCOL_ERROR, "the association is already initialized")
                keep_open = await self._dispatch(request)
                if not keep_open:
                    return
        except _CloseSession as close:
            log.info("z39.50 %s: closing (%s): %s", self.info.peer, close.reason.name, close.message)
            try:
                await self._send(P.Close(close.reason, close.message[:200]))
            except (ConnectionError, OSError):
                pass
        except (ConnectionError, OSError) as error:
            log.info("z39.50 %s: connection lost: %s", self.info.peer, error)
        except Exception:
            # A fault of ours (a response that will not encode, a bug): this session ends
            # with a Close saying so; the server and other sessions carry on.
            log.exception("z39.50 %s: session failed", self.info.peer)
            try:
                await self._send(P.Close(P.CloseReason.SYSTEM_PROBLEM, "internal error"))
            except Exception:
                pass
        except asyncio.CancelledError:
            # The server is shutting down: say so, without waiting for a slow reader.
            try:
                self.writer.write(codec.encode(P.Close(P.CloseReason.SHUTDOWN), self.info.charset))
            except (ConnectionError, OSError, RuntimeError):
                pass
            raise
        finally:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    def _decode(self, data: bytes) -> P.Pdu:
        try:
            return codec.decode(data, self.info.charset, self.limits.ber_limits())
        except codec.PduDecodeError as error:
            name = codec.apdu_name(data)
            if name is not None and name not in codec.SUPPORTED_APDUS:
                raise _CloseSession(P.CloseReason.PROTOCOL_ERROR, f"{name} is not supported")
            raise _CloseSession(P.CloseReason.PROTOCOL_ERROR, str(error))

    async def _send(self, pdu: P.Pdu) -> None:
        self.writer.write(codec.encode(pdu, self.info.charset))
        try:
            # A client that stops reading is as idle as one that stops writing.
            await asyncio.wait_for(self.writer.drain(), self.limits.idle_timeout)
        except asyncio.TimeoutError:
            raise ConnectionError(f"the client read nothing for {self.limits.idle_timeout:g} s") from None

    async def _dispatch(self, request: P.Pdu) -> bool:
        if isinstance(request, P.InitRequest):
            return await self._init(request)
        handlers = {
            P.SearchRequest: self._search,
            P.PresentRequest: self._present,
            P.ScanRequest: self._scan,
            P.SortRequest: self._sort,
            P.DeleteResultSetRequest: self._delete,
        }
        handler = handlers.get(type(request))
        if handler is None:
            raise _CloseSession(P.CloseReason.PROTOCOL_ERROR, f"{type(request).__name__} is not a request")
        await self._send(await handler(request))
        return True

    # -- init ---------------------------------------------------------------------------------
    async def _init(self, request: P.InitRequest) -> bool:
        implementation = self.server.implementation
        offered = {
            P.Option.SEARCH, P.Option.PRESENT, P.Option.DEL_SET, P.Option.SCAN, P.Option.SORT,
            P.Option.NAMED_RESULT_SETS,
        }
        charset_response = None
        if request.charset_proposal is not None and P.Option.NEGOTIATION_MODEL in request.options:
            offered.add(P.Option.NEGOTIATION_MODEL)
            charset_response = self._negotiate(request.charset_proposal)
        options = frozenset(offered & request.options)
        response = P.InitResponse(
            result=True,
            options=options,
            versions=tuple(v for v in (1, 2, 3) if v in request.versions) or (1, 2),
            preferred_message_size=min(max(request.preferred_message_size, 4096), self.limits.preferred_message_size),
            exceptional_record_size=min(max(request.exceptional_record_size, 4096), self.limits.exceptional_record_size),
            implementation_id=implementation.id,
            implementation_name=implementation.name,
            implementation_version=implementation.version,
            charset_response=charset_response,
            reference_id=request.reference_id,
        )
        try:
            accepted = await self.backend.authenticate(request.authentication, self.info.peer)
            diagnostic = None if accepted else P.Diagnostic(D.INIT_BAD_USER_OR_PASSWORD, "bad user id or password")
        except Exception:
            log.exception("z39.50 %s: authentication failed", self.info.peer)
            accepted, diagnostic = False, P.Diagnostic(D.INIT_AUTHENTICATION_SYSTEM_ERROR)
        if not accepted:
            response.result = False
            response.diagnostic = diagnostic
            response.charset_response = None
            await self._send(response)
            return False
        if request.authentication is not None:
            self.info.user = request.authentication.credentials()[0]
        self.state = _State(True, options, response.preferred_message_size, response.exceptional_record_size,
                            version_3=3 in response.versions)
        await self._send(response)
        # Switch only after the InitResponse: it still goes out in the default encoding.
        if charset_response is not None and charset_response.charset:
            self.info.charset_name = charset_response.charset
            self.info.charset = PYTHON_CHARSETS[charset_response.charset]
        return True

    @staticmethod
    def _negotiate(proposal: P.CharsetProposal) -> P.CharsetResponse:
        """UTF-8 whenever it is proposed; otherwise GB18030/GBK if proposed; otherwise UTF-8 all
        the same, said plainly, since that is what records will be in. Records are in the
        selected character set: a backend writes them in `SessionInfo.charset`."""
        proposed = [c.upper() for c in proposal.charsets]
        for name in ("UTF-8", "GB18030", "GBK"):
            if name in proposed:
                return P.CharsetResponse(name, None, True)
        return P.CharsetResponse("UTF-8", None, True)

    # -- search -------------------------------------------------------------------------------
    async def _search(self, request: P.SearchRequest) -> P.SearchResponse:
        name = request.result_set_name
        try:
            self._check_result_set_name(name, request.replace_indicator)
            if isinstance(request.query, P.OtherQuery):
                raise Bib1Diagnostic(D.QUERY_TYPE_UNSUPPORTED, request.query.type.replace("type-", ""))
            if not request.database_names:
                raise Bib1Diagnostic(D.DATABASE_UNAVAILABLE, "no database named")
            if P.rpn_depth(request.query.root) > self.limits.max_query_depth:
                raise Bib1Diagnostic(D.MALFORMED_QUERY, f"nested deeper than {self.limits.max_query_depth}")
            for node in _result_set_refs(request.query.root):
                if node.name not in self.state.result_sets:
                    raise Bib1Diagnostic(D.RESULT_SET_DOES_NOT_EXIST, node.name)
            result = await self._backend_call(self.backend.search(
                request.database_names, request.query, dict(self.state.result_sets), self.info))
        except Bib1Diagnostic as diagnostic:
            self.state.result_sets.pop(name, None)
            return P.SearchResponse(0, 0, 1, False, 3, None, None, [diagnostic.diagnostic()], request.reference_id)
        self.state.result_sets[name] = result
        response = self._reported(P.SearchResponse(result.size, 0, 1, True, reference_id=request.reference_id),
                                  getattr(result, "report", None))
        size = result.size
        if size <= request.small_set_upper_bound:
            count, element_set = size, request.small_set_element_set_name
        elif size < request.large_set_lower_bound:
            count, element_set = min(request.medium_set_present_number, size), request.medium_set_element_set_name
        else:
            count, element_set = 0, None
        if size == 0 or count <= 0:
            return response
        records, status, diagnostics = await self._records(
            result, 1, count, request.preferred_record_syntax, (), element_set)
        returned = len(records or [])
        response.number_of_records_returned, response.next_result_set_position = returned, returned + 1
        response.present_status, response.records, response.diagnostics = status, records, diagnostics
        return response

    def _reported(self, response: P.SearchResponse, report: SearchReport | None) -> P.SearchResponse:
        """The response with what the backend's report says (additionalSearchInfo only in version 3)."""
        if not isinstance(report, SearchReport):
            return response
        if report.result_set_status is not None:
            response.result_set_status = int(report.result_set_status)
        if self.state.version_3:
            response.search_info = list(report.search_info)
            response.search_info_texts = list(report.texts)
        return response

    def _check_result_set_name(self, name: str, replace: bool) -> None:
        if P.Option.NAMED_RESULT_SETS not in self.state.options and name != "default":
            raise Bib1Diagnostic(D.RESULT_SET_NAMING_UNSUPPORTED, name)
        if name in self.state.result_sets:
            if not replace:
                raise Bib1Diagnostic(D.RESULT_SET_EXISTS_REPLACE_OFF, name)
        elif len(self.state.result_sets) >= self.limits.max_result_sets:
            raise Bib1Diagnostic(D.TOO_MANY_RESULT_SETS, str(self.limits.max_result_sets))

    async def _backend_call(self, awaitable):
        """Await a backend call; an unexpected failure is a temporary system error, logged."""
        try:
            return await awaitable
        except Bib1Diagnostic:
            raise
        except Exception as error:
            log.exception("z39.50 %s: backend failure", self.info.peer)
            raise Bib1Diagnostic(D.TEMPORARY_SYSTEM_ERROR, type(error).__name__) from error

    # -- present ------------------------------------------------------------------------------
    async def _present(self, request: P.PresentRequest) -> P.PresentResponse:
        result = self.state.result_sets.get(request.result_set_id)
        if result is None:
            return P.PresentResponse(0, request.start, P.PresentStatus.FAILURE, None,
                                     [P.Diagnostic(D.RESULT_SET_DOES_NOT_EXIST, request.result_set_id)],
                                     request.reference_id)
        size = result.size
        count = request.count
        if request.start < 1 or count < 0 or (count > 0 and request.start > size):
            return P.PresentResponse(0, request.start, P.PresentStatus.FAILURE, None,
                                     [P.Diagnostic(D.PRESENT_OUT_OF_RANGE, f"{request.start}+{count} of {size}")],
                                     request.reference_id)
        count = min(count, size - request.start + 1, self.limits.max_records_per_present)
        records, status, diagnostics = await self._records(
            result, request.start, count, request.preferred_record_syntax, request.record_syntaxes,
            request.element_set_name)
        returned = len(records or [])
        return P.PresentResponse(returned, request.start + returned, status, records, diagnostics, request.reference_id)

    async def _records(
        self, result: ResultSetHandle, start: int, count: int, preferred: str | None,
        alternatives: tuple[str, ...], element_set: str | None,
    ) -> tuple[list[P.NamePlusRecord] | None, P.PresentStatus, list[P.Diagnostic]]:
        """Records for search piggybacking and present, within the message size."""
        element = (element_set or "F").upper()
        if element not in ELEMENT_SETS:
            return None, P.PresentStatus.FAILURE, [P.Diagnostic(D.ELEMENT_SET_NOT_VALID, element_set or "")]
        supported = list(self.backend.record_syntaxes())
        wanted = [s for s in (*alternatives, preferred) if s] or [DEFAULT_SYNTAX]
        syntax = next((s for s in wanted if s in supported), None)
        if syntax is None:
            # A surrogate diagnostic per record, as clients expect for an unsupported syntax.
            addinfo = wanted[0]
            records = [P.NamePlusRecord(None, P.Diagnostic(D.RECORD_SYNTAX_UNSUPPORTED, addinfo)) for _ in range(count)]
            return records, P.PresentStatus.PARTIAL_4, []
        try:
            fetched = await self._backend_call(self.backend.present(result, start, count, syntax, element, self.info))
        except Bib1Diagnostic as diagnostic:
            return None, P.PresentStatus.FAILURE, [diagnostic.diagnostic()]
        budget = self.state.preferred_message_size - 1024
        records: list[P.NamePlusRecord] = []
        status = P.PresentStatus.SUCCESS
        for entry in fetched:
            size = _record_size(entry)
            if size > self.state.exceptional_record_size:
                entry = P.NamePlusRecord(entry.database, P.Diagnostic(D.RECORD_TOO_LARGE_EXCEPTIONAL, str(size)))
                size = 64
            if records and size > budget:
                status = P.PresentStatus.PARTIAL_2
                break
            budget -= size
            records.append(entry)
        if status is P.PresentStatus.SUCCESS and any(isinstance(r.record, P.Diagnostic) for r in records):
            status = P.PresentStatus.PARTIAL_4
        return records, status, []

    # -- scan, sort, delete -------------------------------------------------------------------
    async def _scan(self, request: P.ScanRequest) -> P.ScanResponse:
        try:
            if request.step_size:
                raise Bib1Diagnostic(D.ONLY_ZERO_STEP_SIZE, str(request.step_size))
            count = max(0, min(request.number_of_terms, self.limits.max_scan_terms))
            position = max(1, min(request.preferred_position, count + 1))
            outcome = await self._backend_call(self.backend.scan(
                request.database_names, request.attributes, request.attribute_set, request.term,
                count, position, self.info))
        except Bib1Diagnostic as diagnostic:
            return P.ScanResponse(P.ScanStatus.FAILURE, [], None, 0, [diagnostic.diagnostic()], request.reference_id)
        return P.ScanResponse(P.ScanStatus.SUCCESS, outcome.entries, outcome.position, 0, [], request.reference_id)

    async def _sort(self, request: P.SortRequest) -> P.SortResponse:
        try:
            if len(request.input_result_sets) != 1:
                raise Bib1Diagnostic(D.SORT_TOO_MANY_INPUT_SETS, str(len(request.input_result_sets)))
            source = self.state.result_sets.get(request.input_result_sets[0])
            if source is None:
                raise Bib1Diagnostic(D.RESULT_SET_DOES_NOT_EXIST, request.input_result_sets[0])
            output = request.sorted_result_set
            if output != request.input_result_sets[0]:
                self._check_result_set_name(output, True)
            if not request.keys:
                raise Bib1Diagnostic(D.CANNOT_SORT, "no sort keys")
            sorted_set = await self._backend_call(self.backend.sort(source, request.keys, self.info))
        except Bib1Diagnostic as diagnostic:
            return P.SortResponse(P.SortStatus.FAILURE, 3, [diagnostic.diagnostic()], None, request.reference_id)
        self.state.result_sets[request.sorted_result_set] = sorted_set
        return P.SortResponse(P.SortStatus.SUCCESS, None, [], sorted_set.size, request.reference_id)

    async def _delete(self, request: P.DeleteResultSetRequest) -> P.DeleteResultSetResponse:
        if request.delete_all:
            self.state.result_sets.clear()
            return P.DeleteResultSetResponse(P.DeleteSetStatus.SUCCESS, reference_id=request.reference_id)
        statuses = []
        for name in request.names:
            found = self.state.result_sets.pop(name, None) is not None
            statuses.append((name, P.DeleteSetStatus.SUCCESS if found else P.DeleteSetStatus.RESULT_SET_DID_NOT_EXIST))
        failed = [s for _, s in statuses if s is not P.DeleteSetStatus.SUCCESS]
        if not failed:
            overall = P.DeleteSetStatus.SUCCESS
        elif len(statuses) == 1:
            overall = failed[0]
        else:
            overall = P.DeleteSetStatus.NOT_ALL_REQUESTED_RESULT_SETS_DELETED
        return P.DeleteResultSetResponse(overall, statuses, None, request.reference_id)


def _result_set_refs(node: P.RpnNode):
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, P.ResultSetRef):
            yield current
        elif isinstance(current, P.RpnOp):
            stack.extend((current.left, current.right))


def _record_size(entry: P.NamePlusRecord) -> int:
    record = entry.record
    if isinstance(record, P.Diagnostic):
        return 64 + len(record.addinfo)
    content = record.content
    if isinstance(content, P.OpacRecord):
        bib = content.bibliographic
        size = len(bib.content) if bib is not None and isinstance(bib.content, (bytes, str)) else 0
        return size + 200 * sum(1 + len(h.circulation) for h in content.holdings)
    return len(content) * (3 if isinstance(content, str) else 1)


class Z3950Server:
    """Accepts connections and runs a `Session` for each.

        server = Z3950Server(backend)
        await server.start("127.0.0.1", 2100)
        ...
        server.close(); await server.wait_closed()
    """

    def __init__(self, backend: Backend, *, limits: ServerLimits = ServerLimits(),
                 implementation: Implementation = Implementation()):
        self.backend = backend
        self.limits = limits
        self.implementation = implementation
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 2100, *, reuse_port: bool = False) -> "Z3950Server":
        """`reuse_port`: bind with SO_REUSEPORT, so that several server processes share the port."""
        codec.prepare()
        self._server = await asyncio.start_server(self._accept, host, port, reuse_port=reuse_port or None)
        return self

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not listening")
        return self._server.sockets[0].getsockname()[1]

    @property
    def sockets(self) -> tuple:
        """The listening sockets (as `asyncio.Server.sockets`)."""
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def sessions(self) -> int:
        return len(self._tasks)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await Session(self, reader, writer).run()
        except Exception:
            # A session must never take the server down with it.
            log.exception("z39.50 session failed")
            writer.close()
        finally:
            if task is not None:
                self._tasks.discard(task)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
