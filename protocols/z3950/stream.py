"""Reading whole BER PDUs from an asyncio stream (shared by client and server)."""
from __future__ import annotations

import asyncio

from protocols.z3950.ber import DEFAULT_LIMITS, BerLimits, pdu_length

_CHUNK = 65536


class PduReader:
    """Splits a byte stream into complete BER values, bounded by `limits`.

    `read()` returns the bytes of the next PDU, or None at a clean end of stream; it raises
    `BerError` for malformed or oversized data and `asyncio.IncompleteReadError` when the
    stream ends inside a PDU.
    """

    def __init__(self, reader: asyncio.StreamReader, limits: BerLimits = DEFAULT_LIMITS):
        self._reader = reader
        self._limits = limits
        self._buffer = bytearray()

    async def read(self) -> bytes | None:
        while True:
            if self._buffer:
                length = pdu_length(self._buffer, self._limits)
                if length is not None:
                    data = bytes(self._buffer[:length])
                    del self._buffer[:length]
                    return data
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                if self._buffer:
                    raise asyncio.IncompleteReadError(bytes(self._buffer), None)
                return None
            self._buffer.extend(chunk)
