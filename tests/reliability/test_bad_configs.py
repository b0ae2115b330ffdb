"""Reliability: every shipped sweep file, mutated at random, is either valid or a one-line ConfigError.

Each property starts from one of sweeps/*.yaml, applies one mutation (a wrong-kind value, an unknown
key, an out-of-range value, a deleted key, a damaged YAML text), writes the result to a file and
calls load_sweep. Allowed outcomes: a valid SweepConfig, or ConfigError whose message is one line,
starts with the file path and names the mutated key (or one of its parents). Anything else (another
exception, a multi-line message, a message naming an unrelated key) fails the property. The CLI
tests then run `python -m avkd sweep BAD.yaml` once per error kind and check nothing was started.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import subprocess
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avkd.config import SweepConfig, TuneConfig, load_sweep
from avkd.errors import ConfigError

from .conftest import PYTHON, SWEEP_FILES, cli_env

# 25 examples per shipped file and property (4 files: 100 per property); no example database on disk.
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SWEEP_IDS = [p.stem for p in SWEEP_FILES]
DEFAULTS = dataclasses.asdict(SweepConfig(name="defaults", tune=TuneConfig()))

KeyPath = tuple  # e.g. ("grid", "ks", Index(2)): mapping keys as they are, list positions as Index


# ---- key paths and the schema --------------------------------------------------------------------


class Index(int):
    """A list position in a key path (a mapping may also have int keys: those stay plain ints)."""


def key_name(key: Any) -> str:
    """How ConfigError spells a mapping key: plain printable text as is, anything else as its repr."""
    return key if isinstance(key, str) and key and key.isprintable() and key == key.strip() else repr(key)


def dotted(path: KeyPath) -> str:
    """("grid", "ks", Index(2)) -> "grid.ks[2]", as ConfigError messages spell keys."""
    out = ""
    for part in path:
        if isinstance(part, Index):
            out += f"[{part}]"
        else:
            out += f".{key_name(part)}" if out else key_name(part)
    return out


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def annotation_at(path: KeyPath) -> Any:
    """The schema's type annotation for the value at `path` (SweepConfig for the empty path)."""
    tp: Any = SweepConfig
    for part in path:
        tp, _ = unwrap_optional(tp)
        if dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp)[part]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            raise KeyError(path)
    return tp


def value_paths(data: Any, path: KeyPath = ()) -> list[KeyPath]:
    """Every value's path in a parsed sweep file (sections, leaves, list items, mapping entries)."""
    out = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += value_paths(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += value_paths(value, path + (Index(i),))
    return out


def is_dataclass_field(path: KeyPath) -> bool:
    """True when path ends in a named field of a schema dataclass (not a list item or free mapping key)."""
    parent, _ = unwrap_optional(annotation_at(path[:-1]))
    return dataclasses.is_dataclass(parent)


def get_at(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


def set_at(data: dict, path: KeyPath, value: Any) -> None:
    """Set data[path] = value; containers missing on the way are copied from the schema defaults."""
    node, default = data, DEFAULTS
    for part in path[:-1]:
        default = default[part] if default is not None else None
        missing = (part not in node) if isinstance(node, dict) else part >= len(node)
        if missing or node[part] is None:
            node[part] = copy.deepcopy(default) if default is not None else {}
        node = node[part]
    node[path[-1]] = value


def ancestors(path: KeyPath) -> list[str]:
    """The dotted names a message may give for a mutation at `path`: itself or any parent."""
    return [dotted(path[:i]) for i in range(len(path), 0, -1)]


def base_of(sweep_id: str) -> tuple[Path, str, dict]:
    path = next(p for p in SWEEP_FILES if p.stem == sweep_id)
    text = path.read_text()
    return path, text, yaml.safe_load(text)


# ---- the property's check --------------------------------------------------------------------------


def load_outcome(file: Path, text: str) -> SweepConfig | str:
    """load_sweep(file) after writing text: the config, or the ConfigError message (checked to be one
    line starting with the file). Any other exception propagates and fails the test."""
    file.write_text(text, encoding="utf-8")
    try:
        return load_sweep(file)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
        assert message.startswith(f"{file}: "), message
        assert "Traceback" not in message
        return message


def assert_names(message: str, file: Path, path: KeyPath) -> None:
    """The message's key (right after the file) is the mutated key or one of its parents."""
    rest = message[len(f"{file}: ") :]
    names = ancestors(path)
    assert any(rest.startswith(name + ": ") for name in names), (
        f"message does not name {dotted(path)} or a parent: {message!r}"
    )


def dump(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# ---- strategies ---------------------------------------------------------------------------------------

small_text = st.text(max_size=10)
small_lists = st.lists(st.integers(-5, 5), min_size=1, max_size=3)
small_maps = st.dictionaries(st.text(min_size=1, max_size=4), st.integers(-5, 5), min_size=1, max_size=2)
any_float = st.floats(allow_nan=True, allow_infinity=True)


def wrong_kind(tp: Any) -> st.SearchStrategy:
    """Values of a kind the annotation can never accept (None only where it is not Optional)."""
    tp, optional = unwrap_optional(tp)
    none = [] if optional else [st.none()]
    origin = typing.get_origin(tp)
    if tp is bool:
        kinds = [small_text, st.integers(), any_float, small_lists, small_maps]
    elif tp is int:
        kinds = [small_text, st.booleans(), any_float, small_lists, small_maps]
    elif tp is float:
        kinds = [small_text, st.booleans(), small_lists, small_maps]
    elif tp is str:
        kinds = [st.integers(), any_float, st.booleans(), small_lists, small_maps]
    elif origin is Literal:
        kinds = [small_text.filter(lambda s: s not in typing.get_args(tp)), st.integers(), small_lists]
    elif origin is list:
        kinds = [small_text, st.integers(), any_float, st.booleans(), small_maps]
    elif origin is dict or dataclasses.is_dataclass(tp):
        kinds = [small_text, st.integers(), any_float, st.booleans(), small_lists]
    else:
        raise TypeError(tp)
    return st.one_of(*kinds, *none)


def too_small(limit: int) -> st.SearchStrategy:
    return st.integers(max_value=limit - 1)


NON_POSITIVE = st.one_of(st.floats(max_value=-1e-9), st.just(0.0), st.just(math.nan), st.just(-math.inf))
HUGE_INT = st.integers(min_value=2**1100, max_value=2**1200)  # not a float, even though YAML writes it as a number
OUT_OF_UNIT = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0), st.just(math.nan), HUGE_INT)
# (key path, values outside the documented range) - one per range rule of avkd/config.py
OUT_OF_RANGE: list[tuple[KeyPath, st.SearchStrategy]] = [
    (
        ("grid", "ks", Index(0)),
        st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), st.just(math.nan), HUGE_INT),
    ),
    (("model", "dropout"), OUT_OF_UNIT),
    (("distill", "mlp", "dropout"), OUT_OF_UNIT),
    (("model", "hidden"), too_small(1)),
    (("model", "embed_dim"), too_small(1)),
    (("model", "layers"), too_small(1)),
    (("training", "epochs"), too_small(1)),
    (("training", "batch_size"), too_small(1)),
    (("training", "patience"), too_small(1)),
    (("training", "lr"), st.one_of(NON_POSITIVE, st.just(math.inf), HUGE_INT)),
    (("training", "weight_decay"), st.one_of(st.floats(max_value=-1e-9), st.just(math.nan))),
    (("decoding", "beam_size"), too_small(1)),
    (("decoding", "max_len"), too_small(1)),
    (("features", "image_size"), st.one_of(too_small(75), st.integers(min_value=1025))),
    (("features", "batch_frames"), too_small(1)),
    (("features", "batch_audio"), too_small(1)),
    (("features", "workers"), too_small(1)),
    (("features", "max_frames"), too_small(1)),
    (("features", "sample_rate"), st.integers().filter(lambda r: r != 32000)),
    (("dataset", "synth", "videos"), too_small(10)),
    (("dataset", "min_count"), too_small(1)),
    (("dataset", "max_caption_len"), too_small(2)),
    (("dataset", "max_videos"), too_small(1)),
    (("distill", "mlp", "hidden", Index(1)), too_small(1)),
    (("distill", "rep_epochs"), too_small(1)),
    (("distill", "losses", "rep", Index(0), "weight"), st.one_of(st.floats(max_value=-1e-9), st.just(math.nan))),
    (("grid", "timing", "videos"), too_small(1)),
    (("grid", "timing", "threads"), too_small(1)),
    (("grid", "timing", "warmup"), too_small(0)),
    (("resources", "cpu"), NON_POSITIVE),
    (("resources", "gpu"), st.one_of(st.floats(max_value=-1e-9), st.just(math.nan))),
    (("resources", "max_concurrent_trials"), too_small(1)),
    (("resources", "max_failures"), too_small(0)),
    (("tune", "num_samples"), too_small(1)),
    (("tune", "space", "mlp_dropout", Index(1)), OUT_OF_UNIT),
    (("tune", "space", "rep_weight", Index(0)), NON_POSITIVE),
    (("name",), st.sampled_from(["", "   ", ".", "..", "a/b", "..\\x", "tab\there", "new\nline"])),
]


# ---- properties ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_configs")


def test_shipped_sweep_files_are_valid():
    """Injected: nothing. Holds: every sweeps/*.yaml loads (the mutations below start from valid files)."""
    assert len(SWEEP_FILES) >= 4
    for path in SWEEP_FILES:
        assert load_sweep(path).name == path.stem


@pytest.mark.parametrize("sweep_id", SWEEP_IDS)
@PROPERTY
@given(data=st.data())
def test_wrong_kind_of_value(work, sweep_id, data):
    """Injected: one value (a leaf, a section, a list item or a mapping entry) replaced by a value of
    a kind its annotation never accepts (str/list/dict/bool/None/number of the wrong kind).
    Holds: ConfigError, one line, starting with the file, naming that key or a parent."""
    _, _, base = base_of(sweep_id)
    path = data.draw(st.sampled_from(value_paths(base)), label="path")
    value = data.draw(wrong_kind(annotation_at(path)), label="value")
    mutated = copy.deepcopy(base)
    set_at(mutated, path, value)
    file = work / f"{sweep_id}-type.yaml"
    outcome = load_outcome(file, dump(mutated))
    assert isinstance(outcome, str), f"{dotted(path)} = {value!r} was accepted"
    assert_names(outcome, file, path)


@pytest.mark.parametrize("sweep_id", SWEEP_IDS)
@PROPERTY
@given(data=st.data())
def test_unknown_key(work, sweep_id, data):
    """Injected: a key the schema does not have, at the top level or in any section of the file
    (text of any characters, a number, a bool or null as the key).
    Holds: ConfigError, one line, starting with the file, naming '<section>.<key>: unknown key'."""
    _, _, base = base_of(sweep_id)
    sections = [()] + [
        p
        for p in value_paths(base)
        if isinstance(get_at(base, p), dict) and dataclasses.is_dataclass(unwrap_optional(annotation_at(p))[0])
    ]
    where = data.draw(st.sampled_from(sections), label="section")
    known = {f.name for f in dataclasses.fields(unwrap_optional(annotation_at(where))[0])}
    key = data.draw(
        st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none()).filter(lambda k: k not in known),
        label="key",
    )
    mutated = copy.deepcopy(base)
    get_at(mutated, where)[key] = data.draw(st.one_of(st.integers(), small_text, small_lists), label="value")
    file = work / f"{sweep_id}-unknown.yaml"
    text = dump(mutated)
    outcome = load_outcome(file, text)
    assert isinstance(outcome, str), f"unknown key {dotted(where + (key,))} was accepted"
    # The key as the file says it: YAML folds some characters (a NEL in a key reads back as a space).
    (written,) = [k for k in get_at(yaml.safe_load(text), where) if k not in known]
    assert outcome.startswith(f"{file}: {dotted(where + (written,))}: unknown key (known keys here: "), outcome


@pytest.mark.parametrize("sweep_id", SWEEP_IDS)
@PROPERTY
@given(data=st.data())
def test_out_of_range_value(work, sweep_id, data):
    """Injected: one value outside its documented range (k outside (0, 1], sizes <= 0, dropout >= 1
    or < 0, NaN/inf, integers too large for a float, sample rate != 32000, names escaping runs_dir).
    Holds: ConfigError, one line, starting with the file, naming that key or a parent."""
    _, _, base = base_of(sweep_id)
    path, values = data.draw(st.sampled_from(OUT_OF_RANGE), label="rule")
    value = data.draw(values, label="value")
    mutated = copy.deepcopy(base)
    set_at(mutated, path, value)
    file = work / f"{sweep_id}-range.yaml"
    outcome = load_outcome(file, dump(mutated))
    assert isinstance(outcome, str), f"{dotted(path)} = {value!r} was accepted"
    assert_names(outcome, file, path)


@pytest.mark.parametrize("sweep_id", SWEEP_IDS)
@PROPERTY
@given(data=st.data())
def test_missing_key(work, sweep_id, data):
    """Injected: one field or whole section deleted (`name` included).
    Holds: a valid config (every other field has a default), or ConfigError naming that key or a
    parent; deleting a required key (name, a loss term's name) is always an error saying it is missing."""
    _, _, base = base_of(sweep_id)
    path = data.draw(st.sampled_from([p for p in value_paths(base) if is_dataclass_field(p)]), label="path")
    mutated = copy.deepcopy(base)
    del get_at(mutated, path[:-1])[path[-1]]
    file = work / f"{sweep_id}-missing.yaml"
    outcome = load_outcome(file, dump(mutated))
    parent, _ = unwrap_optional(annotation_at(path[:-1]))
    field = {f.name: f for f in dataclasses.fields(parent)}[path[-1]]
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    if required:
        assert outcome == f"{file}: {dotted(path)}: required key is missing"
    elif isinstance(outcome, str):
        assert_names(outcome, file, path)


YAML_DAMAGE = st.sampled_from(
    [
        "[",
        "]",
        "{",
        "}",
        "\t",
        ":",
        "- ",
        "'",
        '"',
        "&",
        "*",
        "!",
        "%",
        "@",
        "`",
        "|",
        ">",
        "#",
        "\x00",
        "\x85",
        "\ufeff",
        "? ",
        "!!python/object/apply:os.system [x] ",
    ]
)


@pytest.mark.parametrize("sweep_id", SWEEP_IDS)
@PROPERTY
@given(data=st.data())
def test_damaged_yaml_text(work, sweep_id, data):
    """Injected: the file's text truncated at a random point, or a bracket, tab, quote, anchor, tag,
    NUL or other YAML-significant character inserted at a random point (once or several times).
    Holds: a valid config or ConfigError, one line, starting with the file; when PyYAML itself
    reports a position, the message gives that line and column."""
    _, text, _ = base_of(sweep_id)
    if data.draw(st.booleans(), label="truncate"):
        damaged = text[: data.draw(st.integers(0, len(text) - 1), label="cut")]
    else:
        damaged = text
        for _ in range(data.draw(st.integers(1, 3), label="insertions")):
            at = data.draw(st.integers(0, len(damaged)), label="at")
            damaged = damaged[:at] + data.draw(YAML_DAMAGE, label="insert") + damaged[at:]
    file = work / f"{sweep_id}-yaml.yaml"
    outcome = load_outcome(file, damaged)
    try:
        yaml.safe_load(damaged)
    except yaml.YAMLError as err:
        assert isinstance(outcome, str) and "YAML" in outcome
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            assert outcome.startswith(f"{file}: line {mark.line + 1}, column {mark.column + 1}: "), outcome
    except Exception:  # PyYAML's own ValueErrors/RecursionError: still a ConfigError for the user
        assert isinstance(outcome, str)


# ---- fixed examples of each YAML error ------------------------------------------------------------------

YAML_ERRORS = {  # name: (text, what the message says after "<file>: ")
    "unbalanced_bracket": ("name: x\nmodel: {hidden: [1, 2}\n", r"line 2, column \d+: YAML syntax error: "),
    "tab_indent": ("name: x\nmodel:\n\thidden: 4\n", r"line 3, column 1: YAML syntax error: found character '\\t'"),
    "cut_in_flow_list": ("name: x\ngrid: {ks: [0.2, 0.4\n", r"line \d+, column \d+: YAML syntax error: "),
    "bad_indent": ("name: x\n  model: 3\n", r"line 2, column \d+: YAML syntax error: "),
    "empty_file": ("", r"the top level must be a mapping of sections, got NoneType$"),
    "top_level_list": ("- name: x\n", r"the top level must be a mapping of sections, got list$"),
    "deep_nesting": ("name: x\nx: " + "[" * 5000 + "\n", r"YAML nesting is too deep$"),
    "huge_integer": (
        "name: x\nmodel: {hidden: " + "9" * 5000 + "}\n",
        r"unreadable YAML value \(ValueError: Exceeds the limit",
    ),
    "bad_date": ("name: 2024-13-45\n", r"unreadable YAML value \(ValueError: month must be in 1..12\)$"),
    "nul_byte": ("name: x\nsweep: \x00\n", r"YAML syntax error: unacceptable character #x0000"),
}


@pytest.mark.parametrize("case", sorted(YAML_ERRORS))
def test_yaml_errors(tmp_path, case):
    """Injected: one known-bad YAML text each (brackets, tab, cut, indentation, empty, list, 5000-deep
    nesting, a 5000-digit integer, an impossible date, a NUL byte). Holds: a one-line ConfigError
    '<file>: ...' that says where (line, column) or what is wrong."""
    text, expected = YAML_ERRORS[case]
    file = tmp_path / "bad.yaml"
    outcome = load_outcome(file, text)
    assert isinstance(outcome, str)
    assert re.match(re.escape(f"{file}: ") + expected, outcome), outcome


def test_non_utf8_and_missing_file(tmp_path):
    """Injected: Latin-1 bytes; a path that does not exist. Holds: a one-line ConfigError naming the file."""
    file = tmp_path / "latin1.yaml"
    file.write_bytes("name: d\xe9mo\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{file}: not a UTF-8 text file$"):
        load_sweep(file)
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'nope.yaml'}: no such sweep file$"):
        load_sweep(tmp_path / "nope.yaml")


# ---- the real CLI, once per error kind -------------------------------------------------------------------


def cli_sweep_file(folder: Path, mutate) -> Path:
    """tiny.yaml with every output path inside `folder` (so a started sweep would write there), then mutated."""
    _, _, data = base_of("tiny")
    data["runs_dir"] = str(folder / "runs")
    data["tracking"] = {"uri": f"sqlite:///{folder / 'mlflow.db'}"}
    data["dataset"]["root"] = str(folder / "data")
    data["features"]["cache_dir"] = str(folder / "cache")
    text = mutate(data)
    file = folder / "BAD.yaml"
    file.write_text(text if isinstance(text, str) else dump(data))
    return file


def _set(path: KeyPath, value: Any):
    def mutate(data: dict) -> None:
        set_at(data, path, value)

    return mutate


def _drop_name(data: dict) -> None:
    del data["name"]


CLI_CASES = {
    "wrong_type": (_set(("model", "hidden"), "big"), r"model\.hidden: expected int, got str 'big'"),
    "unknown_key": (_set(("training", "learning_rate"), 0.1), r"training\.learning_rate: unknown key"),
    "out_of_range": (_set(("grid", "ks", Index(1)), 1.5), r"grid\.ks\[1\]: 1\.5 is outside \(0, 1\]"),
    "dropout_one": (_set(("model", "dropout"), 1.0), r"model\.dropout: must be in \[0, 1\)"),
    "missing_name": (_drop_name, r"name: required key is missing"),
    "yaml_syntax": (lambda d: dump(d).replace("model:", "model: [", 1), r"line \d+, column \d+: YAML syntax error"),
    "python_tag": (
        lambda d: dump(d) + "x: !!python/object/apply:os.system ['echo pwned']\n",
        r"YAML syntax error: could not determine a constructor for the tag",
    ),
}


@pytest.mark.parametrize("kind", sorted(CLI_CASES))
def test_cli_refuses_bad_sweep_file(tmp_path, kind):
    """Injected: a sweep file with one error of each kind, run as `python -m avkd sweep BAD.yaml` in a
    temp working directory, every output path of the file pointing into that directory.
    Holds: exit code 2; stderr is exactly one line 'error: <file>: <key>: ...' with no traceback;
    nothing was started: the directory holds only BAD.yaml (no runs/, mlflow.db, cache, data, report)."""
    mutate, expected = CLI_CASES[kind]
    file = cli_sweep_file(tmp_path, mutate)
    proc = subprocess.run(
        [PYTHON, "-m", "avkd", "sweep", str(file), "--report-out", str(tmp_path / "report")],
        cwd=tmp_path,
        env=cli_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'env-mlflow.db'}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {file}:"), proc.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BAD.yaml"]


def test_cli_control_a_started_sweep_writes_into_the_temp_folder(tmp_path):
    """Control for the test above: the same redirected tiny.yaml, valid, on an MSR-VTT folder whose only
    video file is missing. Holds: the sweep starts (MLflow store created inside tmp_path) and then
    stops with exit 2 and one 'error:' line, so an empty folder above really means nothing started."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "train_val_videodatainfo.json").write_text(
        json.dumps(
            {
                "videos": [{"video_id": "video0", "split": "train"}],
                "sentences": [{"video_id": "video0", "caption": "a cat"}],
            }
        )
    )
    (data_root / "test_videodatainfo.json").write_text('{"videos": [], "sentences": []}')

    def valid_msrvtt(data: dict) -> None:
        data["dataset"]["kind"] = "msrvtt"

    file = cli_sweep_file(tmp_path, valid_msrvtt)
    proc = subprocess.run(
        [PYTHON, "-m", "avkd", "sweep", str(file), "--report-out", str(tmp_path / "report")],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {data_root}: no train video files to re-estimate the BatchNorm statistics of random extractor weights"
    ]
    assert (tmp_path / "mlflow.db").is_file()
