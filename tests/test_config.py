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
    (lambda r: r.setdefault("l2sp", {}).update(middle=-0.05), "l2sp.middle", "-0.05", "non-negative lambda"),
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
    # l2sp: has the paper's lambdas as its default now; layers: has no default
    (lambda r: r.pop("layers"), "layers", "<missing>", "required"),
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


# ---- Numbers as people write them, and errors that say where a value came from (issue 22, item 4) ------
def _with_family_lr(tmp_path: Path, text: str) -> tuple[Path, int]:
    """smoke.yaml with ``training.family.lr`` written as ``text``, verbatim; returns the file and that line."""
    src = (PARAMS_DIR / "smoke.yaml").read_text()
    old = "  family:\n    lr: 1.0e-3\n"
    assert src.count(old) == 1
    out = src.replace(old, f"  family:\n    lr: {text}\n")
    path = tmp_path / "variant.yaml"
    path.write_text(out)
    line = out[: out.index(f"    lr: {text}\n")].count("\n") + 1
    return path, line


def _set(monkeypatch, *items: str, scale: str = "smoke"):
    """The parameters `famlib status --scale S --set ITEM ...` loads (the real --set path, FAMLIB_OVERRIDES included)."""
    from famlib.cli import _params, build_parser

    monkeypatch.setenv("FAMLIB_OVERRIDES", "")  # _params sets it; teardown restores the original
    args = build_parser().parse_args(["status", "--scale", scale, *[a for i in items for a in ("--set", i)]])
    return _params(args)


def test_readme_example_lr_2e_3_through_set_and_the_notebooks(monkeypatch, capsys):
    """README: `famlib paper --scale tiny --set training.family.lr=2e-3` (YAML 1.1 read 2e-3 as a string)."""
    import json
    import os

    from famlib.cli import main
    from famlib.notebook import setup

    assert _set(monkeypatch, "training.family.lr=2e-3", scale="tiny").training.family.lr == 0.002
    assert main(["plan", "--scale", "tiny", "--format", "commands", "--set", "training.family.lr=2e-3"]) == 0
    assert all(line.endswith(" --set training.family.lr=2e-3") for line in capsys.readouterr().out.splitlines())
    # what the kernels started by `famlib paper` read: a JSON number, not the string '2e-3'
    assert json.loads(os.environ["FAMLIB_OVERRIDES"]) == {"training.family.lr": 0.002}
    assert setup("tiny").training.family.lr == 0.002


def test_readme_example_lr_2e_3_in_a_params_file(tmp_path):
    path, _ = _with_family_lr(tmp_path, "2e-3")
    assert load_params(path).training.family.lr == 0.002


@pytest.mark.parametrize("text, value", [
    ("2e-3", 0.002), ("1E-4", 1e-4), ("5e-5", 5e-5), ("1e3", 1000.0), (".5", 0.5), ("-3e-2", -0.03),
    ("2.0e-3", 0.002), ("1.0e5", 1e5),
])
def test_numbers_in_any_notation_from_set_and_from_files(tmp_path, monkeypatch, text, value):
    path, line = _with_family_lr(tmp_path, text)
    if value > 0:
        assert _set(monkeypatch, f"training.family.lr={text}").training.family.lr == value
        assert load_params(path).training.family.lr == value
        return
    # a negative learning rate is read as the number it is, then refused by the rule (not as "a number")
    with pytest.raises(ConfigError) as exc:
        _set(monkeypatch, f"training.family.lr={text}")
    assert str(exc.value) == (f"--set training.family.lr={text}: key 'training.family.lr' has invalid value "
                              f"{value!r}; allowed: a positive learning rate")
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert str(exc.value).startswith(f"{path}:{line}: key 'training.family.lr' has invalid value {value!r}; ")


def test_exponent_notation_fills_integer_fields(tmp_path, monkeypatch):
    p = _set(monkeypatch, "data.family_tokens=1e4", "interpolation.alphas=[0, .5, 1e0]")
    assert p.data.family_tokens == 10000 and isinstance(p.data.family_tokens, int)
    assert p.interpolation.alphas == (0.0, 0.5, 1.0)
    src = (PARAMS_DIR / "smoke.yaml").read_text().replace("family_tokens: 8000\n", "family_tokens: 8e3\n")
    (tmp_path / "variant.yaml").write_text(src)
    assert load_params(tmp_path / "variant.yaml").data.family_tokens == 8000


def test_an_override_error_names_the_set_argument(monkeypatch, capsys):
    from famlib.cli import main

    monkeypatch.setenv("FAMLIB_OVERRIDES", "")
    assert main(["status", "--scale", "tiny", "--set", "training.family.lr=abc"]) == 2
    err = capsys.readouterr().err
    assert err == ("famlib: --set training.family.lr=abc: key 'training.family.lr' has invalid value 'abc'; "
                   "allowed: a number\n")
    assert main(["status", "--scale", "smoke", "--set", "training.family.lrr=1e-3"]) == 2
    assert capsys.readouterr().err.startswith(
        "famlib: --set training.family.lrr=1e-3: key 'training.family.lrr' has invalid value 0.001; allowed: known keys")
    assert main(["status", "--scale", "smoke", "--set", "training.family.lr=[1,"]) == 2  # not YAML: one line too
    err = capsys.readouterr().err
    assert err.startswith("famlib: --set training.family.lr=[1,: key 'training.family.lr'") and err.count("\n") == 1
    # a rule over a mapping one of whose keys came from --set names the file's line and the override
    with pytest.raises(ConfigError) as exc:
        _set(monkeypatch, "layers.first=4")
    line = next(i for i, s in enumerate((PARAMS_DIR / "smoke.yaml").read_text().splitlines(), 1) if s.startswith("layers:"))
    assert str(exc.value).startswith(f"{PARAMS_DIR / 'smoke.yaml'}:{line} (with --set layers.first=4): key 'layers'")


def test_a_file_error_names_the_file_and_line(tmp_path):
    path, line = _with_family_lr(tmp_path, "abc")
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert str(exc.value) == f"{path}:{line}: key 'training.family.lr' has invalid value 'abc'; allowed: a number"
    # a list item: its own line
    src = (PARAMS_DIR / "smoke.yaml").read_text().replace("    pl: [\"bible:z\"]\n", "    pl:\n      - bible:z\n      - bibel:q\n")
    (tmp_path / "list.yaml").write_text(src)
    line = src.splitlines().index("      - bibel:q") + 1
    with pytest.raises(ConfigError, match=rf"list\.yaml:{line}: key 'data\.texts\.pl\[1\]' has invalid value 'bibel:q'"):
        load_params(tmp_path / "list.yaml")


def test_an_injected_override_error_names_famlib_overrides(monkeypatch):
    from famlib.notebook import setup

    monkeypatch.setenv("FAMLIB_OVERRIDES", '{"training.family.lr": "abc"}')
    with pytest.raises(ConfigError, match=r"^FAMLIB_OVERRIDES \(training.family.lr=\"abc\"\): key 'training.family.lr' "
                                          r"has invalid value 'abc'; allowed: a number$"):
        setup("smoke")


@pytest.mark.parametrize("key, bad, allowed", [
    ("training.family.batch_size", 0, "a positive integer"),
    ("training.dense.min_lr_ratio", 1.5, "a number between 0 and 1"),
    ("training.family.patience", 0, "a positive integer or null (no early stopping)"),
    ("data.splits.bible.evaluation", -0.1, "a fraction between 0 and 1"),
    ("l2sp.middle", -1.0, "a non-negative lambda"),
    ("evaluation.bootstrap_iters", 10, "an integer of at least 100 (draws per interval)"),
    ("evaluation.dtype", "float8", "one of float32, bfloat16, float16, or null (the model's dtype)"),
    ("interpolation.alphas", [0.0, 1.5], "a number between 0 and 1"),
    ("model.num_layers", 2, "an integer >= 3 (first, middle and last groups)"),
    ("tokenizer.vocab_size", 0, "a positive integer"),
    ("threads", 0, "a positive integer or null"),
])
def test_each_field_carries_its_own_bound(key, bad, allowed):
    """A field's bound is declared with the field (famlib.config.bounded) and checked wherever it is set;
    the validator keeps only the rules between fields."""
    with pytest.raises(ConfigError) as exc:
        load_params("smoke", {key: bad})
    shown = f"{key}[1]" if key == "interpolation.alphas" else key
    assert f"key '{shown}' has invalid value" in str(exc.value) and f"allowed: {allowed}" in str(exc.value), exc.value


def test_bounds_are_declared_on_the_dataclasses_and_checked_on_built_params():
    import dataclasses

    from famlib import config as C

    bounded = {f.name for f in dataclasses.fields(C.TrainConfig) if "bound" in f.metadata}
    assert {"lr", "batch_size", "weight_decay", "threshold", "patience", "max_steps"} <= bounded
    p = load_params("smoke")
    bad = dataclasses.replace(p, training=dataclasses.replace(
        p.training, family=dataclasses.replace(p.training.family, lr=0.0)))
    with pytest.raises(ConfigError, match=r"key 'training.family.lr' has invalid value 0.0; allowed: a positive"):
        C._validate(bad)  # params made in code (dataclasses.replace) meet the same bounds


def test_defaults_are_the_papers_values_declared_once():
    """The paper's L2-SP lambdas and the authors' weight decay are the declared defaults, so the params files
    do not repeat them; paper.yaml says only what differs (outside: first)."""
    from famlib.config import L2SPConfig, TrainConfig

    assert (L2SPConfig().first, L2SPConfig().middle, L2SPConfig().last) == (0.001, 0.05, 0.001)
    assert TrainConfig(lr=1e-3, warmup_steps=0, batch_size=1).weight_decay == 0.01
    for scale in SCALES:
        text = (PARAMS_DIR / f"{scale}.yaml").read_text()
        assert "middle: 0.05" not in text and "weight_decay: 0.01" not in text, scale
        p = load_params(scale)
        assert (p.l2sp.first, p.l2sp.middle, p.l2sp.last) == (0.001, 0.05, 0.001)
        assert p.training.family.weight_decay == (0.0 if scale == "smoke" else 0.01)  # smoke's keys are pinned
    assert load_params("paper").l2sp.outside == "first" and load_params("tiny").l2sp.outside == 0.0
