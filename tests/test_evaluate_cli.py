"""`python -m avkd evaluate`: metrics table + JSON, and one-line errors for bad files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avkd.cli import main

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    {"video_id": "video1", "caption": "a man is playing a guitar", "sen_id": 0},
    {"video_id": "video1", "caption": "someone plays the guitar", "sen_id": 1},
    {"video_id": "video2", "caption": "a dog runs in the park", "sen_id": 2},
    {"video_id": "video2", "caption": "the brown dog is running", "sen_id": 3},
]
PREDS = [
    {"video_id": "video1", "caption": "a man plays a guitar"},
    {"video_id": "video2", "caption": "a dog is running"},
]


def write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.fixture
def files(tmp_path):
    refs = write(
        tmp_path / "refs.json", {"videos": [{"video_id": "video1"}, {"video_id": "video2"}], "sentences": SENTENCES}
    )
    preds = write(tmp_path / "preds.json", PREDS)
    return tmp_path, refs, preds


def test_evaluate_prints_table_and_writes_json(files, capsys, monkeypatch):
    monkeypatch.delenv("AVKD_SPICE_JARS", raising=False)
    tmp, refs, preds = files
    out = tmp / "sub" / "metrics.json"
    assert main(["evaluate", "--refs", refs, "--preds", preds, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cider" in printed and "SCORE = mean of bleu, meteor, rouge_l, cider" in printed
    assert "SPICE not available" in printed
    result = json.loads(out.read_text())
    assert list(result) == [
        "bleu_1",
        "bleu_2",
        "bleu_3",
        "bleu_4",
        "meteor",
        "rouge_l",
        "cider",
        "spice",
        "score",
        "score_metrics",
    ]
    assert result["spice"] is None
    assert result["score_metrics"] == ["bleu", "meteor", "rouge_l", "cider"]
    bleu = sum(result[f"bleu_{n}"] for n in range(1, 5)) / 4
    assert result["score"] == pytest.approx((bleu + result["meteor"] + result["rouge_l"] + result["cider"]) / 4)
    assert 0 < result["bleu_1"] <= 1 and result["cider"] > 0


def test_exact_predictions_give_bleu_one(files, tmp_path):
    _, refs, _ = files
    preds = write(
        tmp_path / "exact.json",
        [
            {"video_id": "video1", "caption": "A man is playing a guitar."},
            {"video_id": "video2", "caption": "a dog runs in the park"},
        ],
    )
    out = tmp_path / "m.json"
    assert main(["evaluate", "--refs", refs, "--preds", preds, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["bleu_4"] == pytest.approx(1.0, abs=1e-6)


BAD_PREDS = {
    "missing file": (None, "no such predictions file"),
    "empty": ("", "empty file"),
    "invalid json": ("[{", "invalid JSON"),
    "not a list": ({"video1": "a man"}, "expected a JSON list"),
    "empty list": ([], "no predictions"),
    "malformed entry": ([{"video_id": "video1"}], "entry [0] needs string 'video_id' and 'caption'"),
    "duplicate": (PREDS + [PREDS[0]], "duplicate prediction for video 'video1'"),
    "unknown video": (PREDS + [{"video_id": "video9", "caption": "x"}], "unknown video 'video9'"),
    "missing prediction": (PREDS[:1], "no prediction for video 'video2'"),
}


@pytest.mark.parametrize("case", list(BAD_PREDS))
def test_bad_predictions_are_one_line_errors(case, files, capsys):
    tmp, refs, _ = files
    content, message = BAD_PREDS[case]
    preds = str(tmp / "nope.json") if content is None else write(tmp / "bad.json", content)
    assert main(["evaluate", "--refs", refs, "--preds", preds]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message in err and Path(preds).name in err


BAD_REFS = {
    "not msrvtt": ({"videos": []}, "not MSR-VTT format"),
    "empty sentences": ({"sentences": []}, "'sentences' is empty"),
    "bad sentence": ({"sentences": [{"video_id": 3, "caption": "x"}]}, "sentences[0] needs string"),
}


@pytest.mark.parametrize("case", list(BAD_REFS))
def test_bad_references_are_one_line_errors(case, files, capsys):
    tmp, _, preds = files
    content, message = BAD_REFS[case]
    refs = write(tmp / "badrefs.json", content)
    assert main(["evaluate", "--refs", refs, "--preds", preds]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err and "badrefs.json" in err


def test_real_entry_point_exit_code(files):
    tmp, refs, _ = files
    preds = write(tmp / "dup.json", PREDS + [PREDS[1]])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "avkd", "evaluate", "--refs", refs, "--preds", preds],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {preds}: duplicate prediction for video 'video2' (entry [2])"]
