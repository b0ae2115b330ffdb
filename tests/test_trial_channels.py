"""How a trial gets what it needs without the driver's disk: its inputs through Ray's object store
(avkd/sweep/inputs.py), its teacher's and guides' checkpoints from the tracking store
(avkd/sweep/checkpoints.py), and extraction shards' features back to the driver's cache."""

from __future__ import annotations

import numpy as np
import pytest

from avkd.errors import AvkdError, DataError
from avkd.features.cache import FeatureCache, VisualEntry
from avkd.features.extract import LatentTable, ShardFeatures
from avkd.sweep.checkpoints import download_checkpoints
from avkd.sweep.inputs import build_inputs, fetch, share, trial_inputs
from avkd.sweep.plan import SweepContext


def _table(k: float, ids: list[str], errors=()) -> LatentTable:
    rng = np.random.default_rng(int(k * 10))
    return LatentTable(
        k,
        "spectral",
        ids,
        rng.random((len(ids), 3), np.float32),
        rng.random((len(ids), 4), np.float32),
        errors=list(errors),
    )


def test_inputs_cross_the_object_store(tiny_corpus):
    """build_inputs keeps the videos with features in every variant (none with errors); the same
    object comes back from Ray's object store in a task, and a blind trial gets zeros."""
    import os

    import ray

    from avkd.data.msrvtt import load_msrvtt

    dataset = load_msrvtt(tiny_corpus)
    ids = sorted(dataset.videos)
    broken = ids[0]
    tables = {1.0: _table(1.0, ids), 0.2: _table(0.2, ids[1:], [{"video_id": broken, "reason": "x"}])}
    inputs = build_inputs(dataset, 1, tables)
    assert broken not in inputs.videos and sum(map(len, inputs.splits.values())) == len(ids) - 1

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        ctx = SweepContext(
            config={},
            sweep_file="s.yaml",
            sweep_name="s",
            tracking_uri="",
            experiment_id="",
            parent_run_id="",
            inputs=share(inputs),
            trials_dir="",
            cpus_per_trial=1,
            weights="random",
            dataset_fingerprint="",
            git_commit="",
            extraction_errors={},
        )

        @ray.remote(num_cpus=0)
        def in_a_task(ctx: dict) -> tuple:
            got = fetch(SweepContext.from_dict(ctx).inputs)
            student = trial_inputs(got, 0.2, blind=False, with_teacher=True, guide_ks={"mentor": 1.0})
            blind = trial_inputs(got, 1.0, blind=True, with_teacher=False, guide_ks={})
            return (
                got.vocab,
                student.features["train"].visual,
                student.teacher_features["train"].video_ids,
                blind.features["test"].audio,
                sorted(student.guide_features),
            )

        vocab, visual, teacher_ids, blind_audio, guides = ray.get(in_a_task.remote(ctx.to_dict()))
    finally:
        ray.shutdown()
    assert vocab == inputs.vocab and guides == ["mentor"]
    train = inputs.splits["train"]
    rows = [tables[0.2].video_ids.index(v) for v in train]
    np.testing.assert_array_equal(visual, tables[0.2].visual[rows])
    assert teacher_ids == train and not blind_audio.any() and blind_audio.shape[0] == len(inputs.splits["test"])


def test_no_split_without_videos_is_one_line(tiny_corpus):
    from avkd.data.msrvtt import load_msrvtt

    dataset = load_msrvtt(tiny_corpus)
    test_ids = {v.video_id for v in dataset.split("test")}
    keep = [v for v in sorted(dataset.videos) if v not in test_ids]
    with pytest.raises(AvkdError, match="dataset split 'test' has no videos with features"):
        build_inputs(dataset, 1, {1.0: _table(1.0, keep)})


def test_checkpoints_come_from_the_tracking_store(tmp_path):
    """A FINISHED child run with the teacher's hash and a checkpoint/best.pt artifact: downloaded into
    the trial's folder byte for byte; a hash without a FINISHED run is one DataError line."""
    from trackers import mlflow_tracker as mt

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = mt.ensure_experiment(uri, "ckpt")
    (tmp_path / "best.pt").write_bytes(b"teacher weights")
    with mt.RunLogger(uri, exp, "sweep", {"avkd.role": "sweep"}) as parent:
        with mt.RunLogger(uri, exp, "teacher-s0", {"avkd.config_hash": "abc"}, parent_run_id=parent.run_id) as t:
            t.log_artifact(tmp_path / "best.pt", "checkpoint")
        with mt.RunLogger(uri, exp, "teacher-s0", {"avkd.config_hash": "dead"}, parent_run_id=parent.run_id) as d:
            d.close("FAILED")
    got = download_checkpoints(uri, exp, {"teacher": "abc"}, tmp_path / "trial")
    assert got["teacher"].read_bytes() == b"teacher weights"
    assert got["teacher"].is_relative_to(tmp_path / "trial")
    with pytest.raises(DataError, match=r"^guide-audio \(config dead\): no FINISHED run in the tracking store"):
        download_checkpoints(uri, exp, {"guide-audio": "dead"}, tmp_path / "trial")


def test_shard_features_are_saved_into_the_drivers_cache(tmp_path):
    """What a shard returns is what the cache would have held had the shard written it."""
    from avkd.config import FeatureConfig

    features = ShardFeatures()
    entry = VisualEntry(10, np.array([0, 5]), np.ones((2, 2048), np.float16))
    features.save_visual("v1", entry)
    features.save_audio("v1", 0.2, np.full(2048, 0.5, np.float32), True, 7)
    cache = FeatureCache.for_config(tmp_path, {"inception": "a", "cnn14": "b"}, FeatureConfig(image_size=75))
    features.save_into(cache)
    back = cache.load_visual("v1")
    assert back.num_frames == 10 and back.indices.tolist() == [0, 5]
    emb, has_audio, frames = cache.load_audio("v1", 0.2)
    assert has_audio and frames == 7 and float(emb[0]) == 0.5
