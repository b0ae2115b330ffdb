"""How a trial receives its inputs: through Ray's object store, never through the driver's disk.

SweepInputs (captions, vocabulary, per-split video lists and one latent table per k) is built once by
the driver and put into the object store once (`share`); the SweepContext carries the reference, and
a trial on any node of the cluster gets the same object back (`trial_inputs`). No node needs the
driver's runs/ or cache/ folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from avkd.errors import AvkdError

SPLITS = ("train", "validate", "test")


@dataclass
class SweepInputs:
    """What every trial of one sweep reads: the vocabulary, the captions, and the latent tables."""

    vocab: list[str]
    splits: dict[str, list[str]]  # only videos with features in every variant, none with extraction errors
    videos: dict[str, dict[str, Any]]  # video_id -> {"captions": [...], "tokens": [[...], ...]}
    tables: dict[str, Any]  # f"{k:g}" -> avkd.features.extract.LatentTable
    attributes: dict[str, dict] | None = None  # test videos' stored attributes (grounded accuracy); None: none stored


def build_inputs(dataset, min_count: int, tables: dict, attributes: dict[str, dict] | None = None) -> SweepInputs:
    """Captions + vocabulary + per-split video lists (only videos with features in every variant)."""
    bad = set()
    for table in tables.values():
        bad |= {e["video_id"] for e in table.errors}
    have = set.intersection(*(set(t.video_ids) for t in tables.values()))
    splits = {s: [v.video_id for v in dataset.split(s) if v.video_id in have and v.video_id not in bad] for s in SPLITS}
    for s, vids in splits.items():
        if not vids:
            raise AvkdError(f"dataset split '{s}' has no videos with features (see the extraction errors above)")
    keep = set().union(*splits.values())
    videos = {
        v.video_id: {"captions": v.captions, "tokens": v.tokens} for v in dataset.videos.values() if v.video_id in keep
    }
    test_attributes = None if attributes is None else {v: attributes[v] for v in splits["test"] if v in attributes}
    return SweepInputs(
        dataset.build_vocab(min_count).words,
        splits,
        videos,
        {f"{k:g}": table for k, table in tables.items()},
        test_attributes,
    )


def share(inputs: SweepInputs):
    """Put the sweep's inputs into Ray's object store once (Ray must be up): -> an ObjectRef."""
    import ray

    return ray.put(inputs)


def fetch(ref_or_inputs) -> SweepInputs:
    """The SweepInputs behind a reference (a trial on any node); a SweepInputs is returned as it is."""
    if isinstance(ref_or_inputs, SweepInputs):
        return ref_or_inputs
    import ray

    return ray.get(ref_or_inputs)


def trial_inputs(inputs: SweepInputs, k: float, blind: bool, with_teacher: bool, guide_ks: dict[str, float]):
    """TrialInputs of one trial: its variant k (zeros for the blind baseline), the teacher's (k = 1)
    when it is distilled, and each guide's variant."""
    from avkd.data.vocab import Vocabulary
    from avkd.training.data import Split, TrialInputs

    def variant(k: float, blind: bool = False) -> dict[str, Split]:
        table = inputs.tables[f"{k:g}"]
        row = {vid: i for i, vid in enumerate(table.video_ids)}
        out = {}
        for split, vids in inputs.splits.items():
            idx = [row[v] for v in vids]
            audio, visual = table.audio[idx], table.visual[idx]
            if blind:  # the blind baseline: same decoder, latent vectors replaced by zeros
                audio, visual = np.zeros_like(audio), np.zeros_like(visual)
            out[split] = Split(video_ids=list(vids), audio=audio, visual=visual)
        return out

    return TrialInputs(
        vocab=Vocabulary(inputs.vocab),
        captions={v: m["tokens"] for v, m in inputs.videos.items()},
        references={v: m["captions"] for v, m in inputs.videos.items()},
        features=variant(k, blind=blind),
        teacher_features=variant(1.0) if with_teacher else None,
        guide_features={name: variant(gk) for name, gk in guide_ks.items()},
        attributes=inputs.attributes,
    )
