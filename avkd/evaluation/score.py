"""The paper's SCORE and Diff: the one definition used by training, tracking and the reports.

SCORE (Çaylı et al., Sec. III-A): "an average of all performance metrics", with the mean of
BLEU-1..4 standing for BLEU, i.e. mean(mean(BLEU-1..4), METEOR, ROUGE-L, CIDEr, SPICE). A metric
that could not be computed (SPICE without its jars) drops out, and the terms averaged are recorded
so every table can say what its SCORE means.

Diff (Table I): the relative difference to the teacher, (SCORE_teacher - SCORE) / SCORE_teacher, a
fraction (the paper prints 0.127 for 12.7 %); Table II's time reductions use the same formula.

Everything here is a pure function over plain dicts and numbers (no MLflow, no torch), so the same
code scores a run's corpus metrics, one video's metrics or a report row. Statistics over seeds live
here too: t-intervals over seeds (`t_interval`), a paired bootstrap of Diff over test videos
(`paired_bootstrap_diff`) and the whole table's summary (`summarize`), the one computation behind
Table I, the sweep's summary.json artifact and a notebook's numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from avkd.errors import AvkdError
from trackers.schema import ATTR_PREFIX, BLEU, CIDER, METEOR, ROUGE_L, SCORE, SPICE

BLEU_TERM = "bleu"  # a SCORE term: the mean of BLEU-1..4
TERMS = (BLEU_TERM, METEOR, ROUGE_L, CIDER, SPICE)  # the paper's SCORE, in this order
OPTIONAL_TERMS = (SPICE,)  # may be unavailable (Stanford CoreNLP jars); SCORE then averages the rest


def _finite(value: object) -> bool:
    try:
        return value is not None and math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _inputs(term: str) -> tuple[str, ...]:
    """The metrics a SCORE term is computed from."""
    return BLEU if term == BLEU_TERM else (term,)


def term_value(metrics: Mapping[str, float], term: str) -> float:
    """One SCORE term of a metrics dict (KeyError when a metric it needs is absent)."""
    return statistics.fmean(float(metrics[m]) for m in _inputs(term))


def available_terms(metrics: Mapping[str, float]) -> list[str]:
    """The SCORE terms whose metrics are all present and finite, in TERMS order."""
    return [t for t in TERMS if all(_finite(metrics.get(m)) for m in _inputs(t))]


def common_terms(many: Iterable[Mapping[str, float]]) -> list[str]:
    """The SCORE terms every one of `many` has (none when `many` is empty): one SCORE for a whole table."""
    sets = [set(available_terms(m)) for m in many]
    if not sets:
        return []
    common = set.intersection(*sets)
    return [t for t in TERMS if t in common]


def score(metrics: Mapping[str, float], terms: Iterable[str]) -> float:
    """SCORE over the given terms: the mean of their values (NaN in, NaN out: a broken metric shows)."""
    terms = list(terms)
    if not terms:
        raise AvkdError("SCORE over no metrics")
    missing = [m for t in terms for m in _inputs(t) if metrics.get(m) is None]
    if missing:
        raise AvkdError(f"SCORE needs {', '.join(missing)} (metrics have: {', '.join(sorted(metrics))})")
    return statistics.fmean(term_value(metrics, t) for t in terms)


def final_score(metrics: Mapping[str, float]) -> tuple[float, list[str]]:
    """The paper's SCORE of one evaluation and the terms it averaged.

    Every term but SPICE is required (an AvkdError names what is missing); SPICE counts when present
    and finite.
    """
    terms = [t for t in TERMS if t not in OPTIONAL_TERMS]
    terms += [t for t in OPTIONAL_TERMS if t in available_terms(metrics)]
    return score(metrics, terms), terms


def relative_diff(value: float, reference: float) -> float:
    """(reference - value) / reference as a fraction: Table I's Diff (reference = the teacher's SCORE),
    Table II's time reduction. Positive when `value` is below `reference`; NaN when reference is 0."""
    if reference == 0:
        return math.nan
    return (reference - value) / reference


def mean_std(values: Iterable[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) over seeds; std None below two values, both None for none."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


# ---- intervals -----------------------------------------------------------------------------------
# Table I's uncertainty, computed here once: the report, the sweep's summary artifact and a user's
# notebook call the same functions and get the same numbers.

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 1000  # paired bootstrap replicates (evaluation.bootstrap_samples in a sweep file)
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its t-interval: mean ± half_width (half_width None when n < 2)."""

    n: int
    mean: float | None
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "half_width": self.half_width, "low": self.low, "high": self.high}


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean over seeds: mean ± t_{(1+c)/2, n-1} · s / sqrt(n).

    One value has no interval (half_width None; the report says so in words); none has no mean.
    """
    from scipy.stats import t as student_t

    values = [float(v) for v in values]
    if not values:
        return Interval(0, None, None)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(1, mean, None)
    n = len(values)
    half = float(student_t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return Interval(n, mean, half)


@dataclass(frozen=True)
class DiffInterval:
    """Diff vs the teacher over paired seeds and test videos, with its paired-bootstrap percentile interval."""

    diff: float  # (teacher - other) / teacher of the per-video SCORE means, averaged over paired seeds
    low: float
    high: float
    seeds: tuple[str, ...]  # the seeds paired (student seed s with teacher seed s)
    videos: int  # test videos resampled
    samples: int  # bootstrap replicates

    @property
    def distinguishable(self) -> bool:
        """False when the interval contains 0: "not distinguishable from the teacher"."""
        return not (self.low <= 0.0 <= self.high)

    def to_dict(self) -> dict:
        return {
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "seeds": list(self.seeds),
            "videos": self.videos,
            "samples": self.samples,
            "distinguishable": self.distinguishable,
        }


def paired_bootstrap_diff(
    teacher: Mapping[str, Mapping[str, float]],
    other: Mapping[str, Mapping[str, float]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> DiffInterval | None:
    """Diff of `other` vs `teacher` with a paired bootstrap over test videos.

    Both map seed -> {video: per-video value}. Seeds are paired (other's seed s with the teacher's
    seed s) and so are videos: each replicate draws the test videos with replacement once and uses
    that same draw for every seed of both models, so what varies is which videos were tested, not
    which model saw them. Diff of a replicate: (T - O) / T, T and O the means over paired seeds of
    the per-video means. Interval: the (1-c)/2 and (1+c)/2 percentiles (numpy's linear rule) of the
    replicates. Deterministic for a given `seed`. None when no seed pairs or no common video, and when
    Diff is undefined in some replicate (the teacher scores 0 on every video it drew: tiny test splits).
    """
    import numpy as np

    seeds = tuple(sorted(set(teacher) & set(other), key=_seed_order))
    if not seeds:
        return None
    videos = sorted(set.intersection(*(set(teacher[s]) & set(other[s]) for s in seeds)))
    if not videos:
        return None
    t = np.array([[float(teacher[s][v]) for v in videos] for s in seeds])  # (seeds, videos)
    o = np.array([[float(other[s][v]) for v in videos] for s in seeds])
    n = len(videos)
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))  # (B, n) video indices
    t_rep = t[:, draws].mean(axis=(0, 2))  # (B,): mean over seeds of the resampled per-video mean
    o_rep = o[:, draws].mean(axis=(0, 2))
    if not (t_rep > 0).all():
        return None
    reps = (t_rep - o_rep) / t_rep
    low, high = np.percentile(reps, [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2])
    return DiffInterval(relative_diff(float(o.mean()), float(t.mean())), float(low), float(high), seeds, n, samples)


def _seed_order(seed: str) -> tuple:
    return (0, int(seed), "") if str(seed).lstrip("-").isdigit() else (1, 0, str(seed))


def per_video_scores(per_video: Mapping[str, Mapping[str, float]], terms: Iterable[str]) -> dict[str, float]:
    """{video: SCORE of that video's own metrics} over `terms` (videos lacking a term are left out)."""
    terms = list(terms)
    out = {}
    for video, metrics in per_video.items():
        if all(_finite(metrics.get(m)) for t in terms for m in _inputs(t)):
            out[video] = score(metrics, terms)
    return out


# ---- the summary of a whole table ------------------------------------------------------------------


@dataclass
class TrialScores:
    """What the summary needs of one finished trial (plain data: from MLflow, or a notebook's own)."""

    row: str  # the Table I row it belongs to, e.g. "teacher", "blind", "modality-audio", "student-k0.2-rep"
    seed: str
    metrics: Mapping[str, float]  # test metrics without the "test/" prefix (attr/<group> included)
    per_video: Mapping[str, Mapping[str, float]] | None = None  # {video: its metrics}: per_video_scores.csv


def summarize(
    trials: Iterable[TrialScores],
    teacher: str = "teacher",
    metrics: Iterable[str] = (),
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict:
    """Per row: t-intervals over seeds of every metric (SCORE over the terms every trial has) and of
    attribute accuracy; per row but the teacher's: Diff with its paired-bootstrap interval.

    JSON-ready: {"confidence", "terms", "bootstrap": {"samples", "seed"}, "rows": {row: {"n", "seeds",
    "metrics": {metric: Interval}, "attributes": {group: Interval}, "diff": DiffInterval | None}}}.
    Attribute columns exist only for rows whose every trial logged them (absent on MSR-VTT, not zero).
    """
    trials = list(trials)
    terms = common_terms(t.metrics for t in trials)
    by_row: dict[str, list[TrialScores]] = {}
    for t in trials:
        by_row.setdefault(t.row, []).append(t)
    per_seed_scores = {
        row: {t.seed: per_video_scores(t.per_video, terms) for t in group if t.per_video and terms}
        for row, group in by_row.items()
    }
    rows = {}
    for row, group in by_row.items():
        group = sorted(group, key=lambda t: _seed_order(t.seed))
        values = {
            m: t_interval([t.metrics[m] for t in group if _finite(t.metrics.get(m))], confidence) for m in metrics
        }
        if terms:
            values[SCORE] = t_interval([score(t.metrics, terms) for t in group], confidence)
        groups = sorted({k for t in group for k in t.metrics if k.startswith(ATTR_PREFIX)})
        attributes = {
            k[len(ATTR_PREFIX) :]: t_interval([t.metrics[k] for t in group], confidence)
            for k in groups
            if all(k in t.metrics for t in group)
        }
        diff = None
        if row != teacher and teacher in per_seed_scores:
            diff = paired_bootstrap_diff(per_seed_scores[teacher], per_seed_scores[row], samples, seed, confidence)
        rows[row] = {
            "n": len(group),
            "seeds": [t.seed for t in group],
            "metrics": {m: i.to_dict() for m, i in values.items()},
            "attributes": {g: i.to_dict() for g, i in attributes.items()},
            "diff": None if diff is None else diff.to_dict(),
        }
    return {"confidence": confidence, "terms": terms, "bootstrap": {"samples": samples, "seed": seed}, "rows": rows}
