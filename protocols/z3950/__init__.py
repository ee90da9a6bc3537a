"""Z39.50 (ANSI/NISO Z39.50-2003, ISO 23950): the project's ASN.1 subset (`z3950.asn`), a
bounded BER framing layer (`ber`), PDU dataclasses (`pdu`) and their codec (`codec`), PQF
(`pqf`), Bib-1 diagnostics (`diagnostics`), an asyncio client (`client`) and an asyncio server
that calls a storage-agnostic backend (`server`)."""
