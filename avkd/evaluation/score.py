"""The paper's SCORE and Diff: the one definition used by training, tracking and the reports.

SCORE (Çaylı et al., Sec. III-A): "an average of all performance metrics", with the mean of
BLEU-1..4 standing for BLEU, i.e. mean(mean(BLEU-1..4), METEOR, ROUGE-L, CIDEr, SPICE). A metric
that could not be computed (SPICE without its jars) drops out, and the terms averaged are recorded
so every table can say what its SCORE means.

Diff (Table I): the relative difference to the teacher, (SCORE_teacher - SCORE) / SCORE_teacher, a
fraction (the paper prints 0.127 for 12.7 %); Table II's time reductions use the same formula.

Everything here is a pure function over plain dicts and numbers (no MLflow, no torch), so the same
code scores a run's corpus metrics, one video's metrics or a report row; statistics over seeds
(and later t-intervals and a paired bootstrap over per-video scores) belong here too.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

from avkd.errors import AvkdError
from trackers.schema import BLEU, CIDER, METEOR, ROUGE_L, SPICE

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
