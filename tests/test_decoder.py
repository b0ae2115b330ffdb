"""CaptionDecoder: shapes, latent conditioning, residual and dropout wiring."""

import torch

from avkd.models.decoder import CaptionDecoder

torch.set_num_threads(1)


def make(layers=2, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return CaptionDecoder(latent_dim=16, vocab_size=11, embed_dim=8, hidden=12, layers=layers, dropout=dropout)


def test_shapes():
    dec = make(layers=3).eval()
    latent, tokens = torch.randn(4, 16), torch.randint(0, 11, (4, 7))
    assert dec(latent, tokens).shape == (4, 7, 11)
    state = dec.init_state(latent)
    assert state.shape == (3, 4, 12)
    logits, state2 = dec.step(tokens[:, 0], state)
    assert logits.shape == (4, 11) and state2.shape == (3, 4, 12)


def test_teacher_forcing_equals_step_by_step():
    dec = make(layers=3).eval()
    latent, tokens = torch.randn(3, 16), torch.randint(0, 11, (3, 6))
    with torch.no_grad():
        full = dec(latent, tokens)
        state = dec.init_state(latent)
        for t in range(tokens.size(1)):
            logits, state = dec.step(tokens[:, t], state)
            torch.testing.assert_close(logits, full[:, t])


def test_latent_conditions_every_step_and_blind_is_zero_latent():
    dec = make().eval()
    tokens = torch.randint(0, 11, (2, 5))
    a, b = torch.randn(1, 16).repeat(2, 1), torch.randn(1, 16).repeat(2, 1)
    with torch.no_grad():
        la, lb, lz = dec(a, tokens), dec(b, tokens), dec(torch.zeros(2, 16), tokens)
    assert not torch.allclose(la, lb)  # the latent changes the captions' distribution ...
    assert (la - lb).abs().amax(dim=-1).min() > 0  # ... at every position
    assert torch.isfinite(lz).all()


def test_residual_between_layers():
    """With the second GRU's output forced to zero, a 2-layer decoder is the 1-layer decoder (x + 0)."""
    two, one = make(layers=2).eval(), make(layers=1).eval()
    one.load_state_dict({k: v for k, v in two.state_dict().items() if not k.startswith("grus.1.")})
    latent, tokens = torch.randn(3, 16), torch.randint(0, 11, (3, 5))
    with torch.no_grad():
        assert not torch.allclose(two(latent, tokens), one(latent, tokens))
        hook = two.grus[1].register_forward_hook(lambda m, i, out: (torch.zeros_like(out[0]), out[1]))
        torch.testing.assert_close(two(latent, tokens), one(latent, tokens))
        hook.remove()


def test_dropout_only_in_training_mode():
    dec = make(dropout=0.5)
    latent, tokens = torch.randn(3, 16), torch.randint(0, 11, (3, 5))
    dec.train()
    assert not torch.allclose(dec(latent, tokens), dec(latent, tokens))
    dec.eval()
    torch.testing.assert_close(dec(latent, tokens), dec(latent, tokens))
    no_drop = make(dropout=0.0).train()
    no_drop.load_state_dict(dec.state_dict())
    torch.testing.assert_close(no_drop(latent, tokens), dec(latent, tokens))


def test_dropout_sits_between_layers():
    """A dropout-ed input reaches every GRU layer (and the head): each sees zeros where dropout hit."""
    dec = make(layers=3, dropout=0.5).train()
    seen = []
    for gru in dec.grus:
        gru.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    dec(torch.randn(4, 16), torch.randint(0, 11, (4, 6)))
    assert len(seen) == 3
    assert all((x == 0).float().mean() > 0.2 for x in seen)


def test_gradients_reach_every_parameter():
    dec = make(layers=3, dropout=0.1).train()
    dec(torch.randn(4, 16), torch.randint(0, 11, (4, 6))).sum().backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
