"""sweeps/paper.yaml's model and feature settings, exercised on CPU (issue 16, item 4).

299 px Inception-v3 frames, PANNs Cnn10 with a mean over time, SimPF spectral pooling, the 2,576-unit
language model and MLP, beam 3: one teacher trial and one student trial run in-process through the
real trial runner (avkd.sweep.trial.run_trial: MLflow run, training, beam search, scoring) on a
handful of synthetic clips, so a shape, memory or configuration error of the paper path fails here
instead of on a user's GPU cluster. Overridden, and nothing else of the model or features: the dataset,
the epochs, the device (cpu) and weights.require_pretrained (no checkpoints exist here); the grid is
cut to one k, one loss and one seed without blind baseline or timing; outputs go to the temp dir.
The test prints its wall time and peak memory.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from avkd.config import load_sweep, parse_sweep

REPO = Path(__file__).resolve().parents[1]
# What the test may change in paper.yaml (flattened keys): everything else must stay the paper's.
ALLOWED = (
    "dataset.",
    "training.epochs",
    "distill.rep_epochs",
    "features.device",
    "features.weights.require_pretrained",
    "features.cache_dir",
    "grid.",
    "tracking.",
    "runs_dir",
)


def paper_on_cpu(tmp: Path):
    d = load_sweep(REPO / "sweeps" / "paper.yaml").to_dict()
    d["dataset"] = {**d["dataset"], "kind": "synth", "root": str(tmp / "synth"), "synth": {"videos": 10, "seed": 0}}
    d["training"]["epochs"] = d["distill"]["rep_epochs"] = 1
    d["features"].update(device="cpu", cache_dir=str(tmp / "cache"))
    d["features"]["weights"]["require_pretrained"] = False
    d["grid"].update(ks=[0.2], losses=["rep+ce"], seeds=[0], blind=False, modality_teachers=False)
    d["grid"]["timing"]["enabled"] = False
    d["tracking"] = {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": None}
    d["runs_dir"] = str(tmp / "runs")
    return parse_sweep(d, "paper.yaml on CPU")


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest waited-for child (ru_maxrss is KiB on
    Linux; a child forked from this process counts the pages it shared at fork, e.g. the METEOR JVM's launcher)."""
    return (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )


def test_only_the_allowed_keys_differ_from_paper_yaml(tmp_path):
    paper = load_sweep(REPO / "sweeps" / "paper.yaml").flat()
    ours = paper_on_cpu(tmp_path).flat()
    changed = {k for k in paper if paper[k] != ours[k]}
    assert changed and all(k.startswith(ALLOWED) for k in changed), sorted(changed)
    for key in (
        "features.image_size",
        "features.audio_model",
        "features.audio_time_pool",
        "model.hidden",
        "distill.mlp.hidden",
        "training.batch_size",
        "decoding.beam_size",
        "features.batch_frames",
    ):
        assert ours[key] == paper[key]


@pytest.mark.slow
def test_paper_settings_teacher_and_student_on_cpu(tmp_path):
    from avkd import methods
    from avkd.data.load import load_dataset
    from avkd.features.extract import extract_variants
    from avkd.models.captioner import load_checkpoint
    from avkd.sweep import driver
    from avkd.sweep.inputs import build_inputs
    from avkd.sweep.plan import SweepContext, plan_trials
    from avkd.sweep.trial import run_trial
    from trackers import mlflow_tracker as mt
    from trackers import schema

    started = time.time()
    cfg = paper_on_cpu(tmp_path)
    methods.check(cfg, "paper.yaml on CPU")
    dataset = load_dataset(cfg)
    tables = extract_variants(dataset, cfg.features, [1.0, 0.2])
    t_features = time.time() - started
    assert tables[1.0].visual.shape[1] == 2048 and tables[1.0].audio.shape[1] == 512  # Inception-v3 + Cnn10
    assert not any(t.errors for t in tables.values()), {k: t.errors for k, t in tables.items()}

    uri = mt.resolve_tracking_uri(cfg.tracking.uri)
    exp_id = mt.ensure_experiment(uri, cfg.name)
    work = tmp_path / "runs" / cfg.name
    # The trials' inputs as the driver builds them (a SweepInputs: fetch() takes it without Ray).
    sweep_inputs = build_inputs(dataset, cfg.dataset.min_count, tables, driver._stored_attributes(cfg))
    tags = schema.weights_tags(tables[1.0].weights)
    with mt.RunLogger(
        uri, exp_id, "sweep-paper-cpu", {schema.ROLE: "sweep", schema.SWEEP: cfg.name, **tags}, cfg.flat()
    ) as parent:
        ctx = SweepContext(
            config=cfg.to_dict(),
            sweep_file="sweeps/paper.yaml",
            sweep_name=cfg.name,
            tracking_uri=uri,
            experiment_id=exp_id,
            parent_run_id=parent.run_id,
            inputs=sweep_inputs,
            trials_dir=str(work / "trials"),
            cpus_per_trial=cfg.resources.cpu,
            weights=tags[schema.WEIGHTS],
            weights_detail=tags[schema.WEIGHTS_DETAIL],
            dataset_fingerprint=dataset.fingerprint(),
            git_commit="test",
            extraction_errors={},
        )
        (teacher,), _, (student,) = plan_trials(cfg, dataset.fingerprint())
        results = {}
        for spec in (teacher, student):  # the teacher first: the student loads its best.pt
            t0 = time.time()
            results[spec.role] = run_trial({"trial": spec.to_dict()}, ctx.to_dict())
            results[spec.role]["wall_s"] = time.time() - t0

    client = mt.mlflow_client(uri)
    for role, report in results.items():
        run = client.get_run(report["run_id"])
        assert run.info.status == "FINISHED", role
        assert run.data.metrics[schema.TEST_SCORE] >= 0.0
    # Checkpoints live in the tracking store (a trial writes nothing on the driver's disk).
    best = client.download_artifacts(results["student"]["run_id"], "checkpoint/best.pt", str(tmp_path))
    model, _, _ = load_checkpoint(Path(best), "cpu")
    assert model.decoder.config["latent_dim"] == 2048 + 512 and model.decoder.config["hidden"] == 2576
    assert model.decoder.config["embed_dim"] == 2576

    self_mib, children_mib = peak_rss_mib()
    print(
        f"\npaper settings on CPU ({len(dataset.videos)} clips, 299 px, Cnn10 + mean, LM 2576): "
        f"wall {time.time() - started:.1f} s (features {t_features:.1f} s, teacher {results['teacher']['wall_s']:.1f} s, "
        f"student {results['student']['wall_s']:.1f} s); peak RSS {self_mib:.0f} MiB (process), "
        f"{children_mib:.0f} MiB (largest child)"
    )
