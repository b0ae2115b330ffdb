"""Extractor weights: a local pretrained checkpoint if there is one, else seeded random weights.

Checkpoints are only ever read (never downloaded, never written): the path in the sweep file, else
the usual places. Without one (and `require_pretrained: false`) the extractor gets seeded random
weights, with a loud warning, and its BatchNorm running statistics are re-estimated on a fixed
sample of the dataset's train videos: freshly initialised BN statistics (mean 0, var 1) are far
from the real activations, so eval-mode features would be badly scaled or collapsed. The
re-estimated state dict is saved in the feature cache (first writer wins) and every process then
loads that same file, so the teacher and every student, in every trial, see identical weights.

Each prepared extractor's fingerprint is also remembered next to the cached weights, keyed by what
the weights are made of (the checkpoint file, or the re-estimated file whose name encodes seed,
recipe and calibration sample; each by resolved path, size and mtime): a rerun whose features are
all cached gets the fingerprints from `known` without building a model or hashing its weights, and
a replaced or edited weight file is a different key (the weights are then built and hashed again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn as nn

from avkd.config import AUDIO_MODELS, WeightsConfig
from avkd.errors import StorageError, WeightsError
from avkd.features.cache import write_entry

log = logging.getLogger(__name__)

# One file per backbone, keyed by the name used everywhere (config keys, weights tags, cache folders).
CHECKPOINT_FILES = {
    "inception": "inception_v3_google-0cc3c7bd.pth",
    "cnn10": "Cnn10_mAP=0.380.pth",
    "cnn14": "Cnn14_mAP=0.431.pth",
}
PANNS_MODELS = AUDIO_MODELS  # their checkpoints live in ~/panns_data
_warned: set[str] = set()


def usual_paths(kind: str) -> list[Path]:
    """Where torchvision / panns_inference would have put the checkpoint (read-only here)."""
    name = CHECKPOINT_FILES[kind]
    if kind in PANNS_MODELS:
        return [Path.home() / "panns_data" / name]
    roots = [Path(os.environ["TORCH_HOME"])] if os.environ.get("TORCH_HOME") else []
    if os.environ.get("XDG_CACHE_HOME"):
        roots.append(Path(os.environ["XDG_CACHE_HOME"]) / "torch")
    roots.append(Path.home() / ".cache" / "torch")
    return [root / "hub" / "checkpoints" / name for root in roots]


def find_checkpoint(kind: str, wcfg: WeightsConfig) -> Path | None:
    """The configured checkpoint (which must exist), else the first usual path that exists, else None.

    Raises WeightsError naming every path looked at when `require_pretrained` and none is found."""
    configured = getattr(wcfg, kind)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise WeightsError(f"features.weights.{kind}: checkpoint {path} does not exist")
        return path
    looked = usual_paths(kind)
    for path in looked:
        if path.is_file():
            return path
    if wcfg.require_pretrained:
        raise WeightsError(
            f"no {kind} checkpoint found (looked at {', '.join(map(str, looked))}); set "
            f"features.weights.{kind} to a local copy of {CHECKPOINT_FILES[kind]}"
        )
    return None


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth file (weights_only): PANNs' {"model": ...} unwrapped, AuxLogits.* dropped."""
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes; a failed download?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors come in many types; all mean the same to a user
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {str(err)[:120]})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    # Saved with aux_logits=True (torchvision's file is): the auxiliary classifier is not used here.
    return {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Strict load; a mismatch is a WeightsError naming the file and the first differing keys."""
    if isinstance(getattr(model, "fc", None), nn.Identity):  # Inception's classifier is not used here
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # same names, other shapes (e.g. a Cnn14 file given for Cnn10)
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise WeightsError(f"{path}: does not match the model ({first[:200]})") from None
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: does not match the model (missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the state dict (names, dtypes, shapes, values): the weights' identity in cache keys."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model from `seed` without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def warn_random(kind: str, looked: Iterable[Path]) -> None:
    """Loud, once per process and extractor: results with random weights are not the paper's."""
    if kind in _warned:
        return
    _warned.add(kind)
    msg = (
        f"WARNING: no pretrained {kind} checkpoint ({CHECKPOINT_FILES[kind]}) found at "
        f"{', '.join(map(str, looked))}: using SEEDED RANDOM {kind} weights with re-estimated BatchNorm "
        f"statistics. Features are reproducible but not ImageNet/AudioSet features; set "
        f"features.weights.{kind} (or require_pretrained: true) for paper-like results."
    )
    log.info(msg)  # for log files; the terminal gets it once, below
    from avkd.warn import warn_once  # once per sweep, not once per extraction process

    warn_once(msg, prefix="")


@torch.no_grad()
def reestimate_bn(model: nn.Module, run: Callable[[nn.Module], None]) -> None:
    """Replace every BatchNorm's running mean/var by the average over the batches `run` feeds the model.

    Only the BN layers switch to train mode (dropout stays off); momentum=None makes the running
    statistics a plain cumulative average over batches instead of an exponential one."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        run(model)
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        model.eval()


def save_first_writer_wins(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write `state` to `path` unless another process got there first (then theirs is kept).

    The file is complete (and fsynced) before it appears under its name (temp file + hard link), so a
    reader never sees half a file and concurrent writers never replace a file someone may already be
    using; a full disk is one StorageError naming the file (avkd.features.cache.write_entry)."""
    write_entry(path, lambda f: torch.save(state, f), keep_existing=True, fsync=True)


def prepare(
    kind: str,
    factory: Callable[[], nn.Module],
    wcfg: WeightsConfig,
    calibrated_path: Path,
    calibrate: Callable[[nn.Module], None],
) -> tuple[nn.Module, str, str]:
    """(model in eval mode, "pretrained" | "random", fingerprint) for one extractor.

    `calibrated_path`: where the re-estimated random weights live in the cache (its name must encode
    everything they depend on); `calibrate(model)` feeds the calibration batches (random case only)."""
    checkpoint = find_checkpoint(kind, wcfg)
    model = factory() if checkpoint else seeded(factory, wcfg.seed)
    if checkpoint:
        load_into(model, load_checkpoint(checkpoint), checkpoint)
        status = "pretrained"
    else:
        warn_random(kind, usual_paths(kind))
        status = "random"
        state = _load_cached(calibrated_path)
        if state is None:
            reestimate_bn(model, calibrate)
            if not all_finite(model.state_dict()):
                raise WeightsError(
                    f"{kind}: re-estimated BatchNorm statistics are not finite (a calibration "
                    "clip with non-finite samples?); nothing was cached, rerun to retry"
                )
            save_first_writer_wins(model.state_dict(), calibrated_path)
            # Use the file, also right after writing it: if another process won the race, its
            # (equivalent but maybe not bit-identical) weights are what every cache entry refers to.
            state = load_checkpoint(calibrated_path)
        load_into(model, state, calibrated_path)
    model.eval()
    fingerprint = state_fingerprint(model.state_dict())
    _remember(kind, wcfg, calibrated_path, status, fingerprint)
    return model, status, fingerprint


# ---- fingerprints without the model (a rerun whose features are all cached) -----------------------


def _source(kind: str, wcfg: WeightsConfig, calibrated_path: Path) -> str | None:
    """What the weights `prepare` would give are made of, as text; None when the random weights are not
    re-estimated yet. Changing the file (replaced, edited, touched) or the config's choice changes it."""
    checkpoint = find_checkpoint(kind, wcfg)
    path = checkpoint or calibrated_path
    if not path.is_file():
        return None
    path = path.resolve()
    st = path.stat()
    return json.dumps([kind, "pretrained" if checkpoint else "random", str(path), st.st_size, st.st_mtime_ns])


def _memo_path(calibrated_path: Path, source: str) -> Path:
    return calibrated_path.parent / "fingerprints" / f"{hashlib.sha256(source.encode()).hexdigest()[:24]}.json"


def _remember(kind: str, wcfg: WeightsConfig, calibrated_path: Path, status: str, fingerprint: str) -> None:
    """Record (status, fingerprint) under the weights' source (temp file + os.replace: never half a file)."""
    source = _source(kind, wcfg, calibrated_path)
    if source is None:
        return
    path = _memo_path(calibrated_path, source)
    record = json.dumps({"source": source, "status": status, "fingerprint": fingerprint}).encode()
    try:
        write_entry(path, lambda f: f.write(record))
    except StorageError as err:  # a read-only or full cache only costs the next run the hashing
        log.warning("%s", err)


def known(kind: str, wcfg: WeightsConfig, calibrated_path: Path) -> tuple[str, str] | None:
    """(status, fingerprint) that `prepare` gave for these exact weights, or None (then call prepare).

    Same checks and warnings as prepare (a configured checkpoint must exist, require_pretrained, the
    loud random-weights line), without building the model."""
    source = _source(kind, wcfg, calibrated_path)
    if source is None:
        return None
    try:
        memo = json.loads(_memo_path(calibrated_path, source).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(memo, dict) or memo.get("source") != source:
        return None
    if memo.get("status") == "random":
        warn_random(kind, usual_paths(kind))
    return memo["status"], memo["fingerprint"]


def _load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached re-estimated weights, or None when absent or unreadable (then they are redone)."""
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
        if all_finite(state):
            return state
        log.warning("%s: cached weights hold non-finite values; re-estimating", path)
    except WeightsError as err:
        log.warning("%s; re-estimating", err)
    path.unlink(missing_ok=True)
    return None


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())
