"""An asyncio Z39.50 client (origin): init with character-set negotiation, search, present,
scan, sort, delete result set, close; every operation under a timeout.

    async with Z3950Client("127.0.0.1", 2100, database="union") as client:
        found = await client.search("@attr 1=4 图书馆")
        page = await client.present(found.result_set, 1, 10, syntax=RecordSyntax.USMARC)

Operations that the target answers with a diagnostic return the response (its `diagnostics`
are set); transport failures, timeouts and a Close from the target raise `Z3950Error`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Sequence

from protocols.z3950 import codec
from protocols.z3950 import pdu as P
from protocols.z3950.ber import DEFAULT_LIMITS, BerError, BerLimits
from protocols.z3950.pqf import parse_pqf
from protocols.z3950.stream import PduReader

# Character set names as negotiated -> Python codecs.
PYTHON_CODECS = {
    "utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb18030": "gb18030", "gb2312": "gb2312",
    "iso-8859-1": "latin-1", "latin-1": "latin-1", "ucs-2": "utf-16-be", "utf-16": "utf-16-be",
    "ucs-4": "utf-32-be",
}


def python_codec(charset: str | None, default: str = "utf-8") -> str:
    if not charset:
        return default
    return PYTHON_CODECS.get(charset.lower(), default)


@dataclass
class SearchResult:
    """A search's response plus the name of the result set it created."""

    result_set: str
    response: P.SearchResponse

    @property
    def count(self) -> int:
        return self.response.result_count

    @property
    def diagnostics(self) -> list[P.Diagnostic]:
        return self.response.diagnostics


class Z3950Client:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        database: str = "Default",
        timeout: float = 30.0,
        charset: str | None = "UTF-8",
        authentication: P.Authentication | None = None,
        limits: BerLimits = DEFAULT_LIMITS,
        implementation_name: str = "union-federation Z39.50 client",
    ):
        self.host = host
        self.port = port
        self.database = database
        self.timeout = timeout
        self.proposed_charset = charset
        self.authentication = authentication
        self.limits = limits
        self.implementation_name = implementation_name
        self.init_response: P.InitResponse | None = None
        # The codec strings are encoded with: the negotiated charset, UTF-8 when none was.
        self.charset = "utf-8"
        self._reader: PduReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._result_set_counter = 0

    async def __aenter__(self) -> "Z3950Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def options(self) -> frozenset[P.Option]:
        return self.init_response.options if self.init_response else frozenset()

    async def connect(self) -> P.InitResponse:
        """Open the connection and initialize; raises `Z3950Error` if the target rejects it."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as error:
            raise P.Z3950Error(f"cannot connect to {self.host}:{self.port}: {error or 'timeout'}") from error
        self._reader = PduReader(reader, self.limits)
        self._writer = writer
        request = P.InitRequest(
            options=frozenset({
                P.Option.SEARCH, P.Option.PRESENT, P.Option.DEL_SET, P.Option.SCAN, P.Option.SORT,
                P.Option.NAMED_RESULT_SETS,
            } | ({P.Option.NEGOTIATION_MODEL} if self.proposed_charset else set())),
            preferred_message_size=self.limits.max_pdu_bytes,
            exceptional_record_size=self.limits.max_pdu_bytes,
            authentication=self.authentication,
            implementation_id="UFZ",
            implementation_name=self.implementation_name,
            implementation_version="1",
            charset_proposal=P.CharsetProposal((self.proposed_charset,), (), True) if self.proposed_charset else None,
        )
        response = await self._exchange(request, P.InitResponse)
        self.init_response = response
        if not response.result:
            await self._disconnect()
            reason = f": {response.diagnostic}" if response.diagnostic else ""
            raise P.Z3950Error(f"{self.host}:{self.port} rejected the connection{reason}", response.diagnostic)
        if response.charset_response is not None and response.charset_response.charset:
            self.charset = python_codec(response.charset_response.charset)
        return response

    async def search(
        self,
        query: P.RpnQuery | str,
        *,
        databases: Sequence[str] | None = None,
        result_set: str | None = None,
        preferred_syntax: str | None = None,
        piggyback: int = 0,
        element_set: str | None = None,
    ) -> SearchResult:
        """Search (`query` as an RpnQuery or PQF text). With `piggyback` n > 0 the target may
        return up to n records in the response (small set upper bound n, medium set n)."""
        if isinstance(query, str):
            query = parse_pqf(query)
        if result_set is None:
            if P.Option.NAMED_RESULT_SETS in self.options:
                self._result_set_counter += 1
                result_set = str(self._result_set_counter)
            else:
                result_set = "default"
        request = P.SearchRequest(
            query=query,
            database_names=list(databases or [self.database]),
            result_set_name=result_set,
            small_set_upper_bound=piggyback,
            large_set_lower_bound=2**31 - 1 if piggyback else 1,
            medium_set_present_number=piggyback,
            small_set_element_set_name=element_set if piggyback else None,
            medium_set_element_set_name=element_set if piggyback else None,
            preferred_record_syntax=preferred_syntax,
        )
        return SearchResult(result_set, await self._exchange(request, P.SearchResponse))

    async def present(
        self,
        result_set: str,
        start: int = 1,
        count: int = 10,
        *,
        syntax: str | None = P.RecordSyntax.USMARC.value,
        element_set: str | None = "F",
    ) -> P.PresentResponse:
        request = P.PresentRequest(result_set, start, count, element_set, syntax)
        return await self._exchange(request, P.PresentResponse)

    async def scan(
        self,
        start: str,
        *,
        count: int = 20,
        position: int = 1,
        step: int = 0,
        databases: Sequence[str] | None = None,
    ) -> P.ScanResponse:
        """Scan from `start`, PQF attributes plus term (`@attr 1=4 librar`)."""
        parsed = parse_pqf(start)
        if not isinstance(parsed.root, P.AttrTerm):
            raise ValueError("a scan start point is attributes plus one term")
        request = P.ScanRequest(
            database_names=list(databases or [self.database]),
            attributes=parsed.root.attributes,
            term=str(parsed.root.term),
            number_of_terms=count,
            preferred_position=position,
            step_size=step,
            attribute_set=parsed.attribute_set,
        )
        return await self._exchange(request, P.ScanResponse)

    async def sort(self, inputs: Sequence[str], output: str, keys: Sequence[P.SortKeySpec]) -> P.SortResponse:
        return await self._exchange(P.SortRequest(list(inputs), output, list(keys)), P.SortResponse)

    async def delete_result_sets(self, names: Sequence[str] = (), *, all_sets: bool = False) -> P.DeleteResultSetResponse:
        return await self._exchange(P.DeleteResultSetRequest(all_sets, list(names)), P.DeleteResultSetResponse)

    async def close(self) -> None:
        """Close the association politely (Close, await the target's Close), then the socket."""
        if self._writer is None:
            return
        try:
            await self._exchange(P.Close(P.CloseReason.FINISHED), P.Close)
        except P.Z3950Error:
            pass
        finally:
            await self._disconnect()

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _exchange(self, request: P.Pdu, expected: type):
        if self._writer is None or self._reader is None:
            raise P.Z3950Error("not connected")
        try:
            self._writer.write(codec.encode(request, self.charset))
            await asyncio.wait_for(self._writer.drain(), self.timeout)
            data = await asyncio.wait_for(self._reader.read(), self.timeout)
        except asyncio.TimeoutError as error:
            await self._disconnect()
            raise P.Z3950Error(f"{self.host}:{self.port}: no answer within {self.timeout} s") from error
        except (OSError, asyncio.IncompleteReadError, BerError) as error:
            await self._disconnect()
            raise P.Z3950Error(f"{self.host}:{self.port}: connection failed: {error}") from error
        if data is None:
            await self._disconnect()
            raise P.Z3950Error(f"{self.host}:{self.port} closed the connection")
        try:
            response = codec.decode(data, self.charset, self.limits)
        except codec.PduDecodeError as error:
            await self._disconnect()
            raise P.Z3950Error(f"{self.host}:{self.port} sent an undecodable PDU: {error}") from error
        if isinstance(response, expected):
            return response
        if isinstance(response, P.Close):
            await self._disconnect()
            detail = f" ({response.diagnostic_information})" if response.diagnostic_information else ""
            raise P.Z3950Error(f"{self.host}:{self.port} closed the association: {response.reason.name}{detail}")
        await self._disconnect()
        raise P.Z3950Error(f"{self.host}:{self.port} answered {type(response).__name__} to {type(request).__name__}")
