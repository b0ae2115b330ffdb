"""Caption preprocessing (as in the paper: lower-case, tokenise, strip punctuation) and the vocabulary."""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# Words are runs of letters/digits, optionally with inner apostrophes ("don't"); everything else
# (punctuation, symbols) separates words and is dropped.
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize_caption(text: str) -> list[str]:
    """'A man, talking!' -> ['a', 'man', 'talking']."""
    return _WORD.findall(text.lower())


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
