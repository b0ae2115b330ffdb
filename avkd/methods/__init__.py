"""The distillation methods, one module each, and the registry the sweep file's keys resolve through.

    rep             the paper: MLP on L_rep, then the decoder on L_CE                rep.py
    rep+ce          the paper: MLP and decoder jointly on L_CE + lambda L_rep         rep_ce.py
    fused_to_modal  VQAKD: the teacher's fused latent supervises each modality branch fused_to_modal.py
    multi_teacher   EMTM: extra teachers, per-sample aggregation of their outputs     multi_teacher.py
    multi_stage     DEEVISum MSKD: teacher -> mentor -> student                      multi_stage.py
    rep-scratch, rep+ce-scratch   the init_from_teacher ablation: the student decoder from scratch  scratch.py

Every module here (except base.py) defining METHOD (or METHODS, several) is registered on import; `register` adds one
from elsewhere (a plugin, a test). Adding a method is one new module and its tests.
"""

from __future__ import annotations

import importlib
import pkgutil

from avkd.config import SweepConfig
from avkd.errors import ConfigError
from avkd.methods.base import GuideTrial, Method
from avkd.training.losses import check_terms
from avkd.training.stage import stage_tensors

REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if not method.key:
        raise ValueError(f"{type(method).__name__}: a method needs a key")
    REGISTRY[method.key] = method
    return method


def get(key: str) -> Method:
    """The method of a sweep-file key; a one-line ConfigError naming the key and the known methods."""
    if key not in REGISTRY:
        raise ConfigError(f"unknown distillation method {key!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[key]


def _aggregates(method: Method) -> bool:
    return type(method).aggregation is not Method.aggregation


def check(cfg: SweepConfig, source: str = "") -> None:
    """Every method of the sweep known and every loss term of its stages (and its guides') fed.

    Runs when the sweep file is loaded: a typo in distill.methods.multi_stage.mentor_losses or a term
    the method cannot feed (kd_mentor for rep+ce) fails here, not inside a trial.
    """
    prefix = f"{source}: " if source else ""
    try:
        for i, key in enumerate(cfg.grid.losses):
            if key not in REGISTRY:
                raise ConfigError(
                    f"grid.losses[{i}]: unknown distillation method {key!r} (known: {', '.join(sorted(REGISTRY))})"
                )
        for key in cfg.distill.losses:
            if key not in REGISTRY:
                raise ConfigError(
                    f"distill.losses.{key}: no distillation method of that name (known: {', '.join(sorted(REGISTRY))})"
                )
        for key in dict.fromkeys([*cfg.grid.losses, *cfg.distill.losses]):
            method = REGISTRY[key]
            _check_stages(cfg, method, None)
            if key in cfg.grid.losses:
                for g in method.guide_trials(cfg):
                    if g.student:
                        _check_stages(cfg, method, g.name)
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}") from None


def _check_stages(cfg: SweepConfig, method: Method, guide: str | None) -> None:
    for stage in method.stages(cfg, guide):
        have = stage_tensors(
            stage,
            set(method.mapper_outputs),
            method.guides(cfg, guide),
            guide is None and _aggregates(method),
            cfg.model.early_exit.enabled,
        )
        what = f"stage {stage.name!r} of {method.key}" + (f" (its {guide})" if guide else "")
        check_terms(list(stage.terms), have, stage.where, what)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for method in (getattr(module, "METHOD", None), *getattr(module, "METHODS", ())):
            if isinstance(method, Method):
                register(method)


_discover()

__all__ = ["GuideTrial", "Method", "REGISTRY", "check", "get", "register"]
