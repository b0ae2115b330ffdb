"""avkd/data/load.py: the one dataset loader (real synthetic corpus on disk, real MSR-VTT reader)."""

import pytest

from avkd.data.load import dataset_root, load_dataset
from avkd.errors import DataError


def test_loads_a_real_folder(tiny_config, tiny_corpus, tiny_corpus_params):
    dataset = load_dataset(tiny_config())
    assert dataset.root == tiny_corpus and len(dataset.videos) == tiny_corpus_params["videos"]
    assert {s: len(dataset.split(s)) > 0 for s in ("train", "validate", "test")} == {
        "train": True,
        "validate": True,
        "test": True,
    }
    capped = load_dataset(tiny_config(dataset={"max_videos": 1}))  # dataset.max_videos: per split
    assert [len(capped.split(s)) for s in ("train", "validate", "test")] == [1, 1, 1]


def test_synth_corpus_present_is_reused_and_a_different_one_is_refused(tiny_config, tiny_corpus, tiny_corpus_params):
    same = load_dataset(tiny_config(dataset={"kind": "synth", "synth": tiny_corpus_params}))
    assert sorted(same.videos) == sorted(load_dataset(tiny_config()).videos)  # generate() was a no-op
    with pytest.raises(DataError, match=f"{tiny_corpus}: already holds a synthetic corpus"):
        load_dataset(tiny_config(dataset={"kind": "synth", "synth": {"videos": 13, "seed": 0}}))


def test_missing_synth_corpus_is_generated(tiny_config, tmp_path):
    cfg = tiny_config(dataset={"kind": "synth", "root": str(tmp_path / "fresh"), "synth": {"videos": 10, "seed": 1}})
    dataset = load_dataset(cfg)
    assert len(dataset.videos) == 10 and (tmp_path / "fresh" / "test_videodatainfo.json").is_file()


def test_missing_real_folder_is_one_data_error(tiny_config, tmp_path):
    with pytest.raises(DataError, match=r"dataset.root: .*nope does not exist \(see README"):
        load_dataset(tiny_config(dataset={"root": str(tmp_path / "nope")}))


def test_relative_root_is_relative_to_the_repo(tiny_config, repo_root):
    assert dataset_root(tiny_config(dataset={"root": "data/x"})) == repo_root / "data" / "x"
