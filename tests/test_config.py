"""The sweep-file schema: every bad input is one line naming the file and key; good files load."""

from pathlib import Path

import pytest
import yaml

from avkd.config import load_sweep, parse_sweep
from avkd.errors import ConfigError

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_sweep_files_are_valid(path):
    cfg = load_sweep(path)
    assert cfg.name
    assert all(0 < k <= 1 for k in cfg.grid.ks)


def test_defaults_follow_the_paper():
    cfg = parse_sweep({"name": "x"})
    assert cfg.grid.ks == [0.2, 0.4, 0.6, 0.8]
    assert cfg.grid.losses == ["rep", "rep+ce"]
    assert cfg.features.image_size == 299 and cfg.features.sample_rate == 32000
    assert len(cfg.distill.mlp.hidden) == 2
    assert [t.name for t in cfg.distill.losses["rep+ce"]] == ["ce", "rep_l1"]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"name": "x", "grid": {"ks": [0.2, 1.5]}}, "grid.ks[1]"),
        ({"name": "x", "grid": {"ks": [0.0]}}, "grid.ks[0]"),
        ({"name": "x", "grid": {"ks": ["a"]}}, "grid.ks[0]"),
        ({"name": "x", "grid": {"seeds": []}}, "grid.seeds"),
        ({"name": "x", "grid": {"losses": ["nope"]}}, "grid.losses[0]"),
        ({"name": "x", "modle": {}}, "modle"),
        ({"name": "x", "model": {"hidden": "big"}}, "model.hidden"),
        ({"name": "x", "model": {"dropout": 1.5}}, "model.dropout"),
        ({"name": "x", "training": {"epochs": True}}, "training.epochs"),
        ({"name": "x", "dataset": {"kind": "kinetics"}}, "dataset.kind"),
        ({"name": "x", "distill": {"mlp": {"hidden": [64]}}}, "distill.mlp.hidden"),
        ({"name": "x", "distill": {"losses": {"rep": [{"nam": "ce"}]}}}, "distill.losses.rep[0].nam"),
        ({"name": "x", "resources": {"cpu": 0}}, "resources.cpu"),
        ({"name": "x", "features": "fast"}, "features"),
        ({"grid": {}}, "name"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        parse_sweep(data, "sweeps/bad.yaml")
    msg = str(err.value)
    assert msg.startswith("sweeps/bad.yaml: ") and key in msg and "\n" not in msg


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\ngrid:\n  ks: [0.2, 0.4\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+"):
        load_sweep(bad)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml"):
        load_sweep(evil)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_sweep(tmp_path / "nope.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_sweep(lst)


def test_flat_params_are_dotted():
    flat = parse_sweep({"name": "x"}).flat()
    assert flat["model.hidden"] == 512 and flat["grid.timing.videos"] == 100


def test_unknown_loss_name_fails_before_any_work():
    from avkd.sweep.driver import check_loss_names

    cfg = parse_sweep({"name": "x", "distill": {"losses": {"rep": [{"name": "rep_l2"}], "rep+ce": [{"name": "ce"}]}}})
    with pytest.raises(ConfigError, match=r"^f.yaml: distill.losses.rep\[0\].name: unknown loss 'rep_l2'"):
        check_loss_names(cfg, "f.yaml")
    check_loss_names(parse_sweep({"name": "x"}), "f.yaml")  # the defaults are known losses
