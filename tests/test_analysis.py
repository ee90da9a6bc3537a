"""indexer.analysis: the index tokenizer (one regular expression on the load path) makes the
same runs as the character-by-character `_runs` the query side uses, for any text."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.analysis import _CJK_RANGES, _cjk_tokens, _runs, exact_key, fold, index_tokens, is_cjk


def tokens_by_runs(text: str) -> list[str]:
    tokens: list[str] = []
    for run in _runs(fold(text)):
        tokens.extend(_cjk_tokens(run.text, True) if run.cjk else [run.text])
    return tokens


def test_tokens_of_chinese_latin_and_full_width_text():
    assert index_tokens("图书馆学基础 / Müller_x ab12") == ["图书", "书馆", "馆学", "学基", "基础", "础", "muller", "x", "ab12"]
    assert index_tokens("ＡＢＣ１２３ 東京タワー・x") == ["abc123", "東京", "京タ", "タワ", "ワー", "ー・", "・", "x"]
    assert index_tokens("") == []
    assert exact_key("图书馆学 /") == "图书馆学"


def test_is_cjk_at_the_edges_of_every_range():
    for low, high in _CJK_RANGES:
        assert is_cjk(chr(low)) and is_cjk(chr(high))
        assert not is_cjk(chr(low - 1)) or any(lo <= low - 1 <= hi for lo, hi in _CJK_RANGES)
        assert not is_cjk(chr(high + 1)) or any(lo <= high + 1 <= hi for lo, hi in _CJK_RANGES)
    assert not is_cjk("a") and not is_cjk("é") and not is_cjk("\u2e80")


# Text drawn from the scripts catalogues hold, the CJK range edges, digits of other scripts,
# combining marks, full-width forms and punctuation.
_ALPHABET = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x24F),
    st.characters(min_codepoint=0x2E80, max_codepoint=0x3200),
    st.characters(min_codepoint=0x4DB0, max_codepoint=0x4E10),
    st.characters(min_codepoint=0xF8F0, max_codepoint=0xFF70),
    st.characters(min_codepoint=0x300, max_codepoint=0x36F),
    st.characters(min_codepoint=0x660, max_codepoint=0x669),
    st.characters(min_codepoint=0xD7A0, max_codepoint=0xD7B0),
    st.characters(min_codepoint=0x1FFF0, max_codepoint=0x20010),
)


@settings(max_examples=2000, deadline=None)
@given(st.text(_ALPHABET, max_size=20))
def test_index_tokens_equal_the_runs_the_query_side_makes(text: str):
    assert index_tokens(text) == tokens_by_runs(text)
