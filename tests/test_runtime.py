"""avkd/runtime.py: the one device choice and the one Ray start-up / shutdown (real torch, real Ray)."""

import pytest
import torch

from avkd.errors import AvkdError
from avkd.runtime import pick_device, start_ray, stop_ray


def test_auto_picks_cuda_only_when_available():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_unavailable_cuda_is_one_line_naming_the_key():
    wanted = "cuda:99" if torch.cuda.is_available() else "cuda"  # a device this machine lacks
    with pytest.raises(AvkdError) as err:
        pick_device(wanted, key="features.device")
    message = str(err.value)
    assert message.startswith(f"features.device: '{wanted}' but ") and "\n" not in message


def test_start_ray_starts_once_and_stop_ray_ends_it(monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a fresh local instance, never someone's cluster
    if ray.is_initialized():
        pytest.skip("Ray already runs in this test process")
    try:
        assert start_ray() is True
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] >= 1
        assert start_ray() is False  # already up: joined, not restarted
    finally:
        stop_ray()
    assert not ray.is_initialized()
    stop_ray()  # nothing running: a no-op
