"""Frame selection: the teacher takes every (or max_frames) frame, a student ceil(k*N) of them (eq. 3)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avkd.features.sampling import frame_indices, keep_count, uniform_indices


def test_keep_count_is_ceil_without_float_noise():
    assert keep_count(10, 0.6) == 6  # 0.6 * 10 == 6.000000000000001 in floating point
    assert keep_count(10, 0.2) == 2
    assert keep_count(11, 0.2) == 3
    assert keep_count(1, 0.2) == 1
    assert keep_count(0, 0.5) == 0
    with pytest.raises(ValueError):
        keep_count(10, 0.0)


def test_paper_example_k_0_2():
    # N=10, k=0.2: frames 0 and 5 (F(m/k) for m = 0, 1)
    assert frame_indices(10, 0.2) == [0, 5]
    assert frame_indices(10, 0.4) == [0, 2, 5, 7]
    assert frame_indices(10, 1.0) == list(range(10))


def test_teacher_cap_spreads_frames_uniformly():
    assert frame_indices(100, 1.0, max_frames=4) == [0, 25, 50, 75]
    assert frame_indices(3, 1.0, max_frames=8) == [0, 1, 2]


@given(
    n=st.integers(1, 400),
    k=st.sampled_from([0.2, 0.4, 0.6, 0.8, 1.0, 0.33]),
    cap=st.one_of(st.none(), st.integers(1, 64)),
)
def test_student_frames_are_a_sorted_subset_of_the_teachers(n, k, cap):
    teacher = frame_indices(n, 1.0, cap)
    student = frame_indices(n, k, cap)
    assert len(teacher) == min(n, cap or n)
    assert len(student) == max(1, math.ceil(round(k * len(teacher), 9)))
    assert student == sorted(set(student))
    assert set(student) <= set(teacher)
    assert student[0] == 0 and all(0 <= i < n for i in student)


@given(n=st.integers(1, 500), m=st.integers(1, 500))
def test_uniform_indices_are_evenly_spread(n, m):
    idx = uniform_indices(n, m)
    assert len(idx) == min(n, m)
    if m < n:
        gaps = [b - a for a, b in zip(idx, idx[1:])]
        assert all(math.floor(n / m) <= g <= math.ceil(n / m) for g in gaps)
