"""BER encoding and decoding of the PDUs in `protocols.z3950.pdu`.

The ASN.1 module `z3950.asn` is compiled once (asn1tools, BER) and cached; `encode` and
`decode` translate between its dict/tuple values and the dataclasses. Every failure to decode
— malformed BER, a PDU type outside the subset, a value of the wrong shape — raises
`PduDecodeError`, never anything else.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import asn1tools
from asn1tools.codecs import ber

from protocols.z3950 import pdu as P
from protocols.z3950.ber import DEFAULT_LIMITS, BerError, BerLimits, to_definite

ASN1_MODULE = Path(__file__).with_name("z3950.asn")


class PduDecodeError(ValueError):
    """The bytes are not a PDU this codec understands."""


class PduEncodeError(ValueError):
    """A PDU dataclass holds a value that cannot be encoded."""


class _OneBoolean(ber.Boolean):
    """BOOLEAN TRUE as the octet 0x01, as YAZ writes it. BER allows any non-zero octet and
    asn1tools writes 0xFF (DER's form), which yaz-client reads as a signed char and prints as
    `availableNow: -1`; a client that tests for exactly 1 would take it for false."""

    def encode_content(self, data: Any, values: Any = None) -> bytearray:
        return bytearray([1 if data else 0])


def _one_booleans(node: Any, seen: set[int]) -> None:
    """Make every BOOLEAN of a compiled type tree a `_OneBoolean` (this compiled tree only)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if type(node) is ber.Boolean:
        node.__class__ = _OneBoolean
    if isinstance(node, (list, tuple)):
        children = node
    elif isinstance(node, dict):
        children = node.values()
    elif isinstance(node, ber.Type):
        children = vars(node).values()
    else:
        return
    for child in children:
        _one_booleans(child, seen)


@functools.lru_cache(maxsize=1)
def _spec() -> Any:
    spec = asn1tools.compile_files(str(ASN1_MODULE), "ber")
    seen: set[int] = set()
    for compiled in spec.types.values():
        _one_booleans(compiled.type, seen)
    return spec


def prepare() -> None:
    """Compile the ASN.1 module now (a few hundred ms) rather than on the first PDU."""
    _spec()


# -- strings ------------------------------------------------------------------------------

def decode_text(data: bytes | bytearray | None, charset: str = "utf-8") -> str | None:
    """Bytes of an InternationalString as text.

    Clients differ: yaz-client sends query terms as raw UTF-8 whatever was negotiated, older
    Chinese clients send GBK without negotiating. Valid UTF-8 is taken as UTF-8 (GBK text is
    almost never valid UTF-8, while UTF-8 bytes often pass as GBK), then the negotiated
    charset is tried, then GB18030 (a superset of GBK), and Latin-1 last (it never fails).
    """
    if data is None:
        return None
    raw = bytes(data)
    for candidate in ("utf-8", charset, "gb18030"):
        try:
            return raw.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("latin-1")


def encode_text(text: str, charset: str = "utf-8") -> bytes:
    try:
        return text.encode(charset)
    except UnicodeEncodeError:
        # A character the negotiated charset lacks: send a character reference, never fail.
        return text.encode(charset, errors="xmlcharrefreplace")


# -- bit strings --------------------------------------------------------------------------

def _bits_to_set(value: tuple[bytes, int]) -> set[int]:
    data, length = value
    return {n for n in range(min(length, len(data) * 8)) if data[n // 8] & (0x80 >> (n % 8))}


def _set_to_bits(bits: set[int], length: int) -> tuple[bytes, int]:
    data = bytearray((length + 7) // 8)
    for n in bits:
        data[n // 8] |= 0x80 >> (n % 8)
    return bytes(data), length


def _options_from(value: tuple[bytes, int]) -> frozenset[P.Option]:
    return frozenset(P.OPTION_BITS[n] for n in _bits_to_set(value) if n < len(P.OPTION_BITS))


def _options_to(options: frozenset[P.Option]) -> tuple[bytes, int]:
    return _set_to_bits({P.OPTION_BITS.index(o) for o in options}, len(P.OPTION_BITS))


def _versions_from(value: tuple[bytes, int]) -> tuple[int, ...]:
    return tuple(sorted(n + 1 for n in _bits_to_set(value)))


def _versions_to(versions: tuple[int, ...]) -> tuple[bytes, int]:
    return _set_to_bits({v - 1 for v in versions}, 8)


# -- diagnostics --------------------------------------------------------------------------

def _diag_to(diagnostic: P.Diagnostic, charset: str) -> dict:
    return {
        "diagnosticSetId": diagnostic.set_id,
        "condition": diagnostic.code,
        "addinfo": ("v3Addinfo", encode_text(diagnostic.addinfo, charset)),
    }


def _diag_from(value: dict, charset: str) -> P.Diagnostic:
    return P.Diagnostic(
        code=int(value["condition"]),
        addinfo=decode_text(value["addinfo"][1], charset) or "",
        set_id=value["diagnosticSetId"],
    )


def _diagrec_from(value: tuple, charset: str) -> P.Diagnostic:
    kind, content = value
    if kind == "defaultFormat":
        return _diag_from(content, charset)
    return P.Diagnostic(code=100, addinfo=f"externally defined diagnostic {content.get('direct-reference', '')}")


# -- attributes, terms, RPN ---------------------------------------------------------------

def _attribute_to(attribute: P.Attribute, charset: str) -> dict:
    value: Any
    if isinstance(attribute.value, int):
        value = ("numeric", attribute.value)
    else:
        elements = attribute.value if isinstance(attribute.value, tuple) else (attribute.value,)
        value = ("complex", {"list": [
            ("numeric", e) if isinstance(e, int) else ("string", encode_text(e, charset)) for e in elements
        ]})
    encoded: dict[str, Any] = {"attributeType": attribute.type, "attributeValue": value}
    if attribute.attribute_set:
        encoded["attributeSet"] = attribute.attribute_set
    return encoded


def _attribute_from(value: dict, charset: str) -> P.Attribute:
    kind, content = value["attributeValue"]
    attribute_value: P.AttributeValue
    if kind == "numeric":
        attribute_value = int(content)
    else:
        elements = tuple(
            int(e) if k == "numeric" else decode_text(e, charset) or "" for k, e in content["list"]
        )
        attribute_value = elements[0] if len(elements) == 1 else elements
    return P.Attribute(int(value["attributeType"]), attribute_value, value.get("attributeSet"))


def _term_to(term: str | int, kind: P.TermKind, charset: str) -> tuple:
    if kind is P.TermKind.NUMERIC:
        return ("numeric", int(term))
    if kind is P.TermKind.CHARACTER_STRING:
        return ("characterString", encode_text(str(term), charset))
    if kind is P.TermKind.NULL:
        return ("null", None)
    if kind is P.TermKind.OID:
        return ("oid", str(term))
    return ("general", encode_text(str(term), charset))


def _term_from(value: tuple, charset: str) -> tuple[str | int, P.TermKind]:
    kind, content = value
    if kind == "general":
        return decode_text(content, charset) or "", P.TermKind.GENERAL
    if kind == "numeric":
        return int(content), P.TermKind.NUMERIC
    if kind == "characterString":
        return decode_text(content, charset) or "", P.TermKind.CHARACTER_STRING
    if kind == "oid":
        return str(content), P.TermKind.OID
    if kind == "dateTime":
        return str(content), P.TermKind.DATE_TIME
    if kind == "null":
        return "", P.TermKind.NULL
    raise PduDecodeError(f"unsupported term type {kind}")


def _attr_term_to(node: P.AttrTerm, charset: str) -> dict:
    return {
        "attributes": [_attribute_to(a, charset) for a in node.attributes],
        "term": _term_to(node.term, node.kind, charset),
    }


def _attr_term_from(value: dict, charset: str) -> P.AttrTerm:
    term, kind = _term_from(value["term"], charset)
    return P.AttrTerm(tuple(_attribute_from(a, charset) for a in value["attributes"]), term, kind)


def _rpn_to(node: P.RpnNode, charset: str) -> tuple:
    if isinstance(node, P.AttrTerm):
        return ("op", ("attrTerm", _attr_term_to(node, charset)))
    if isinstance(node, P.ResultSetRef):
        if node.attributes:
            return ("op", ("resultAttr", {
                "resultSet": encode_text(node.name, charset),
                "attributes": [_attribute_to(a, charset) for a in node.attributes],
            }))
        return ("op", ("resultSet", encode_text(node.name, charset)))
    operator: tuple
    if node.op is P.Operator.PROX:
        if node.proximity is None:
            raise PduEncodeError("a prox operator needs its proximity parameters")
        prox = node.proximity
        encoded_prox: dict[str, Any] = {
            "distance": prox.distance,
            "ordered": prox.ordered,
            "relationType": prox.relation_type,
            "proximityUnitCode": ("private" if prox.private_unit else "known", prox.unit),
        }
        if prox.exclusion is not None:
            encoded_prox["exclusion"] = prox.exclusion
        operator = ("prox", encoded_prox)
    else:
        operator = (node.op.value, None)
    return ("rpnRpnOp", {"rpn1": _rpn_to(node.left, charset), "rpn2": _rpn_to(node.right, charset), "op": operator})


def _rpn_from(value: tuple, charset: str) -> P.RpnNode:
    kind, content = value
    if kind == "op":
        operand_kind, operand = content
        if operand_kind == "attrTerm":
            return _attr_term_from(operand, charset)
        if operand_kind == "resultSet":
            return P.ResultSetRef(decode_text(operand, charset) or "")
        return P.ResultSetRef(
            decode_text(operand["resultSet"], charset) or "",
            tuple(_attribute_from(a, charset) for a in operand["attributes"]),
        )
    op_kind, op_value = content["op"]
    proximity = None
    if op_kind == "prox":
        unit_kind, unit = op_value["proximityUnitCode"]
        proximity = P.Proximity(
            distance=int(op_value["distance"]),
            ordered=bool(op_value["ordered"]),
            relation_type=int(op_value["relationType"]),
            unit=int(unit),
            exclusion=op_value.get("exclusion"),
            private_unit=unit_kind == "private",
        )
    return P.RpnOp(P.Operator(op_kind), _rpn_from(content["rpn1"], charset), _rpn_from(content["rpn2"], charset), proximity)


# -- EXTERNAL helpers ---------------------------------------------------------------------

def _external(direct_reference: str, encoding: tuple) -> dict:
    return {"direct-reference": direct_reference, "encoding": encoding}


def _other_info_external(other_info: list | None, oid: str) -> bytes | None:
    """The single-ASN1-type content of the first externallyDefinedInfo with this OID."""
    for entry in other_info or []:
        kind, content = entry["information"]
        if kind == "externallyDefinedInfo" and content.get("direct-reference") == oid:
            encoding_kind, data = content["encoding"]
            if encoding_kind == "single-ASN1-type":
                return bytes(data)
    return None


# -- additionalSearchInfo: searchResult-1 and characterInfo ---------------------------------

def _query_term_to(term: P.QueryTerm, charset: str) -> tuple:
    value: dict[str, Any] = {"queryTerm": ("general", encode_text(term.term, charset))}
    if term.comment is not None:
        value["termComment"] = encode_text(term.comment, charset)
    return ("term", value)


def _query_term_from(value: tuple | None, charset: str) -> P.QueryTerm | None:
    if value is None or value[0] != "term":
        return None   # a QueryExpression of the `query` kind is not kept
    term, _ = _term_from(value[1]["queryTerm"], charset)
    return P.QueryTerm(str(term), decode_text(value[1].get("termComment"), charset))


def encode_search_info(reports: list[P.SubqueryReport], charset: str = "utf-8") -> bytes:
    """BER of a SearchInfoReport (the content of a searchResult-1 EXTERNAL)."""
    entries = []
    for report in reports:
        entry: dict[str, Any] = {"fullQuery": report.full_query}
        if report.subquery_id is not None:
            entry["subqueryId"] = encode_text(report.subquery_id, charset)
        for key, term in (("subqueryExpression", report.expression),
                          ("subqueryInterpretation", report.interpretation),
                          ("subqueryRecommendation", report.recommendation)):
            if term is not None:
                entry[key] = _query_term_to(term, charset)
        if report.count is not None:
            entry["subqueryCount"] = report.count
        entries.append(entry)
    return _spec().encode("SearchInfoReport", entries)


def decode_search_info(data: bytes, charset: str = "utf-8") -> list[P.SubqueryReport]:
    return [
        P.SubqueryReport(
            subquery_id=decode_text(entry.get("subqueryId"), charset),
            full_query=bool(entry["fullQuery"]),
            expression=_query_term_from(entry.get("subqueryExpression"), charset),
            interpretation=_query_term_from(entry.get("subqueryInterpretation"), charset),
            recommendation=_query_term_from(entry.get("subqueryRecommendation"), charset),
            count=int(entry["subqueryCount"]) if "subqueryCount" in entry else None,
        )
        for entry in _spec().decode("SearchInfoReport", to_definite(data))
    ]


def _search_info_to(reports: list[P.SubqueryReport], texts: list[str], charset: str) -> list[dict]:
    units: list[dict] = []
    if reports:
        units.append({"information": ("externallyDefinedInfo", _external(
            P.SEARCH_RESULT_1, ("single-ASN1-type", encode_search_info(reports, charset))))})
    units.extend({"information": ("characterInfo", encode_text(text, charset))} for text in texts)
    return units


def _search_info_from(units: list | None, charset: str) -> tuple[list[P.SubqueryReport], list[str]]:
    """The searchResult-1 reports and characterInfo texts of an additionalSearchInfo. A report
    that cannot be decoded is left out: it must not cost the client the search's answer."""
    reports: list[P.SubqueryReport] = []
    texts: list[str] = []
    for unit in units or []:
        kind, content = unit["information"]
        if kind == "characterInfo":
            texts.append(decode_text(content, charset) or "")
        elif kind == "externallyDefinedInfo" and content.get("direct-reference") == P.SEARCH_RESULT_1:
            encoding_kind, data = content["encoding"]
            if encoding_kind != "single-ASN1-type":
                continue
            try:
                reports.extend(decode_search_info(bytes(data), charset))
            except Exception:  # asn1tools DecodeError, or a value of an unexpected shape
                continue
    return reports, texts


# -- character-set negotiation ------------------------------------------------------------

def _charset_choice_to(name: str) -> tuple:
    for oid, known in P.ISO10646_ENCODINGS.items():
        if known.lower() == name.lower():
            return ("iso10646", {"encodingLevel": oid})
    return ("private", ("externallySpecified", _external(P.PRIVATE_CHARSET_NAME, ("octet-aligned", name.encode("ascii")))))


def _charset_choice_from(value: tuple) -> str | None:
    kind, content = value
    if kind == "iso10646":
        return P.ISO10646_ENCODINGS.get(content["encodingLevel"], content["encodingLevel"])
    if kind == "private":
        private_kind, private = content
        if private_kind == "externallySpecified":
            encoding_kind, data = private["encoding"]
            if encoding_kind == "octet-aligned":
                return bytes(data).decode("ascii", errors="replace")
        if private_kind == "viaOid" and private:
            return str(private[0])
        return None
    if kind == "none":
        return None
    return None  # iso2022: never selected by this project


def encode_charset_proposal(proposal: P.CharsetProposal) -> bytes:
    value: dict[str, Any] = {"proposedCharSets": [_charset_choice_to(c) for c in proposal.charsets]}
    if proposal.languages:
        value["proposedlanguages"] = [lang.encode("ascii") for lang in proposal.languages]
    if proposal.records_in_selected_charsets is not None:
        value["recordsInSelectedCharSets"] = proposal.records_in_selected_charsets
    return _spec().encode("CharSetandLanguageNegotiation", ("proposal", value))


def encode_charset_response(response: P.CharsetResponse) -> bytes:
    value: dict[str, Any] = {}
    value["selectedCharSets"] = _charset_choice_to(response.charset) if response.charset else ("none", None)
    if response.language:
        value["selectedLanguage"] = response.language.encode("ascii")
    if response.records_in_selected_charsets is not None:
        value["recordsInSelectedCharSets"] = response.records_in_selected_charsets
    return _spec().encode("CharSetandLanguageNegotiation", ("response", value))


def decode_charset_negotiation(data: bytes) -> P.CharsetProposal | P.CharsetResponse:
    kind, value = _spec().decode("CharSetandLanguageNegotiation", to_definite(data))
    languages = tuple(decode_text(lang, "ascii") or "" for lang in value.get("proposedlanguages", []))
    if kind == "proposal":
        charsets = tuple(c for c in (_charset_choice_from(v) for v in value.get("proposedCharSets", [])) if c)
        return P.CharsetProposal(charsets, languages, value.get("recordsInSelectedCharSets"))
    selected = value.get("selectedCharSets")
    language = value.get("selectedLanguage")
    return P.CharsetResponse(
        _charset_choice_from(selected) if selected is not None else None,
        decode_text(language, "ascii") if language is not None else None,
        value.get("recordsInSelectedCharSets"),
    )


# -- records ------------------------------------------------------------------------------

_HOLDINGS_FIELDS = {
    "type_of_record": "typeOfRecord", "encoding_level": "encodingLevel", "format": "format",
    "receipt_acq_status": "receiptAcqStatus", "general_retention": "generalRetention",
    "completeness": "completeness", "date_of_report": "dateOfReport", "nuc_code": "nucCode",
    "local_location": "localLocation", "shelving_location": "shelvingLocation",
    "call_number": "callNumber", "shelving_data": "shelvingData", "copy_number": "copyNumber",
    "public_note": "publicNote", "reproduction_note": "reproductionNote",
    "terms_use_repro": "termsUseRepro", "enum_and_chron": "enumAndChron",
}
_CIRCULATION_FIELDS = {
    "availability_date": "availablityDate", "available_thru": "availableThru",
    "restrictions": "restrictions", "item_id": "itemId", "enum_and_chron": "enumAndChron",
    "midspine": "midspine", "temporary_location": "temporaryLocation",
}


def _opac_to(record: P.OpacRecord, charset: str) -> bytes:
    value: dict[str, Any] = {}
    if record.bibliographic is not None:
        value["bibliographicRecord"] = _retrieval_to(record.bibliographic, charset)
    holdings = []
    for holding in record.holdings:
        data: dict[str, Any] = {}
        for attribute, name in _HOLDINGS_FIELDS.items():
            text = getattr(holding, attribute)
            if text:
                data[name] = encode_text(text, charset)
        circulation = []
        for circ in holding.circulation:
            entry: dict[str, Any] = {
                "availableNow": circ.available_now, "renewable": circ.renewable, "onHold": circ.on_hold,
            }
            for attribute, name in _CIRCULATION_FIELDS.items():
                text = getattr(circ, attribute)
                if text:
                    entry[name] = encode_text(text, charset)
            circulation.append(entry)
        if circulation:
            data["circulationData"] = circulation
        holdings.append(("holdingsAndCirc", data))
    if holdings:
        value["holdingsData"] = holdings
    return _spec().encode("OPACRecord", value)


def _opac_from(data: bytes, charset: str) -> P.OpacRecord:
    value = _spec().decode("OPACRecord", to_definite(data))
    bibliographic = None
    if "bibliographicRecord" in value:
        bibliographic = _retrieval_from(value["bibliographicRecord"], charset)
    holdings = []
    for kind, content in value.get("holdingsData", []):
        if kind != "holdingsAndCirc":
            continue
        holding = P.Holdings(**{a: decode_text(content.get(n), charset) for a, n in _HOLDINGS_FIELDS.items()})
        for circ in content.get("circulationData", []):
            holding.circulation.append(P.Circulation(
                available_now=bool(circ["availableNow"]),
                renewable=bool(circ["renewable"]),
                on_hold=bool(circ["onHold"]),
                **{a: decode_text(circ.get(n), charset) for a, n in _CIRCULATION_FIELDS.items()},
            ))
        holdings.append(holding)
    return P.OpacRecord(bibliographic, holdings)


def _retrieval_to(record: P.RetrievalRecord, charset: str) -> dict:
    content = record.content
    if isinstance(content, P.OpacRecord):
        return _external(record.syntax, ("single-ASN1-type", _opac_to(content, charset)))
    if isinstance(content, str):
        # SUTRS: a GeneralString (universal tag 27).
        return _external(record.syntax, ("single-ASN1-type", _spec().encode("InternationalString", encode_text(content, charset))))
    return _external(record.syntax, ("octet-aligned", content))


def _retrieval_from(value: dict, charset: str) -> P.RetrievalRecord:
    syntax = value.get("direct-reference", "")
    kind, data = value["encoding"]
    if kind == "octet-aligned":
        return P.RetrievalRecord(syntax, bytes(data))
    if kind == "single-ASN1-type":
        if syntax == P.RecordSyntax.OPAC.value:
            return P.RetrievalRecord(syntax, _opac_from(bytes(data), charset))
        if syntax == P.RecordSyntax.SUTRS.value:
            text = _spec().decode("InternationalString", to_definite(bytes(data)))
            return P.RetrievalRecord(syntax, decode_text(text, charset) or "")
        return P.RetrievalRecord(syntax, bytes(data))
    return P.RetrievalRecord(syntax, bytes(data[0]))


def _records_to(records: list[P.NamePlusRecord] | None, diagnostics: list[P.Diagnostic], charset: str) -> tuple | None:
    if diagnostics:
        if len(diagnostics) == 1:
            return ("nonSurrogateDiagnostic", _diag_to(diagnostics[0], charset))
        return ("multipleNonSurDiagnostics", [("defaultFormat", _diag_to(d, charset)) for d in diagnostics])
    if records is None:
        return None
    encoded = []
    for entry in records:
        item: dict[str, Any] = {}
        if entry.database is not None:
            item["name"] = encode_text(entry.database, charset)
        if isinstance(entry.record, P.Diagnostic):
            item["record"] = ("surrogateDiagnostic", ("defaultFormat", _diag_to(entry.record, charset)))
        else:
            item["record"] = ("retrievalRecord", _retrieval_to(entry.record, charset))
        encoded.append(item)
    return ("responseRecords", encoded)


def _records_from(value: tuple | None, charset: str) -> tuple[list[P.NamePlusRecord] | None, list[P.Diagnostic]]:
    if value is None:
        return None, []
    kind, content = value
    if kind == "nonSurrogateDiagnostic":
        return None, [_diag_from(content, charset)]
    if kind == "multipleNonSurDiagnostics":
        return None, [_diagrec_from(d, charset) for d in content]
    records = []
    for item in content:
        name = decode_text(item.get("name"), charset)
        record_kind, record = item["record"]
        if record_kind == "retrievalRecord":
            records.append(P.NamePlusRecord(name, _retrieval_from(record, charset)))
        elif record_kind == "surrogateDiagnostic":
            records.append(P.NamePlusRecord(name, _diagrec_from(record, charset)))
        else:
            records.append(P.NamePlusRecord(name, P.Diagnostic(100, "record fragments are not supported")))
    return records, []


def _element_set_from(value: tuple | None, charset: str) -> str | None:
    if value is None:
        return None
    kind, content = value
    if kind == "genericElementSetName":
        return decode_text(content, charset)
    return decode_text(content[0]["esn"], charset) if content else None


# -- PDU encoders -------------------------------------------------------------------------

def _with_ref(value: dict, reference_id: bytes | None) -> dict:
    if reference_id is not None:
        value["referenceId"] = reference_id
    return value


def _enc_init_request(p: P.InitRequest, cs: str) -> tuple:
    value: dict[str, Any] = {
        "protocolVersion": _versions_to(p.versions),
        "options": _options_to(p.options),
        "preferredMessageSize": p.preferred_message_size,
        "exceptionalRecordSize": p.exceptional_record_size,
    }
    auth = p.authentication
    if auth is not None:
        if auth.anonymous:
            value["idAuthentication"] = ("anonymous", None)
        elif auth.open is not None:
            value["idAuthentication"] = ("open", auth.open.encode("latin-1", errors="replace"))
        else:
            id_pass = {}
            for key, text in (("groupId", auth.group), ("userId", auth.user), ("password", auth.password)):
                if text is not None:
                    id_pass[key] = encode_text(text, cs)
            value["idAuthentication"] = ("idPass", id_pass)
    for key, text in (("implementationId", p.implementation_id), ("implementationName", p.implementation_name),
                      ("implementationVersion", p.implementation_version)):
        if text is not None:
            value[key] = encode_text(text, cs)
    if p.charset_proposal is not None:
        value["otherInfo"] = [{"information": ("externallyDefinedInfo", _external(
            P.CHARSET_NEGOTIATION, ("single-ASN1-type", encode_charset_proposal(p.charset_proposal))))}]
    return ("initRequest", _with_ref(value, p.reference_id))


def _enc_init_response(p: P.InitResponse, cs: str) -> tuple:
    value: dict[str, Any] = {
        "protocolVersion": _versions_to(p.versions),
        "options": _options_to(p.options),
        "preferredMessageSize": p.preferred_message_size,
        "exceptionalRecordSize": p.exceptional_record_size,
        "result": p.result,
    }
    for key, text in (("implementationId", p.implementation_id), ("implementationName", p.implementation_name),
                      ("implementationVersion", p.implementation_version)):
        if text is not None:
            value[key] = encode_text(text, cs)
    if p.diagnostic is not None:
        diag_format = _spec().encode("DiagnosticFormat", [{"diagnostic": ("defaultDiagRec", _diag_to(p.diagnostic, cs))}])
        user_info = _spec().encode("OtherInformation", [{"information": ("externallyDefinedInfo", _external(
            P.DIAG_1_FORMAT, ("single-ASN1-type", diag_format)))}])
        value["userInformationField"] = _external(P.USER_INFO_1, ("single-ASN1-type", user_info))
    if p.charset_response is not None:
        value["otherInfo"] = [{"information": ("externallyDefinedInfo", _external(
            P.CHARSET_NEGOTIATION, ("single-ASN1-type", encode_charset_response(p.charset_response))))}]
    return ("initResponse", _with_ref(value, p.reference_id))


def _enc_search_request(p: P.SearchRequest, cs: str) -> tuple:
    if isinstance(p.query, P.OtherQuery):
        if p.query.type in ("type-2", "type-100", "type-102"):
            query: tuple = (p.query.type, p.query.content)
        else:
            raise PduEncodeError(f"cannot encode a {p.query.type} query")
    else:
        query = ("type-101" if p.query.type_101 else "type-1",
                 {"attributeSet": p.query.attribute_set, "rpn": _rpn_to(p.query.root, cs)})
    value: dict[str, Any] = {
        "smallSetUpperBound": p.small_set_upper_bound,
        "largeSetLowerBound": p.large_set_lower_bound,
        "mediumSetPresentNumber": p.medium_set_present_number,
        "replaceIndicator": p.replace_indicator,
        "resultSetName": encode_text(p.result_set_name, cs),
        "databaseNames": [encode_text(d, cs) for d in p.database_names],
        "query": query,
    }
    if p.small_set_element_set_name is not None:
        value["smallSetElementSetNames"] = ("genericElementSetName", encode_text(p.small_set_element_set_name, cs))
    if p.medium_set_element_set_name is not None:
        value["mediumSetElementSetNames"] = ("genericElementSetName", encode_text(p.medium_set_element_set_name, cs))
    if p.preferred_record_syntax is not None:
        value["preferredRecordSyntax"] = p.preferred_record_syntax
    return ("searchRequest", _with_ref(value, p.reference_id))


def _enc_search_response(p: P.SearchResponse, cs: str) -> tuple:
    value: dict[str, Any] = {
        "resultCount": p.result_count,
        "numberOfRecordsReturned": p.number_of_records_returned,
        "nextResultSetPosition": p.next_result_set_position,
        "searchStatus": p.search_status,
    }
    if p.result_set_status is not None:
        value["resultSetStatus"] = p.result_set_status
    if p.present_status is not None:
        value["presentStatus"] = int(p.present_status)
    records = _records_to(p.records, p.diagnostics, cs)
    if records is not None:
        value["records"] = records
    if p.search_info or p.search_info_texts:
        value["additionalSearchInfo"] = _search_info_to(p.search_info, p.search_info_texts, cs)
    return ("searchResponse", _with_ref(value, p.reference_id))


def _enc_present_request(p: P.PresentRequest, cs: str) -> tuple:
    value: dict[str, Any] = {
        "resultSetId": encode_text(p.result_set_id, cs),
        "resultSetStartPoint": p.start,
        "numberOfRecordsRequested": p.count,
    }
    if p.additional_ranges:
        value["additionalRanges"] = [{"startingPosition": r.start, "numberOfRecords": r.count} for r in p.additional_ranges]
    if p.record_syntaxes:
        spec: dict[str, Any] = {}
        if p.element_set_name is not None:
            spec["elementSpec"] = ("elementSetName", encode_text(p.element_set_name, cs))
        value["recordComposition"] = ("complex", {
            "selectAlternativeSyntax": False, "generic": spec, "recordSyntax": list(p.record_syntaxes),
        })
    elif p.element_set_name is not None:
        value["recordComposition"] = ("simple", ("genericElementSetName", encode_text(p.element_set_name, cs)))
    if p.preferred_record_syntax is not None:
        value["preferredRecordSyntax"] = p.preferred_record_syntax
    return ("presentRequest", _with_ref(value, p.reference_id))


def _enc_present_response(p: P.PresentResponse, cs: str) -> tuple:
    value: dict[str, Any] = {
        "numberOfRecordsReturned": p.number_of_records_returned,
        "nextResultSetPosition": p.next_result_set_position,
        "presentStatus": int(p.present_status),
    }
    records = _records_to(p.records, p.diagnostics, cs)
    if records is not None:
        value["records"] = records
    return ("presentResponse", _with_ref(value, p.reference_id))


def _enc_delete_request(p: P.DeleteResultSetRequest, cs: str) -> tuple:
    value: dict[str, Any] = {"deleteFunction": 1 if p.delete_all else 0}
    if p.names:
        value["resultSetList"] = [encode_text(n, cs) for n in p.names]
    return ("deleteResultSetRequest", _with_ref(value, p.reference_id))


def _enc_delete_response(p: P.DeleteResultSetResponse, cs: str) -> tuple:
    value: dict[str, Any] = {"deleteOperationStatus": int(p.status)}
    if p.list_statuses:
        value["deleteListStatuses"] = [{"id": encode_text(n, cs), "status": int(s)} for n, s in p.list_statuses]
    if p.message is not None:
        value["deleteMessage"] = encode_text(p.message, cs)
    return ("deleteResultSetResponse", _with_ref(value, p.reference_id))


def _enc_scan_request(p: P.ScanRequest, cs: str) -> tuple:
    value: dict[str, Any] = {
        "databaseNames": [encode_text(d, cs) for d in p.database_names],
        "termListAndStartPoint": _attr_term_to(P.AttrTerm(p.attributes, p.term), cs),
        "stepSize": p.step_size,
        "numberOfTermsRequested": p.number_of_terms,
        "preferredPositionInResponse": p.preferred_position,
    }
    if p.attribute_set is not None:
        value["attributeSet"] = p.attribute_set
    return ("scanRequest", _with_ref(value, p.reference_id))


def _enc_scan_response(p: P.ScanResponse, cs: str) -> tuple:
    value: dict[str, Any] = {"scanStatus": int(p.status), "numberOfEntriesReturned": len(p.entries)}
    if p.step_size is not None:
        value["stepSize"] = p.step_size
    if p.position_of_term is not None:
        value["positionOfTerm"] = p.position_of_term
    entries: dict[str, Any] = {}
    if p.entries:
        terms = []
        for entry in p.entries:
            info: dict[str, Any] = {"term": ("general", encode_text(entry.term, cs))}
            if entry.display_term is not None:
                info["displayTerm"] = encode_text(entry.display_term, cs)
            if entry.occurrences is not None:
                info["globalOccurrences"] = entry.occurrences
            terms.append(("termInfo", info))
        entries["entries"] = terms
    if p.diagnostics:
        entries["nonsurrogateDiagnostics"] = [("defaultFormat", _diag_to(d, cs)) for d in p.diagnostics]
    if entries:
        value["entries"] = entries
    return ("scanResponse", _with_ref(value, p.reference_id))


def _enc_sort_request(p: P.SortRequest, cs: str) -> tuple:
    keys = []
    for key in p.keys:
        if key.sort_field is not None:
            sort_key: tuple = ("sortfield", encode_text(key.sort_field, cs))
        else:
            sort_key = ("sortAttributes", {"id": key.attribute_set, "list": [_attribute_to(a, cs) for a in key.attributes]})
        spec: dict[str, Any] = {
            "sortElement": ("generic", sort_key),
            "sortRelation": 0 if key.ascending else 1,
            "caseSensitivity": 0 if key.case_sensitive else 1,
        }
        if key.missing_value == "abort":
            spec["missingValueAction"] = ("abort", None)
        elif key.missing_value == "null":
            spec["missingValueAction"] = ("null", None)
        elif isinstance(key.missing_value, bytes):
            spec["missingValueAction"] = ("missingValueData", key.missing_value)
        keys.append(spec)
    value = {
        "inputResultSetNames": [encode_text(n, cs) for n in p.input_result_sets],
        "sortedResultSetName": encode_text(p.sorted_result_set, cs),
        "sortSequence": keys,
    }
    return ("sortRequest", _with_ref(value, p.reference_id))


def _enc_sort_response(p: P.SortResponse, cs: str) -> tuple:
    value: dict[str, Any] = {"sortStatus": int(p.status)}
    if p.result_set_status is not None:
        value["resultSetStatus"] = p.result_set_status
    if p.diagnostics:
        value["diagnostics"] = [("defaultFormat", _diag_to(d, cs)) for d in p.diagnostics]
    if p.result_count is not None:
        value["resultCount"] = p.result_count
    return ("sortResponse", _with_ref(value, p.reference_id))


def _enc_close(p: P.Close, cs: str) -> tuple:
    value: dict[str, Any] = {"closeReason": int(p.reason)}
    if p.diagnostic_information is not None:
        value["diagnosticInformation"] = encode_text(p.diagnostic_information, cs)
    return ("close", _with_ref(value, p.reference_id))


_ENCODERS: dict[type, Callable[[Any, str], tuple]] = {
    P.InitRequest: _enc_init_request,
    P.InitResponse: _enc_init_response,
    P.SearchRequest: _enc_search_request,
    P.SearchResponse: _enc_search_response,
    P.PresentRequest: _enc_present_request,
    P.PresentResponse: _enc_present_response,
    P.DeleteResultSetRequest: _enc_delete_request,
    P.DeleteResultSetResponse: _enc_delete_response,
    P.ScanRequest: _enc_scan_request,
    P.ScanResponse: _enc_scan_response,
    P.SortRequest: _enc_sort_request,
    P.SortResponse: _enc_sort_response,
    P.Close: _enc_close,
}


def encode(pdu: P.Pdu, charset: str = "utf-8") -> bytes:
    """BER bytes of one PDU; strings are encoded with `charset`."""
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise PduEncodeError(f"not a PDU: {type(pdu).__name__}")
    try:
        return _spec().encode("PDU", encoder(pdu, charset))
    except PduEncodeError:
        raise
    except Exception as error:  # asn1tools raises EncodeError, but also TypeError/KeyError on bad values
        raise PduEncodeError(f"cannot encode {type(pdu).__name__}: {error}") from error


# -- PDU decoders -------------------------------------------------------------------------

def _dec_init_request(v: dict, cs: str) -> P.InitRequest:
    auth = None
    if "idAuthentication" in v:
        kind, content = v["idAuthentication"]
        if kind == "open":
            auth = P.Authentication(open=decode_text(content, cs))
        elif kind == "idPass":
            auth = P.Authentication(
                user=decode_text(content.get("userId"), cs),
                password=decode_text(content.get("password"), cs),
                group=decode_text(content.get("groupId"), cs),
            )
        elif kind == "anonymous":
            auth = P.Authentication(anonymous=True)
        else:
            auth = P.Authentication()
    proposal = None
    negotiation = _other_info_external(v.get("otherInfo"), P.CHARSET_NEGOTIATION)
    if negotiation is not None:
        decoded = decode_charset_negotiation(negotiation)
        if isinstance(decoded, P.CharsetProposal):
            proposal = decoded
    return P.InitRequest(
        options=_options_from(v["options"]),
        versions=_versions_from(v["protocolVersion"]),
        preferred_message_size=int(v["preferredMessageSize"]),
        exceptional_record_size=int(v["exceptionalRecordSize"]),
        authentication=auth,
        implementation_id=decode_text(v.get("implementationId"), cs),
        implementation_name=decode_text(v.get("implementationName"), cs),
        implementation_version=decode_text(v.get("implementationVersion"), cs),
        charset_proposal=proposal,
        reference_id=v.get("referenceId"),
    )


def _dec_init_response(v: dict, cs: str) -> P.InitResponse:
    response = None
    negotiation = _other_info_external(v.get("otherInfo"), P.CHARSET_NEGOTIATION)
    if negotiation is not None:
        decoded = decode_charset_negotiation(negotiation)
        if isinstance(decoded, P.CharsetResponse):
            response = decoded
    diagnostic = _init_diagnostic(v.get("userInformationField"), cs)
    return P.InitResponse(
        result=bool(v["result"]),
        options=_options_from(v["options"]),
        versions=_versions_from(v["protocolVersion"]),
        preferred_message_size=int(v["preferredMessageSize"]),
        exceptional_record_size=int(v["exceptionalRecordSize"]),
        implementation_id=decode_text(v.get("implementationId"), cs),
        implementation_name=decode_text(v.get("implementationName"), cs),
        implementation_version=decode_text(v.get("implementationVersion"), cs),
        charset_response=response,
        diagnostic=diagnostic,
        reference_id=v.get("referenceId"),
    )


def _init_diagnostic(user_info: dict | None, cs: str) -> P.Diagnostic | None:
    """The first default-format diagnostic in a userInfo-1 userInformationField, if any."""
    if user_info is None or user_info.get("direct-reference") != P.USER_INFO_1:
        return None
    kind, data = user_info["encoding"]
    if kind != "single-ASN1-type":
        return None
    other_info = _spec().decode("OtherInformation", to_definite(bytes(data)))
    diag_format = _other_info_external(other_info, P.DIAG_1_FORMAT)
    if diag_format is None:
        return None
    for entry in _spec().decode("DiagnosticFormat", to_definite(diag_format)):
        choice = entry.get("diagnostic")
        if choice is not None and choice[0] == "defaultDiagRec":
            return _diag_from(choice[1], cs)
        if entry.get("message") is not None:
            return P.Diagnostic(100, decode_text(entry["message"], cs) or "")
    return None


def _dec_search_request(v: dict, cs: str) -> P.SearchRequest:
    kind, content = v["query"]
    query: P.RpnQuery | P.OtherQuery
    if kind in ("type-1", "type-101"):
        query = P.RpnQuery(_rpn_from(content["rpn"], cs), content["attributeSet"], kind == "type-101")
    else:
        query = P.OtherQuery(kind, bytes(content) if isinstance(content, (bytes, bytearray)) else b"")
    return P.SearchRequest(
        query=query,
        database_names=[decode_text(d, cs) or "" for d in v["databaseNames"]],
        result_set_name=decode_text(v["resultSetName"], cs) or "",
        replace_indicator=bool(v["replaceIndicator"]),
        small_set_upper_bound=int(v["smallSetUpperBound"]),
        large_set_lower_bound=int(v["largeSetLowerBound"]),
        medium_set_present_number=int(v["mediumSetPresentNumber"]),
        small_set_element_set_name=_element_set_from(v.get("smallSetElementSetNames"), cs),
        medium_set_element_set_name=_element_set_from(v.get("mediumSetElementSetNames"), cs),
        preferred_record_syntax=v.get("preferredRecordSyntax"),
        reference_id=v.get("referenceId"),
    )


def _dec_search_response(v: dict, cs: str) -> P.SearchResponse:
    records, diagnostics = _records_from(v.get("records"), cs)
    present_status = v.get("presentStatus")
    search_info, texts = _search_info_from(v.get("additionalSearchInfo"), cs)
    return P.SearchResponse(
        result_count=int(v["resultCount"]),
        number_of_records_returned=int(v["numberOfRecordsReturned"]),
        next_result_set_position=int(v["nextResultSetPosition"]),
        search_status=bool(v["searchStatus"]),
        result_set_status=v.get("resultSetStatus"),
        present_status=P.PresentStatus(present_status) if present_status in P.PresentStatus._value2member_map_ else None,
        records=records,
        diagnostics=diagnostics,
        reference_id=v.get("referenceId"),
        search_info=search_info,
        search_info_texts=texts,
    )


def _dec_present_request(v: dict, cs: str) -> P.PresentRequest:
    element_set = None
    syntaxes: tuple[str, ...] = ()
    composition = v.get("recordComposition")
    if composition is not None:
        kind, content = composition
        if kind == "simple":
            element_set = _element_set_from(content, cs)
        else:
            syntaxes = tuple(content.get("recordSyntax", []))
            generic = content.get("generic") or {}
            spec = generic.get("elementSpec")
            if spec is not None and spec[0] == "elementSetName":
                element_set = decode_text(spec[1], cs)
    return P.PresentRequest(
        result_set_id=decode_text(v["resultSetId"], cs) or "",
        start=int(v["resultSetStartPoint"]),
        count=int(v["numberOfRecordsRequested"]),
        element_set_name=element_set,
        preferred_record_syntax=v.get("preferredRecordSyntax"),
        record_syntaxes=syntaxes,
        additional_ranges=[P.Range(int(r["startingPosition"]), int(r["numberOfRecords"])) for r in v.get("additionalRanges", [])],
        reference_id=v.get("referenceId"),
    )


def _dec_present_response(v: dict, cs: str) -> P.PresentResponse:
    records, diagnostics = _records_from(v.get("records"), cs)
    status = int(v["presentStatus"])
    return P.PresentResponse(
        number_of_records_returned=int(v["numberOfRecordsReturned"]),
        next_result_set_position=int(v["nextResultSetPosition"]),
        present_status=P.PresentStatus(status) if status in P.PresentStatus._value2member_map_ else P.PresentStatus.FAILURE,
        records=records,
        diagnostics=diagnostics,
        reference_id=v.get("referenceId"),
    )


def _dec_delete_request(v: dict, cs: str) -> P.DeleteResultSetRequest:
    return P.DeleteResultSetRequest(
        delete_all=int(v["deleteFunction"]) == 1,
        names=[decode_text(n, cs) or "" for n in v.get("resultSetList", [])],
        reference_id=v.get("referenceId"),
    )


def _delete_status(value: int) -> P.DeleteSetStatus:
    if value in P.DeleteSetStatus._value2member_map_:
        return P.DeleteSetStatus(value)
    return P.DeleteSetStatus.SYSTEM_PROBLEM_AT_TARGET


def _dec_delete_response(v: dict, cs: str) -> P.DeleteResultSetResponse:
    return P.DeleteResultSetResponse(
        status=_delete_status(int(v["deleteOperationStatus"])),
        list_statuses=[(decode_text(s["id"], cs) or "", _delete_status(int(s["status"]))) for s in v.get("deleteListStatuses", [])],
        message=decode_text(v.get("deleteMessage"), cs),
        reference_id=v.get("referenceId"),
    )


def _dec_scan_request(v: dict, cs: str) -> P.ScanRequest:
    start = _attr_term_from(v["termListAndStartPoint"], cs)
    return P.ScanRequest(
        database_names=[decode_text(d, cs) or "" for d in v["databaseNames"]],
        attributes=start.attributes,
        term=str(start.term),
        number_of_terms=int(v["numberOfTermsRequested"]),
        preferred_position=int(v.get("preferredPositionInResponse", 1)),
        step_size=int(v.get("stepSize", 0)),
        attribute_set=v.get("attributeSet"),
        reference_id=v.get("referenceId"),
    )


def _dec_scan_response(v: dict, cs: str) -> P.ScanResponse:
    entries: list[P.ScanEntry] = []
    diagnostics: list[P.Diagnostic] = []
    listed = v.get("entries") or {}
    for kind, entry in listed.get("entries", []):
        if kind == "termInfo":
            term, _ = _term_from(entry["term"], cs)
            entries.append(P.ScanEntry(str(term), entry.get("globalOccurrences"), decode_text(entry.get("displayTerm"), cs)))
        else:
            diagnostics.append(_diagrec_from(entry, cs))
    diagnostics.extend(_diagrec_from(d, cs) for d in listed.get("nonsurrogateDiagnostics", []))
    status = int(v["scanStatus"])
    return P.ScanResponse(
        status=P.ScanStatus(status) if status in P.ScanStatus._value2member_map_ else P.ScanStatus.FAILURE,
        entries=entries,
        position_of_term=v.get("positionOfTerm"),
        step_size=v.get("stepSize"),
        diagnostics=diagnostics,
        reference_id=v.get("referenceId"),
    )


def _dec_sort_request(v: dict, cs: str) -> P.SortRequest:
    keys = []
    for spec in v["sortSequence"]:
        element_kind, element = spec["sortElement"]
        if element_kind != "generic":
            element = element[0]["dbSort"] if element else ("sortfield", b"")
        key_kind, key = element
        missing = spec.get("missingValueAction")
        missing_value: str | bytes | None = None
        if missing is not None:
            missing_value = bytes(missing[1]) if missing[0] == "missingValueData" else missing[0]
        common = {
            "ascending": int(spec["sortRelation"]) in (0, 3),
            "case_sensitive": int(spec["caseSensitivity"]) == 0,
            "missing_value": missing_value,
        }
        if key_kind == "sortfield":
            keys.append(P.SortKeySpec(sort_field=decode_text(key, cs), **common))
        elif key_kind == "sortAttributes":
            keys.append(P.SortKeySpec(
                attributes=tuple(_attribute_from(a, cs) for a in key["list"]), attribute_set=key["id"], **common))
        else:
            keys.append(P.SortKeySpec(sort_field="", **common))
    return P.SortRequest(
        input_result_sets=[decode_text(n, cs) or "" for n in v["inputResultSetNames"]],
        sorted_result_set=decode_text(v["sortedResultSetName"], cs) or "",
        keys=keys,
        reference_id=v.get("referenceId"),
    )


def _dec_sort_response(v: dict, cs: str) -> P.SortResponse:
    status = int(v["sortStatus"])
    return P.SortResponse(
        status=P.SortStatus(status) if status in P.SortStatus._value2member_map_ else P.SortStatus.FAILURE,
        result_set_status=v.get("resultSetStatus"),
        diagnostics=[_diagrec_from(d, cs) for d in v.get("diagnostics", [])],
        result_count=v.get("resultCount"),
        reference_id=v.get("referenceId"),
    )


def _dec_close(v: dict, cs: str) -> P.Close:
    reason = int(v["closeReason"])
    return P.Close(
        reason=P.CloseReason(reason) if reason in P.CloseReason._value2member_map_ else P.CloseReason.UNSPECIFIED,
        diagnostic_information=decode_text(v.get("diagnosticInformation"), cs),
        reference_id=v.get("referenceId"),
    )


_DECODERS: dict[str, Callable[[dict, str], P.Pdu]] = {
    "initRequest": _dec_init_request,
    "initResponse": _dec_init_response,
    "searchRequest": _dec_search_request,
    "searchResponse": _dec_search_response,
    "presentRequest": _dec_present_request,
    "presentResponse": _dec_present_response,
    "deleteResultSetRequest": _dec_delete_request,
    "deleteResultSetResponse": _dec_delete_response,
    "scanRequest": _dec_scan_request,
    "scanResponse": _dec_scan_response,
    "sortRequest": _dec_sort_request,
    "sortResponse": _dec_sort_response,
    "close": _dec_close,
}

# The APDUs this codec decodes (the standard's names).
SUPPORTED_APDUS = frozenset(_DECODERS)

# APDU tags ([CONTEXT n]) of the whole standard, to tell "not in our subset" from "garbage".
KNOWN_APDU_TAGS = {
    20: "initRequest", 21: "initResponse", 22: "searchRequest", 23: "searchResponse",
    24: "presentRequest", 25: "presentResponse", 26: "deleteResultSetRequest",
    27: "deleteResultSetResponse", 28: "accessControlRequest", 29: "accessControlResponse",
    30: "resourceControlRequest", 31: "resourceControlResponse", 32: "triggerResourceControlRequest",
    33: "resourceReportRequest", 34: "resourceReportResponse", 35: "scanRequest", 36: "scanResponse",
    43: "sortRequest", 44: "sortResponse", 45: "segmentRequest", 46: "extendedServicesRequest",
    47: "extendedServicesResponse", 48: "close", 49: "duplicateDetectionRequest",
    50: "duplicateDetectionResponse",
}


def decode(data: bytes | bytearray, charset: str = "utf-8", limits: BerLimits = DEFAULT_LIMITS) -> P.Pdu:
    """One complete PDU from its BER bytes; raises `PduDecodeError` for anything else."""
    try:
        definite = to_definite(data, limits)
        kind, value = _spec().decode("PDU", definite)
        return _DECODERS[kind](value, charset)
    except PduDecodeError:
        raise
    except BerError as error:
        raise PduDecodeError(f"malformed BER: {error}") from error
    except RecursionError as error:
        raise PduDecodeError("PDU nested too deeply") from error
    except Exception as error:  # asn1tools raises DecodeError, but also IndexError, TypeError, KeyError
        raise PduDecodeError(f"cannot decode PDU: {type(error).__name__}: {error}") from error


def apdu_name(data: bytes | bytearray) -> str | None:
    """The standard's name of the APDU type at the start of `data` (from its tag alone)."""
    if len(data) < 2 or data[0] & 0xE0 != 0xA0:
        return None
    tag = data[0] & 0x1F
    if tag == 0x1F:
        tag = data[1] & 0x7F if not data[1] & 0x80 else -1
    return KNOWN_APDU_TAGS.get(tag)
