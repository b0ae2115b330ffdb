"""Where the run shown differs from the paper (Çaylı et al.), in plain words: the report's deviation notes.

`deviation_notes(config, tags, score_terms)` is a pure function of the sweep run's resolved config
(nested, as its config.yaml artifact, or flattened, as its MLflow params; values may be the params'
strings), its tags (avkd.weights_detail) and the metrics its SCORE averages. Each note starts with
"Paper deviation (<topic>):" and is listed only when it applies to that run; a run with the paper's
settings, pretrained weights and SPICE gets none (the README's "Deviations from the paper" lists them all).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from avkd.config import SCRATCH_SUFFIX, SweepConfig, flatten
from reports.model import LABELS
from trackers import schema

PREFIX = "Paper deviation"
# The paper's settings (Section 2 and 3 of Çaylı et al.) the notes compare with.
PAPER_IMAGE_SIZE = 299  # "resized into the shape of 3 x 299 x 299"
PAPER_AUDIO_MODEL, PAPER_TIME_POOL = "cnn10", "mean"  # "PANNs ... 10 stacked CNN layers"; "a mean operator"
PAPER_LM_SIZE = 2576  # "the latent vector size of the layers in the language models is set to 2,576"
VISUAL_DIM = 2048  # Inception-v3's pool output (avkd.features.visual.FEATURE_DIM; not imported: it needs torch)
AUDIO_DIMS = {"cnn10": 512, "cnn14": 2048}  # the PANNs embeddings (avkd/features/audio.py)
BACKBONES = {
    "inception": "Inception-v3 (paper: ImageNet-pretrained)",
    "cnn10": "PANNs Cnn10 (paper: AudioSet-pretrained)",
    "cnn14": "PANNs Cnn14 (AudioSet checkpoint)",
}
_DEFAULTS = flatten(SweepConfig(name="defaults").to_dict())  # keys an older run did not log


def parse_config(text: str) -> dict[str, Any]:
    """The report's config text (the config.yaml artifact, or its `key: value` params) -> a mapping."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _flat(config: Mapping[str, Any]) -> dict[str, Any]:
    flat = flatten(dict(config)) if any(isinstance(v, dict) for v in config.values()) else dict(config)
    return {**_DEFAULTS, **{k: _value(v) for k, v in flat.items()}}


def _value(v: Any) -> Any:
    """An MLflow param string ("True", "128", "['rep', 'rep+ce']", "None") back to its value."""
    if not isinstance(v, str):
        return v
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


def _note(topic: str, text: str) -> str:
    return f"{PREFIX} ({topic}): {text}"


def deviation_notes(
    config: Mapping[str, Any], tags: Mapping[str, str], score_terms: Iterable[str] | None = None
) -> list[str]:
    """The deviations of the run shown, one note each; score_terms: what its SCORE averages (else the
    avkd.score_metrics tag; neither: SPICE is not discussed)."""
    c = _flat(config)
    notes = []
    if c["dataset.kind"] == "synth":
        notes.append(
            _note(
                "data",
                "the embedded synthetic corpus (dataset.kind: synth), not MSR-VTT; the "
                "numbers show the harness at work and are not comparable with the paper's.",
            )
        )
    notes += _weights(tags)
    notes += _features(c)
    notes += _students(c)
    notes += _spice(tags, score_terms)
    return notes


def _weights(tags: Mapping[str, str]) -> list[str]:
    detail = tags.get(schema.WEIGHTS_DETAIL, "")
    status = dict(part.split("=", 1) for part in detail.split(",") if "=" in part)
    if not status:
        return [_note("backbone weights", f"unknown: the sweep run has no {schema.WEIGHTS_DETAIL} tag.")]
    random = [BACKBONES.get(name, name) for name, kind in status.items() if kind != "pretrained"]
    if not random:
        return []
    return [
        _note(
            "backbone weights",
            f"seeded random weights, BatchNorm statistics re-estimated on the corpus, for "
            f"{'; '.join(random)} ({schema.WEIGHTS_DETAIL}={detail}): no pretrained "
            "checkpoint was found, so these features are not the paper's.",
        )
    ]


def _features(c: dict[str, Any]) -> list[str]:
    notes = []
    model, pool = c["features.audio_model"], c["features.audio_time_pool"]
    if (model, pool) != (PAPER_AUDIO_MODEL, PAPER_TIME_POOL):
        pooling = "a mean over time" if pool == "mean" else "PANNs' own max + mean over time"
        notes.append(
            _note(
                "audio model",
                f"PANNs {model.capitalize()} with {pooling} (features.audio_model: "
                f"{model}, audio_time_pool: {pool}); the paper uses Cnn10 ('10 stacked "
                "CNN layers') with a mean over time.",
            )
        )
    if c["features.image_size"] != PAPER_IMAGE_SIZE:
        notes.append(
            _note(
                "image size",
                f"frames resized to {c['features.image_size']} x {c['features.image_size']} "
                f"(features.image_size); the paper uses {PAPER_IMAGE_SIZE} x {PAPER_IMAGE_SIZE}.",
            )
        )
    if c["features.max_frames"] is not None:
        notes.append(
            _note(
                "teacher frames",
                f"the teacher sees at most {c['features.max_frames']} frames per video "
                "(features.max_frames); the paper's teacher uses every frame.",
            )
        )
    if c["features.audio_pool"] != "spectral":
        notes.append(
            _note(
                "audio compression",
                f"students' audio is pooled by {c['features.audio_pool']} pooling "
                "(features.audio_pool); the paper uses SimPF spectral pooling.",
            )
        )
    elif c["features.simpf_renorm"]:
        notes.append(
            _note(
                "SimPF scale",
                "students' pooled spectrograms are rescaled by sqrt(n/T), preserving each "
                "mel bin's time mean (features.simpf_renorm: true); SimPF (and so the "
                "paper) does not rescale.",
            )
        )
    audio_dim = AUDIO_DIMS.get(model)
    if audio_dim is not None and audio_dim != AUDIO_DIMS[PAPER_AUDIO_MODEL]:
        notes.append(
            _note(
                "latent size",
                f"the teacher's latent is {VISUAL_DIM} (visual) + {audio_dim} ({model}) = "
                f"{VISUAL_DIM + audio_dim} values per video; the paper's Inception-v3 + "
                f"Cnn10 give {VISUAL_DIM} + 512 = {VISUAL_DIM + 512}.",
            )
        )
    hidden, embed = c["model.hidden"], c["model.embed_dim"]
    if (hidden, embed) != (PAPER_LM_SIZE, PAPER_LM_SIZE):
        notes.append(
            _note(
                "language model size",
                f"GRU hidden size {hidden}, word embedding {embed} (model.hidden, "
                f"model.embed_dim); the paper's language model layers are "
                f"{PAPER_LM_SIZE:,} wide.",
            )
        )
    return notes


def _students(c: dict[str, Any]) -> list[str]:
    """The students' decoder initialisation (distill.init_from_teacher; the *-scratch methods never copy)."""
    losses = list(c["grid.losses"]) if c["grid.ks"] else []
    copied = [m for m in losses if c["distill.init_from_teacher"] and not m.endswith(SCRATCH_SUFFIX)]
    if not copied:
        return []
    scratch = [m for m in losses if m not in copied]
    rest = f" The students of {', '.join(scratch)} train theirs from scratch (the ablation)." if scratch else ""
    return [
        _note(
            "student decoder",
            f"the students of {', '.join(copied)} start with a copy of the trained teacher's "
            "caption decoder (distill.init_from_teacher: true); the paper does not say so, "
            "and it narrows the difference between rep and rep+ce." + rest,
        )
    ]


def _spice(tags: Mapping[str, str], score_terms: Iterable[str] | None) -> list[str]:
    terms = (
        list(score_terms)
        if score_terms is not None
        else [t for t in tags.get(schema.SCORE_METRICS, "").split(",") if t]
    )
    if not terms or schema.SPICE in terms:
        return []
    return [
        _note(
            "SPICE",
            "not computed (its Stanford CoreNLP jars are not available here); SCORE averages "
            f"{', '.join(LABELS.get(t, t) for t in terms)} instead of the paper's five terms, SPICE included.",
        )
    ]
