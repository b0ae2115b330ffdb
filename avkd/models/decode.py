"""Caption decoding: greedy and batched beam search over a CaptionDecoder.

<pad>, <bos> and <unk> are never generated (their log-probabilities are set to -inf), so a caption is
real words ending at <eos> or after `max_len` words. Returned token lists exclude <eos>.
"""

from __future__ import annotations

import torch

from avkd.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from avkd.models.decoder import CaptionDecoder

BANNED = (PAD_ID, BOS_ID, UNK_ID)


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    logp[:, list(BANNED)] = -torch.inf
    return logp


@torch.no_grad()
def greedy(decoder: CaptionDecoder, latent: torch.Tensor, max_len: int) -> list[list[int]]:
    """Most likely word at each step: latent (B, D) -> B token lists (without <eos>)."""
    state = decoder.init_state(latent)
    tokens = torch.full((latent.size(0),), BOS_ID, dtype=torch.long, device=latent.device)
    out = [[] for _ in range(latent.size(0))]
    done = [False] * latent.size(0)
    for _ in range(max_len):
        logits, state = decoder.step(tokens, state)
        tokens = _log_probs(logits).argmax(dim=-1)
        for b, t in enumerate(tokens.tolist()):
            if not done[b]:
                if t == EOS_ID:
                    done[b] = True
                else:
                    out[b].append(t)
        if all(done):
            break
    return out


@torch.no_grad()
def beam_search(
    decoder: CaptionDecoder, latent: torch.Tensor, beam_size: int, max_len: int, length_penalty: float = 0.0
) -> list[list[int]]:
    """Batched beam search: latent (B, D) -> B token lists (without <eos>).

    A finished hypothesis is ranked by sum(log p) / length ** length_penalty, length counting the
    <eos> (0 = plain log-probability). Each video stops once it has `beam_size` finished hypotheses;
    after `max_len` words the unfinished beams compete as they are. beam_size 1 is greedy decoding.
    """
    B, K = latent.size(0), beam_size
    state = decoder.init_state(latent).repeat_interleave(K, dim=1)  # (L, B*K, H)
    tokens = torch.full((B * K,), BOS_ID, dtype=torch.long, device=latent.device)
    # All K beams start identical: keep only the first alive so the first step picks K distinct words.
    scores = torch.full((B, K), -torch.inf, device=latent.device)
    scores[:, 0] = 0.0
    history = torch.zeros((B, K, 0), dtype=torch.long, device=latent.device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

    def norm(score: float, length: int) -> float:
        return score / (length**length_penalty)

    for t in range(max_len):
        logits, state = decoder.step(tokens, state)
        vocab = logits.size(-1)
        cand = (scores.view(B * K, 1) + _log_probs(logits)).view(B, K * vocab)
        # 2K candidates: even if K of them end with <eos>, K others can stay alive.
        top_scores, top_idx = cand.topk(min(2 * K, K * vocab), dim=1)
        top_beam, top_word = top_idx // vocab, top_idx % vocab
        is_eos = top_word == EOS_ID

        # An <eos> candidate finishes a hypothesis only if it ranks in the top K (as in HF/fairseq);
        # lower-ranked ones would have been pruned anyway. This keeps beam_size 1 == greedy.
        for b, j in (is_eos[:, :K] & torch.isfinite(top_scores[:, :K])).nonzero().tolist():
            if len(finished[b]) < K:
                words = history[b, top_beam[b, j]].tolist()
                finished[b].append((norm(top_scores[b, j].item(), t + 1), words))

        # Alive beams: the best K candidates that do not end with <eos>.
        alive_scores, pick = top_scores.masked_fill(is_eos, -torch.inf).topk(K, dim=1)
        beam = top_beam.gather(1, pick)
        word = top_word.gather(1, pick)
        history = torch.cat(
            [history.gather(1, beam.unsqueeze(-1).expand(-1, -1, history.size(2))), word.unsqueeze(-1)], dim=2
        )
        scores = alive_scores
        flat = (beam + torch.arange(B, device=beam.device).unsqueeze(1) * K).view(-1)
        state = state[:, flat]
        tokens = word.view(-1)
        if all(len(f) >= K for f in finished):
            break

    out = []
    for b in range(B):
        hyps = list(finished[b])
        if len(hyps) < K:  # ran out of length: unfinished beams compete too
            hyps += [
                (norm(s, history.size(2)), history[b, k].tolist())
                for k, s in enumerate(scores[b].tolist())
                if s > -torch.inf
            ]
        out.append(max(hyps, key=lambda h: h[0])[1] if hyps else [])
    return out


def decode(
    decoder: CaptionDecoder,
    latent: torch.Tensor,
    beam_size: int,
    max_len: int,
    length_penalty: float = 0.0,
    batch_size: int = 128,
) -> list[list[int]]:
    """Greedy for beam_size 1, beam search otherwise; in batches of `batch_size` videos."""
    out: list[list[int]] = []
    for start in range(0, latent.size(0), batch_size):
        chunk = latent[start : start + batch_size]
        if beam_size == 1:
            out += greedy(decoder, chunk, max_len)
        else:
            out += beam_search(decoder, chunk, beam_size, max_len, length_penalty)
    return out
