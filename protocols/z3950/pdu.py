"""Z39.50 PDUs and the Type-1 (RPN) query as plain dataclasses.

These are what the client and server code work with; `protocols.z3950.codec` converts them to
and from BER. Strings are `str` (decoded with the session's character set), OIDs are dotted
strings, record content is bytes (ISO 2709, XML), `str` (SUTRS) or an `OpacRecord`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union

BIB1_ATTRIBUTE_SET = "1.2.840.10003.3.1"
BIB1_DIAGNOSTIC_SET = "1.2.840.10003.4.1"
DIAG_1_FORMAT = "1.2.840.10003.4.2"
USER_INFO_1 = "1.2.840.10003.10.3"
# UserInfoFormat-searchResult-1: a SearchInfoReport in a SearchResponse's additionalSearchInfo.
SEARCH_RESULT_1 = "1.2.840.10003.10.1"
CHARSET_NEGOTIATION = "1.2.840.10003.15.3"
# YAZ's private character-set name record (octet-aligned name such as b"GBK").
PRIVATE_CHARSET_NAME = "1.2.840.10003.15.1000.81.1"


class RecordSyntax(str, enum.Enum):
    USMARC = "1.2.840.10003.5.10"
    UNIMARC = "1.2.840.10003.5.1"
    XML = "1.2.840.10003.5.109.10"       # application/xml
    TEXT_XML = "1.2.840.10003.5.109.9"   # text/xml, treated as XML
    SUTRS = "1.2.840.10003.5.101"
    OPAC = "1.2.840.10003.5.102"


# ISO 10646 encoding levels as YAZ's charset negotiation names them.
ISO10646_ENCODINGS: dict[str, str] = {
    "1.0.10646.1.0.2": "UCS-2",
    "1.0.10646.1.0.4": "UCS-4",
    "1.0.10646.1.0.5": "UTF-16",
    "1.0.10646.1.0.8": "UTF-8",
}


class Option(str, enum.Enum):
    """Init option bits (bit number = position in `OPTION_BITS`)."""

    SEARCH = "search"
    PRESENT = "present"
    DEL_SET = "delSet"
    RESOURCE_REPORT = "resourceReport"
    TRIGGER_RESOURCE_CTRL = "triggerResourceCtrl"
    RESOURCE_CTRL = "resourceCtrl"
    ACCESS_CTRL = "accessCtrl"
    SCAN = "scan"
    SORT = "sort"
    RESERVED_9 = "reserved9"
    EXTENDED_SERVICES = "extendedServices"
    LEVEL_1_SEGMENTATION = "level-1Segmentation"
    LEVEL_2_SEGMENTATION = "level-2Segmentation"
    CONCURRENT_OPERATIONS = "concurrentOperations"
    NAMED_RESULT_SETS = "namedResultSets"
    ENCAPSULATION = "encapsulation"
    RESULT_COUNT = "resultCount"
    NEGOTIATION_MODEL = "negotiationModel"
    DUPLICATE_DETECTION = "duplicateDetection"
    QUERY_TYPE_104 = "queryType104"
    PQES_CORRECTION = "pQESCorrection"
    STRING_SCHEMA = "stringSchema"


OPTION_BITS: tuple[Option, ...] = tuple(Option)


class CloseReason(enum.IntEnum):
    FINISHED = 0
    SHUTDOWN = 1
    SYSTEM_PROBLEM = 2
    COST_LIMIT = 3
    RESOURCES = 4
    SECURITY_VIOLATION = 5
    PROTOCOL_ERROR = 6
    LACK_OF_ACTIVITY = 7
    PEER_ABORT = 8
    UNSPECIFIED = 9


class PresentStatus(enum.IntEnum):
    SUCCESS = 0
    PARTIAL_1 = 1  # access control
    PARTIAL_2 = 2  # message size
    PARTIAL_3 = 3  # resource control
    PARTIAL_4 = 4  # some records are diagnostics
    FAILURE = 5


class DeleteSetStatus(enum.IntEnum):
    SUCCESS = 0
    RESULT_SET_DID_NOT_EXIST = 1
    PREVIOUSLY_DELETED_BY_TARGET = 2
    SYSTEM_PROBLEM_AT_TARGET = 3
    ACCESS_NOT_ALLOWED = 4
    RESOURCE_CONTROL_AT_ORIGIN = 5
    RESOURCE_CONTROL_AT_TARGET = 6
    BULK_DELETE_NOT_SUPPORTED = 7
    NOT_ALL_RESULT_SETS_DELETED_ON_BULK = 8
    NOT_ALL_REQUESTED_RESULT_SETS_DELETED = 9
    RESULT_SET_IN_USE = 10


@dataclass(frozen=True)
class Diagnostic:
    """A diagnostic record in the default format (Bib-1 unless `set_id` says otherwise)."""

    code: int
    addinfo: str = ""
    set_id: str = BIB1_DIAGNOSTIC_SET

    def __str__(self) -> str:
        return f"[{self.code}] {self.addinfo}" if self.addinfo else f"[{self.code}]"


class Z3950Error(Exception):
    """A peer answered with a diagnostic, or the association failed."""

    def __init__(self, message: str, diagnostic: Diagnostic | None = None):
        super().__init__(message)
        self.diagnostic = diagnostic


# -- Type-1 query (RPN) ----------------------------------------------------------------------

AttributeValue = Union[int, str, tuple[Union[int, str], ...]]


@dataclass(frozen=True)
class Attribute:
    type: int
    value: AttributeValue          # numeric, or the complex list (a 1-element list as its element)
    attribute_set: str | None = None  # overrides the query's set for this attribute


class TermKind(str, enum.Enum):
    GENERAL = "general"
    NUMERIC = "numeric"
    CHARACTER_STRING = "characterString"
    OID = "oid"
    DATE_TIME = "dateTime"
    NULL = "null"


@dataclass(frozen=True)
class AttrTerm:
    attributes: tuple[Attribute, ...]
    term: str | int
    kind: TermKind = TermKind.GENERAL

    def attribute(self, attribute_type: int) -> AttributeValue | None:
        """The value of the first attribute of this type, or None."""
        for attribute in self.attributes:
            if attribute.type == attribute_type:
                return attribute.value
        return None


@dataclass(frozen=True)
class ResultSetRef:
    name: str
    attributes: tuple[Attribute, ...] = ()  # resultAttr (type-101 only)


class Operator(str, enum.Enum):
    AND = "and"
    OR = "or"
    AND_NOT = "and-not"
    PROX = "prox"


@dataclass(frozen=True)
class Proximity:
    distance: int
    ordered: bool
    relation_type: int  # 1 lt, 2 le, 3 eq, 4 ge, 5 gt, 6 ne
    unit: int           # known unit (2 word, ...) unless `private_unit`
    exclusion: bool | None = None
    private_unit: bool = False


@dataclass(frozen=True)
class RpnOp:
    op: Operator
    left: "RpnNode"
    right: "RpnNode"
    proximity: Proximity | None = None


RpnNode = Union[AttrTerm, ResultSetRef, RpnOp]


@dataclass(frozen=True)
class RpnQuery:
    root: RpnNode
    attribute_set: str = BIB1_ATTRIBUTE_SET
    # True for query type 101 (same structure; v2 restrictions lifted).
    type_101: bool = False


@dataclass(frozen=True)
class OtherQuery:
    """A query of a type other than 1/101 (kept so a server can reject it precisely)."""

    type: str  # "type-0", "type-2", "type-100", "type-102", "type-104"
    content: bytes = b""


def rpn_depth(node: RpnNode) -> int:
    """Nesting depth of an RPN tree (a single operand has depth 1)."""
    depth = 0
    stack: list[tuple[RpnNode, int]] = [(node, 1)]
    while stack:
        current, level = stack.pop()
        depth = max(depth, level)
        if isinstance(current, RpnOp):
            stack.append((current.left, level + 1))
            stack.append((current.right, level + 1))
    return depth


# -- character-set negotiation (Z39.50-1995 Amendment 3) ---------------------------------------

@dataclass(frozen=True)
class CharsetProposal:
    charsets: tuple[str, ...]  # "UTF-8", "GBK", ... in the client's order of preference
    languages: tuple[str, ...] = ()
    records_in_selected_charsets: bool | None = None


@dataclass(frozen=True)
class CharsetResponse:
    charset: str | None        # None: the target selected none
    language: str | None = None
    records_in_selected_charsets: bool | None = None


# -- authentication -----------------------------------------------------------------------

@dataclass(frozen=True)
class Authentication:
    """idAuthentication: `open` ("user/password"), `idPass`, or anonymous."""

    user: str | None = None
    password: str | None = None
    group: str | None = None
    open: str | None = None
    anonymous: bool = False

    def credentials(self) -> tuple[str | None, str | None]:
        """(user, password) whichever form was sent; `open` splits at the first '/'."""
        if self.open is not None:
            user, _, password = self.open.partition("/")
            return user, password or None
        return self.user, self.password


# -- records ------------------------------------------------------------------------------

@dataclass
class Circulation:
    """One item's circulation data (CircRecord)."""

    available_now: bool
    item_id: str | None = None
    availability_date: str | None = None
    available_thru: str | None = None
    restrictions: str | None = None
    renewable: bool = False
    on_hold: bool = False
    enum_and_chron: str | None = None
    midspine: str | None = None
    temporary_location: str | None = None


@dataclass
class Holdings:
    """HoldingsAndCircData: one holding (a library's copies at one location)."""

    nuc_code: str | None = None           # the owning library
    local_location: str | None = None
    shelving_location: str | None = None
    call_number: str | None = None
    shelving_data: str | None = None
    copy_number: str | None = None
    public_note: str | None = None
    enum_and_chron: str | None = None
    type_of_record: str | None = None
    encoding_level: str | None = None
    format: str | None = None
    receipt_acq_status: str | None = None
    general_retention: str | None = None
    completeness: str | None = None
    date_of_report: str | None = None
    reproduction_note: str | None = None
    terms_use_repro: str | None = None
    circulation: list[Circulation] = field(default_factory=list)


@dataclass
class OpacRecord:
    bibliographic: "RetrievalRecord | None"
    holdings: list[Holdings] = field(default_factory=list)


@dataclass
class RetrievalRecord:
    """A record in an EXTERNAL: `content` is bytes (MARC, XML, unknown octet-aligned),
    str (SUTRS) or an OpacRecord."""

    syntax: str
    content: bytes | str | OpacRecord


@dataclass
class NamePlusRecord:
    database: str | None
    record: RetrievalRecord | Diagnostic


# -- search information (UserInfoFormat-searchResult-1) -----------------------------------------

class ResultSetStatus(enum.IntEnum):
    """SearchResponse resultSetStatus: the standard's three (for a failed search) and YAZ's
    `estimate` (a hit count that is an estimate, sent with a successful search)."""

    SUBSET = 1
    INTERIM = 2
    NONE = 3
    ESTIMATE = 4


@dataclass(frozen=True)
class QueryTerm:
    """A QueryExpression of the `term` kind: the term (sent as a general term) and its comment."""

    term: str
    comment: str | None = None


@dataclass(frozen=True)
class SubqueryReport:
    """One entry of a SearchInfoReport (UserInfoFormat-searchResult-1, 1.2.840.10003.10.1).

    yaz-client prints an entry as ` term=EXPRESSION interpretation=INTERPRETATION cnt=COUNT id=ID`
    (terms only, not their comments); ZOOM exposes it as `searchresult.N.id`,
    `.subquery.term`, `.interpretation.term`, `.count`. A QueryExpression of the `query` kind
    is decoded as None."""

    subquery_id: str | None = None
    full_query: bool = False
    expression: QueryTerm | None = None
    interpretation: QueryTerm | None = None
    recommendation: QueryTerm | None = None
    count: int | None = None


# -- PDUs ---------------------------------------------------------------------------------

@dataclass
class InitRequest:
    options: frozenset[Option] = frozenset({Option.SEARCH, Option.PRESENT})
    versions: tuple[int, ...] = (1, 2, 3)
    preferred_message_size: int = 1024 * 1024
    exceptional_record_size: int = 1024 * 1024
    authentication: Authentication | None = None
    implementation_id: str | None = None
    implementation_name: str | None = None
    implementation_version: str | None = None
    charset_proposal: CharsetProposal | None = None
    reference_id: bytes | None = None


@dataclass
class InitResponse:
    result: bool
    options: frozenset[Option] = frozenset()
    versions: tuple[int, ...] = (1, 2, 3)
    preferred_message_size: int = 1024 * 1024
    exceptional_record_size: int = 1024 * 1024
    implementation_id: str | None = None
    implementation_name: str | None = None
    implementation_version: str | None = None
    charset_response: CharsetResponse | None = None
    # A diagnostic explaining a rejection: userInformationField as userInfo-1 holding a
    # diag-1 DiagnosticFormat, the form YAZ's clients display.
    diagnostic: Diagnostic | None = None
    reference_id: bytes | None = None


@dataclass
class SearchRequest:
    query: RpnQuery | OtherQuery
    database_names: list[str]
    result_set_name: str = "default"
    replace_indicator: bool = True
    small_set_upper_bound: int = 0
    large_set_lower_bound: int = 1
    medium_set_present_number: int = 0
    small_set_element_set_name: str | None = None
    medium_set_element_set_name: str | None = None
    preferred_record_syntax: str | None = None
    reference_id: bytes | None = None


@dataclass
class SearchResponse:
    result_count: int
    number_of_records_returned: int = 0
    next_result_set_position: int = 1
    search_status: bool = True
    result_set_status: int | None = None  # a ResultSetStatus: 1 subset, 2 interim, 3 none, 4 estimate
    present_status: PresentStatus | None = None
    records: list[NamePlusRecord] | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)  # non-surrogate
    reference_id: bytes | None = None
    # additionalSearchInfo (version 3): a SearchInfoReport (searchResult-1) and characterInfo texts.
    search_info: list[SubqueryReport] = field(default_factory=list)
    search_info_texts: list[str] = field(default_factory=list)


@dataclass
class Range:
    start: int
    count: int


@dataclass
class PresentRequest:
    result_set_id: str
    start: int
    count: int
    element_set_name: str | None = None
    preferred_record_syntax: str | None = None
    # From a CompSpec: syntaxes in order of preference (the first supported one is used).
    record_syntaxes: tuple[str, ...] = ()
    additional_ranges: list[Range] = field(default_factory=list)
    reference_id: bytes | None = None


@dataclass
class PresentResponse:
    number_of_records_returned: int
    next_result_set_position: int
    present_status: PresentStatus = PresentStatus.SUCCESS
    records: list[NamePlusRecord] | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    reference_id: bytes | None = None


@dataclass
class DeleteResultSetRequest:
    delete_all: bool = False
    names: list[str] = field(default_factory=list)
    reference_id: bytes | None = None


@dataclass
class DeleteResultSetResponse:
    status: DeleteSetStatus
    list_statuses: list[tuple[str, DeleteSetStatus]] = field(default_factory=list)
    message: str | None = None
    reference_id: bytes | None = None


@dataclass
class ScanRequest:
    database_names: list[str]
    attributes: tuple[Attribute, ...]
    term: str
    number_of_terms: int = 20
    preferred_position: int = 1
    step_size: int = 0
    attribute_set: str | None = BIB1_ATTRIBUTE_SET
    reference_id: bytes | None = None


@dataclass
class ScanEntry:
    term: str
    occurrences: int | None = None
    display_term: str | None = None


class ScanStatus(enum.IntEnum):
    SUCCESS = 0
    PARTIAL_1 = 1
    PARTIAL_2 = 2
    PARTIAL_3 = 3
    PARTIAL_4 = 4
    PARTIAL_5 = 5
    FAILURE = 6


@dataclass
class ScanResponse:
    status: ScanStatus
    entries: list[ScanEntry] = field(default_factory=list)
    position_of_term: int | None = None
    step_size: int | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    reference_id: bytes | None = None


@dataclass(frozen=True)
class SortKeySpec:
    """One sort key: Bib-1 attributes (usually use), or a named sort field."""

    attributes: tuple[Attribute, ...] = ()
    sort_field: str | None = None
    attribute_set: str = BIB1_ATTRIBUTE_SET
    ascending: bool = True
    case_sensitive: bool = False
    # "abort", "null", or bytes to use as the value; None when not given.
    missing_value: str | bytes | None = None


@dataclass
class SortRequest:
    input_result_sets: list[str]
    sorted_result_set: str
    keys: list[SortKeySpec]
    reference_id: bytes | None = None


class SortStatus(enum.IntEnum):
    SUCCESS = 0
    PARTIAL_1 = 1
    FAILURE = 2


@dataclass
class SortResponse:
    status: SortStatus
    result_set_status: int | None = None  # 1 empty, 2 interim, 3 unchanged, 4 none
    diagnostics: list[Diagnostic] = field(default_factory=list)
    result_count: int | None = None
    reference_id: bytes | None = None


@dataclass
class Close:
    reason: CloseReason
    diagnostic_information: str | None = None
    reference_id: bytes | None = None


Pdu = Union[
    InitRequest, InitResponse, SearchRequest, SearchResponse, PresentRequest, PresentResponse,
    DeleteResultSetRequest, DeleteResultSetResponse, ScanRequest, ScanResponse, SortRequest,
    SortResponse, Close,
]
