"""Optuna tuning (sweeps/tune.yaml): one search per (k, loss) student cell, and, with the same budget,
one for the teacher and one for the blind baseline, so a student is never compared with an untuned reference.

Ray Tune cannot mix `grid_search` with a search algorithm in one Tuner, so each cell is its own
Tuner with a seeded TPE `OptunaSearch`. It optimises a *validation* metric only (tuning trials never
decode the test split). Studies persist in runs/<sweep>/optuna.db: a rerun continues a study up to
`num_samples` finished trials instead of starting again. The best configuration of each cell is then
re-trained for every seed as an ordinary trial (tag avkd.tuned=true) and evaluated on test.

Students search the distillation MLP, the dropouts and the L_rep weight (STUDENT_PARAMS); the teacher
and the blind baseline are trained on captions alone and search the one of those settings they have,
the decoder dropout (CAPTION_ONLY_PARAMS). The teacher is tuned first: students learn from the tuned teacher.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from avkd.config import SweepConfig, config_hash
from avkd.sweep.plan import BLIND, TEACHER, TUNE, SweepContext, TrialSpec, tuned_spec

STUDENT_PARAMS = ("mlp_h1", "mlp_h2", "mlp_dropout", "decoder_dropout", "rep_weight")
CAPTION_ONLY_PARAMS = ("decoder_dropout",)


def _space(cfg: SweepConfig, params: tuple[str, ...] = STUDENT_PARAMS) -> dict:
    from ray import tune

    sp = cfg.tune.space
    space = {
        "mlp_h1": tune.choice(sp.mlp_hidden),
        "mlp_h2": tune.choice(sp.mlp_hidden),
        "mlp_dropout": tune.uniform(*sp.mlp_dropout),
        "decoder_dropout": tune.uniform(*sp.decoder_dropout),
        "rep_weight": tune.loguniform(*sp.rep_weight),
    }
    return {p: space[p] for p in params}


def tuned_cell(cfg: SweepConfig, spec: TrialSpec) -> bool:
    """Is the spec's (k, loss) cell one the tune section searches (tune.ks x tune.losses, default all)?"""
    t = cfg.tune
    return (t.ks is None or spec.k in t.ks) and (t.losses is None or spec.method in t.losses)


def _best_of_cell(
    label: str,
    key: str,
    base: TrialSpec,
    params: tuple[str, ...],
    cfg: SweepConfig,
    ctx: SweepContext,
    done: dict,
    outcome,
    run_phase,
    console,
) -> dict | None:
    """Run (or continue) the cell's Optuna study on `base`'s seed; its best parameters (None: no trial completed)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_db = Path(ctx.trials_dir).parent / "optuna.db"  # runs/<sweep>/optuna.db, on the driver
    study_db.parent.mkdir(parents=True, exist_ok=True)  # (nothing else creates runs/<sweep>/ any more)
    storage_url = f"sqlite:///{study_db}"
    search_space = {n: v for n, v in cfg.to_dict()["tune"].items() if n not in ("ks", "losses")}  # (not which cells)
    study_name = f"{cfg.name}-{key}-{config_hash({'spec': base.config_hash, 'tune': search_space})}"
    storage = optuna.storages.RDBStorage(storage_url)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    finished = [
        t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    remaining = cfg.tune.num_samples - len(finished)
    if remaining > 0:
        from ray.tune.schedulers import ASHAScheduler  # Ray only when the study has trials to run
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(
            metric="val_best", mode="max", seed=cfg.tune.seed + len(finished), study_name=study_name, storage=storage
        )
        scheduler = (
            ASHAScheduler(time_attr="epoch", max_t=cfg.training.epochs, grace_period=2) if cfg.tune.asha else None
        )
        tune_spec = dataclasses.replace(base, role=TUNE, tunes=base.role, config_hash=f"tune-{study_name}")
        run_phase(
            f"tune {label}",
            [tune_spec],
            ctx,
            cfg,
            done,
            outcome,
            search={
                "space": _space(cfg, params),
                "search_alg": search,
                "scheduler": scheduler,
                "num_samples": remaining,
            },
        )
        study = optuna.load_study(study_name=study_name, storage=storage)
    else:
        console.print(
            f">> tune {label}: study already has {len(finished)} finished trials (continuing it is not needed)"
        )
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return None
    best = study.best_trial.params
    console.print(
        f"   best of {label}: val {study.best_value:.4f} with "
        + ", ".join(f"{n}={v:.3g}" if isinstance(v, float) else f"{n}={v}" for n, v in best.items())
    )
    return best


def tune_references(
    cfg: SweepConfig, specs: list[TrialSpec], ctx: SweepContext, done: dict, outcome, run_phase, console
) -> dict[str, dict]:
    """The teacher and the blind baseline get the students' budget: {role: best overrides} (plan_trials' `tuned`).

    A role whose study completed no trial is left out (it then runs untuned, and is not marked tuned).
    """
    best = {}
    for role in (TEACHER, BLIND):
        cell = [s for s in specs if s.role == role]
        if cell:
            found = _best_of_cell(role, role, cell[0], CAPTION_ONLY_PARAMS, cfg, ctx, done, outcome, run_phase, console)
            if found is not None:
                best[role] = found
    return best


def run_tuning(
    cfg: SweepConfig, specs: list[TrialSpec], ctx: SweepContext, done: dict, outcome, run_phase, console
) -> None:
    cells: dict[tuple[float, str], list[TrialSpec]] = defaultdict(list)
    finals = []  # the tuned cells' best configurations, and the students of cells not searched as they are
    for s in specs:
        if tuned_cell(cfg, s):
            cells[(s.k, s.method)].append(s)
        else:
            finals.append(s)
    for (k, loss), cell in sorted(cells.items()):
        # tune on the first seed; the best configuration is re-run for every seed
        best = _best_of_cell(
            f"k={k:g} {loss}", f"k{k:g}-{loss}", cell[0], STUDENT_PARAMS, cfg, ctx, done, outcome, run_phase, console
        )
        if best is None:
            for s in cell:
                outcome.not_run[s.name] = "no tuning trial completed"
            continue
        finals += [tuned_spec(s, best) for s in cell]
    run_phase("students", finals, ctx, cfg, done, outcome)
