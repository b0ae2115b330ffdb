"""`python -m avkd data check`: counts per split, problem videos, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avkd.cli import main
from avkd.data import synth
from avkd.data.check import MAX_LISTED, check_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return synth.generate(tmp_path_factory.mktemp("check") / "synth", videos=12, seed=0)


@pytest.fixture
def broken(corpus, tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy with four broken train videos (never the clip without audio)."""
    root = tmp_path / "broken"
    shutil.copytree(corpus, root)
    train_val = json.loads((root / synth.TRAIN_VAL_FILE).read_text())["videos"]
    victims = [v["video_id"] for v in train_val if v["split"] == "train" and v["avkd"]["has_audio"]][:4]
    videos = root / "videos"
    (videos / f"{victims[0]}.mp4").unlink()
    (videos / f"{victims[1]}.mp4").write_bytes(b"")
    data = (videos / f"{victims[2]}.mp4").read_bytes()
    (videos / f"{victims[2]}.mp4").write_bytes(data[: len(data) // 3])
    (videos / f"{victims[3]}.mp4").write_text("not a video\n")
    return root, dict(zip(("missing", "zero", "truncated", "text"), victims))


def test_clean_corpus(corpus):
    report = check_dataset(corpus)
    assert [report["splits"][s]["videos"] for s in ("train", "validate", "test")] == [7, 2, 3]
    assert all(c["captions"] == 20 * c["videos"] for c in report["splits"].values())
    assert all(
        c["usable"] == c["videos"] and c["missing_files"] == c["undecodable"] == 0 for c in report["splits"].values()
    )
    assert len(report["no_audio"]) == 1 and report["problems"] == []


def test_broken_files_are_counted_and_listed(broken):
    root, victims = broken
    report = check_dataset(root)
    train = report["splits"]["train"]
    assert (train["videos"], train["missing_files"], train["undecodable"], train["usable"]) == (7, 1, 3, 3)
    assert sum(c["no_audio"] for c in report["splits"].values()) == 1
    problems = {p["video_id"]: p for p in report["problems"]}
    assert problems[victims["missing"]]["kind"] == "missing_video_file"
    assert problems[victims["zero"]]["reason"] == "empty file (0 bytes)"
    assert "truncated" in problems[victims["truncated"]]["reason"]
    assert "not a readable video" in problems[victims["text"]]["reason"]
    assert {p["kind"] for p in report["problems"]} == {"missing_video_file", "undecodable"}


def test_cli_prints_table_and_writes_json(broken, tmp_path, capsys):
    root, victims = broken
    out = tmp_path / "reports" / "check.json"
    assert main(["data", "check", str(root), "--json", str(out)]) == 0  # problem videos are not fatal
    printed = capsys.readouterr().out
    assert "train" in printed and "undecodable" in printed and "4 problem(s)" in printed
    for vid in victims.values():
        assert vid in printed
    assert json.loads(out.read_text())["splits"]["train"]["undecodable"] == 3


def test_problem_list_is_capped(corpus, tmp_path, capsys):
    root = tmp_path / "many"
    shutil.copytree(corpus, root)
    ann = json.loads((root / synth.TEST_FILE).read_text())
    for i in range(25):  # declared, captioned, but no file
        ann["videos"].append({"video_id": f"ghost{i}", "split": "test"})
        ann["sentences"].append({"video_id": f"ghost{i}", "caption": "a ghost", "sen_id": 10_000 + i})
    (root / synth.TEST_FILE).write_text(json.dumps(ann))
    assert main(["data", "check", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "25 problem(s)" in printed and f"... and {25 - MAX_LISTED} more" in printed
    assert check_dataset(root)["splits"]["test"]["missing_files"] == 25


def test_unusable_annotations_exit_2(corpus, tmp_path, capsys):
    root = tmp_path / "bad"
    shutil.copytree(corpus, root)
    (root / synth.TRAIN_VAL_FILE).write_text('{"videos": [], "sentences": ')
    assert main(["data", "check", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "train_val_videodatainfo.json: malformed JSON" in err and "\n" not in err
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2


def test_counts_captions_that_needed_normalization_and_split_conflicts(corpus, tmp_path, capsys):
    """Typographic apostrophes, ligatures, full-width and decomposed accents count; plain
    lower-casing and non-ASCII letters that need nothing (garçon, Cyrillic) do not."""
    root = tmp_path / "unicode"
    shutil.copytree(corpus, root)
    train_val = json.loads((root / synth.TRAIN_VAL_FILE).read_text())
    train_vid = next(v["video_id"] for v in train_val["videos"] if v["split"] == "train")
    test = json.loads((root / synth.TEST_FILE).read_text())
    test_vid = test["videos"][0]["video_id"]
    extra = ["he don\u2019t know", "a \ufb01ne cafe\u0301", "\uff21\uff22\uff23 man", "A GARÇON", "мужчина поёт"]
    train_val["sentences"] += [{"video_id": train_vid, "caption": c, "sen_id": 90_000 + i} for i, c in enumerate(extra)]
    train_val["videos"].append({"video_id": test_vid, "split": "train"})  # a test video declared as train
    (root / synth.TRAIN_VAL_FILE).write_text(json.dumps(train_val))
    report = check_dataset(root)
    assert report["splits"]["train"]["normalized"] == 3
    assert report["splits"]["validate"]["normalized"] == 0
    conflicts = [p for p in report["problems"] if p["kind"] == "split_conflict"]
    assert [p["video_id"] for p in conflicts] == [test_vid]
    assert synth.TRAIN_VAL_FILE in conflicts[0]["file"] and synth.TEST_FILE in conflicts[0]["file"]
    assert main(["data", "check", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "normed: captions changed" in printed and "split_conflict" in printed and test_vid in printed
