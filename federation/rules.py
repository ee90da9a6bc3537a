"""A library network's rule set: `config/networks/<network>.yaml` as a typed, validated model.

`load_network(path)` reads the file, checks every key and value, and either returns a `Network`
or raises `ConfigError` listing every problem found (not just the first), each with
`file:line:column`, the key path and what is wrong. The format is documented in
docs/rule-set.md; the shipped networks in config/networks/ are complete examples.

Number ranges (barcodes, reader cards) are written either as one string
`"GR0100000-GR0199999"` (same non-digit prefix, same number of digits on both sides) or as a
mapping `{prefix: GR, digits: 7, start: 100000, end: 199999}`; both become
`indexer.policy.NumberRange("GR0100000", "GR0199999")`.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from federation.yamlsource import KeyPath, YamlDocument, YamlSyntaxError, format_path, load_yaml
from indexer.policy import BarcodePolicy, HoldingsMapping, IngestPolicy, LibraryPolicy, NumberRange
from indexer.resultcache import DEFAULT_RESULT_CACHE

TIERS = ("hub", "branch", "service_point", "reading_room", "mobile", "self_service")
MARC_FORMATS = ("marc21", "unimarc", "cnmarc")
CLASSIFICATION_SCHEMES = ("clc", "ddc", "lcc", "udc", "local")
MATCH_POINTS = ("isbn", "issn", "title_author_year", "work")
STORE_KINDS = ("embedded", "elasticsearch")
# The flavours indexer.elastic.connect accepts (kept here so that reading a rule set does not
# import the Elasticsearch client).
STORE_FLAVORS = ("elasticsearch", "opensearch")
TARGET_PROTOCOLS = ("sru", "z3950")
TARGET_ENCODINGS = ("utf-8", "marc8", "gb18030")
SRU_VERSIONS = ("1.1", "1.2", "2.0")

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_NETWORK_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MARC_TAG = re.compile(r"^\d{3}$")
_SUBFIELD = re.compile(r"^[0-9a-z]$")
_RANGE_TEXT = re.compile(r"^\s*(?P<start>.*?\d)\s*-\s*(?P<end>\D*\d+)\s*$")
_Z3950_URL = re.compile(r"^tcp:(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})/(?P<database>[^\s/]+)$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int
    column: int
    key_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.key_path}: {self.message}"


class ConfigError(ValueError):
    """Every problem found in a rule set; str() gives one `file:line:col: key.path: message` per line."""

    def __init__(self, problems: Iterable[ConfigProblem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.key_path, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Names:
    zh: str
    en: str = ""

    def __str__(self) -> str:
        return f"{self.zh} ({self.en})" if self.en else self.zh


@dataclass(frozen=True)
class Library:
    code: str
    names: Names
    tier: str
    parent: str | None = None
    barcode_ranges: tuple[NumberRange, ...] = ()
    card_ranges: tuple[NumberRange, ...] = ()
    address: str = ""
    # How this library's MARC export carries its items; None: the network default.
    holdings: HoldingsMapping | None = None
    # Codes other systems' exports use for this library (a 905$a or 952$a value).
    source_codes: tuple[str, ...] = ()

    def owns_barcode(self, barcode: str) -> bool:
        return any(r.contains(barcode) for r in self.barcode_ranges)

    def issued_card(self, number: str) -> bool:
        return any(r.contains(number) for r in self.card_ranges)


@dataclass(frozen=True)
class JointMember:
    """A library of a joint network that is not part of this network (e.g. the city library)."""

    code: str
    names: Names
    card_ranges: tuple[NumberRange, ...] = ()


@dataclass(frozen=True)
class JointNetwork:
    """A city-level network the county belongs to (e.g. 佛山市联合图书馆)."""

    id: str
    names: Names
    members: tuple[str, ...]               # codes of this network's libraries that joined it
    other_members: tuple[JointMember, ...] = ()
    # Whether cards issued by other members are honoured here (one card across the joint network).
    shared_cards: bool = True


@dataclass(frozen=True)
class CataloguingRules:
    formats: tuple[str, ...] = MARC_FORMATS
    required_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)  # format -> MARC tags
    classification: str = "clc"
    # Where the hub's system puts items; a library's own `holdings` overrides it.
    holdings: HoldingsMapping | None = None


@dataclass(frozen=True)
class TransferRule:
    between: tuple[str, str]   # two library codes; the rule holds in both directions
    days: int


@dataclass(frozen=True)
class CirculationRules:
    one_card: bool = True            # 一馆办证: a card from any library is valid at all
    borrow_anywhere: bool = True     # 多馆借书
    return_anywhere: bool = True     # 多馆还书 / 通借通还
    # Tiers whose copies may be requested by and sent to readers of other libraries.
    lending_tiers: tuple[str, ...] = ("hub", "branch")
    # Shelving locations whose copies never leave the library (matched case-insensitively).
    reference_only_locations: tuple[str, ...] = ()
    transfer_days: int = 3           # between two libraries when no specific rule applies
    transfers: tuple[TransferRule, ...] = ()


@dataclass(frozen=True)
class Rules:
    cataloguing: CataloguingRules = field(default_factory=CataloguingRules)
    circulation: CirculationRules = field(default_factory=CirculationRules)
    barcode_policy: BarcodePolicy = BarcodePolicy.WARN
    match_points: tuple[str, ...] = ("isbn", "issn", "title_author_year")


@dataclass(frozen=True)
class StoreSettings:
    kind: str = "embedded"
    path: str | None = None          # embedded: the data directory
    url: str | None = None           # elasticsearch: the cluster URL (credentials may be in it)
    index_prefix: str = ""           # empty: the network id, so networks sharing a cluster stay apart
    flavor: str = "elasticsearch"
    result_cache: int = DEFAULT_RESULT_CACHE  # embedded: searches whose answers are kept (0: none)


@dataclass(frozen=True)
class SRULimits:
    """The rule set's `sru:` section: what one SRU request may ask for."""

    default_records: int = 10        # records per page when maximumRecords is not given
    maximum_records: int = 100       # larger maximumRecords are capped (non-fatal diagnostic 66)
    maximum_terms: int = 100         # larger scan maximumTerms get diagnostic 121
    max_query_length: int = 8192     # longer queries get diagnostic 12
    max_start_record: int = 10000    # deeper paging gets diagnostic 61


@dataclass(frozen=True)
class FederationLimits:
    """The rule set's `federation:` section: how long a federated search may take and how long its
    merged result set is kept for paging."""

    deadline: float = 10.0           # seconds for the whole request, every target included
    result_set_ttl: float = 300.0    # seconds a merged result set lives after its last use
    local_fetch_limit: int = 500     # union records taken from the local index per federated search


@dataclass(frozen=True)
class CircuitBreaker:
    failures: int = 5                # consecutive failures that open the breaker
    reset_seconds: float = 30.0      # how long the target is skipped before it is probed again


@dataclass(frozen=True)
class Target:
    """A remote SRU or Z39.50 endpoint queried live by the `federated` database."""

    code: str
    name: str
    protocol: str                    # sru | z3950
    url: str                         # SRU: http(s)://host[:port]/path; Z39.50: tcp:HOST:PORT/DATABASE
    format: str = "marc21"
    encoding: str = "utf-8"
    timeout: float = 5.0
    enabled: bool = True
    sru_version: str = "1.2"
    record_schema: str | None = None   # SRU recordSchema, e.g. marcxml
    record_syntax: str | None = None   # Z39.50 preferredRecordSyntax, e.g. usmarc, unimarc
    element_set: str | None = None     # Z39.50 element set name (zebrasrv and Koha want "marcxml" for XML)
    # canonical or CQL index name -> the target's CQL index (SRU)
    index_map: dict[str, str] = field(default_factory=dict)
    # canonical or CQL index name -> Bib-1 use attribute (Z39.50)
    bib1_map: dict[str, int] = field(default_factory=dict)
    holdings: HoldingsMapping | None = None
    # library code in the target's records -> this network's code (unmapped: the target's code)
    library_map: dict[str, str] = field(default_factory=dict)
    max_concurrent: int = 4
    retries: int = 1
    fetch_limit: int = 500
    circuit_breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    username: str | None = None
    password_env: str | None = None    # name of the environment variable holding the password

    @property
    def z3950_address(self) -> tuple[str, int, str] | None:
        """(host, port, database) of a Z39.50 target."""
        match = _Z3950_URL.match(self.url)
        if self.protocol != "z3950" or match is None:
            return None
        return match.group("host").strip("[]"), int(match.group("port")), match.group("database")


@dataclass(frozen=True)
class AuthToken:
    library: str
    sha256: str          # hex digest of the bearer token; the token itself is never stored
    note: str = ""


@dataclass(frozen=True)
class AuthSettings:
    tokens: tuple[AuthToken, ...] = ()

    def library_for_token(self, token: str) -> str | None:
        """The library a bearer token belongs to, or None (constant-time comparison of digests)."""
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        found = None
        for entry in self.tokens:
            if hmac.compare_digest(digest, entry.sha256):
                found = entry.library
        return found


@dataclass
class Network:
    id: str
    names: Names
    hub: str
    libraries: dict[str, Library]
    joint_networks: tuple[JointNetwork, ...] = ()
    rules: Rules = field(default_factory=Rules)
    store: StoreSettings = field(default_factory=StoreSettings)
    targets: list[Target] = field(default_factory=list)
    auth: AuthSettings = field(default_factory=AuthSettings)
    sru: SRULimits = field(default_factory=SRULimits)
    federation: FederationLimits = field(default_factory=FederationLimits)
    source_path: Path | None = None
    example_ranges: bool = False     # the number ranges are illustrations, not the network's real ones

    # -- lookups ---------------------------------------------------------------------------

    def library(self, code: str) -> Library | None:
        return self.libraries.get(code)

    def tier_of(self, code: str) -> str:
        """The tier of a library code; KeyError for a code that is not in the network."""
        return self.libraries[code].tier

    def library_for_barcode(self, barcode: str) -> Library | None:
        for library in self.libraries.values():
            if library.owns_barcode(barcode):
                return library
        return None

    def library_for_card(self, number: str) -> Library | None:
        for library in self.libraries.values():
            if library.issued_card(number):
                return library
        return None

    def joint_member_for_card(self, number: str) -> tuple[JointNetwork, JointMember] | None:
        """The joint network and outside member that issued a card honoured here, if any."""
        for joint in self.joint_networks:
            if not joint.shared_cards:
                continue
            for member in joint.other_members:
                if any(r.contains(number) for r in member.card_ranges):
                    return joint, member
        return None

    def children(self, code: str) -> list[Library]:
        return [library for library in self.libraries.values() if library.parent == code]

    def ancestors(self, code: str) -> list[str]:
        """Parent, grandparent, ... up to the hub."""
        chain: list[str] = []
        current = self.libraries[code].parent
        while current is not None and current not in chain:
            chain.append(current)
            current = self.libraries[current].parent
        return chain

    def by_tier(self) -> dict[str, list[Library]]:
        """Libraries grouped by tier, tiers in the canonical order, libraries in file order."""
        groups: dict[str, list[Library]] = {}
        for tier in TIERS:
            members = [library for library in self.libraries.values() if library.tier == tier]
            if members:
                groups[tier] = members
        return groups

    def lends_across_network(self, code: str) -> bool:
        return self.tier_of(code) in self.rules.circulation.lending_tiers

    def is_reference_only_location(self, location: str) -> bool:
        wanted = location.strip().casefold()
        return bool(wanted) and any(wanted == loc.casefold() for loc in self.rules.circulation.reference_only_locations)

    def transfer_days(self, from_code: str, to_code: str) -> int:
        """Days a copy takes from one library to another (0 for the same library)."""
        if from_code == to_code:
            return 0
        for rule in self.rules.circulation.transfers:
            if set(rule.between) == {from_code, to_code}:
                return rule.days
        return self.rules.circulation.transfer_days

    # -- views for other layers -----------------------------------------------------------

    def to_ingest_policy(self) -> IngestPolicy:
        cataloguing = self.rules.cataloguing
        libraries = {
            code: LibraryPolicy(
                code=code,
                tier=library.tier,
                barcode_ranges=library.barcode_ranges,
                source_codes=library.source_codes,
                holdings=library.holdings or cataloguing.holdings,
            )
            for code, library in self.libraries.items()
        }
        return IngestPolicy(
            hub=self.hub,
            libraries=libraries,
            barcode_policy=self.rules.barcode_policy,
            accepted_formats=cataloguing.formats,
            required_fields=dict(cataloguing.required_fields),
            match_points=self.rules.match_points,
            reference_only_locations=self.rules.circulation.reference_only_locations,
        )

    def store_settings(
        self,
        env: Mapping[str, str],
        *,
        override_kind: str | None = None,
        data_dir: str | Path | None = None,
    ) -> StoreSettings:
        """The store to open: the rule set's, with `ELASTICSEARCH_URL` / `ELASTICSEARCH_FLAVOR`,
        a `--store` kind and a `--data-dir` taking precedence in that order of specificity."""
        settings = self.store
        url = (env.get("ELASTICSEARCH_URL") or "").strip()
        flavor = (env.get("ELASTICSEARCH_FLAVOR") or "").strip()
        if url:
            settings = replace(settings, kind="elasticsearch", url=url)
        if flavor:
            if flavor not in STORE_FLAVORS:
                raise ValueError(f"ELASTICSEARCH_FLAVOR={flavor!r}: expected one of {', '.join(STORE_FLAVORS)}")
            settings = replace(settings, flavor=flavor)
        if override_kind is not None:
            if override_kind not in STORE_KINDS:
                raise ValueError(f"store kind {override_kind!r}: expected one of {', '.join(STORE_KINDS)}")
            settings = replace(settings, kind=override_kind)
        if data_dir is not None:
            settings = replace(settings, path=str(data_dir))
        if not settings.index_prefix:
            settings = replace(settings, index_prefix=self.id.lower())
        if settings.kind == "embedded" and not settings.path:
            settings = replace(settings, path=str(Path("var") / self.id))
        if settings.kind == "elasticsearch" and not settings.url:
            raise ValueError(
                "the elasticsearch store needs a URL: set store.url in the rule set or ELASTICSEARCH_URL"
            )
        return settings

    def summary(self) -> dict[str, Any]:
        """The network as plain data: what `federation check-config --json` prints."""
        return {
            "file": str(self.source_path) if self.source_path else None,
            "id": self.id,
            "names": _names_dict(self.names),
            "hub": self.hub,
            "example_ranges": self.example_ranges,
            "tiers": {
                tier: [
                    {
                        "code": library.code,
                        "names": _names_dict(library.names),
                        "tier": library.tier,
                        "parent": library.parent,
                        "barcode_ranges": [_range_text(r) for r in library.barcode_ranges],
                        "card_ranges": [_range_text(r) for r in library.card_ranges],
                    }
                    for library in members
                ]
                for tier, members in self.by_tier().items()
            },
            "joint_networks": [
                {
                    "id": joint.id,
                    "names": _names_dict(joint.names),
                    "members": list(joint.members),
                    "other_members": [
                        {"code": m.code, "names": _names_dict(m.names),
                         "card_ranges": [_range_text(r) for r in m.card_ranges]}
                        for m in joint.other_members
                    ],
                }
                for joint in self.joint_networks
            ],
            "barcode_policy": self.rules.barcode_policy.value,
            "store": {"kind": self.store.kind, "path": self.store.path, "url": self.store.url,
                      "index_prefix": self.store.index_prefix},
            "sru": asdict(self.sru),
            "targets": [
                {"code": t.code, "name": t.name, "protocol": t.protocol, "url": t.url, "enabled": t.enabled}
                for t in self.targets
            ],
        }


def _names_dict(names: Names) -> dict[str, str]:
    return {"zh": names.zh, "en": names.en}


def _range_text(number_range: NumberRange) -> str:
    return f"{number_range.start}-{number_range.end}"


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_network(path: str | Path) -> Network:
    """Read and validate a rule set; raises ConfigError with every problem found."""
    source = Path(path)
    try:
        document = load_yaml(source)
    except YamlSyntaxError as error:
        raise ConfigError([ConfigProblem(error.file, error.line, error.column, "(document)", error.message)]) from None
    except OSError as error:
        raise ConfigError([ConfigProblem(str(source), 0, 0, "(document)", error.strerror or str(error))]) from None
    return _NetworkBuilder(document, source).build()


def parse_number_range(value: Any) -> NumberRange:
    """A range from its YAML form (see the module docstring); ValueError says what is wrong."""
    if isinstance(value, str):
        match = _RANGE_TEXT.match(value)
        if match is None:
            raise ValueError(f"range {value!r}: expected START-END, e.g. GR0100000-GR0199999")
        start, end = match.group("start"), match.group("end")
    elif isinstance(value, dict):
        unknown = sorted(set(value) - {"prefix", "digits", "start", "end"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in range (expected prefix, digits, start, end)")
        missing = [key for key in ("digits", "start", "end") if key not in value]
        if missing:
            raise ValueError(f"range is missing {', '.join(missing)}")
        prefix, digits = value.get("prefix", ""), value["digits"]
        if not isinstance(prefix, str) or any(c.isdigit() for c in prefix):
            raise ValueError(f"range prefix {prefix!r}: must be text without digits")
        if not _is_int(digits) or not 1 <= digits <= 30:
            raise ValueError(f"range digits {digits!r}: must be a whole number from 1 to 30")
        for key in ("start", "end"):
            number = value[key]
            if not _is_int(number) or number < 0:
                raise ValueError(f"range {key} {number!r}: must be a non-negative whole number")
            if len(str(number)) > digits:
                raise ValueError(f"range {key} {number} has more than {digits} digits")
        start, end = f"{prefix}{value['start']:0{digits}d}", f"{prefix}{value['end']:0{digits}d}"
    else:
        raise ValueError("range: expected a string START-END or a mapping {prefix, digits, start, end}")
    low, high = NumberRange.split(start), NumberRange.split(end)
    if low is None or high is None:
        raise ValueError(f"range {start}-{end}: each end must be a non-digit prefix followed by digits")
    if low[0] != high[0]:
        raise ValueError(f"range {start}-{end}: prefixes differ ({low[0]!r} and {high[0]!r})")
    if low[2] != high[2]:
        raise ValueError(f"range {start}-{end}: the ends have different numbers of digits ({low[2]} and {high[2]})")
    if low[1] > high[1]:
        raise ValueError(f"range {start}-{end}: start is greater than end")
    return NumberRange(start, end)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _NetworkBuilder:
    """Walks the parsed YAML once, building the model and collecting problems."""

    def __init__(self, document: YamlDocument, source: Path):
        self.document = document
        self.source = source
        self.problems: list[ConfigProblem] = []
        self.library_paths: dict[str, KeyPath] = {}

    # -- problem reporting -----------------------------------------------------------------

    def problem(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        position = self.document.key_position(path) if at_key else self.document.value_position(path)
        self.problems.append(ConfigProblem(self.document.file, position.line, position.column, format_path(path), message))

    # -- typed readers: each reports its own problem and returns None on a bad value ---------

    def mapping(self, path: KeyPath, value: Any, keys: Mapping[str, bool]) -> dict[str, Any] | None:
        """A mapping with exactly the known `keys` (name -> required)."""
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping with keys {', '.join(keys)}, got {_kind(value)}")
            return None
        for key in value:
            if key not in keys:
                self.problem((*path, key), f"unknown key {key!r} (expected one of: {', '.join(keys)})", at_key=True)
        for key, required in keys.items():
            if required and key not in value:
                self.problem(path, f"missing required key {key!r}")
        return value

    def sequence(self, path: KeyPath, value: Any) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {_kind(value)}")
            return []
        return value

    def text(self, path: KeyPath, value: Any, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        if _is_int(value) and pattern is not None:
            # Codes and MARC tags that YAML read as numbers: 905 is fine, 001 (read as 1) is not.
            if pattern.match(str(value)):
                return str(value)
            self.problem(path, f"expected {what or 'a string'}, got the number {value} (quote it: \"...\")")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(path, f"expected {what or 'a non-empty string'}, got {_kind(value)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.problem(path, f"{value!r} is not {what or 'valid'}")
            return None
        return value.strip()

    def choice(self, path: KeyPath, value: Any, choices: Iterable[str]) -> str | None:
        options = tuple(choices)
        if not isinstance(value, str) or value not in options:
            self.problem(path, f"{value!r} is not one of: {', '.join(options)}")
            return None
        return value

    def flag(self, path: KeyPath, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {_kind(value)}")
            return None
        return value

    def number(self, path: KeyPath, value: Any, *, minimum: float, maximum: float, whole: bool = True) -> Any:
        ok = _is_int(value) if whole else (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok or not minimum <= value <= maximum:
            kind = "a whole number" if whole else "a number"
            self.problem(path, f"expected {kind} from {minimum:g} to {maximum:g}, got {value!r}")
            return None
        return value

    def names(self, path: KeyPath, value: Any) -> Names:
        data = self.mapping(path, value, {"zh": True, "en": False})
        zh = self.text((*path, "zh"), data["zh"]) if data and "zh" in data else None
        en = self.text((*path, "en"), data["en"]) if data and "en" in data else None
        return Names(zh or "", en or "")

    def ranges(self, path: KeyPath, value: Any) -> tuple[NumberRange, ...]:
        result = []
        for index, item in enumerate(self.sequence(path, value)):
            if isinstance(item, dict):
                before = len(self.problems)
                self.mapping((*path, index), item, {"prefix": False, "digits": True, "start": True, "end": True})
                if len(self.problems) > before:
                    continue
            try:
                result.append(parse_number_range(item))
            except ValueError as error:
                self.problem((*path, index), str(error))
        return tuple(result)

    def string_list(self, path: KeyPath, value: Any, *, pattern: re.Pattern[str] | None = None,
                    what: str = "", choices: Iterable[str] | None = None) -> tuple[str, ...]:
        result = []
        for index, item in enumerate(self.sequence(path, value)):
            checked = (self.choice((*path, index), item, choices) if choices is not None
                       else self.text((*path, index), item, pattern=pattern, what=what))
            if checked is not None:
                result.append(checked)
        return tuple(result)

    def holdings(self, path: KeyPath, value: Any) -> HoldingsMapping | None:
        subfield_keys = ("library", "barcode", "call_number", "location", "status", "material_type", "due_date")
        data = self.mapping(path, value, {"tag": True, **{key: False for key in subfield_keys}})
        if data is None:
            return None
        tag = self.text((*path, "tag"), data.get("tag"), pattern=_MARC_TAG, what="a three-digit MARC tag") \
            if "tag" in data else None
        subfields: dict[str, str | None] = {}
        for key in subfield_keys:
            if key in data:
                subfields[key] = self.text((*path, key), data[key], pattern=_SUBFIELD,
                                           what="a subfield code (one lower-case letter or digit)")
        return HoldingsMapping(tag=tag, **subfields) if tag else None

    # -- sections ----------------------------------------------------------------------------

    def build(self) -> Network:
        for path, repeated, first in self.document.duplicate_keys:
            self.problems.append(ConfigProblem(
                self.document.file, repeated.line, repeated.column, format_path(path),
                f"duplicate key (first given at line {first.line})"))
        root = self.mapping((), self.document.value, {
            "network": True, "libraries": True, "joint_networks": False, "rules": False,
            "store": False, "targets": False, "auth": False, "sru": False,
            "federation": False,
        }) or {}

        header = self.mapping(("network",), root.get("network", {}), {
            "id": True, "names": True, "hub": True, "example_ranges": False,
        }) if "network" in root else None
        network_id = self.text(("network", "id"), header["id"], pattern=_NETWORK_ID,
                               what="a network id (lower-case letters, digits, '-', '_')") \
            if header and "id" in header else None
        network_names = self.names(("network", "names"), header["names"]) if header and "names" in header else Names("")
        hub = self.text(("network", "hub"), header["hub"], pattern=_CODE, what="a library code") \
            if header and "hub" in header else None
        example_ranges = bool(self.flag(("network", "example_ranges"), header["example_ranges"])) \
            if header and "example_ranges" in header else False

        libraries = self.libraries(root.get("libraries"), hub) if "libraries" in root else {}
        joint = self.joint_networks(root.get("joint_networks"), libraries)
        rules = self.rules(root["rules"], libraries) if "rules" in root else Rules()
        store = self.store(root["store"]) if "store" in root else StoreSettings()
        outside_members = {member.code for network in joint for member in network.other_members}
        targets = self.targets(root.get("targets"), libraries, outside_members)
        auth = self.auth(root["auth"], libraries) if "auth" in root else AuthSettings()
        sru = self.sru(root["sru"]) if "sru" in root else SRULimits()
        federation = self.federation(root["federation"]) if "federation" in root else FederationLimits()
        self.check_card_overlaps(libraries, joint)

        if self.problems:
            raise ConfigError(self.problems)
        return Network(
            id=network_id or "", names=network_names, hub=hub or "", libraries=libraries,
            joint_networks=joint, rules=rules, store=store, targets=targets, auth=auth, sru=sru, federation=federation,
            source_path=self.source, example_ranges=example_ranges,
        )

    def libraries(self, value: Any, hub: str | None) -> dict[str, Library]:
        path: KeyPath = ("libraries",)
        entries = self.sequence(path, value)
        if not entries and isinstance(value, list):
            self.problem(path, "a network needs at least its hub library")
        libraries: dict[str, Library] = {}
        paths = self.library_paths
        for index, entry in enumerate(entries):
            here = (*path, index)
            data = self.mapping(here, entry, {
                "code": True, "names": True, "tier": True, "parent": False, "address": False,
                "barcode_ranges": False, "card_ranges": False, "holdings": False, "source_codes": False,
            })
            if data is None:
                continue
            code = self.text((*here, "code"), data["code"], pattern=_CODE,
                             what="a library code (letters, digits, '-', '_', '.')") if "code" in data else None
            names = self.names((*here, "names"), data["names"]) if "names" in data else Names("")
            tier = self.choice((*here, "tier"), data["tier"], TIERS) if "tier" in data else None
            parent = self.text((*here, "parent"), data["parent"], pattern=_CODE, what="a library code") \
                if data.get("parent") is not None else None
            library = Library(
                code=code or "", names=names, tier=tier or "", parent=parent,
                barcode_ranges=self.ranges((*here, "barcode_ranges"), data.get("barcode_ranges")),
                card_ranges=self.ranges((*here, "card_ranges"), data.get("card_ranges")),
                address=(self.text((*here, "address"), data["address"]) or "") if "address" in data else "",
                holdings=self.holdings((*here, "holdings"), data["holdings"]) if "holdings" in data else None,
                source_codes=self.string_list((*here, "source_codes"), data.get("source_codes")),
            )
            if code is None:
                continue
            if code in libraries:
                first = self.document.value_position(paths[code])
                self.problem((*here, "code"), f"duplicate library code {code!r} (first used at line {first.line})")
                continue
            libraries[code] = library
            paths[code] = here
        self.check_hierarchy(libraries, paths, hub)
        self.check_overlaps(libraries, paths, "barcode_ranges", lambda lib: lib.barcode_ranges, "barcode")
        return libraries

    def check_hierarchy(self, libraries: dict[str, Library], paths: dict[str, KeyPath], hub: str | None) -> None:
        hubs = [code for code, library in libraries.items() if library.tier == "hub"]
        if not hubs and libraries:
            self.problem(("libraries",), "no library has tier 'hub' (a network has exactly one)")
        for extra in hubs[1:]:
            self.problem((*paths[extra], "tier"), f"second hub {extra!r} (the hub is {hubs[0]!r}; a network has exactly one)")
        if hub is not None and libraries:
            if hub not in libraries:
                self.problem(("network", "hub"), f"hub {hub!r} is not a library code in `libraries`")
            elif libraries[hub].tier not in ("hub", ""):  # "" : a bad tier, reported where it is written
                self.problem(("network", "hub"), f"hub {hub!r} has tier {libraries[hub].tier!r}, not 'hub'")
        for code, library in libraries.items():
            here = paths[code]
            if library.tier == "hub":
                if library.parent is not None:
                    self.problem((*here, "parent"), "the hub has no parent")
                continue
            if library.parent is None:
                if library.tier:
                    self.problem(here, f"missing required key 'parent' (every {library.tier} belongs to a parent library)")
                continue
            if library.parent not in libraries:
                self.problem((*here, "parent"), f"parent {library.parent!r} is not a library code in `libraries`")
            elif library.parent == code:
                self.problem((*here, "parent"), f"library {code!r} is its own parent")
        # A hub's parent is reported above; following it again would only report the same mistake as a cycle.
        parent_of = {code: None if lib.tier == "hub" else lib.parent for code, lib in libraries.items()}
        reported: set[str] = set()
        for code in libraries:
            chain = [code]
            current = parent_of[code]
            while current is not None and current in libraries and current not in chain:
                chain.append(current)
                current = parent_of[current]
            # Only the libraries on the cycle itself return to where they started.
            if current == code and len(chain) > 1 and code not in reported:
                reported.update(chain)
                cycle = " -> ".join([*chain, code])
                self.problem((*paths[code], "parent"), f"parent cycle: {cycle}")

    def check_overlaps(self, libraries: dict[str, Library], paths: dict[str, KeyPath], key: str,
                       ranges_of: Callable[[Library], tuple[NumberRange, ...]], what: str) -> None:
        seen: list[tuple[str, int, NumberRange]] = []
        for code, library in libraries.items():
            for index, number_range in enumerate(ranges_of(library)):
                for other_code, other_index, other in seen:
                    if number_range.overlaps(other):
                        where = self.document.value_position((*paths[other_code], key, other_index))
                        owner = "the same library" if other_code == code else f"library {other_code!r}"
                        self.problem((*paths[code], key, index),
                                     f"{what} range {_range_text(number_range)} overlaps {_range_text(other)} "
                                     f"of {owner} (line {where.line})")
                seen.append((code, index, number_range))

    def check_card_overlaps(self, libraries: dict[str, Library], joint: tuple[JointNetwork, ...]) -> None:
        """Card numbers must name one issuing library across the network and its joint networks' other members."""
        owners: list[tuple[str, KeyPath, tuple[NumberRange, ...]]] = [
            (code, self.library_paths[code], library.card_ranges) for code, library in libraries.items()
        ]
        for j_index, network in enumerate(joint):
            for m_index, member in enumerate(network.other_members):
                owners.append((member.code, ("joint_networks", j_index, "other_members", m_index), member.card_ranges))
        seen: list[tuple[str, KeyPath, int, NumberRange]] = []
        for code, base, card_ranges in owners:
            for index, number_range in enumerate(card_ranges):
                for other_code, other_base, other_index, other in seen:
                    if number_range.overlaps(other):
                        where = self.document.value_position((*other_base, "card_ranges", other_index))
                        owner = "the same library" if other_code == code else f"library {other_code!r}"
                        self.problem((*base, "card_ranges", index),
                                     f"card range {_range_text(number_range)} overlaps {_range_text(other)} "
                                     f"of {owner} (line {where.line})")
                seen.append((code, base, index, number_range))

    def joint_networks(self, value: Any, libraries: dict[str, Library]) -> tuple[JointNetwork, ...]:
        path: KeyPath = ("joint_networks",)
        result = []
        for index, entry in enumerate(self.sequence(path, value)):
            here = (*path, index)
            data = self.mapping(here, entry, {
                "id": True, "names": True, "members": True, "other_members": False, "shared_cards": False,
            })
            if data is None:
                continue
            joint_id = self.text((*here, "id"), data["id"], pattern=_NETWORK_ID, what="a network id") \
                if "id" in data else None
            names = self.names((*here, "names"), data["names"]) if "names" in data else Names("")
            members = self.string_list((*here, "members"), data.get("members"), pattern=_CODE, what="a library code")
            for m_index, member in enumerate(members):
                if libraries and member not in libraries:
                    self.problem((*here, "members", m_index), f"{member!r} is not a library code in `libraries`")
            others = []
            for o_index, other in enumerate(self.sequence((*here, "other_members"), data.get("other_members"))):
                o_path = (*here, "other_members", o_index)
                o_data = self.mapping(o_path, other, {"code": True, "names": True, "card_ranges": False})
                if o_data is None:
                    continue
                o_code = self.text((*o_path, "code"), o_data["code"], pattern=_CODE, what="a library code") \
                    if "code" in o_data else None
                if o_code is not None and o_code in libraries:
                    self.problem((*o_path, "code"), f"{o_code!r} is a library of this network; list it under members")
                others.append(JointMember(
                    code=o_code or "",
                    names=self.names((*o_path, "names"), o_data["names"]) if "names" in o_data else Names(""),
                    card_ranges=self.ranges((*o_path, "card_ranges"), o_data.get("card_ranges")),
                ))
            shared = self.flag((*here, "shared_cards"), data["shared_cards"]) if "shared_cards" in data else True
            result.append(JointNetwork(id=joint_id or "", names=names, members=members,
                                       other_members=tuple(others), shared_cards=bool(shared)))
        return tuple(result)

    def rules(self, value: Any, libraries: dict[str, Library]) -> Rules:
        path: KeyPath = ("rules",)
        data = self.mapping(path, value, {
            "cataloguing": False, "circulation": False, "barcode_policy": False, "match_points": False,
        })
        if data is None:
            return Rules()
        cataloguing = self.cataloguing(data["cataloguing"]) if "cataloguing" in data else CataloguingRules()
        circulation = self.circulation(data["circulation"], libraries) if "circulation" in data else CirculationRules()
        policy = BarcodePolicy.WARN
        if "barcode_policy" in data:
            chosen = self.choice((*path, "barcode_policy"), data["barcode_policy"], [p.value for p in BarcodePolicy])
            policy = BarcodePolicy(chosen) if chosen else policy
        match_points = Rules().match_points
        if "match_points" in data:
            match_points = self.string_list((*path, "match_points"), data["match_points"], choices=MATCH_POINTS)
            if not match_points and isinstance(data["match_points"], list):
                self.problem((*path, "match_points"), "at least one match point is needed to deduplicate")
        return Rules(cataloguing=cataloguing, circulation=circulation, barcode_policy=policy,
                     match_points=match_points)

    def cataloguing(self, value: Any) -> CataloguingRules:
        path: KeyPath = ("rules", "cataloguing")
        data = self.mapping(path, value, {
            "formats": False, "required_fields": False, "classification": False, "holdings": False,
        })
        if data is None:
            return CataloguingRules()
        formats = self.string_list((*path, "formats"), data["formats"], choices=MARC_FORMATS) \
            if "formats" in data else MARC_FORMATS
        required: dict[str, tuple[str, ...]] = {}
        if "required_fields" in data:
            r_path = (*path, "required_fields")
            r_data = self.mapping(r_path, data["required_fields"], {f: False for f in MARC_FORMATS})
            for marc_format, tags in (r_data or {}).items():
                if marc_format in MARC_FORMATS:
                    required[marc_format] = self.string_list((*r_path, marc_format), tags, pattern=_MARC_TAG,
                                                             what="a three-digit MARC tag")
        classification = self.choice((*path, "classification"), data["classification"], CLASSIFICATION_SCHEMES) \
            if "classification" in data else "clc"
        holdings = self.holdings((*path, "holdings"), data["holdings"]) if "holdings" in data else None
        return CataloguingRules(formats=formats, required_fields=required,
                                classification=classification or "clc", holdings=holdings)

    def circulation(self, value: Any, libraries: dict[str, Library]) -> CirculationRules:
        path: KeyPath = ("rules", "circulation")
        defaults = CirculationRules()
        data = self.mapping(path, value, {
            "one_card": False, "borrow_anywhere": False, "return_anywhere": False, "lending_tiers": False,
            "reference_only_locations": False, "transfer_days": False, "transfers": False,
        })
        if data is None:
            return defaults
        flags = {}
        for key in ("one_card", "borrow_anywhere", "return_anywhere"):
            if key in data:
                checked = self.flag((*path, key), data[key])
                flags[key] = getattr(defaults, key) if checked is None else checked
        lending = self.string_list((*path, "lending_tiers"), data["lending_tiers"], choices=TIERS) \
            if "lending_tiers" in data else defaults.lending_tiers
        reference = self.string_list((*path, "reference_only_locations"), data.get("reference_only_locations"))
        days = defaults.transfer_days
        if "transfer_days" in data:
            days = self.number((*path, "transfer_days"), data["transfer_days"], minimum=0, maximum=365) or 0
        transfers = []
        for index, entry in enumerate(self.sequence((*path, "transfers"), data.get("transfers"))):
            here = (*path, "transfers", index)
            t_data = self.mapping(here, entry, {"between": True, "days": True})
            if t_data is None:
                continue
            pair = self.string_list((*here, "between"), t_data.get("between"), pattern=_CODE, what="a library code")
            if "between" in t_data and len(pair) != 2:
                self.problem((*here, "between"), "expected exactly two library codes")
            for p_index, code in enumerate(pair):
                if libraries and code not in libraries:
                    self.problem((*here, "between", p_index), f"{code!r} is not a library code in `libraries`")
            t_days = self.number((*here, "days"), t_data["days"], minimum=0, maximum=365) if "days" in t_data else None
            if len(pair) == 2 and t_days is not None:
                transfers.append(TransferRule(between=(pair[0], pair[1]), days=t_days))
        return CirculationRules(lending_tiers=lending, reference_only_locations=reference,
                                transfer_days=days, transfers=tuple(transfers), **flags)

    def store(self, value: Any) -> StoreSettings:
        path: KeyPath = ("store",)
        data = self.mapping(path, value, {"kind": True, "path": False, "url": False, "index_prefix": False, "flavor": False})
        if data is None:
            return StoreSettings()
        kind = self.choice((*path, "kind"), data["kind"], STORE_KINDS) if "kind" in data else None
        store_path = self.text((*path, "path"), data["path"], what="a directory path") if "path" in data else None
        url = None
        if "url" in data:
            url = self.text((*path, "url"), data["url"], what="an http(s) URL")
            if url is not None and not _is_http_url(url):
                self.problem((*path, "url"), f"{url!r} is not an http:// or https:// URL with a host")
                url = None
        prefix = self.text((*path, "index_prefix"), data["index_prefix"], pattern=_INDEX_PREFIX,
                           what="an index prefix (lower-case letters, digits, '_', '-', '.')") \
            if "index_prefix" in data else None
        flavor = self.choice((*path, "flavor"), data["flavor"], STORE_FLAVORS) if "flavor" in data else None
        if kind == "embedded" and ("url" in data or "index_prefix" in data or "flavor" in data):
            extra = next(k for k in ("url", "index_prefix", "flavor") if k in data)
            self.problem((*path, extra), f"{extra!r} applies to the elasticsearch store, not 'embedded'", at_key=True)
        if kind == "elasticsearch" and "path" in data:
            self.problem((*path, "path"), "'path' applies to the embedded store, not 'elasticsearch'", at_key=True)
        return StoreSettings(kind=kind or "embedded", path=store_path, url=url,
                             index_prefix=prefix or "", flavor=flavor or "elasticsearch")

    def targets(self, value: Any, libraries: dict[str, Library], outside_members: set[str]) -> list[Target]:
        path: KeyPath = ("targets",)
        result: list[Target] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.sequence(path, value)):
            here = (*path, index)
            data = self.mapping(here, entry, {
                "code": True, "name": True, "protocol": True, "url": True, "format": False, "encoding": False,
                "timeout": False, "enabled": False, "sru_version": False, "record_schema": False,
                "record_syntax": False, "element_set": False, "index_map": False, "bib1_map": False, "holdings": False,
                "library_map": False, "max_concurrent": False, "retries": False, "fetch_limit": False,
                "circuit_breaker": False, "username": False, "password_env": False,
            })
            if data is None:
                continue
            code = self.text((*here, "code"), data["code"], pattern=_CODE, what="a target code") if "code" in data else None
            if code is not None:
                if code in seen:
                    self.problem((*here, "code"), f"duplicate target code {code!r} (also targets[{seen[code]}])")
                elif code in libraries:
                    self.problem((*here, "code"), f"target code {code!r} is already a library code")
                seen.setdefault(code, index)
            name = self.text((*here, "name"), data["name"]) if "name" in data else None
            protocol = self.choice((*here, "protocol"), data["protocol"], TARGET_PROTOCOLS) if "protocol" in data else None
            url = self.text((*here, "url"), data["url"], what="a URL") if "url" in data else None
            if url is not None and protocol == "sru" and not _is_http_url(url):
                self.problem((*here, "url"), f"{url!r}: an SRU target needs http(s)://host[:port]/path")
            if url is not None and protocol == "z3950" and not _is_z3950_url(url):
                self.problem((*here, "url"), f"{url!r}: a Z39.50 target needs tcp:HOST:PORT/DATABASE")
            defaults = Target(code="", name="", protocol="", url="")
            options: dict[str, Any] = {}
            if "format" in data:
                options["format"] = self.choice((*here, "format"), data["format"], MARC_FORMATS)
            if "encoding" in data:
                options["encoding"] = self.choice((*here, "encoding"), data["encoding"], TARGET_ENCODINGS)
            if "timeout" in data:
                options["timeout"] = self.number((*here, "timeout"), data["timeout"], minimum=0.1, maximum=600, whole=False)
            if "enabled" in data:
                options["enabled"] = self.flag((*here, "enabled"), data["enabled"])
            if "sru_version" in data:
                options["sru_version"] = self.choice((*here, "sru_version"), str(data["sru_version"]), SRU_VERSIONS)
            if protocol == "sru" and "element_set" in data:
                self.problem((*here, "element_set"), "'element_set' applies to Z39.50 targets only", at_key=True)
            for key in ("record_schema", "record_syntax", "element_set", "username"):
                if key in data:
                    options[key] = self.text((*here, key), data[key])
            if "password_env" in data:
                options["password_env"] = self.text((*here, "password_env"), data["password_env"], pattern=_ENV_NAME,
                                                    what="an environment variable name")
            for key, maximum in (("max_concurrent", 100), ("retries", 10), ("fetch_limit", 100_000)):
                if key in data:
                    options[key] = self.number((*here, key), data[key], minimum=0 if key == "retries" else 1,
                                               maximum=maximum)
            if "index_map" in data:
                options["index_map"] = self.string_map((*here, "index_map"), data["index_map"])
            if "library_map" in data:
                mapped = self.string_map((*here, "library_map"), data["library_map"])
                for remote, local in mapped.items():
                    if libraries and local not in libraries and local not in outside_members:
                        self.problem((*here, "library_map", remote),
                                     f"{local!r} is neither a library code in `libraries` "
                                     "nor an other member of a joint network")
                options["library_map"] = mapped
            if "bib1_map" in data:
                options["bib1_map"] = self.bib1_map((*here, "bib1_map"), data["bib1_map"])
            if "holdings" in data:
                options["holdings"] = self.holdings((*here, "holdings"), data["holdings"])
            if "circuit_breaker" in data:
                options["circuit_breaker"] = self.circuit_breaker((*here, "circuit_breaker"), data["circuit_breaker"])
            if protocol == "z3950" and "sru_version" in data:
                self.problem((*here, "sru_version"), "'sru_version' applies to SRU targets only", at_key=True)
            options = {key: getattr(defaults, key) if value is None else value for key, value in options.items()}
            if code and name and protocol and url:
                result.append(Target(code=code, name=name, protocol=protocol, url=url, **options))
        return result

    def string_map(self, path: KeyPath, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_kind(value)}")
            return {}
        result = {}
        for key, item in value.items():
            checked = self.text((*path, key), item)
            if checked is not None:
                result[key] = checked
        return result

    def bib1_map(self, path: KeyPath, value: Any) -> dict[str, int]:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping of index name to Bib-1 use attribute, got {_kind(value)}")
            return {}
        result = {}
        for key, item in value.items():
            checked = self.number((*path, key), item, minimum=1, maximum=65535)
            if checked is not None:
                result[key] = checked
        return result

    def circuit_breaker(self, path: KeyPath, value: Any) -> CircuitBreaker:
        data = self.mapping(path, value, {"failures": False, "reset_seconds": False})
        defaults = CircuitBreaker()
        if data is None:
            return defaults
        failures = self.number((*path, "failures"), data["failures"], minimum=1, maximum=1000) \
            if "failures" in data else None
        reset = self.number((*path, "reset_seconds"), data["reset_seconds"], minimum=0.1, maximum=86400, whole=False) \
            if "reset_seconds" in data else None
        return CircuitBreaker(failures=failures or defaults.failures, reset_seconds=reset or defaults.reset_seconds)

    def auth(self, value: Any, libraries: dict[str, Library]) -> AuthSettings:
        path: KeyPath = ("auth",)
        data = self.mapping(path, value, {"tokens": False})
        tokens = []
        for index, entry in enumerate(self.sequence((*path, "tokens"), (data or {}).get("tokens"))):
            here = (*path, "tokens", index)
            t_data = self.mapping(here, entry, {"library": True, "sha256": True, "note": False})
            if t_data is None:
                continue
            library = self.text((*here, "library"), t_data["library"], pattern=_CODE, what="a library code") \
                if "library" in t_data else None
            if library is not None and libraries and library not in libraries:
                self.problem((*here, "library"), f"{library!r} is not a library code in `libraries`")
            digest = None
            if "sha256" in t_data:
                raw = t_data["sha256"]
                if isinstance(raw, str) and _SHA256.match(raw.strip().lower()):
                    digest = raw.strip().lower()
                else:
                    self.problem((*here, "sha256"),
                                 "expected the SHA-256 hex digest of the token (64 hex digits), never the token itself")
            note = (self.text((*here, "note"), t_data["note"]) or "") if "note" in t_data else ""
            if library and digest:
                tokens.append(AuthToken(library=library, sha256=digest, note=note))
        return AuthSettings(tokens=tuple(tokens))


    def sru(self, value: Any) -> SRULimits:
        path: KeyPath = ("sru",)
        bounds = {
            "default_records": (0, 10_000), "maximum_records": (1, 10_000), "maximum_terms": (1, 10_000),
            "max_query_length": (16, 1_000_000), "max_start_record": (1, 10_000_000),
        }
        data = self.mapping(path, value, {key: False for key in bounds})
        if data is None:
            return SRULimits()
        given: dict[str, int] = {}
        for key, (low, high) in bounds.items():
            if key in data:
                number = self.number((*path, key), data[key], minimum=low, maximum=high)
                if number is not None:
                    given[key] = number
        limits = SRULimits(**given)
        if limits.default_records > limits.maximum_records:
            where = "default_records" if "default_records" in data else "maximum_records"
            self.problem((*path, where), f"default_records ({limits.default_records}) exceeds "
                                         f"maximum_records ({limits.maximum_records})")
        return limits


    def federation(self, value: Any) -> FederationLimits:
        path: KeyPath = ("federation",)
        data = self.mapping(path, value, {"deadline": False, "result_set_ttl": False, "local_fetch_limit": False})
        if data is None:
            return FederationLimits()
        given: dict[str, Any] = {}
        for key, low, high, whole in (("deadline", 0.1, 600, False), ("result_set_ttl", 0, 86_400, False),
                                      ("local_fetch_limit", 1, 100_000, True)):
            if key in data:
                number = self.number((*path, key), data[key], minimum=low, maximum=high, whole=whole)
                if number is not None:
                    given[key] = number
        return FederationLimits(**given)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return f"{value!r}"


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in url


def _is_z3950_url(url: str) -> bool:
    match = _Z3950_URL.match(url)
    return match is not None and 0 < int(match.group("port")) < 65536
