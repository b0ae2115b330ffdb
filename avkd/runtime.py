"""Where work runs: the one Ray start-up / shutdown and the one torch device choice.

Ray and torch are imported inside the functions: the CLI and the config checks stay fast.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

from avkd.errors import AvkdError

if TYPE_CHECKING:
    import torch


def start_ray() -> bool:
    """Join $RAY_ADDRESS's cluster, else start a fresh local instance on every core; True when this
    call started (or joined) Ray, False when this process already had it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local single-user cluster: no token files
    address = os.environ.get("RAY_ADDRESS")
    # Without RAY_ADDRESS always a fresh local instance: address=None would join whatever cluster
    # `ray start` (or ray.cluster_utils) last recorded in <ray temp>/ray_current_cluster.
    ray.init(
        address=address or "local",
        include_dashboard=False,
        log_to_driver=True,
        configure_logging=True,
        logging_level="ERROR",
        **({} if address else {"num_cpus": os.cpu_count()}),
    )
    return True


def stop_ray() -> None:
    """Shut down the local Ray instance of this process; a $RAY_ADDRESS cluster is left connected and running."""
    import ray

    if ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        sigterm = signal.getsignal(signal.SIGTERM)
        ray.shutdown()
        # ray.shutdown() resets SIGTERM to the default action in C while Python still lists its handler:
        # without this, a SIGTERM after the trials (the report phase) killed the driver outright.
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)


def pick_device(name: str, key: str = "features.device") -> "torch.device":
    """The torch device for `name` (auto | cpu | cuda | cuda:N, the sweep file's `key`).

    "auto" is the first CUDA device when one is available, else the CPU. Asking for a CUDA device
    that this machine does not have is one AvkdError naming `key`, never a crash deep inside torch.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AvkdError(f"{key}: {name!r} but no CUDA device is available")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise AvkdError(f"{key}: {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)
