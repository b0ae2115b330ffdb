"""Table II benchmark: per-variant timing on real test clips, result layout, CLI JSON output."""

import json
from argparse import Namespace

import pytest
import torch
import yaml

from avkd.features.bench import cmd_bench, compare_audio_models, measure_throughput, print_table, run_benchmark


@pytest.fixture(scope="module")
def cfg(tiny_config):
    return tiny_config(name="bench-test", grid={"timing": {"videos": 2, "warmup": 1, "threads": 1, "seed": 0}})


def test_run_benchmark_layout_and_frame_counts(cfg):
    threads = torch.get_num_threads()
    r = run_benchmark(cfg)
    assert torch.get_num_threads() == threads  # restored
    assert r["videos"] == 2 and r["threads"] == 1 and r["device"] == "cpu" and r["image_size"] == 75
    assert r["weights"]["inception"] == "random" and r["weights"]["fingerprint"]
    assert r["audio_model"] == "cnn14" and r["weights"]["cnn14"] == "random" and r["audio_time_pool"] == "panns"
    assert [v["k"] for v in r["variants"]] == [1.0, 0.6, 0.2]
    teacher, k06, k02 = r["variants"]
    assert teacher["name"] == "teacher" and teacher["extract_reduction_pct"] == 0.0
    for v in r["variants"]:
        assert 0 < v["extract_mean_s"] < v["e2e_mean_s"] and v["extract_std_s"] >= 0
        assert v["extract_reduction_pct"] == pytest.approx(100 * (1 - v["extract_mean_s"] / teacher["extract_mean_s"]))
        assert v["e2e_reduction_pct"] == pytest.approx(100 * (1 - v["e2e_mean_s"] / teacher["e2e_mean_s"]))
        # CPU seconds of the same work (an extra column): spent by this process, so > 0, and its reduction
        # is computed against the teacher's CPU seconds
        assert v["e2e_cpu_mean_s"] > 0
        assert v["e2e_cpu_reduction_pct"] == pytest.approx(100 * (1 - v["e2e_cpu_mean_s"] / teacher["e2e_cpu_mean_s"]))
    # the students really look at fewer frames (ceil(k*N)) and shorter spectrograms
    assert teacher["frames_mean"] > k06["frames_mean"] > k02["frames_mean"] >= 1
    assert k02["frames_mean"] <= 0.2 * teacher["frames_mean"] + 1
    assert teacher["audio_frames_mean"] > k06["audio_frames_mean"] > k02["audio_frames_mean"] >= 32


def test_cmd_bench_writes_json(cfg, tmp_path):
    sweep = tmp_path / "bench.yaml"
    sweep.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "t.json"
    assert cmd_bench(Namespace(sweep=str(sweep), videos=1, json=str(out), no_mlflow=True))["videos"] == 1
    data = json.loads(out.read_text())
    assert data["videos"] == 1 and len(data["variants"]) == 3
    assert not (tmp_path / "mlflow.db").exists()


def test_throughput_measurement(cfg):
    r = measure_throughput(cfg, videos=2, repeats=1)
    assert r["frames"] > 0 and r["pipeline_fps"] > 0 and r["bare_forward_fps"] > 0
    assert r["ratio"] == pytest.approx(r["pipeline_fps"] / r["bare_forward_fps"])


def test_table_title_names_the_audio_model(capsys):
    variant = {
        "k": 1.0,
        "name": "teacher",
        "frames_mean": 30.0,
        "audio_frames_mean": 201.0,
        "extract_mean_s": 0.5,
        "extract_std_s": 0.01,
        "extract_reduction_pct": 0.0,
        "e2e_mean_s": 0.6,
        "e2e_std_s": 0.02,
        "e2e_reduction_pct": 0.0,
    }
    result = {
        "videos": 3,
        "threads": 2,
        "device": "cpu",
        "image_size": 128,
        "audio_model": "cnn10",
        "weights": {"inception": "random", "cnn10": "pretrained", "fingerprint": "f"},
        "variants": [variant],
    }
    print_table(result)
    out = " ".join(capsys.readouterr().out.split())
    assert "Inception-v3 + Cnn10" in out and "cnn10=pretrained" in out and "Cnn14" not in out
    assert "CPU" not in out  # a result written before the CPU column prints without it
    print_table({**result, "variants": [{**variant, "e2e_cpu_mean_s": 0.75, "e2e_cpu_reduction_pct": 0.0}]})
    out = " ".join(capsys.readouterr().out.split())
    assert "CPU" in out and "0.750" in out


def test_compare_audio_models_times_both_backbones_on_the_same_clips(cfg):
    r = compare_audio_models(cfg, videos=2)
    assert r["threads"] == 1 and r["clips"] >= 1
    assert [(row["audio_model"], row["k"]) for row in r["rows"]] == [
        ("cnn10", 1.0),
        ("cnn10", 0.2),
        ("cnn14", 1.0),
        ("cnn14", 0.2),
    ]
    assert all(row["mean_s"] > 0 for row in r["rows"])
    params = {row["audio_model"]: row["params_m"] for row in r["rows"]}
    assert params["cnn10"] < params["cnn14"] / 5  # ~6.3 M (1.1 M of them the STFT kernels) vs ~81.8 M
