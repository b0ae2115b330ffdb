"""reports/build.py on a real MLflow SQLite store populated with known values.

Every expected number below was worked out by hand from the metrics logged in `store`
(SCORE = mean of [mean(BLEU-1..4), METEOR, ROUGE-L, CIDEr, SPICE]; std = sample std over seeds).
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from avkd.config import parse_sweep
from avkd.errors import AvkdError
from reports import build, paper_values
from reports.figures import pareto_front
from trackers import mlflow_tracker as mt
from trackers import schema

PAPER_MD = Path("/work/shared/papers/avkd-captioning-paper.md")
S2 = math.sqrt(2.0)


def M(b1, b2, b3, b4, cider, meteor, rouge, spice=None) -> dict:
    m = {"bleu_1": b1, "bleu_2": b2, "bleu_3": b3, "bleu_4": b4, "cider": cider, "meteor": meteor, "rouge_l": rouge}
    if spice is not None:
        m["spice"] = spice
    return m


def trial(uri, exp_id, parent, role, loss, k, seed, metrics, config_hash=None, fail=False, sweep="demo", **tags):
    tags = {
        schema.ROLE: role,
        schema.LOSS: loss,
        schema.K: str(k),
        schema.SEED: str(seed),
        schema.SWEEP: sweep,
        schema.CONFIG_HASH: config_hash or f"{role}-{loss}-{k}-{seed}",
        schema.WEIGHTS: "random",
        **tags,
    }
    try:
        with mt.RunLogger(uri, exp_id, f"{role}-{loss}-k{k}-s{seed}", tags, parent_run_id=parent) as run:
            run.log_metrics({"train/loss": 1.0}, step=0)
            run.log_metrics({schema.TEST_PREFIX + name: value for name, value in metrics.items()})
            if fail:
                raise RuntimeError("decoder diverged (loss is nan)")
    except RuntimeError:
        pass
    time.sleep(0.003)  # distinct start times (ms resolution) keep "most recent" unambiguous
    return run.run_id


def sweep_logger(uri, exp_id, name, grid):
    cfg = parse_sweep({"name": name, "grid": grid})
    run = mt.RunLogger(
        uri,
        exp_id,
        f"sweep-{name}",
        {schema.ROLE: "sweep", schema.SWEEP: name, schema.GIT_COMMIT: "abc1234"},
        cfg.flat(),
    )
    run.log_dict(cfg.to_dict(), schema.ARTIFACT_CONFIG)
    return cfg, run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    ids: dict = {"uri": uri, "folder": folder}

    # Error cases, created first so that "demo" holds the most recent sweep run.
    exp = mt.ensure_experiment(uri, "empty")
    _, run = sweep_logger(uri, exp, "empty", {"ks": [0.2], "seeds": [0]})
    trial(uri, exp, run.run_id, "teacher", "ce", 1.0, 0, {}, fail=True, sweep="empty")
    run.close()
    exp = mt.ensure_experiment(uri, "badtags")
    _, run = sweep_logger(uri, exp, "badtags", {"ks": [0.2], "seeds": [0]})
    with mt.RunLogger(
        uri,
        exp,
        "untagged",
        {schema.ROLE: "student", schema.LOSS: "rep", schema.CONFIG_HASH: "x"},
        parent_run_id=run.run_id,
    ) as bad:
        bad.log_metrics({"test/bleu_1": 0.5})
    ids["bad_run"] = bad.run_id
    run.close()

    # Missing SPICE (no CoreNLP jars).
    exp = mt.ensure_experiment(uri, "nospice")
    _, run = sweep_logger(uri, exp, "nospice", {"ks": [0.2], "losses": ["rep"], "seeds": [0]})
    trial(uri, exp, run.run_id, "teacher", "ce", 1.0, 0, M(0.80, 0.60, 0.40, 0.20, 0.90, 0.30, 0.60), sweep="nospice")
    trial(uri, exp, run.run_id, "student", "rep", 0.2, 0, M(0.70, 0.50, 0.30, 0.10, 0.50, 0.20, 0.50), sweep="nospice")
    run.close()

    # "demo": an older sweep run, then a resumed one that skipped the trials that had finished.
    exp = ids["exp"] = mt.ensure_experiment(uri, "demo")
    _, old = sweep_logger(uri, exp, "demo", {"ks": [0.2, 0.4, 0.8], "seeds": [0, 1]})
    ids["old_sweep"] = old.run_id
    ids["old_teacher"] = trial(
        uri,
        exp,
        old.run_id,
        "teacher",
        "ce",
        1.0,
        0,
        M(0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1),
        config_hash="teacher-old-config",
    )
    ids["old_rep_0.2_s0"] = trial(
        uri, exp, old.run_id, "student", "rep", 0.2, 0, M(0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
    )
    trial(
        uri, exp, old.run_id, "student", "rep", 0.8, 0, M(0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9)
    )  # not in the new grid
    ids["rc_0.4_s0"] = trial(
        uri, exp, old.run_id, "student", "rep+ce", 0.4, 0, M(0.85, 0.65, 0.45, 0.25, 0.80, 0.32, 0.62, 0.22)
    )
    trial(uri, exp, old.run_id, "student", "rep", 0.4, 1, {}, fail=True)
    old.close()
    time.sleep(0.01)

    cfg, new = sweep_logger(uri, exp, "demo", {"ks": [0.2, 0.4, 0.6], "seeds": [0, 1]})
    ids["sweep"] = new.run_id
    p = new.run_id
    ids["teacher"] = trial(uri, exp, p, "teacher", "ce", 1.0, 0, M(0.80, 0.60, 0.40, 0.20, 0.90, 0.30, 0.60, 0.20))
    ids["rep_0.2"] = [
        trial(uri, exp, p, "student", "rep", 0.2, 0, M(0.70, 0.50, 0.30, 0.10, 0.50, 0.20, 0.50, 0.10)),
        trial(uri, exp, p, "student", "rep", 0.2, 1, M(0.72, 0.54, 0.34, 0.12, 0.60, 0.24, 0.52, 0.14)),
    ]
    ids["rep_0.4"] = [
        trial(uri, exp, p, "student", "rep", 0.4, 0, M(0.74, 0.56, 0.36, 0.14, 0.70, 0.25, 0.55, 0.15)),
        trial(uri, exp, p, "student", "rep", 0.4, 1, M(0.74, 0.56, 0.36, 0.14, 0.80, 0.25, 0.55, 0.15)),
    ]
    ids["rep_0.6_failed"] = trial(uri, exp, p, "student", "rep", 0.6, 0, {}, fail=True)
    ids["rc_0.2"] = [
        trial(uri, exp, p, "student", "rep+ce", 0.2, 0, M(0.82, 0.62, 0.42, 0.22, 0.85, 0.31, 0.61, 0.21)),
        trial(uri, exp, p, "student", "rep+ce", 0.2, 1, M(0.78, 0.58, 0.38, 0.18, 0.95, 0.29, 0.59, 0.19)),
    ]
    ids["rc_0.4_s1"] = trial(
        uri, exp, p, "student", "rep+ce", 0.4, 1, M(0.83, 0.63, 0.43, 0.23, 0.84, 0.30, 0.60, 0.20)
    )
    ids["blind"] = trial(uri, exp, p, "blind", "ce", 1.0, 0, M(0.40, 0.20, 0.10, 0.05, 0.10, 0.15, 0.35, 0.05))
    with mt.RunLogger(uri, exp, "someone's notebook run", {}):  # no schema tags, not a child: ignored
        pass
    timing = {
        "videos": 4,
        "threads": 2,
        "device": "cpu",
        "image_size": 128,
        "weights": {"inception": "random", "cnn14": "random", "fingerprint": "f"},
        "variants": [
            {"k": k, "name": name, "extract_mean_s": em, "extract_std_s": es, "e2e_mean_s": xm, "e2e_std_s": xs}
            for k, name, em, es, xm, xs in [
                (1.0, "teacher", 2.0, 0.2, 2.5, 0.25),
                (0.2, "k0.2", 0.5, 0.05, 1.0, 0.1),
                (0.4, "k0.4", 1.0, 0.1, 1.5, 0.15),
            ]
        ],
    }
    cfg.tracking.uri = uri
    ids["timing"] = mt.log_timing_run(cfg, timing, parent_run_id=p)
    new.close()
    return ids


@pytest.fixture(scope="module")
def built(store):
    """The default report: no experiment named -> the most recent sweep run in the store."""
    index = build.build_report(store["uri"], out=store["folder"] / "out", show=False)
    return index.parent


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_row(got: dict, expected: dict) -> None:
    assert set(got) == set(expected), set(got) ^ set(expected)
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] != "" and float(got[key]) == pytest.approx(value, abs=1e-9), (got["row"], key, got[key])
        else:
            assert got[key] == value, (got["row"], key)


T975_1 = 12.706204736174707  # Student t, 97.5 % point, 1 degree of freedom (two seeds)


def stats(mean: dict, std: dict) -> dict:
    """CSV cells of a row; the 95 % half-width of two seeds is t_{0.975,1} * std / sqrt(2)."""
    out = {"tuned": "false", "diff_ci95_low": "", "diff_ci95_high": "", "distinguishable": ""}
    for column in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider", "meteor", "rouge_l", "spice", "score"):
        out[f"{column}_mean"] = mean.get(column, "")
        out[f"{column}_std"] = std.get(column, "")
        out[f"{column}_ci95"] = "" if std.get(column, "") == "" else T975_1 * std[column] / S2
    return out


SPICE_TERMS = "bleu,meteor,rouge_l,cider,spice"


def test_table1_csv_every_cell(store, built):
    rows = read_csv(built / "table1.csv")
    assert built.name == "demo"
    same = lambda v: {c: v for c in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider", "meteor", "rouge_l", "spice")}
    expected = [
        {
            "row": "L_rep student (k = 0.2)",
            "role": "student",
            "loss": "rep",
            "k": "0.2",
            "n": "2",
            "seeds": "0 1",
            **stats(
                {
                    "bleu_1": 0.71,
                    "bleu_2": 0.52,
                    "bleu_3": 0.32,
                    "bleu_4": 0.11,
                    "cider": 0.55,
                    "meteor": 0.22,
                    "rouge_l": 0.51,
                    "spice": 0.12,
                    "score": 0.363,
                },
                {
                    "bleu_1": 0.02 / S2,
                    "bleu_2": 0.04 / S2,
                    "bleu_3": 0.04 / S2,
                    "bleu_4": 0.02 / S2,
                    "cider": 0.1 / S2,
                    "meteor": 0.04 / S2,
                    "rouge_l": 0.02 / S2,
                    "spice": 0.04 / S2,
                    "score": 0.046 / S2,
                },
            ),
            "diff_pct": 27.4,
            "run_ids": " ".join(store["rep_0.2"]),
            "missing": "",
        },
        {
            "row": "L_rep student (k = 0.4)",
            "role": "student",
            "loss": "rep",
            "k": "0.4",
            "n": "2",
            "seeds": "0 1",
            **stats(
                {
                    "bleu_1": 0.74,
                    "bleu_2": 0.56,
                    "bleu_3": 0.36,
                    "bleu_4": 0.14,
                    "cider": 0.75,
                    "meteor": 0.25,
                    "rouge_l": 0.55,
                    "spice": 0.15,
                    "score": 0.43,
                },
                {**same(0.0), "cider": 0.1 / S2, "score": 0.02 / S2},
            ),
            "diff_pct": 14.0,
            "run_ids": " ".join(store["rep_0.4"]),
            "missing": "",
        },
        {
            "row": "L_rep student (k = 0.6)",
            "role": "student",
            "loss": "rep",
            "k": "0.6",
            "n": "0",
            "seeds": "",
            **stats({}, {}),
            "diff_pct": "",
            "run_ids": "",
            "missing": f"seed 0 FAILED {store['rep_0.6_failed']}",
        },
        {
            "row": "L_rep + L_CE student (k = 0.2)",
            "role": "student",
            "loss": "rep+ce",
            "k": "0.2",
            "n": "2",
            "seeds": "0 1",
            **stats(
                {
                    "bleu_1": 0.80,
                    "bleu_2": 0.60,
                    "bleu_3": 0.40,
                    "bleu_4": 0.20,
                    "cider": 0.90,
                    "meteor": 0.30,
                    "rouge_l": 0.60,
                    "spice": 0.20,
                    "score": 0.5,
                },
                {
                    "bleu_1": 0.04 / S2,
                    "bleu_2": 0.04 / S2,
                    "bleu_3": 0.04 / S2,
                    "bleu_4": 0.04 / S2,
                    "cider": 0.1 / S2,
                    "meteor": 0.02 / S2,
                    "rouge_l": 0.02 / S2,
                    "spice": 0.02 / S2,
                    "score": 0.0,
                },
            ),
            "diff_pct": 0.0,
            "run_ids": " ".join(store["rc_0.2"]),
            "missing": "",
        },
        {
            "row": "L_rep + L_CE student (k = 0.4)",
            "role": "student",
            "loss": "rep+ce",
            "k": "0.4",
            "n": "2",
            "seeds": "0 1",  # seed 0 comes from the earlier sweep run (resume), seed 1 from this one
            **stats(
                {
                    "bleu_1": 0.84,
                    "bleu_2": 0.64,
                    "bleu_3": 0.44,
                    "bleu_4": 0.24,
                    "cider": 0.82,
                    "meteor": 0.31,
                    "rouge_l": 0.61,
                    "spice": 0.21,
                    "score": 0.498,
                },
                {**same(0.02 / S2), "cider": 0.04 / S2, "score": 0.008 / S2},
            ),
            "diff_pct": 0.4,
            "run_ids": f"{store['rc_0.4_s0']} {store['rc_0.4_s1']}",
            "missing": "",
        },
        {
            "row": "Teacher",
            "role": "teacher",
            "loss": "ce",
            "k": "1",
            "n": "1",
            "seeds": "0",
            **stats(
                {
                    "bleu_1": 0.80,
                    "bleu_2": 0.60,
                    "bleu_3": 0.40,
                    "bleu_4": 0.20,
                    "cider": 0.90,
                    "meteor": 0.30,
                    "rouge_l": 0.60,
                    "spice": 0.20,
                    "score": 0.5,
                },
                {},
            ),
            "diff_pct": 0.0,
            "run_ids": store["teacher"],
            "missing": "",
        },
        {
            "row": "Blind baseline †",
            "role": "blind",
            "loss": "ce",
            "k": "1",
            "n": "1",
            "seeds": "0",
            **stats(
                {
                    "bleu_1": 0.40,
                    "bleu_2": 0.20,
                    "bleu_3": 0.10,
                    "bleu_4": 0.05,
                    "cider": 0.10,
                    "meteor": 0.15,
                    "rouge_l": 0.35,
                    "spice": 0.05,
                    "score": 0.1675,
                },
                {},
            ),
            "diff_pct": 66.5,
            "run_ids": store["blind"],
            "missing": "",
        },
    ]
    assert [r["row"] for r in rows] == [e["row"] for e in expected]  # the paper's order
    for got, exp in zip(rows, expected):
        check_row(got, {**exp, "score_terms": SPICE_TERMS})


def test_table1_markdown_bold_marks_and_notes(store, built):
    md = (built / "table1.md").read_text()
    lines = {
        line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "---" not in line
    }
    rc04 = lines["L_rep + L_CE student (k = 0.4)"]
    # ± the 95 % half-width: two seeds 0.02 apart: std 0.0141, t_{0.975,1} * 0.0141 / sqrt(2) = 0.127
    for bold in (
        "**0.840 ± 0.127**",
        "**0.640 ± 0.127**",
        "**0.440 ± 0.127**",
        "**0.240 ± 0.127**",
        "**0.310 ± 0.127**",
        "**0.610 ± 0.127**",
        "**0.210 ± 0.127**",
    ):
        assert bold in rc04
    assert "**0.900**" in lines["Teacher"] and "**0.500**" in lines["Teacher"]  # ties are all bold
    assert "**0.900 ± 0.635**" in lines["L_rep + L_CE student (k = 0.2)"]
    assert "**0.500 ± 0.000**" in lines["L_rep + L_CE student (k = 0.2)"]
    assert md.count("**") == 2 * 11  # 7 best cells of rep+ce k=0.4, CIDEr and SCORE twice each
    assert "| 0.363 ± 0.292 | 27.40 | - | 2 |" in lines["L_rep student (k = 0.2)"]  # no per-video scores: no Diff CI
    assert lines["L_rep student (k = 0.6)"].count("| - ") == 11  # FAILED: every value cell empty
    assert "Blind baseline †" in lines
    assert (
        f"Missing: student loss=rep k=0.6 seed 0 is FAILED (config hash student-rep-0.6-0, run "
        f"{store['rep_0.6_failed']}): RuntimeError: decoder diverged (loss is nan)."
    ) in md
    assert f"teacher seed 0: superseded by the more recent run {store['teacher']}" in md
    assert "a true percentage" in md and "0.008 means 0.8 %" in md
    assert "SCORE = mean of [mean(BLEU-1..4), METEOR, ROUGE-L, CIDEr, SPICE]" in md
    assert "Table I as published" not in md  # only with --paper


def test_table2_csv_every_cell(built):
    rows = read_csv(built / "table2.csv")
    expected = [
        {
            "row": "Student (k = 0.2)",
            "k": "0.2",
            "extract_mean_s": 0.5,
            "extract_std_s": 0.05,
            "extract_reduction_pct": 75.0,
            "e2e_mean_s": 1.0,
            "e2e_std_s": 0.1,
            "e2e_reduction_pct": 60.0,
        },
        {
            "row": "Student (k = 0.4)",
            "k": "0.4",
            "extract_mean_s": 1.0,
            "extract_std_s": 0.1,
            "extract_reduction_pct": 50.0,
            "e2e_mean_s": 1.5,
            "e2e_std_s": 0.15,
            "e2e_reduction_pct": 40.0,
        },
        {
            "row": "Teacher",
            "k": "1",
            "extract_mean_s": 2.0,
            "extract_std_s": 0.2,
            "extract_reduction_pct": 0.0,
            "e2e_mean_s": 2.5,
            "e2e_std_s": 0.25,
            "e2e_reduction_pct": 0.0,
        },
    ]
    assert len(rows) == len(expected)
    for got, exp in zip(rows, expected):
        check_row(got, exp)
    md = (built / "table2.md").read_text()
    assert "| Student (k = 0.2) | 0.500 ± 0.050 | 75.0 | 1.000 ± 0.100 | 60.0 |" in md
    assert "4 videos, 2 threads, device cpu, frames 128px, random weights" in md


def test_latex_uses_booktabs(built):
    tex = (built / "table1.tex").read_text()
    for needle in (
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\textbf{0.840} $\pm$ 0.127",
        r"$\mathcal{L}_{rep} + \mathcal{L}_{CE}$ Student ($k = 0.4$)",
        r"Blind baseline$^\dagger$",
        r"Diff (\%)",
    ):
        assert needle in tex
    assert tex.count(r"\\") == 8  # header + 7 rows
    assert r"\textasciicircum" not in tex and "±" not in tex  # all symbols escaped to LaTeX
    t2 = (built / "table2.tex").read_text()
    assert r"Student (k = 0.2) & 0.500 $\pm$ 0.050 & 75.0 & 1.000 $\pm$ 0.100 & 60.0 \\" in t2


def test_figures_png_and_svg(built):
    for name in ("score_cider_vs_k", "time_vs_k", "score_vs_time"):
        png, svg = built / f"{name}.png", built / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_index_html_is_self_contained(store, built):
    page = (built / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "Table I" in page and "Table II" in page and page.count("<table") == 3  # Table I, Table II, runs
    assert "<b>0.840 ± 0.127</b>" in page
    # nothing is fetched from elsewhere: no external scripts, styles, fonts or images
    assert not re.search(r"<script|<link|@import|url\(|src=\"(?!data:)", page)
    # links open MLflow's classic runs view (not its GenAI pages)
    link = f'href="http://127.0.0.1:5000/#/experiments/{store["exp"]}/runs/{store["teacher"]}?workflowType=machine_learning"'
    assert link in page
    assert (
        f'href="http://127.0.0.1:5000/#/experiments/{store["exp"]}/runs?viewStateShareKey=avkd-trials&amp;workflowType=machine_learning"'
        in page
    )
    assert "name: demo" in page  # the sweep's config.yaml
    assert "abc1234" in page  # git commit of the sweep run
    assert_well_formed(page)


class _TagChecker(HTMLParser):
    VOID = {"meta", "br", "img", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def assert_well_formed(page: str) -> None:
    """Every element is closed in order (what a browser needs to lay the page out as written)."""
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors[:5], checker.stack)


def test_paper_values_match_the_paper():
    if not PAPER_MD.is_file():
        pytest.skip(f"{PAPER_MD} is not on this machine")
    text = re.sub(r"</?b>", "", PAPER_MD.read_text())
    table1, table2 = {}, {}
    for line in text.splitlines():
        label, *values = line.split("\t")
        m = re.fullmatch(r"(.*)Student \(k = ([0-9.]+)\)|Teacher", label)
        if not m or len(values) not in (2, 10):
            continue
        k = float(m.group(2)) if m.group(2) else 1.0
        if len(values) == 10:
            loss = "ce" if label == "Teacher" else ("rep+ce" if "CE" in m.group(1) else "rep")
            table1[(loss, k)] = tuple(float(v) for v in values)
        else:
            table2[k] = (float(values[0]), float(values[1]))
    assert table1 == paper_values.TABLE1
    assert table2 == paper_values.TABLE2


def test_script_with_paper_values(store, tmp_path):
    """`python reports/build.py ... --paper` as a script: rich tables on the terminal, paper columns in the files."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(mt.REPO_ROOT / "reports" / "build.py"),
            "--tracking-uri",
            store["uri"],
            "--experiment",
            "demo",
            "--out",
            str(out),
            "--paper",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Table I - sweep demo" in proc.stdout and "Table II" in proc.stdout
    assert "Ours next to the paper (Table I, MSR-VTT)" in proc.stdout
    assert "…" not in proc.stdout  # no cut cells: wide tables are printed whole outside a terminal
    folder = out / "demo"
    rows = {r["row"]: r for r in read_csv(folder / "table1.csv")}
    teacher = rows["Teacher"]
    assert [float(teacher[f"paper_{c}"]) for c in paper_values.TABLE1_COLUMNS[:-1]] + [
        float(teacher["paper_diff_published"])
    ] == list(paper_values.TABLE1[("ce", 1.0)])
    assert float(rows["L_rep student (k = 0.2)"]["paper_score"]) == 0.321
    assert rows["L_rep + L_CE student (k = 0.4)"]["paper_diff_published"] == "0.019"
    assert rows["Blind baseline †"]["paper_score"] == ""  # the paper has no blind baseline
    t2 = {r["row"]: r for r in read_csv(folder / "table2.csv")}
    assert (t2["Student (k = 0.2)"]["paper_time_s"], t2["Student (k = 0.2)"]["paper_diff_pct"]) == ("2.77", "79.1")
    assert (t2["Teacher"]["paper_time_s"], t2["Teacher"]["paper_diff_pct"]) == ("13.28", "0.0")
    md = (folder / "table1.md").read_text()
    assert "## Ours next to the paper (Table I, MSR-VTT)" in md
    # side by side: ours, the paper's value and ours - paper for each metric (a k the sweep did not run: '-')
    assert "| L_rep + L_CE student (k = 0.4) | 0.840 | 0.774 | +0.066 | 0.640 | 0.618 | +0.022 |" in md
    assert "| L_rep + L_CE student (k = 0.6) | - | 0.769 | - | - | 0.616 | - |" in md
    # Diff: ours as a percentage next to the paper's fraction shown as a percentage (0.019 -> 1.90)
    assert "| 0.40 | 1.90 | -1.50 |" in md
    page = (folder / "index.html").read_text()
    assert "Ours next to the paper" in page and "Table I as published" not in page
    assert_well_formed(page)


def test_missing_spice(store):
    report = build.load_report(store["uri"], experiment="nospice")
    assert report.table1.terms == ["bleu", "meteor", "rouge_l", "cider"]
    index = build.build_report(store["uri"], experiment="nospice", out=store["folder"] / "out", show=False)
    rows = read_csv(index.parent / "table1.csv")
    assert [r["row"] for r in rows] == ["L_rep student (k = 0.2)", "Teacher"]
    student, teacher = rows
    assert student["spice_mean"] == student["spice_std"] == teacher["spice_mean"] == ""
    assert float(teacher["score_mean"]) == pytest.approx(0.575)  # (.5 + .3 + .6 + .9) / 4
    assert float(student["score_mean"]) == pytest.approx(0.4)  # (.4 + .2 + .5 + .5) / 4
    assert float(student["diff_pct"]) == pytest.approx(100 * 0.175 / 0.575)
    assert teacher["score_terms"] == "bleu,meteor,rouge_l,cider"
    md = (index.parent / "table1.md").read_text()
    assert "| **0.900** | **0.300** | **0.600** | - | **0.575** | 0.00 | - | 1 |" in md
    assert "SCORE here averages [mean(BLEU-1..4), METEOR, ROUGE-L, CIDEr] instead of the paper's" in md
    assert not (index.parent / "table2.csv").exists()  # no timing run in this experiment
    assert "No FINISHED timing run" in index.read_text()


def test_older_sweep_run_sees_only_what_existed_then(store):
    report = build.load_report(store["uri"], sweep_run_id=store["old_sweep"])
    rows = {r.label: r for r in report.table1.rows}
    assert list(rows) == [
        "L_rep student (k = 0.2)",
        "L_rep student (k = 0.4)",
        "L_rep student (k = 0.8)",
        "L_rep + L_CE student (k = 0.4)",
        "Teacher",
    ]
    assert [t.run_id for t in rows["L_rep student (k = 0.2)"].trials] == [store["old_rep_0.2_s0"]]
    assert [t.run_id for t in rows["Teacher"].trials] == [store["old_teacher"]]
    assert rows["L_rep student (k = 0.4)"].n == 0 and rows["L_rep student (k = 0.4)"].missing[0].status == "FAILED"
    assert report.table2 is None  # the timing run came later


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"experiment": "nope"}, "no experiment 'nope' in .* \\(known: .*demo"),
        (
            {"experiment": "empty"},
            "experiment 'empty': no FINISHED teacher/student/blind runs .* \\(1 trials did not finish\\)",
        ),
        ({"experiment": "badtags"}, "runs missing the schema's tags .*: {bad_run} \\(avkd.k, avkd.seed\\)"),
        ({"sweep_run_id": "{teacher}"}, "run {teacher} is not a sweep run \\(avkd.role='teacher'\\)"),
        ({"sweep_run_id": "0123456789abcdef"}, "no run '0123456789abcdef'"),
    ],
)
def test_clear_errors(store, kwargs, message):
    kwargs = {k: v.format(**store) for k, v in kwargs.items()}
    with pytest.raises(AvkdError, match=message.format(**store)):
        build.load_report(store["uri"], **kwargs)


def test_no_database_is_an_error_not_a_new_file(tmp_path, capsys):
    db = tmp_path / "missing.db"
    assert build.main(["--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: no MLflow database at {db} (run a sweep first, or pass --tracking-uri)"
    )
    assert not db.exists()


def test_pareto_front():
    points = [(1.0, 0.30), (2.0, 0.35), (1.5, 0.29), (3.0, 0.35), (0.5, 0.10), (2.5, 0.40)]
    assert pareto_front(points) == [(0.5, 0.10), (1.0, 0.30), (2.0, 0.35), (2.5, 0.40)]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (chromium not on PATH)")
def test_index_html_renders_in_headless_chromium(built, tmp_path):
    index = built / "index.html"
    proc = subprocess.run(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            index.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # chromium's caches stay out of ~
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Table I" in proc.stdout and proc.stdout.count("<img") == 3
    console_errors = [
        line
        for line in proc.stderr.splitlines()
        if "CONSOLE" in line and ("error" in line.lower() or "uncaught" in line.lower())
    ]
    failed_loads = [line for line in proc.stderr.splitlines() if "net::ERR" in line]
    assert not console_errors and not failed_loads, console_errors + failed_loads
