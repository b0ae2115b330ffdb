"""The caption model: an audio-visual latent conditions a stacked-GRU language model.

    latent (B, D) --Linear--tanh--> h0 of every GRU layer
    latent (B, D) --Linear--------> first input step (before <bos>)
    tokens --Embedding--> GRU_0 --> GRU_1 (+ residual) --> ... --> Linear --> logits over the vocabulary

Between layers: x = gru_i(dropout(x)) + x for i > 0 (paper: residual connections and dropout
between layers). The blind baseline is this same model fed zero latents.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class CaptionDecoder(nn.Module):
    def __init__(self, latent_dim: int, vocab_size: int, embed_dim: int = 256, hidden: int = 512,
                 layers: int = 2, dropout: float = 0.3):
        super().__init__()
        self.config = dict(latent_dim=latent_dim, vocab_size=vocab_size, embed_dim=embed_dim,
                           hidden=hidden, layers=layers, dropout=dropout)
        self.latent_to_hidden = nn.Linear(latent_dim, hidden)
        self.latent_to_input = nn.Linear(latent_dim, embed_dim)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.grus = nn.ModuleList(
            [nn.GRU(embed_dim if i == 0 else hidden, hidden, batch_first=True) for i in range(layers)])
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def _layers(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, E), state (L, B, H) -> top-layer output (B, T, H), new state (L, B, H)."""
        new_state = []
        for i, gru in enumerate(self.grus):
            out, h = gru(self.drop(x), state[i : i + 1].contiguous())
            x = out + x if i > 0 else out  # residual from layer 1 on (layer 0 changes the width)
            new_state.append(h)
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

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: tokens (B,), state (L, B, H) -> logits (B, V), new state."""
        out, state = self._layers(self.embed(tokens).unsqueeze(1), state)
        return self.head(self.drop(out[:, 0])), state
