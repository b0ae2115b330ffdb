"""The caption model: an audio-visual latent conditions a stacked-GRU language model.

    latent (B, D) --Linear--tanh--> h0 of every GRU layer
    latent (B, D) --Linear--------> first input step (before <bos>)
    tokens --Embedding--> GRU_0 --> GRU_1 (+ residual) --> ... --> Linear --> logits over the vocabulary

Between layers: x = gru_i(dropout(x)) + x for i > 0 (paper: residual connections and dropout
between layers). The blind baseline is this same model fed zero latents.

Early exit (DEEVISum's EE, optional): `exit_heads=True` adds a Linear head after every GRU layer but
the last, trained jointly (`forward_all`). Inside `with decoder.early_exit(threshold):` every
decoding step stops at the first exit head whose top word probability exceeds `threshold`; the
layers it skipped take over the exit layer's hidden state for the next step (CALM-style state
copying). Threshold 1.0 never exits: the output is the full decoder's.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


class CaptionDecoder(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        vocab_size: int,
        embed_dim: int = 256,
        hidden: int = 512,
        layers: int = 2,
        dropout: float = 0.3,
        exit_heads: bool = False,
    ):
        super().__init__()
        self.config = dict(
            latent_dim=latent_dim,
            vocab_size=vocab_size,
            embed_dim=embed_dim,
            hidden=hidden,
            layers=layers,
            dropout=dropout,
            exit_heads=exit_heads,
        )
        self.latent_to_hidden = nn.Linear(latent_dim, hidden)
        self.latent_to_input = nn.Linear(latent_dim, embed_dim)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.grus = nn.ModuleList(
            [nn.GRU(embed_dim if i == 0 else hidden, hidden, batch_first=True) for i in range(layers)]
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)
        # exits[i] reads the output of GRU layer i (the last layer's head is `head`).
        self.exits = nn.ModuleList([nn.Linear(hidden, vocab_size) for _ in range(layers - 1)] if exit_heads else [])
        self.exit_threshold: float | None = None  # set only inside `early_exit`
        self.exit_counts = [0] * layers  # decoding steps (rows) that ended at each layer, inside `early_exit`

    def _layers(
        self, x: torch.Tensor, state: torch.Tensor, keep: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, E), state (L, B, H) -> top-layer output (B, T, H), new state (L, B, H).

        `keep`, when given, collects every layer's output (for the exit heads).
        """
        new_state = []
        for i, gru in enumerate(self.grus):
            out, h = gru(self.drop(x), state[i : i + 1].contiguous())
            x = out + x if i > 0 else out  # residual from layer 1 on (layer 0 changes the width)
            new_state.append(h)
            if keep is not None:
                keep.append(x)
        return x, torch.cat(new_state, dim=0)

    def _h0(self, latent: torch.Tensor) -> torch.Tensor:
        """The same latent-derived initial state for every layer: (L, B, H)."""
        h0 = torch.tanh(self.latent_to_hidden(latent))
        return h0.unsqueeze(0).repeat(len(self.grus), 1, 1).contiguous()

    def init_state(self, latent: torch.Tensor) -> torch.Tensor:
        """Decoding starts here: h0 from the latent, then one step with the projected latent as input."""
        _, state = self._layers(self.latent_to_input(latent).unsqueeze(1), self._h0(latent))
        return state

    def forward(self, latent: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: latent (B, D), tokens (B, T) = <bos> w1 .. -> logits (B, T, V) for w1 .. <eos>."""
        steps = torch.cat([self.latent_to_input(latent).unsqueeze(1), self.embed(tokens)], dim=1)
        out, _ = self._layers(steps, self._h0(latent))
        return self.head(self.drop(out[:, 1:]))  # the latent step predicts nothing

    def forward_all(self, latent: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Teacher forcing through every exit: [exit 0 logits, .., final logits], each (B, T, V)."""
        steps = torch.cat([self.latent_to_input(latent).unsqueeze(1), self.embed(tokens)], dim=1)
        outs: list[torch.Tensor] = []
        self._layers(steps, self._h0(latent), keep=outs)
        heads = list(self.exits) + [self.head]
        return [head(self.drop(out[:, 1:])) for head, out in zip(heads, outs[len(outs) - len(heads) :])]

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: tokens (B,), state (L, B, H) -> logits (B, V), new state."""
        if self.exit_threshold is not None and len(self.exits):
            return self._exit_step(tokens, state, self.exit_threshold)
        out, state = self._layers(self.embed(tokens).unsqueeze(1), state)
        return self.head(self.drop(out[:, 0])), state

    @contextmanager
    def early_exit(self, threshold: float) -> Iterator["CaptionDecoder"]:
        """Decode with early exits at this confidence threshold; exit_counts says where steps ended."""
        if not len(self.exits):
            raise ValueError("early_exit: this decoder has no exit heads (built with exit_heads=False)")
        self.exit_threshold, self.exit_counts = float(threshold), [0] * len(self.grus)
        try:
            yield self
        finally:
            self.exit_threshold = None

    def _exit_step(
        self, tokens: torch.Tensor, state: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`step` with early exits: rows whose exit head is confident enough skip the layers above."""
        x = self.embed(tokens).unsqueeze(1)
        rows = torch.arange(tokens.size(0), device=tokens.device)  # rows still going up the stack
        new_state = state.clone()
        logits = None
        for i, gru in enumerate(self.grus):
            out, h = gru(self.drop(x), state[i : i + 1, rows].contiguous())
            x = out + x if i > 0 else out
            new_state[i, rows] = h[0]
            last = i == len(self.grus) - 1
            head_logits = (self.head if last else self.exits[i])(self.drop(x[:, 0]))
            if logits is None:
                logits = head_logits.new_empty((tokens.size(0), head_logits.size(-1)))
            # Exit when the top word is more likely than the threshold (so 1.0 never exits early).
            leave = (
                torch.ones_like(rows, dtype=torch.bool)
                if last
                else torch.softmax(head_logits.float(), dim=-1).amax(dim=-1) > threshold
            )
            if leave.any():
                done = rows[leave]
                logits[done] = head_logits[leave]
                new_state[i + 1 :, done] = h[0, leave]  # skipped layers take over this layer's state
                self.exit_counts[i] += int(leave.sum())
                rows, x = rows[~leave], x[~leave]
            if rows.numel() == 0:
                break
        return logits, new_state
