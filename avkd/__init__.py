"""avkd: knowledge-distilled audio-visual video captioning, as a tracked sweep."""

import os as _os
from pathlib import Path as _Path

__version__ = "0.1.0"

# matplotlib (imported by panns_inference and the report figures) writes a font cache to ~ unless
# told otherwise; the harness writes only inside the repo's own folders.
# OpenMP threads that spin while waiting made Inception-v3 ~5x slower on an oversubscribed CPU
# (several trials/processes on 2 cores); passive waiting costs little on a quiet machine. Must be
# set before torch loads its OpenMP runtime: `import avkd` comes first in every entry point.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# oneDNN keeps compiled convolution kernels per input shape in a cache of 1024 primitives; Inception-v3
# needs ~200 per batch shape, and clips of different lengths give different shapes, so the default cache
# thrashed and every forward re-created its kernels (Table II's teacher: 0.705 -> 0.518 s/video with the
# larger cache, same session, quiet 2-core machine). Read when oneDNN starts: before torch loads.
_os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")
# MLflow's telemetry writes ~/.config/mlflow/telemetry.json and tries to phone home: off.
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("MPLCONFIGDIR", str(_Path(__file__).resolve().parents[1] / "cache" / "matplotlib"))
