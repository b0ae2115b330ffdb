"""The sweep's trials as typed values: what each trial is (TrialSpec), what every trial shares
(SweepContext), and the one function that gives a trial its identity (config hash).

Both cross the Ray boundary as plain dicts (to_dict / from_dict), nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from avkd.config import SweepConfig, config_hash
from trackers import schema

TEACHER, BLIND, GUIDE, STUDENT, TUNE = "teacher", "blind", "guide", "student", "tune"
MODALITY_TEACHERS = schema.MODALITY_GUIDES  # single-modality teachers (guide trials named after their modality)


@dataclass(frozen=True)
class GuideRef:
    """A guide trial a student learns from: its name, config hash and the k of its features."""

    name: str
    hash: str
    k: float


@dataclass(frozen=True)
class TrialSpec:
    role: str  # teacher | blind | guide | student | tune
    k: float  # fraction of frames of its features
    method: str  # "ce" for teachers (blind, extra teachers); else the method's key (avkd/methods)
    seed: int
    teacher: str | None = None  # config hash of the teacher it is distilled from (None: trained on captions alone)
    guides: tuple[GuideRef, ...] = ()  # the method's guide trials it learns from
    guide: str | None = None  # a guide trial: its name ("audio", "mentor", ...)
    modality: str = "av"  # a single-modality teacher: "audio" | "visual"
    config_hash: str = ""
    tuned: bool = False  # a re-run of the best tuning configuration
    tunes: str = ""  # a tuning trial (role "tune"): the role it searches settings for (teacher, blind, student)
    overrides: dict[str, Any] = field(default_factory=dict, hash=False)  # tuning overrides (Optuna's suggestions)

    @property
    def name(self) -> str:
        """The run name in MLflow and in the console: teacher-s0, guide-audio-k1-s0, student-k0.2-rep-s0."""
        if self.role in (TEACHER, BLIND):
            return f"{self.role}-s{self.seed}"
        if self.role == GUIDE:
            return f"guide-{self.guide}-k{self.k:g}-s{self.seed}"
        if self.role == TUNE and self.tunes in (TEACHER, BLIND):
            return f"tune-{self.tunes}-s{self.seed}"
        return f"{self.role}-k{self.k:g}-{self.method}-s{self.seed}"

    @property
    def needs(self) -> set[str]:
        """Config hashes of the trials it learns from (its teacher, its guides)."""
        return {g.hash for g in self.guides} | ({self.teacher} if self.teacher else set())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (what Ray Tune carries in a trial's config)."""
        return {**dataclasses.asdict(self), "guides": [dataclasses.asdict(g) for g in self.guides]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialSpec":
        return cls(**{**d, "guides": tuple(GuideRef(**g) for g in d.get("guides", ()))})


@dataclass(frozen=True)
class SweepContext:
    """What every trial of one sweep invocation shares. No path on the driver's disk reaches a trial:
    its inputs come from Ray's object store (`inputs`), checkpoints from the tracking store."""

    config: dict[str, Any]  # the resolved sweep config (re-validated in the trial)
    sweep_file: str
    sweep_name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    inputs: Any  # a Ray ObjectRef of avkd.sweep.inputs.SweepInputs (captions, vocabulary, latent tables)
    trials_dir: str  # <runs>/<sweep>/trials on the driver (its Optuna studies); trials never write there
    cpus_per_trial: float
    weights: str
    dataset_fingerprint: str
    git_commit: str
    extraction_errors: dict[str, list]
    weights_detail: str = ""  # schema.WEIGHTS_DETAIL, e.g. "inception=random,cnn14=random"

    def to_dict(self) -> dict[str, Any]:
        """Field by field, not dataclasses.asdict: that would deep-copy the ObjectRef in `inputs`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepContext":
        return cls(**d)


# ---- identity ------------------------------------------------------------------------------------

# Extraction settings that change how fast features are computed, not what they are.
_EXECUTION_ONLY = ("device", "workers", "batch_frames", "batch_audio", "cache_dir")


def _result_config(cfg: SweepConfig, dataset_fp: str) -> dict[str, Any]:
    """The config fields that define any trial's result (the dataset by its fingerprint, not its path)."""
    d = cfg.to_dict()
    feats = {k: v for k, v in d["features"].items() if k not in _EXECUTION_ONLY}
    data = {k: v for k, v in d["dataset"].items() if k not in ("root", "synth")}
    # Early exit off: hashed as before the option existed, so earlier finished trials stay finished.
    model = {k: v for k, v in d["model"].items() if k != "early_exit" or v["enabled"]}
    # Every caption per epoch (the default): hashed as before the option existed, for the same reason.
    training = {k: v for k, v in d["training"].items() if k != "captions_per_video" or v is not None}
    return {
        "dataset": data,
        "dataset_fingerprint": dataset_fp,
        "features": feats,
        "model": model,
        "training": training,
        "decoding": d["decoding"],
        "evaluation": d["evaluation"],
    }


def trial_identity(cfg: SweepConfig, spec: TrialSpec, dataset_fp: str) -> str:
    """THE config hash of a trial: equal hashes = the same result, so a FINISHED run is not re-run.

    Teachers and the blind baseline: the shared result config + role + seed. Extra teachers add their
    guide name, modality and k. Students and guides distilled from the teacher add the method's part of
    `distill` (methods.base.Method.distill_identity), k, the teacher's hash and their guides' hashes.
    (The layout of these dicts is what it was before the refactor: rep/rep+ce/teacher/blind keep their hashes.)
    """
    from avkd import methods  # torch: imported only when a sweep is planned

    ident: dict[str, Any] = {**_result_config(cfg, dataset_fp), "role": spec.role, "seed": spec.seed}
    if spec.role in (TEACHER, BLIND):
        return config_hash(ident)
    if spec.guide is not None:
        ident["guide"] = spec.guide
    ident["k"] = spec.k
    if spec.teacher is None:  # an extra teacher
        ident["modality"] = spec.modality
        return config_hash(ident)
    ident["distill"] = methods.get(spec.method).distill_identity(cfg, spec.guide)
    ident["teacher"] = spec.teacher
    if spec.guide is None:
        ident["loss"] = spec.method
    if spec.guides:
        ident["guides"] = {g.name: g.hash for g in spec.guides}
    return config_hash(ident)


def _with_hash(cfg: SweepConfig, spec: TrialSpec, dataset_fp: str) -> TrialSpec:
    return dataclasses.replace(spec, config_hash=trial_identity(cfg, spec, dataset_fp))


def tuned_spec(spec: TrialSpec, best: dict[str, Any]) -> TrialSpec:
    """`spec` re-run with the best settings of its Optuna search: its own identity (the untuned hash + them)."""
    return dataclasses.replace(
        spec, tuned=True, overrides=best, config_hash=config_hash({"spec": spec.config_hash, "overrides": best})
    )


def plan_trials(
    cfg: SweepConfig, dataset_fp: str, tuned: dict[str, dict] | None = None
) -> tuple[list[TrialSpec], list[TrialSpec], list[TrialSpec]]:
    """-> (teacher phase, guides distilled from the teacher, students), each spec with its config hash.

    `tuned`: {"teacher" | "blind": the best settings of its Optuna search} (avkd/sweep/tune.py): those
    trials become their tuned re-runs, and every trial distilled from the teacher learns from the tuned one.

    Methods add guide trials (avkd.role "guide"): a guide trained on captions alone (an extra
    teacher) joins the teacher phase; one distilled from the teacher (a mentor) runs between the
    teachers and the students.
    """
    from avkd import methods

    first, middle, students = [], [], []
    tuned = tuned or {}
    for seed in cfg.grid.seeds:
        teacher = _with_hash(cfg, TrialSpec(TEACHER, 1.0, "ce", seed), dataset_fp)
        teacher = tuned_spec(teacher, tuned[TEACHER]) if TEACHER in tuned else teacher
        first.append(teacher)
        if cfg.grid.blind:
            blind = _with_hash(cfg, TrialSpec(BLIND, 1.0, "ce", seed), dataset_fp)
            first.append(tuned_spec(blind, tuned[BLIND]) if BLIND in tuned else blind)
        if cfg.grid.modality_teachers:  # Table I's modality rows: multi_teacher's extra-teacher trials
            first += [
                _with_hash(cfg, TrialSpec(GUIDE, 1.0, "ce", seed, guide=m, modality=m), dataset_fp)
                for m in MODALITY_TEACHERS
            ]
        guide_refs: dict[tuple[str, str], GuideRef] = {}  # (method, guide name) -> its trial
        for key in cfg.grid.losses:
            for g in methods.get(key).guide_trials(cfg):
                if g.student:
                    spec = TrialSpec(GUIDE, g.k, key, seed, teacher=teacher.config_hash, guide=g.name)
                else:
                    spec = TrialSpec(GUIDE, g.k, "ce", seed, guide=g.name, modality=g.modality)
                spec = _with_hash(cfg, spec, dataset_fp)
                (middle if g.student else first).append(spec)
                guide_refs[key, g.name] = GuideRef(g.name, spec.config_hash, g.k)
        for k in cfg.grid.ks:
            for key in cfg.grid.losses:
                refs = tuple(guide_refs[key, g.name] for g in methods.get(key).guide_trials(cfg))
                students.append(
                    _with_hash(
                        cfg,
                        TrialSpec(STUDENT, float(k), key, seed, teacher=teacher.config_hash, guides=refs),
                        dataset_fp,
                    )
                )
    return _unique(first), _unique(middle), students


def _unique(specs: list[TrialSpec]) -> list[TrialSpec]:
    """One spec per config hash: a trial two users need (a modality row, multi_teacher) is trained once."""
    seen: dict[str, TrialSpec] = {}
    for s in specs:
        seen.setdefault(s.config_hash, s)
    return list(seen.values())
