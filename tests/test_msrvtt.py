"""MSR-VTT loader: the official format on a hand-written fixture, and every error / issue case."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from avkd.data.msrvtt import load_msrvtt
from avkd.data.synth import write_mp4
from avkd.errors import DataError

FIXTURE = Path(__file__).parent / "fixtures" / "msrvtt_mini"
TRAIN_VAL, TEST = "train_val_videodatainfo.json", "test_videodatainfo.json"
IDS = ("video0", "video1", "video10", "video6513", "video7010", "video7011")


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory) -> Path:
    """One real 4-frame H.264 file, copied under each video id."""
    path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    write_mp4(path, np.full((4, 32, 48, 3), 90, np.uint8), fps=4)
    return path


def make_root(tmp_path: Path, tiny_mp4: Path, folder: str = "videos", ids=IDS, edit=None) -> Path:
    """Copy the fixture annotations (optionally edited: edit(train_val, test)) and one mp4 per id."""
    root = tmp_path / "msrvtt"
    root.mkdir()
    train_val, test = (json.loads((FIXTURE / name).read_text()) for name in (TRAIN_VAL, TEST))
    if edit:
        edit(train_val, test)
    (root / TRAIN_VAL).write_text(json.dumps(train_val))
    (root / TEST).write_text(json.dumps(test))
    (root / folder).mkdir()
    for vid in ids:
        shutil.copy(tiny_mp4, root / folder / f"{vid}.mp4")
    return root


def kinds(dataset) -> list[tuple[str, str | None]]:
    return sorted((i.kind, i.video_id) for i in dataset.issues)


def test_loads_the_official_format(tmp_path, tiny_mp4):
    ds = load_msrvtt(make_root(tmp_path, tiny_mp4))
    assert ds.issues == []
    assert [v.video_id for v in ds.split("train")] == ["video0", "video1", "video10"]  # natural order
    assert [v.video_id for v in ds.split("validate")] == ["video6513"]
    assert [v.video_id for v in ds.split("test")] == ["video7010", "video7011"]
    v0 = ds.videos["video0"]
    assert v0.split == "train" and v0.path == ds.root / "videos" / "video0.mp4" and v0.path.is_file()
    assert v0.captions == ["A car is shown.", "a man is driving a red car", "Someone's talking about CARS!"]
    assert v0.tokens[0] == ["a", "car", "is", "shown"]
    assert v0.tokens[2] == ["someone", "'s", "talking", "about", "cars"]  # PTB's split, as the scorer sees it


def test_official_download_folders(tmp_path, tiny_mp4):
    """Train/val videos in TrainValVideo/, test videos in TestVideo/ (the official archives)."""
    root = make_root(tmp_path, tiny_mp4, folder="TrainValVideo", ids=IDS[:4])
    (root / "TestVideo").mkdir()
    for vid in IDS[4:]:
        shutil.copy(tiny_mp4, root / "TestVideo" / f"{vid}.mp4")
    ds = load_msrvtt(root)
    assert ds.issues == []
    assert ds.videos["video0"].path.parent.name == "TrainValVideo"
    assert ds.videos["video7011"].path.parent.name == "TestVideo"


def test_vocab_comes_from_train_split_only(tmp_path, tiny_mp4):
    vocab = load_msrvtt(make_root(tmp_path, tiny_mp4)).build_vocab(min_count=1)
    assert "car" in vocab and "singer" in vocab
    assert "zebra" not in vocab  # test split
    assert "pasta" not in vocab  # validate split
    assert "a" in load_msrvtt(tmp_path / "msrvtt").build_vocab(min_count=3)
    assert "singer" not in load_msrvtt(tmp_path / "msrvtt").build_vocab(min_count=2)


def test_max_videos_per_split(tmp_path, tiny_mp4):
    ds = load_msrvtt(make_root(tmp_path, tiny_mp4), max_videos=1)
    assert [len(ds.split(s)) for s in ("train", "validate", "test")] == [1, 1, 1]
    assert sorted(ds.videos) == ["video0", "video6513", "video7010"]


def test_fingerprint_is_stable_and_tracks_changes(tmp_path, tiny_mp4):
    root = make_root(tmp_path, tiny_mp4)
    fp = load_msrvtt(root).fingerprint()
    assert fp == load_msrvtt(root).fingerprint() and len(fp) == 16
    video = root / "videos" / "video1.mp4"
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_msrvtt(root).fingerprint() == fp  # a touched file is the same video (content, not mtime)
    video.write_bytes(video.read_bytes() + b"\0")
    fp_touched = load_msrvtt(root).fingerprint()
    assert fp_touched != fp  # changed content is another dataset
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert load_msrvtt(copy).fingerprint() == fp_touched  # the same corpus in another folder: same identity
    data = json.loads((root / TEST).read_text())
    data["sentences"][0]["caption"] = "a cartoon zebra dances fast"
    (root / TEST).write_text(json.dumps(data))
    assert load_msrvtt(root).fingerprint() != fp_touched
    assert load_msrvtt(root, max_videos=1).fingerprint() != load_msrvtt(root).fingerprint()


def test_malformed_json(tmp_path, tiny_mp4):
    root = make_root(tmp_path, tiny_mp4)
    (root / TEST).write_text('{"videos": [}')
    with pytest.raises(DataError, match=r"test_videodatainfo\.json: malformed JSON at line 1, column 13") as err:
        load_msrvtt(root)
    assert "\n" not in str(err.value)


def test_missing_annotation_file(tmp_path, tiny_mp4):
    root = make_root(tmp_path, tiny_mp4)
    (root / TRAIN_VAL).unlink()
    with pytest.raises(DataError, match=r"train_val_videodatainfo\.json: annotation file not found"):
        load_msrvtt(root)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        load_msrvtt(tmp_path / "nope")


@pytest.mark.parametrize("key", ["videos", "sentences"])
def test_missing_key(tmp_path, tiny_mp4, key):
    root = make_root(tmp_path, tiny_mp4, edit=lambda tv, te: tv.pop(key))
    with pytest.raises(DataError, match=rf"train_val_videodatainfo\.json: missing key '{key}'"):
        load_msrvtt(root)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda tv, te: tv.update(videos={"video0": {}}),
            r"train_val_videodatainfo\.json: 'videos' must be a list, got dict",
        ),
        (
            lambda tv, te: tv["videos"][1].update(video_id=1),
            r"train_val_videodatainfo\.json: videos\[1\]\.video_id must be a string, got int",
        ),
        (
            lambda tv, te: te["sentences"][2].pop("caption"),
            r"test_videodatainfo\.json: sentences\[2\]: missing key 'caption'",
        ),
        (
            lambda tv, te: te["sentences"].append("a caption"),
            r"test_videodatainfo\.json: sentences\[3\] must be an object, got str",
        ),
    ],
)
def test_wrong_types(tmp_path, tiny_mp4, edit, message):
    with pytest.raises(DataError, match=message):
        load_msrvtt(make_root(tmp_path, tiny_mp4, edit=edit))


def test_top_level_must_be_an_object(tmp_path, tiny_mp4):
    root = make_root(tmp_path, tiny_mp4)
    (root / TEST).write_text("[1, 2]")
    with pytest.raises(DataError, match=r"test_videodatainfo\.json: the top level must be an object"):
        load_msrvtt(root)


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "sub/video1", "..\\video1", "/tmp/video1", "..", ""])
def test_path_escaping_video_id_is_rejected(tmp_path, tiny_mp4, bad_id):
    root = make_root(tmp_path, tiny_mp4, edit=lambda tv, te: te["videos"][0].update(video_id=bad_id))
    with pytest.raises(DataError, match=r"test_videodatainfo\.json: videos\[0\]: video_id .* could escape"):
        load_msrvtt(root)


def test_path_escaping_id_in_sentences_is_rejected(tmp_path, tiny_mp4):
    root = make_root(tmp_path, tiny_mp4, edit=lambda tv, te: te["sentences"][0].update(video_id="../video0"))
    with pytest.raises(DataError, match=r"sentences\[0\]: video_id '\.\./video0'"):
        load_msrvtt(root)


def _declare(vid: str, split: str) -> dict:
    return {"category": 1, "url": "x", "video_id": vid, "start time": 0, "end time": 1, "split": split, "id": 0}


def test_test_video_declared_again_in_train_val_is_never_trained(tmp_path, tiny_mp4, caplog):
    """The leak of issue 15: a test video declared again as train in train_val_videodatainfo.json."""

    def edit(tv, te):
        tv["videos"].append(_declare("video7010", "train"))
        tv["sentences"].append({"caption": "a zebra trains here", "video_id": "video7010", "sen_id": 77})

    root = make_root(tmp_path, tiny_mp4, edit=edit)
    with caplog.at_level(logging.WARNING):
        ds = load_msrvtt(root)
    assert kinds(ds) == [("split_conflict", "video7010")]
    issue = ds.issues[0]
    assert TRAIN_VAL in issue.file and TEST in issue.file
    assert TRAIN_VAL in issue.message and TEST in issue.message and "never used for training" in issue.message
    assert ds.videos["video7010"].split == "test"
    assert "video7010" not in [v.video_id for v in ds.split("train")]
    assert "video7010" in [v.video_id for v in ds.split("test")]
    assert len(ds.videos["video7010"].captions) == 3  # every caption of it stays held out
    vocab = ds.build_vocab(min_count=1)
    assert "zebra" not in vocab and "trains" not in vocab  # nothing of it reaches the training vocabulary
    assert "split_conflict" in caplog.text and "video7010" in caplog.text


@pytest.mark.parametrize(
    "declared, expected",
    [
        (("train", "validate"), "validate"),
        (("validate", "train"), "validate"),
        (("train", "test"), "test"),
        (("validate", "test"), "test"),
        (("train", "validate", "test"), "test"),
        (("training", "validate"), "validate"),  # an unknown split never wins over a known one
    ],
)
def test_most_held_out_split_wins(tmp_path, tiny_mp4, declared, expected):
    def edit(tv, te):
        tv["videos"] = [v for v in tv["videos"] if v["video_id"] != "video1"]
        for split in declared:
            tv["videos"].append(_declare("video1", split))

    ds = load_msrvtt(make_root(tmp_path, tiny_mp4, edit=edit))
    assert kinds(ds) == [("split_conflict", "video1")]
    assert ds.videos["video1"].split == expected
    assert all(s in ds.issues[0].message for s in declared)
    assert ("video1" in [v.video_id for v in ds.split("train")]) == (expected == "train")


def test_duplicate_ids_same_split(tmp_path, tiny_mp4, caplog):
    root = make_root(tmp_path, tiny_mp4, edit=lambda tv, te: te["videos"].append(_declare("video0", "train")))
    with caplog.at_level(logging.WARNING):
        ds = load_msrvtt(root)
    assert kinds(ds) == [("duplicate_video", "video0")]
    issue = ds.issues[0]
    assert issue.file.endswith(TEST) and TRAIN_VAL in issue.message
    assert ds.videos["video0"].split == "train"
    assert "duplicate_video" in caplog.text and "video0" in caplog.text


def test_caption_without_video(tmp_path, tiny_mp4):
    orphan = {"caption": "a lost caption", "video_id": "video999", "sen_id": 9}
    root = make_root(tmp_path, tiny_mp4, edit=lambda tv, te: tv["sentences"].extend([orphan, orphan]))
    ds = load_msrvtt(root)
    assert kinds(ds) == [("caption_without_video", "video999")]
    assert "2 caption(s)" in ds.issues[0].message and ds.issues[0].file.endswith(TRAIN_VAL)
    assert "video999" not in ds.videos


def test_video_without_captions(tmp_path, tiny_mp4, caplog):
    def drop_captions(tv, te):
        te["sentences"] = [s for s in te["sentences"] if s["video_id"] != "video7011"]

    root = make_root(tmp_path, tiny_mp4, edit=drop_captions)
    with caplog.at_level(logging.WARNING):
        ds = load_msrvtt(root)
    assert kinds(ds) == [("video_without_captions", "video7011")]
    assert [v.video_id for v in ds.split("test")] == ["video7010"]
    assert "video7011" in caplog.text and TEST in caplog.text


def test_missing_mp4(tmp_path, tiny_mp4, caplog):
    root = make_root(tmp_path, tiny_mp4)
    (root / "videos" / "video1.mp4").unlink()
    with caplog.at_level(logging.WARNING):
        ds = load_msrvtt(root)
    assert kinds(ds) == [("missing_video_file", "video1")]
    assert ds.videos["video1"].path is None and not ds.videos["video1"].usable
    assert ds.issues[0].file.endswith("videos/video1.mp4")
    assert [v.video_id for v in ds.split("train")] == ["video0", "video10"]
    assert "video1.mp4 not found" in caplog.text


def test_unknown_split_and_empty_caption(tmp_path, tiny_mp4):
    def edit(tv, te):
        tv["videos"][2]["split"] = "training"
        te["sentences"].append({"caption": "!!!", "video_id": "video7010", "sen_id": 5})

    ds = load_msrvtt(make_root(tmp_path, tiny_mp4, edit=edit))
    assert kinds(ds) == [("empty_caption", "video7010"), ("unknown_split", "video10")]
    assert "video10" not in [v.video_id for split in ("train", "validate", "test") for v in ds.split(split)]
    assert len(ds.videos["video7010"].captions) == 2


def test_missing_video_folders_are_issues_not_errors(tmp_path, tiny_mp4, caplog):
    root = make_root(tmp_path, tiny_mp4)
    shutil.rmtree(root / "videos")
    with caplog.at_level(logging.WARNING):
        ds = load_msrvtt(root)
    assert [k for k, _ in kinds(ds)] == ["missing_video_file"] * len(IDS)
    assert all(ds.split(s) == [] for s in ("train", "validate", "test"))
