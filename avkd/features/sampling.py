"""Which frames a variant looks at: the teacher takes every frame, a student ceil(k*N) of them (paper eq. 3)."""

from __future__ import annotations

import math


def keep_count(n: int, k: float) -> int:
    """ceil(k*n), at least 1 for n >= 1. The tiny guard keeps float noise from adding a frame
    (0.6 * 10 == 6.000000000000001 would otherwise give 7)."""
    if n <= 0:
        return 0
    if not 0.0 < k <= 1.0:
        raise ValueError(f"compression rate k={k} is outside (0, 1]")
    return max(1, min(n, math.ceil(k * n - 1e-9)))


def uniform_indices(n: int, m: int) -> list[int]:
    """m uniformly spaced positions in range(n), starting at 0: floor(i * n / m).

    With n/m = 1/k an integer this is exactly the paper's F(m/k); otherwise the nearest frame below.
    """
    if m >= n:
        return list(range(n))
    return [(i * n) // m for i in range(m)]


def frame_indices(num_frames: int, k: float, max_frames: int | None = None) -> list[int]:
    """Frame numbers to decode for compression rate k (k=1: the teacher).

    The teacher's frames are all frames, or `max_frames` uniformly spaced ones when capped; a student
    takes ceil(k*N) uniformly spaced frames *of the teacher's frames*, so its frames are a subset of
    the teacher's (which lets the feature cache reuse the teacher's per-frame features).
    """
    teacher = uniform_indices(num_frames, max_frames if max_frames else num_frames)
    if k >= 1.0:
        return teacher
    return [teacher[i] for i in uniform_indices(len(teacher), keep_count(len(teacher), k))]
