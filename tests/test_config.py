"""Parameter files: every scale loads; every bad value names the file, the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from famlib.config import PARAMS_DIR, SCALES, load_params, save_params
from famlib.errors import ConfigError


@pytest.mark.parametrize("scale", SCALES)
def test_every_scale_loads_and_round_trips(scale, tmp_path):
    p = load_params(scale)
    assert p.scale == scale
    assert p.layers.first + p.layers.last < p.model.num_layers
    save_params(p, tmp_path / "resolved.yaml")
    again = load_params(tmp_path / "resolved.yaml")
    assert again.to_dict() == p.to_dict()


def test_paper_scale_carries_the_papers_values():
    p = load_params("paper")
    assert (p.model.num_layers, p.layers.first, p.layers.last) == (34, 9, 6)
    assert sorted(p.training_languages) == sorted(
        "mk hr ru sk sr uk af fy lb da nl en bn hi kn ml mr ne ta te sm jv ceb fil id ms es pt fr gl it ro".split())
    assert p.families["romance"].held_out == ("ca",)
    assert (p.l2sp.first, p.l2sp.middle, p.l2sp.last) == (0.001, 0.05, 0.001)
    assert (p.training.dense.lr, p.training.dense.warmup_steps, p.training.dense.max_steps) == (5e-5, 500, 50000)
    assert (p.training.dense.patience, p.training.dense.threshold) == (3, 0.001)
    assert (p.training.family.lr, p.training.family.warmup_steps, p.training.family.eval_every) == (2e-5, 200, 500)
    assert (p.training.family.patience, p.training.family.threshold) == (6, 0.005)
    assert (p.training.family.batch_size, p.training.family.grad_accum) == (4, 12)
    assert p.data.family_tokens == 5_000_000_000 and p.data.seq_len == 2048
    assert p.data.validation_fraction == 0.05


def _write_variant(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _expect(path, key, value_text, allowed_text):
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    msg = str(exc.value)
    assert str(path) in msg, msg
    assert f"key '{key}'" in msg, msg
    assert value_text in msg, msg
    assert allowed_text in msg, msg
    return msg


@pytest.mark.parametrize("edit, key, value, allowed", [
    (lambda r: r["families"]["slavic"]["train"].append("xx"), "families.slavic.train[2]", "'xx'", "language code"),
    (lambda r: r["families"]["slavic"]["held_out"].append("ru"), "families.slavic.held_out[1]", "'ru'", "one family and one role"),
    (lambda r: r["layers"].update(first=3, last=2), "layers", "'first': 3", "first + last below model.num_layers (5)"),
    (lambda r: r["l2sp"].update(middle=-0.05), "l2sp.middle", "-0.05", "non-negative lambda"),
    (lambda r: r["data"].update(family_tokens=-10), "data.family_tokens", "-10", "positive integer"),
    (lambda r: r["training"]["family"].update(lr=-1e-3), "training.family.lr", "-0.001", "positive learning rate"),
    (lambda r: r["training"]["family"].update(lr="fast"), "training.family.lr", "'fast'", "a number"),
    (lambda r: r["training"]["family"].update(lerning_rate=1e-3), "training.family.lerning_rate", "0.001", "known keys"),
    (lambda r: r["data"].update(source="web"), "data.source", "'web'", "'madlad', 'offline'"),
    (lambda r: r["data"]["base_mixture"].update(english=0.9), "data.base_mixture", "'english': 0.9", "sum to 1"),
    (lambda r: r["data"]["texts"].pop("pl"), "data.texts.pl", "None", "list of text ids"),
    (lambda r: r["data"]["texts"].update(pl=["bibel:z"]), "data.texts.pl[0]", "'bibel:z'", "'bible:<version>'"),
    (lambda r: r.update(probe_language="english"), "probe_language", "'english'", "language code"),
    (lambda r: r["interpolation"].update(groups=["midle"]), "interpolation.groups[0]", "'midle'", "'middle'"),
    (lambda r: r.pop("l2sp"), "l2sp", "<missing>", "required"),
])
def test_bad_values_are_refused_with_a_clear_message(tmp_path, edit, key, value, allowed):
    _expect(_write_variant(tmp_path, edit), key, value, allowed)


def test_misspelt_key_suggests_the_near_match(tmp_path):
    msg = _expect(_write_variant(tmp_path, lambda r: r.update(familes=r.pop("families"))),
                  "familes", "", "known keys")
    assert "Did you mean 'families'?" in msg


def test_missing_file_and_unknown_scale():
    with pytest.raises(ConfigError, match=r"no_such\.yaml.*an existing parameters file"):
        load_params("params/no_such.yaml")
    with pytest.raises(ConfigError, match=r"'tinny'.*Did you mean 'tiny'"):
        load_params("tinny")


def test_unknown_family_strategy_language_in_checks(smoke_params):
    with pytest.raises(ConfigError, match=r"key 'family' has invalid value 'romanse'.*'romance', 'slavic'.*Did you mean 'romance'"):
        smoke_params.check_family("romanse")
    with pytest.raises(ConfigError, match=r"key 'strategy' has invalid value 'freez'.*Did you mean 'freeze'"):
        smoke_params.check_strategy("freez")
    with pytest.raises(ConfigError, match=r"key 'language' has invalid value 'de'"):
        smoke_params.check_language("de")


def test_overrides_are_validated_like_the_file():
    p = load_params("smoke", {"training.family.lr": 2e-3})
    assert p.training.family.lr == 2e-3
    with pytest.raises(ConfigError, match=r"key 'layers.first' has invalid value 0"):
        load_params("smoke", {"layers.first": 0})
    with pytest.raises(ConfigError, match=r"smoke.yaml.*key 'training.family.lrr'.*Did you mean 'lr'"):
        load_params("smoke", {"training.family.lrr": 1.0})


def test_injected_notebook_parameters_are_validated(tmp_path):
    """papermill only warns about unknown parameters; famlib's runner refuses them and names the notebook."""
    from famlib.pipeline import Step, check_parameters

    with pytest.raises(ConfigError, match=r"01_data_prep.ipynb: key 'scael'.*Did you mean 'scale'"):
        check_parameters(Step("x", "01_data_prep.ipynb", {"scael": "smoke"}))
    import famlib.notebook as nb

    with pytest.raises(ConfigError, match=r"smoke.yaml: key 'strategy' has invalid value 'dens'"):
        nb.setup("smoke", strategy="dens")
