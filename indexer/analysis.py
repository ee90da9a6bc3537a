"""Text analysis shared by every store, so that every store answers a query the same way.

The stores never analyse text themselves: they index the tokens and keys made here and
match query tokens made here. (The Elasticsearch mapping therefore uses a whitespace
analyzer on pre-analysed text; see docs/search.md.)

Folding: NFKC (full-width to half-width, compatibility forms), case folding, and removal of
combining marks (diacritics), so `Müller` = `muller` and `ＡＢＣ１２３` = `abc123`.

Tokens: a run of letters/digits outside the CJK blocks is one token. A run of CJK characters
becomes overlapping bigrams plus one unigram of its last character:
`图书馆学` -> `图书 书馆 馆学 学`. A phrase query for a CJK string then matches it anywhere
inside a longer run (`图书馆` finds `图书馆学基础`), and the trailing unigram lets a single
character, and a run that ends a phrase before another word, match exactly (see
`query_tokens`).

Keys: `exact_key` is the whole value folded, with white space collapsed and the ISBD
punctuation that cataloguers put at the end of a field (` /`, ` :`, ` ;`, ` =`, `.`, `,`)
removed. It is what `==`, ordering relations, keyword indexes, sort and scan work on.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# CJK Unified Ideographs (+ extension A and compatibility), kana, Hangul syllables, bopomofo.
_CJK_RANGES = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3100, 0x312F),  # bopomofo
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B.. and compatibility supplement
)

_CJK_CLASS = "".join(f"{chr(low)}-{chr(high)}" for low, high in _CJK_RANGES)
_FIRST_CJK = min(low for low, _ in _CJK_RANGES)
# The runs `_runs` makes when nothing is kept: CJK runs, and runs of the other letters/digits.
_INDEX_RUNS = re.compile(f"([{_CJK_CLASS}]+)|[^\\W_{_CJK_CLASS}]+")

_WILDCARDS = "*?"
_TRAILING_ISBD = re.compile(r"[\s/:;=,.]+$")
_SPACES = re.compile(r"\s+")


def is_cjk(char: str) -> bool:
    code = ord(char)
    if code < _FIRST_CJK:  # all of ASCII and Latin, the common case
        return False
    return any(low <= code <= high for low, high in _CJK_RANGES)


def fold(text: str) -> str:
    """Width, case and diacritic folding; CJK characters pass through unchanged."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped)


def exact_key(value: str) -> str:
    """The normalized whole value: what `==`, ranges, keywords, sorting and scanning compare."""
    folded = _SPACES.sub(" ", fold(value)).strip()
    return _TRAILING_ISBD.sub("", folded).strip()


def _is_word_char(char: str) -> bool:
    return char.isalnum() and not is_cjk(char)


@dataclass(frozen=True)
class _Run:
    text: str
    cjk: bool


def _runs(folded: str, keep: str = "") -> list[_Run]:
    """Split folded text into word runs and CJK runs; characters in `keep` stay inside runs."""
    runs: list[_Run] = []
    current: list[str] = []
    current_cjk = False

    def flush() -> None:
        if current:
            runs.append(_Run("".join(current), current_cjk))
            current.clear()

    for char in folded:
        if is_cjk(char):
            if current and not current_cjk:
                if all(c in keep for c in current):  # a wildcard before a CJK run belongs to it
                    current_cjk = True
                else:
                    flush()
            current_cjk = True
            current.append(char)
        elif _is_word_char(char) or char in keep:
            if current and current_cjk and char not in keep:
                flush()
            if not current:
                current_cjk = False
            current.append(char)
        else:
            flush()
    flush()
    return runs


def _cjk_tokens(run: str, trailing_unigram: bool) -> list[str]:
    if len(run) == 1:
        return [run]
    tokens = [run[i : i + 2] for i in range(len(run) - 1)]
    if trailing_unigram:
        tokens.append(run[-1])
    return tokens


def index_tokens(text: str) -> list[str]:
    """The tokens a stored value is indexed under, in order (positions are list indexes)."""
    tokens: list[str] = []
    # `_runs(fold(text))` done by one regular expression: this is the hot path of loading.
    for match in _INDEX_RUNS.finditer(fold(text)):
        run = match.group()
        if match.group(1) is None:
            tokens.append(run)
        else:
            tokens.extend(_cjk_tokens(run, True))
    return tokens


@dataclass(frozen=True)
class QueryToken:
    """One token of a query phrase.

    `text` is a literal token unless `pattern` is True: then it is a glob over tokens where
    `*` matches any run of characters and `?` exactly one (CQL masking, already unescaped).
    """

    text: str
    pattern: bool = False

    def matches(self, token: str) -> bool:
        if not self.pattern:
            return token == self.text
        return glob_to_regex(self.text).fullmatch(token) is not None


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def query_tokens(term: str) -> list[QueryToken]:
    """The token sequence a query phrase must match at consecutive positions.

    `*` and `?` in `term` are masking characters (the caller has turned CQL's escaped
    literals into plain characters that are not wildcards, e.g. by dropping them).

    A CJK run gets its trailing unigram only when another token follows it in the query,
    so `图书馆` matches inside `图书馆学` while `图书馆 history` requires the run to end
    before `history`. A lone CJK character, or a CJK run touching a wildcard, matches as a
    token prefix (`图*`), because CJK text has no word boundaries: `图` then finds every
    occurrence of that character.
    """
    runs = _runs(fold(term), keep=_WILDCARDS)
    tokens: list[QueryToken] = []
    for index, run in enumerate(runs):
        last = index == len(runs) - 1
        if not run.cjk:
            text = run.text
            if set(text) <= set(_WILDCARDS):
                continue  # a bare `*` is "anything": no constraint on this position
            tokens.append(QueryToken(text, pattern=any(c in text for c in _WILDCARDS)))
            continue
        core = run.text.strip(_WILDCARDS)
        core = "".join(c for c in core if c not in _WILDCARDS) or core
        if not core:
            continue
        touches_wildcard = run.text != core
        if len(core) == 1:
            tokens.append(QueryToken(core + "*", pattern=True) if (last or touches_wildcard) else QueryToken(core))
            continue
        bigrams = _cjk_tokens(core, trailing_unigram=not last and not run.text.endswith(tuple(_WILDCARDS)))
        tokens.extend(QueryToken(t) for t in bigrams)
    return tokens


def query_words(term: str) -> list[str]:
    """The white-space separated words of a term, for the `any` and `all` relations."""
    return [word for word in _SPACES.split(term.strip()) if word]


def normalize_isbn(value: str) -> str | None:
    """ISBN-10 or ISBN-13 (with or without hyphens and trailing qualifiers) as ISBN-13, or None."""
    compact = re.sub(r"[\s\-]", "", value.strip())
    match = re.match(r"^(97[89]\d{9}[\dXx]|\d{9}[\dXx])", compact)
    if match is None:
        return None
    digits = match.group(1).upper()
    if len(digits) == 10:
        if not _isbn10_valid(digits):
            return None
        core = "978" + digits[:9]
        return core + _isbn13_check(core)
    if digits[-1] == "X" or _isbn13_check(digits[:12]) != digits[12]:
        return None
    return digits


def _isbn10_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(digits):
        value = 10 if char == "X" else int(char) if char.isdigit() else -1
        if value < 0 or (char == "X" and position != 9):
            return False
        total += (10 - position) * value
    return total % 11 == 0


def _isbn13_check(first12: str) -> str:
    total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(first12))
    return str((10 - total % 10) % 10)


def normalize_issn(value: str) -> str | None:
    compact = re.sub(r"[\s\-]", "", value.strip()).upper()
    match = re.match(r"^(\d{7}[\dX])", compact)
    if match is None:
        return None
    digits = match.group(1)
    total = sum(int(c) * (8 - i) for i, c in enumerate(digits[:7]))
    check = (11 - total % 11) % 11
    if ("X" if check == 10 else str(check)) != digits[7]:
        return None
    return f"{digits[:4]}-{digits[4:]}"


def year_of(value: str) -> int | None:
    """The first plausible four-digit year in a date string (`c1998.`, `[2003?]`, `19980512`)."""
    match = re.search(r"(?<!\d)(1[0-9]{3}|20[0-9]{2})(?!\d)", value)
    if match is None:
        match = re.match(r"^(1[0-9]{3}|20[0-9]{2})", value.strip())
    return int(match.group(1)) if match else None
