"""Reliability: security basics - safe YAML, weights_only checkpoints, ids that cannot escape the data
folder, and the MLflow UI bound to localhost by default.

Each payload test first shows the payload is live (an unsafe loader really runs it), so a pass means
the project's loader refused it, not that the payload was a dud.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from avkd.config import load_sweep
from avkd.data.msrvtt import load_msrvtt
from avkd.errors import ConfigError, DataError

from .conftest import PYTHON, REPO, cli_env

SOURCE_DIRS = ("avkd", "trackers", "reports")


# ---- YAML ------------------------------------------------------------------------------------------


def payloads(marker: Path) -> dict[str, str]:
    """YAML documents that create `marker` when loaded with a Python-object-constructing loader."""
    return {
        "object_apply": f"name: x\nmodel: !!python/object/apply:builtins.open ['{marker}', 'w']\n",
        "object_new": f"name: x\nmodel: !!python/object/new:builtins.open ['{marker}', 'w']\n",
        "top_level": f"!!python/object/apply:builtins.open ['{marker}', 'w']\n",
        "in_a_list": f"name: x\ngrid: {{ks: [0.5, !!python/object/apply:builtins.open ['{marker}', 'w']]}}\n",
    }


@pytest.mark.parametrize("kind", sorted(payloads(Path("m"))))
def test_yaml_python_payload_is_refused_and_not_run(tmp_path, kind):
    """Injected: a sweep file whose YAML asks to call builtins.open(marker, 'w') while loading.
    Holds: yaml.unsafe_load on the same text creates the marker (the payload works); load_sweep raises
    a one-line ConfigError naming the file and the tag, and the marker is never created."""
    live = tmp_path / "live-marker"
    yaml.unsafe_load(payloads(live)[kind])
    assert live.exists(), "control: the payload should run under an unsafe loader"

    marker = tmp_path / "marker"
    file = tmp_path / "evil.yaml"
    file.write_text(payloads(marker)[kind])
    with pytest.raises(ConfigError) as err:
        load_sweep(file)
    message = str(err.value)
    assert message.startswith(f"{file}: line ") and "\n" not in message
    assert "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object" in message
    assert not marker.exists()


def test_yaml_payload_through_the_cli_runs_nothing(tmp_path):
    """Injected: `python -m avkd sweep evil.yaml` with a payload that would create a marker file.
    Holds: exit 2, one 'error:' line, no marker."""
    marker = tmp_path / "marker"
    file = tmp_path / "evil.yaml"
    file.write_text(payloads(marker)["object_apply"])
    proc = subprocess.run(
        [PYTHON, "-m", "avkd", "sweep", str(file), "--no-report"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {file}: line ")
    assert len(proc.stderr.splitlines()) == 1 and not marker.exists()


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """Injected: a 'billion laughs' sweep file: under 1 KB of YAML aliases that expand to 10^8 list
    items, given where a section is expected. Holds: ConfigError within a few seconds, its message
    one line and short (the value is not printed in full)."""
    # Each level an anchored list item holding ten aliases of the previous one: 10^8 leaves at l7.
    text = "name: x\nmodel:\n" + "".join(
        f"  - &l{i} "
        + (
            "[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]"
            if i == 0
            else "[" + ", ".join([f"*l{i - 1}"] * 10) + "]"
        )
        + "\n"
        for i in range(8)
    )
    file = tmp_path / "laughs.yaml"
    file.write_text(text)
    assert len(text) < 1000
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_sweep(file)
    seconds = time.perf_counter() - t0
    assert seconds < 3.0, f"took {seconds:.1f} s"
    assert str(err.value).startswith(f"{file}: model: expected mapping, got list")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


# ---- torch.load --------------------------------------------------------------------------------------


def source_files() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))


def unsafe_loads(source: str, filename: str = "<string>") -> list[str]:
    """'file:line: what' for each torch.load without weights_only=True, pickle.load(s), np.load with
    allow_pickle=True, and yaml.load/unsafe_load/full_load in `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}

        def is_true(key: str, keywords: dict = keywords) -> bool:
            value = keywords.get(key)
            return isinstance(value, ast.Constant) and value.value is True

        where = f"{filename}:{node.lineno}: {name}(...)"
        if name == "torch.load" or (name == "load" and "from torch import load" in source):
            if not is_true("weights_only"):
                found.append(f"{where} without weights_only=True")
        elif re.fullmatch(r"(c?pickle|dill|joblib)\.(load|loads)", name):
            found.append(f"{where} unpickles arbitrary objects")
        elif re.fullmatch(r"(np|numpy)\.load", name) and is_true("allow_pickle"):
            found.append(f"{where} with allow_pickle=True")
        elif re.fullmatch(r"yaml\.(load|unsafe_load|full_load|load_all|unsafe_load_all|full_load_all)", name):
            found.append(f"{where}: use yaml.safe_load")
    return found


def test_scanner_finds_unsafe_calls():
    """Injected: a source snippet with each unsafe call. Holds: the scanner flags each one and none of
    the safe forms (so the repository scan below can fail)."""
    bad = (
        "import torch, pickle, yaml, numpy as np\n"
        "torch.load(p)\n"
        "torch.load(p, weights_only=False)\n"
        "torch.load(p, map_location='cpu', weights_only=flag)\n"
        "pickle.loads(b)\n"
        "np.load(p, allow_pickle=True)\n"
        "yaml.load(t, Loader=yaml.Loader)\n"
        "yaml.unsafe_load(t)\n"
    )
    assert len(unsafe_loads(bad)) == 7
    good = (
        "import torch, yaml, numpy as np\n"
        "torch.load(p, map_location='cpu', weights_only=True)\n"
        "np.load(p, allow_pickle=False)\n"
        "yaml.safe_load(t)\n"
        "json.load(f)\n"
    )
    assert unsafe_loads(good) == []


def test_every_torch_load_in_the_repo_is_weights_only():
    """Injected: nothing; the source of avkd/, trackers/ and reports/ is parsed (AST).
    Holds: every torch.load passes weights_only=True; no pickle.load(s), np.load(allow_pickle=True)
    or unsafe yaml loader anywhere; and the project does call torch.load (the scan is not vacuous)."""
    files = source_files()
    assert len(files) > 10
    problems = [p for f in files for p in unsafe_loads(f.read_text(), str(f.relative_to(REPO)))]
    assert problems == [], "\n".join(problems)
    assert sum("torch.load(" in f.read_text() for f in files) >= 1


class _Evil:
    """Unpickling this calls builtins.open(marker, 'w'): an arbitrary call at load time."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(path: Path, marker: Path, payload: dict) -> Path:
    import torch

    torch.save({**payload, "evil": _Evil(marker)}, path)
    return path


def _control(path: Path, marker: Path) -> None:
    """Show the file's payload is live: a full unpickle creates the marker."""
    import torch

    obj = torch.load(path, weights_only=False)
    obj["evil"].close()
    assert marker.exists(), "control: the payload should run under weights_only=False"
    marker.unlink()


def _loader(source: str, module: str):
    """The module's load_checkpoint; skip only while the module or function does not exist yet (a module
    that exists but fails to import is an error, not a skip)."""
    if not (REPO / source).is_file():
        pytest.skip(f"{source} does not exist yet")
    loader = getattr(importlib.import_module(module), "load_checkpoint", None)
    if loader is None:
        pytest.skip(f"{source} has no load_checkpoint yet")
    return loader


def test_extractor_checkpoint_loader_refuses_pickled_objects(tmp_path):
    """Injected: a 'pretrained weights' .pth holding a state dict plus an object whose unpickling calls
    open(marker, 'w'). Holds: avkd.features.weights.load_checkpoint raises WeightsError naming the
    file; the marker is not created (weights_only unpickling never runs the call)."""
    load_checkpoint = _loader("avkd/features/weights.py", "avkd.features.weights")
    import torch

    from avkd.errors import WeightsError

    marker = tmp_path / "marker"
    path = _evil_checkpoint(tmp_path / "Cnn14_mAP=0.431.pth", marker, {"model": {"fc1.weight": torch.zeros(2, 2)}})
    _control(path, marker)
    with pytest.raises(WeightsError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: not a readable PyTorch checkpoint") and "\n" not in str(err.value)
    assert not marker.exists()


def test_caption_model_checkpoint_loader_refuses_pickled_objects(tmp_path):
    """Injected: a trial checkpoint (format avkd-captioner-1) with a pickled object calling
    open(marker, 'w'). Holds: avkd.models.captioner.load_checkpoint raises DataError naming the file;
    the marker is not created."""
    load_checkpoint = _loader("avkd/models/captioner.py", "avkd.models.captioner")

    marker = tmp_path / "marker"
    path = _evil_checkpoint(tmp_path / "model.pt", marker, {"format": "avkd-captioner-1"})
    _control(path, marker)
    with pytest.raises(DataError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: unreadable checkpoint") and "\n" not in str(err.value)
    assert not marker.exists()


# ---- video ids escaping the data folder ------------------------------------------------------------

ESCAPING_IDS = ["../x", "/etc/passwd", "a/b", "..\\x", "..", ".", "", "C:evil", "video1/../../x", "nul\0byte"]


def _msrvtt_root(tmp_path: Path, extra_id: str, where: str) -> Path:
    """A minimal MSR-VTT folder (video0 train, video1 test) with `extra_id` added as the second entry of
    the train/val file's `where` list (videos or sentences)."""
    root = tmp_path / "msrvtt"
    (root / "videos").mkdir(parents=True)
    train_val = {
        "videos": [{"video_id": "video0", "split": "train"}],
        "sentences": [{"video_id": "video0", "caption": "a cat"}],
    }
    extra = (
        {"video_id": extra_id, "split": "train"} if where == "videos" else {"video_id": extra_id, "caption": "a dog"}
    )
    train_val[where].append(extra)
    test = {
        "videos": [{"video_id": "video1", "split": "test"}],
        "sentences": [{"video_id": "video1", "caption": "a cow"}],
    }
    (root / "train_val_videodatainfo.json").write_text(json.dumps(train_val))
    (root / "test_videodatainfo.json").write_text(json.dumps(test))
    return root


def test_msrvtt_root_without_bad_ids_loads(tmp_path):
    """Control: the same folder with a plain extra id loads (so the refusals below are about the ids)."""
    dataset = load_msrvtt(_msrvtt_root(tmp_path, "video2", "videos"))
    assert {"video0", "video1", "video2"} <= set(dataset.videos)


@pytest.mark.parametrize("where", ["videos", "sentences"])
@pytest.mark.parametrize("bad_id", ESCAPING_IDS, ids=[repr(i) for i in ESCAPING_IDS])
def test_video_ids_cannot_escape_the_data_folder(tmp_path, bad_id, where):
    """Injected: an annotation entry whose video_id is a path ('../x', '/etc/passwd', 'a/b', '..\\\\x',
    '..', '.', '', 'C:evil', 'video1/../../x', a NUL byte) in the videos or the sentences list.
    Holds: load_msrvtt raises one-line DataError naming the annotation file, the entry and the id."""
    root = _msrvtt_root(tmp_path, bad_id, where)
    with pytest.raises(DataError) as err:
        load_msrvtt(root)
    message = str(err.value)
    assert message.startswith(f"{root / 'train_val_videodatainfo.json'}: {where}[1]")
    assert repr(bad_id) in message and "\n" not in message


# ---- the MLflow UI binds localhost ------------------------------------------------------------------------


def _make_ui(*overrides: str) -> str:
    """The command `make -n ui` would run (dry run: nothing is started or installed)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("UI_HOST", "UI_PORT", "MAKEFLAGS")}
    proc = subprocess.run(
        [make, "-n", "--no-print-directory", "ui", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "mlflow ui" in line]
    assert len(lines) == 1, proc.stdout
    return lines[0]


def _host(command: str) -> str:
    match = re.search(r"--host[ =](\S+)", command)
    assert match, command
    return match.group(1)


def test_make_ui_binds_localhost_by_default():
    """Injected: `make -n ui` with no UI_HOST. Holds: the mlflow ui command binds 127.0.0.1 and reads the
    project's sqlite store; `UI_HOST=0.0.0.0` is the (explicit) way to expose it, and it is honoured."""
    command = _make_ui()
    assert _host(command) == "127.0.0.1"
    assert "--backend-store-uri sqlite:///mlflow.db" in command
    assert _host(_make_ui("UI_HOST=0.0.0.0")) == "0.0.0.0"
