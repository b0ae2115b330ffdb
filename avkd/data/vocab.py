"""Caption preprocessing (as in the paper: lower-case, tokenise, strip punctuation) and the vocabulary.

One tokeniser for every script. Training tokens are made to match what the scorer sees: validation
(`ValidationScorer`) compares the decoder's words, joined by spaces, with references run through
pycocoevalcap's PTB tokenizer, and test scoring runs both through PTB again. So the model must
produce PTB's tokens, or validation CIDEr/BLEU would punish correct words:
- contractions split as PTB splits them: "don't" -> "do n't", "man's" -> "man 's", "can't" -> "ca n't"
  (re-tokenising "do n't" with PTB keeps it, so test scoring agrees too);
- typographic apostrophes become ASCII (PTB already treats U+2019 as "'"; we do it for every
  apostrophe look-alike, before both training and PTB scoring: `normalize_text`);
- NFKC (ligatures, full-width forms, composed accents) and casefold are applied to captions before
  training AND before PTB scoring (metrics.ptb_tokenize calls `normalize_text`), so both sides agree.
Known remaining differences from PTB: PTB keeps symbols (&, %, -LRB-) and abbreviations ("u.s.")
as tokens; we drop symbols and split at dots. Those only cost a reference word the model cannot
produce, for every model alike.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
# Bump when tokenize_caption changes its output: it is part of the dataset fingerprint (trial identity).
TOKENIZER_VERSION = 2  # 2: Unicode-aware words, PTB-style contractions
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# Apostrophe look-alikes (right/left single quote, modifier letter apostrophe, prime, full-width,
# grave and acute accents used as apostrophes) -> ASCII "'".
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u2032\uff07\u0060\u00b4\u201b"})
# A word: letters, marks and digits of any script (by Unicode category, so Devanagari vowel signs
# or Thai marks stay inside their word), with inner apostrophes ("o'clock") or hyphens ("t-shirt",
# kept whole as PTB does) or, between digits, "." and "," ("3.5"). Everything else (punctuation,
# symbols, leading/trailing apostrophes) separates words. The pattern runs on a "shape" of the text
# (a = letter/mark, 0 = digit), because Python's re has no \p{L} / \p{M}.
_WORD_SHAPE = re.compile(r"[a0]+(?:(?:['-]|(?<=0)[.,](?=0))[a0]+)*")


def _shape(ch: str) -> str:
    category = unicodedata.category(ch)
    if category[0] in "LM" or category in ("Nl", "No"):
        return "a"
    if category == "Nd":
        return "0"
    return ch if ch in "'-.," else " "


# PTB's clitics: "n't" and 's 're 've 'll 'd 'm become tokens of their own.
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def normalize_text(text: str) -> str:
    """NFKC, ASCII apostrophes, casefold, every whitespace a plain space. Shared with PTB scoring."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    # casefold may decompose again (e.g. U+0130); NFKC once more keeps letters composed.
    return re.sub(r"\s", " ", unicodedata.normalize("NFKC", text))


def needs_normalization(text: str) -> bool:
    """True when Unicode normalisation changed the caption beyond plain lower-casing (`data check` counts these)."""
    return normalize_text(text) != re.sub(r"\s", " ", text.lower())


def _split_clitic(word: str) -> list[str]:
    match = _CLITIC.match(word)
    return [match.group(1), match.group(2)] if match else [word]


def tokenize_caption(text: str) -> list[str]:
    """'A man, talking!' -> ['a', 'man', 'talking']; 'Garçon don’t' -> ['garçon', 'do', "n't"]."""
    text = normalize_text(text)
    shape = "".join(map(_shape, text))
    return [t for m in _WORD_SHAPE.finditer(shape) for t in _split_clitic(text[m.start():m.end()])]


@dataclass
class Vocabulary:
    """Word <-> id map built from the training split only; ids 0..3 are the special tokens."""

    words: list[str] = field(default_factory=lambda: list(SPECIALS))

    def __post_init__(self) -> None:
        if tuple(self.words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self._index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_count: int = 1) -> "Vocabulary":
        counts = Counter(t for tokens in token_lists for t in tokens)
        # Sorted by (-count, word): deterministic regardless of input order.
        kept = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                      key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def encode(self, tokens: list[str], max_len: int | None = None) -> list[int]:
        """Token ids followed by <eos>; cut to `max_len` words first when given."""
        if max_len is not None:
            tokens = tokens[:max_len]
        return [self._index.get(t, UNK_ID) for t in tokens] + [EOS_ID]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> words, stopping at <eos>, skipping <pad>/<bos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(self.words[i] if 0 <= i < len(self.words) else UNK)
        return out

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"words": self.words}))

    @classmethod
    def from_json(cls, path: str | Path) -> "Vocabulary":
        return cls(json.loads(Path(path).read_text())["words"])
