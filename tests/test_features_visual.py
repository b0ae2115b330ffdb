"""Inception-v3 frame features: 2048-d, resize + ImageNet normalisation, independent of batching."""

import numpy as np
import torch

from avkd.features import visual as V
from avkd.features.weights import reestimate_bn, seeded


def test_resize_and_normalize():
    frames = np.zeros((3, 20, 40, 3), np.uint8)
    frames[..., 0] = 255
    x = V.resize_frames(frames, 75)
    assert x.shape == (3, 3, 75, 75) and x.dtype == torch.uint8
    y = V.normalize(x)
    torch.testing.assert_close(y[:, 0].mean(), torch.tensor((1 - 0.485) / 0.229))
    torch.testing.assert_close(y[:, 1].mean(), torch.tensor((0 - 0.456) / 0.224))
    same = V.resize_frames(np.zeros((1, 75, 75, 3), np.uint8), 75)
    assert same.shape == (1, 3, 75, 75)


def test_features_are_2048d_and_do_not_depend_on_the_batch():
    model = seeded(V.new_inception, 0)
    frames = torch.randint(0, 256, (5, 3, 75, 75), dtype=torch.uint8)
    with torch.no_grad():  # well-scaled activations, as in extraction
        reestimate_bn(model, lambda m: m(V.normalize(frames)))
    with torch.inference_mode():
        together = V.embed_frames(model, frames, batch=5)
        in_pairs = V.embed_frames(model, frames, batch=2)
        empty = V.embed_frames(model, frames[:0], batch=4)
    assert together.shape == (5, 2048) and together.dtype == torch.float32
    # oneDNN picks conv algorithms per batch shape: equal up to float rounding (~1e-3 of the norm), not bitwise
    assert ((together - in_pairs).norm(dim=1) / together.norm(dim=1)).max() < 1e-2
    assert (together >= 0).all()  # post-ReLU average pool
    assert empty.shape == (0, 2048)


def test_channels_last_layout_gives_the_nchw_features():
    """new_inception/normalize run NHWC (cheaper oneDNN convolutions on a CPU): same features as the
    plain NCHW model and input."""
    model = seeded(V.new_inception, 3)
    x = V.resize_frames(np.random.default_rng(0).integers(0, 256, (4, 60, 80, 3), dtype=np.uint8), 75)
    frames = torch.randint(0, 256, (8, 3, 75, 75), dtype=torch.uint8)
    with torch.no_grad():  # well-scaled activations, as in extraction
        reestimate_bn(model, lambda m: m(V.normalize(frames)))
    assert model.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert V.normalize(x).is_contiguous(memory_format=torch.channels_last)
    nchw = seeded(V.new_inception, 3).to(memory_format=torch.contiguous_format)
    nchw.load_state_dict(model.state_dict())
    assert nchw.Conv2d_1a_3x3.conv.weight.is_contiguous()
    with torch.inference_mode():
        plain = nchw(V.normalize(x).contiguous())
        ours = V.embed_frames(model, x, 2)
    # float32 rounding in another order through 94 convolutions: ~1e-3 of the features' scale
    assert ((ours - plain).abs().max() / plain.abs().max()).item() < 5e-3
    assert torch.nn.functional.cosine_similarity(ours, plain).min().item() > 0.9999
