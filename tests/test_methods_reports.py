"""The report with the methods: method rows in Table I, decoding and early-exit columns in Table II,
and the SCORE-vs-decoding-time figure, from a real MLflow SQLite store with hand-made values."""

from __future__ import annotations

import csv

import pytest

from avkd.config import parse_sweep
from reports import build
from trackers import mlflow_tracker as mt
from trackers import schema

METRICS = tuple(m for m in schema.TEST_METRICS if m != schema.SPICE)


def metrics(v: float) -> dict[str, float]:
    """Every metric = v, so the SCORE (no SPICE) is v too."""
    return {m: v for m in METRICS}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mreports")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    exp = mt.ensure_experiment(uri, "methods")
    cfg = parse_sweep(
        {
            "name": "methods",
            "grid": {"ks": [0.2], "losses": ["rep+ce", "multi_stage"]},
            "distill": {
                "losses": {"rep+ce": [{"name": "ce"}], "multi_stage": [{"name": "ce"}]},
                "methods": {"multi_stage": {"mentor_k": 0.6}},
            },
        }
    )
    sweep = mt.RunLogger(uri, exp, "sweep", {schema.ROLE: "sweep", schema.SWEEP: "methods"}, cfg.flat())
    # (role, loss, k, SCORE, decode s/video, {threshold: (SCORE, decode s/video)})
    trials = [
        ("teacher", "ce", 1.0, 0.50, 0.010, {0.9: (0.50, 0.008), 0.5: (0.40, 0.006)}),
        ("student", "rep+ce", 0.2, 0.40, 0.020, {0.9: (0.38, 0.010), 0.5: (0.30, 0.005)}),
        ("student", "multi_stage", 0.2, 0.44, 0.030, {0.9: (0.44, 0.020), 0.5: (0.33, 0.010)}),
        ("blind", "ce", 1.0, 0.10, 0.010, {0.5: (0.10, 0.001)}),  # not in the decoding columns
        ("guide", "multi_stage", 0.6, 0.9, 0.1, {}),
    ]  # the mentor: not a Table I row
    for role, loss, k, score, decode, ee in trials:
        tags = {
            schema.ROLE: role,
            schema.LOSS: loss,
            schema.K: str(k),
            schema.SEED: "0",
            schema.SWEEP: "methods",
            schema.CONFIG_HASH: f"{role}-{loss}-{k}",
            schema.WEIGHTS: "random",
        }
        with mt.RunLogger(uri, exp, f"{role}-{loss}", tags, parent_run_id=sweep.run_id) as run:
            values = {schema.TEST_PREFIX + m: v for m, v in metrics(score).items()}
            values[schema.TEST_PREFIX + schema.DECODE_S_PER_VIDEO] = decode
            for t, (s, d) in ee.items():
                values.update({schema.early_exit_metric(t, m): v for m, v in metrics(s).items()})
                values[schema.early_exit_metric(t, schema.DECODE_S_PER_VIDEO)] = d
            run.log_metrics(values)
    timing = {
        "videos": 4,
        "threads": 2,
        "device": "cpu",
        "image_size": 128,
        "weights": {"inception": "random", "cnn14": "random", "fingerprint": "f"},
        "variants": [
            {"k": k, "name": n, "extract_mean_s": e, "extract_std_s": 0.0, "e2e_mean_s": e, "e2e_std_s": 0.0}
            for k, n, e in [(1.0, "teacher", 2.0), (0.2, "k0.2", 0.5)]
        ],
    }
    cfg.tracking.uri = uri
    mt.log_timing_run(cfg, timing, parent_run_id=sweep.run_id)
    sweep.close()
    return build.build_report(uri, experiment="methods", out=folder / "out", show=False).parent


def rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def test_method_rows_follow_rep_ce_and_guides_stay_out(built):
    t1 = rows(built / "table1.csv")
    assert list(t1) == [
        "L_rep + L_CE student (k = 0.2)",
        "multi_stage student (k = 0.2)",
        "Teacher",
        "Blind baseline †",
    ]
    assert float(t1["multi_stage student (k = 0.2)"]["score_mean"]) == pytest.approx(0.44)


def test_table2_decoding_and_early_exit_columns(built):
    t2 = rows(built / "table2.csv")
    student, teacher = t2["Student (k = 0.2)"], t2["Teacher"]
    assert float(student["decode_mean_s"]) == pytest.approx(0.025)  # mean of rep+ce and multi_stage
    assert float(student["ee0.9_decode_s"]) == pytest.approx(0.015)
    # SCORE drop: rep+ce (0.40 -> 0.38) 5 %, multi_stage (0.44 -> 0.44) 0 %: mean 2.5 %
    assert float(student["ee0.9_score_drop_pct"]) == pytest.approx(2.5)
    assert float(student["ee0.5_score_drop_pct"]) == pytest.approx((25.0 + 25.0) / 2)
    assert float(teacher["decode_mean_s"]) == pytest.approx(0.010)
    assert float(teacher["ee0.5_decode_s"]) == pytest.approx(0.006) and float(
        teacher["ee0.5_score_drop_pct"]
    ) == pytest.approx(20.0)
    md = (built / "table2.md").read_text()
    assert "EE 0.9: decoding (s/video) | EE 0.9: SCORE drop (%)" in md
    assert "| Teacher | 2.000 ± 0.000 | 0.0 | 2.000 ± 0.000 | 0.0 | 0.0100 | 0.0080 | 0.0 | 0.0060 | 20.0 |" in md
    assert "SCORE drop (%) = 100 × (SCORE_full − SCORE_t) / SCORE_full" in md


def test_early_exit_figure_in_the_page(built):
    assert (built / "score_vs_decode_time.png").stat().st_size > 10_000
    page = (built / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "Early exit: SCORE vs decoding time" in page
