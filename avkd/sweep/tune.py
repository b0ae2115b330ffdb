"""Optuna tuning of the distillation MLP and dropout (sweeps/tune.yaml), one search per (k, loss) cell.

Ray Tune cannot mix `grid_search` with a search algorithm in one Tuner, so each cell is its own
Tuner with a seeded TPE `OptunaSearch`. It optimises a *validation* metric only (tuning trials never
decode the test split). Studies persist in runs/<sweep>/optuna.db: a rerun continues a study up to
`num_samples` finished trials instead of starting again. The best configuration of each cell is then
re-trained for every seed as an ordinary student trial (tag avkd.tuned=true) and evaluated on test.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from avkd.config import SweepConfig, config_hash
from avkd.sweep.plan import TUNE, SweepContext, TrialSpec


def _space(cfg: SweepConfig) -> dict:
    from ray import tune

    sp = cfg.tune.space
    return {
        "mlp_h1": tune.choice(sp.mlp_hidden),
        "mlp_h2": tune.choice(sp.mlp_hidden),
        "mlp_dropout": tune.uniform(*sp.mlp_dropout),
        "decoder_dropout": tune.uniform(*sp.decoder_dropout),
        "rep_weight": tune.loguniform(*sp.rep_weight),
    }


def tuned_cell(cfg: SweepConfig, spec: TrialSpec) -> bool:
    """Is the spec's (k, loss) cell one the tune section searches (tune.ks x tune.losses, default all)?"""
    t = cfg.tune
    return (t.ks is None or spec.k in t.ks) and (t.losses is None or spec.method in t.losses)


def run_tuning(cfg: SweepConfig, specs: list[TrialSpec], ctx: SweepContext, done: dict, outcome, run_phase,
               console) -> None:
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage_url = f"sqlite:///{Path(ctx.trials_dir).parent / 'optuna.db'}"
    cells: dict[tuple[float, str], list[TrialSpec]] = defaultdict(list)
    finals = []  # the tuned cells' best configurations, and the students of cells not searched as they are
    for s in specs:
        if tuned_cell(cfg, s):
            cells[(s.k, s.method)].append(s)
        else:
            finals.append(s)
    for (k, loss), cell in sorted(cells.items()):
        base = cell[0]  # tune on the first seed; the best configuration is re-run for every seed
        search_space = {n: v for n, v in cfg.to_dict()["tune"].items() if n not in ("ks", "losses")}  # (not which cells)
        study_name = f"{cfg.name}-k{k:g}-{loss}-{config_hash({'spec': base.config_hash, 'tune': search_space})}"
        storage = optuna.storages.RDBStorage(storage_url)
        study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
        finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
        remaining = cfg.tune.num_samples - len(finished)
        if remaining > 0:
            search = OptunaSearch(metric="val_best", mode="max", seed=cfg.tune.seed + len(finished),
                                  study_name=study_name, storage=storage)
            scheduler = (ASHAScheduler(time_attr="epoch", max_t=cfg.training.epochs, grace_period=2)
                         if cfg.tune.asha else None)
            tune_spec = dataclasses.replace(base, role=TUNE, config_hash=f"tune-{study_name}")
            run_phase(f"tune k={k:g} {loss}", [tune_spec], ctx, cfg, done, outcome,
                      search={"space": _space(cfg), "search_alg": search, "scheduler": scheduler,
                              "num_samples": remaining})
            study = optuna.load_study(study_name=study_name, storage=storage)
        else:
            console.print(f">> tune k={k:g} {loss}: study already has {len(finished)} finished trials (continuing it is not needed)")
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            for s in cell:
                outcome.not_run[s.name] = "no tuning trial completed"
            continue
        best = study.best_trial.params
        console.print(f"   best of k={k:g} {loss}: val {study.best_value:.4f} with "
                      + ", ".join(f"{n}={v:.3g}" if isinstance(v, float) else f"{n}={v}" for n, v in best.items()))
        for s in cell:
            finals.append(dataclasses.replace(s, tuned=True, overrides=best,
                                              config_hash=config_hash({"spec": s.config_hash, "overrides": best})))
    run_phase("students", finals, ctx, cfg, done, outcome)
