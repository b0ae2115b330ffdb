"""Greedy and beam-search decoding."""

import itertools

import pytest
import torch

from avkd.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from avkd.models.decode import beam_search, decode, greedy
from avkd.models.decoder import CaptionDecoder

torch.set_num_threads(1)


def make(vocab=12, seed=0):
    torch.manual_seed(seed)
    dec = CaptionDecoder(latent_dim=6, vocab_size=vocab, embed_dim=8, hidden=10, layers=2, dropout=0.3).eval()
    # Sharpen the output layer so that some captions end early and others run to max_len.
    with torch.no_grad():
        dec.head.weight.mul_(6.0)
    return dec


@pytest.mark.parametrize("seed", range(4))
def test_beam_size_one_is_greedy(seed):
    dec = make(seed=seed)
    latent = torch.randn(9, 6)
    for max_len in (1, 4, 12):
        assert beam_search(dec, latent, beam_size=1, max_len=max_len) == greedy(dec, latent, max_len)
        assert decode(dec, latent, beam_size=1, max_len=max_len) == greedy(dec, latent, max_len)


def test_outputs_are_words_within_max_len():
    dec = make()
    latent = torch.randn(7, 6)
    lengths = set()
    for out in (greedy(dec, latent, 5), beam_search(dec, latent, 3, 5, 0.7)):
        for tokens in out:
            assert len(tokens) <= 5
            assert not set(tokens) & {PAD_ID, BOS_ID, EOS_ID, UNK_ID}
            lengths.add(len(tokens))
    assert len(lengths) > 1  # the sharpened decoder gives both short and full-length captions


def sequence_logprob(dec, latent, words, ended):
    """log p(words [+ <eos>]) under the decoder with the banned tokens removed, as decoding sees it."""
    banned = [PAD_ID, BOS_ID, UNK_ID]
    state = dec.init_state(latent)
    token, total = torch.tensor([BOS_ID]), 0.0
    for w in list(words) + ([EOS_ID] if ended else []):
        logits, state = dec.step(token, state)
        logp = torch.log_softmax(logits, dim=-1)
        logp[:, banned] = -torch.inf
        total += float(logp[0, w])
        token = torch.tensor([w])
    return total


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_finds_the_exact_best_caption(length_penalty):
    """Vocabulary of 2 words + <eos>, max_len 3: a beam of 8 is exhaustive, so it must match brute force."""
    dec = make(vocab=6, seed=3)
    words = [4, 5]
    with torch.no_grad():
        for _ in range(5):
            latent = torch.randn(1, 6)
            candidates = []
            for n in range(0, 4):
                for seq in itertools.product(words, repeat=n):
                    ended = n < 3  # after 3 words the caption stops without <eos>
                    length = n + 1 if ended else n
                    score = sequence_logprob(dec, latent, seq, ended) / (length**length_penalty)
                    candidates.append((score, list(seq)))
            best = max(candidates, key=lambda c: c[0])[1]
            assert beam_search(dec, latent, beam_size=8, max_len=3, length_penalty=length_penalty)[0] == best


def test_batched_equals_one_by_one():
    dec = make(seed=1)
    latent = torch.randn(6, 6)
    together = beam_search(dec, latent, beam_size=4, max_len=8)
    alone = [beam_search(dec, latent[i : i + 1], beam_size=4, max_len=8)[0] for i in range(6)]
    assert together == alone
    assert decode(dec, latent, beam_size=4, max_len=8, batch_size=4) == together
