"""The caption tokeniser: letters of every script, Unicode normalisation, and PTB agreement.

The agreement test runs the real PTB tokenizer (Java) that validation and test scoring use.
"""

from __future__ import annotations

import shutil

import pytest

from avkd.data.vocab import needs_normalization, normalize_text, tokenize_caption


@pytest.mark.parametrize(
    "caption, tokens",
    [
        ("A garçon drinks café.", ["a", "garçon", "drinks", "café"]),
        ("cafe\u0301 au lait", ["café", "au", "lait"]),  # combining acute accent: composed by NFKC
        ("He don\u2019t know", ["he", "do", "n't", "know"]),  # typographic apostrophe
        ("He don't know", ["he", "do", "n't", "know"]),  # ASCII apostrophe: the same tokens
        ("I can't, they won't", ["i", "ca", "n't", "they", "wo", "n't"]),
        ("the man\u2019s dog; they're here, I'm", ["the", "man", "'s", "dog", "they", "'re", "here", "i", "'m"]),
        ("МУЖЧИНА поёт песню", ["мужчина", "поёт", "песню"]),  # Cyrillic, upper case folded
        ("一个男人在唱歌。", ["一个男人在唱歌"]),  # CJK: no spaces, so one token (as PTB)
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # Devanagari vowel signs (marks) stay in their word
        ("Straße \ufb01ne \uff21\uff22\uff23", ["strasse", "fine", "abc"]),  # casefold, ligature, full width
        ("a t-shirt at 3.5 o'clock", ["a", "t-shirt", "at", "3.5", "o'clock"]),
        ("'quoted' (paren) dogs' toys -- !!!", ["quoted", "paren", "dogs", "toys"]),
        ("A Man,\nTALKING!", ["a", "man", "talking"]),
    ],
)
def test_tokenize(caption, tokens):
    assert tokenize_caption(caption) == tokens


def test_apostrophe_variants_are_one_token():
    variants = ["don't", "don\u2019t", "don\u02bct", "don\uff07t", "don\u2018t"]
    assert {tuple(tokenize_caption(v)) for v in variants} == {("do", "n't")}


@pytest.mark.parametrize(
    "caption, needed",
    [
        ("A MAN talks", False),
        ("a garçon", False),
        ("мужчина", False),
        ("don\u2019t", True),
        ("cafe\u0301", True),
        ("\ufb01ne", True),
        ("Straße", True),
        ("\uff21bc", True),
    ],
)
def test_needs_normalization(caption, needed):
    assert needs_normalization(caption) is needed


def test_normalize_text_is_idempotent():
    for text in ("He don\u2019t \ufb01ne cafe\u0301\u2028Straße", "İstanbul"):
        once = normalize_text(text)
        assert normalize_text(once) == once and "\u2028" not in once


AGREEMENT = [
    "A garçon drinks café.",
    "cafe\u0301 au lait",
    "He don\u2019t know",
    "I can't, they won't",
    "the man\u2019s dog; they're here, I'm",
    "МУЖЧИНА поёт песню",
    "一个男人在唱歌",
    "Straße \ufb01ne \uff21\uff22\uff23",
    "a t-shirt at 3.5 o'clock",
    "'quoted' dogs' toys -- !",
    "A Man,\nTALKING!",
    "we've been, you'll see, she'd go",
]


@pytest.mark.skipif(shutil.which("java") is None, reason="java not on PATH: the PTB tokenizer cannot run")
def test_training_tokens_match_what_ptb_scoring_sees():
    """Validation compares the model's words with PTB-tokenised references, and test scoring PTB-tokenises
    the model's caption again: both must give the training tokens back."""
    from avkd.evaluation.metrics import ptb_tokenize

    refs = ptb_tokenize({str(i): [c] for i, c in enumerate(AGREEMENT)})
    for i, caption in enumerate(AGREEMENT):
        assert refs[str(i)][0].split() == tokenize_caption(caption), caption
    # A decoded caption is the tokens joined by spaces; PTB keeps it as it is.
    decoded = {str(i): [" ".join(tokenize_caption(c))] for i, c in enumerate(AGREEMENT)}
    again = ptb_tokenize(decoded)
    assert all(again[k] == decoded[k] for k in decoded)
