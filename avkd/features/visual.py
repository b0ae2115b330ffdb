"""Visual features: Inception-v3's 2048-d pool output per frame (paper: frames resized to 299x299)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURE_DIM = 2048
# The memory layout the forward runs in; part of the visual cache key (avkd.features.cache): NHWC and
# NCHW convolutions round differently (features agree to ~1e-3 of their scale, about float16's step).
INCEPTION_LAYOUT = "nhwc"
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def new_inception() -> nn.Module:
    """Inception-v3 with the classifier replaced by Identity (-> 2048-d), from torch's global RNG, eval mode.

    transform_input=True is what torchvision uses with the pretrained (Google) weights: it maps
    ImageNet-normalised input to the [-1, 1] scaling those weights were trained on.
    """
    from torchvision.models import inception_v3  # torchvision's import is seconds: only when a model is built

    model = inception_v3(weights=None, aux_logits=False, init_weights=True, transform_input=True)
    model.fc = nn.Identity()
    # channels-last (NHWC) weights and activations: oneDNN's CPU convolutions then take the tensors as
    # they are, where NCHW costs a layout reorder of every conv's input and output (about as much
    # as the convolutions at 128 px). Loading a state dict keeps the layout; the values are the same.
    return model.to(memory_format=torch.channels_last).eval()


def resize_frames(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> uint8 (N, 3, S, S), antialiased bilinear (uint8 keeps decoded batches small)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> float32 ImageNet-normalised model input, channels-last (see new_inception)."""
    x = (x.float().div_(255.0) - IMAGENET_MEAN.to(x.device)) / IMAGENET_STD.to(x.device)
    return x.contiguous(memory_format=torch.channels_last)


def embed_frames(model: nn.Module, frames: torch.Tensor, batch: int) -> torch.Tensor:
    """uint8 (N, 3, S, S) resized frames -> (N, 2048) float32 features, `batch` frames per forward."""
    device = next(model.parameters()).device
    parts = [model(normalize(frames[i : i + batch].to(device))).float().cpu() for i in range(0, len(frames), batch)]
    return torch.cat(parts) if parts else torch.empty(0, FEATURE_DIM)
