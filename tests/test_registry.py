"""The strategy registry: a strategy registered from this module alone flows through config validation,
the plan, training, evaluation and the tables; unknown names list the known ones; ``famlib strategies``
prints the registry; the cache keys and plans of the existing strategies are those of before the registry."""

from __future__ import annotations

import json
import os

import pytest
from safetensors.torch import load_file

from famlib.config import SCALES, load_params, training_key
from famlib.errors import ConfigError
from famlib.io import sha256_json
from famlib.layers import LayerError, group_of
from famlib.strategies.rules import rule_for
from famlib.naming import ModelIdError, all_model_ids, model_id
from famlib.strategies import Strategy, StrategyError, registry
from famlib.strategies.training import job_key

# A new strategy, declared here and nowhere else: Layer Freezing of the first layer group instead of the
# middle one, and the soup of its family models.
FREEZE_FIRST = Strategy(name="freeze_first", label="Freeze first", title="Layer Freezing of the first group",
                        per_family=True, training="family", data="family", frozen=("first",),
                        outside="trainable (only the first group is frozen)", color="#937860", marker="<")
FREEZE_FIRST_SOUP = Strategy(name="freeze_first_soup", label="FF soup", title="soup of the freeze_first experts",
                             per_family=False, surgery="soup", source="freeze_first",
                             surgery_groups=("first", "middle", "last", "outside"),
                             outside="averaged with everything else")
DEFAULTS = ["base", "dense", "expert", "freeze", "l2sp", "dense_reverted", "expert_reverted", "soup", "freeze_soup"]


@pytest.fixture
def freeze_first():
    """FREEZE_FIRST and its soup registered for one test, and removed after it."""
    registry.register(FREEZE_FIRST)
    registry.register(FREEZE_FIRST_SOUP)
    yield FREEZE_FIRST
    registry.unregister(FREEZE_FIRST_SOUP.name)
    registry.unregister(FREEZE_FIRST.name)


def _with_new(**more):
    return load_params("smoke", {"strategies": [*DEFAULTS, "freeze_first", *more.get("extra", [])]})


# ----------------------------------------------------------------------------------------------------
# Nothing changes for the strategies that existed
# ----------------------------------------------------------------------------------------------------
def _old_job_key(params, strategy, family, base_key, data_key):
    """``famlib.strategies.job_key`` as it was at 630996d, before the registry (copied verbatim)."""
    d = params.to_dict()
    cfg = training_key(d["training"]["dense" if strategy == "dense" else "family"])
    parts = {"format": 1, "strategy": strategy, "family": family, "training": cfg, "seed": params.seed,
             "layers": d["layers"], "base": base_key, "data": data_key}
    if strategy == "l2sp":
        parts["l2sp"] = d["l2sp"]
    return sha256_json(parts)


@pytest.mark.parametrize("scale", SCALES)
def test_job_keys_of_the_existing_strategies_are_unchanged(scale):
    params = load_params(scale)
    checked = 0
    for strategy in ("dense", "expert", "freeze", "l2sp"):
        for family in [None] if strategy == "dense" else list(params.families):
            assert job_key(params, strategy, family, "b", "d") == _old_job_key(params, strategy, family, "b", "d")
            checked += 1
    assert checked == 1 + 3 * len(params.families)


def test_smoke_job_keys_match_those_computed_at_the_base_commit():
    # sha256 values printed by famlib.strategies.job_key at 630996d (before the registry) for params/smoke.yaml
    # with base key "base-key" and data key "data-key"; a change to smoke.yaml's training, layers, seed or l2sp
    # sections changes them legitimately (then recompute them with the old formula above).
    params = load_params("smoke")
    assert job_key(params, "dense", None, "base-key", "data-key") == \
        "a9a900e9e535032a73ffe3c8613cc5b2babaee990e81e4720817990049ef7273"
    assert job_key(params, "l2sp", "slavic", "base-key", "data-key") == \
        "14b83de9168f240deb4667ed0775d7f1f169fa0a499543aad9fe412f9041ec56"
    assert job_key(params, "freeze", "romance", "base-key", "data-key") == \
        "338559c095cfd3f1f9ba073493d7ae6d9657f8a8787b9aca85936406eada4d48"


@pytest.mark.parametrize("scale", SCALES)
def test_a_params_file_without_strategies_runs_what_it_ran_before(scale):
    params = load_params(scale)
    assert params.strategies is None and params.strategy_names == DEFAULTS
    # the key is left out of the fingerprint at its default: no finished step of any scale goes stale
    assert "strategies" not in params.to_dict()
    fams = list(params.families)
    per_family = ("expert", "freeze", "l2sp", "expert_reverted")
    assert all_model_ids(params) == [m for s in DEFAULTS for m in ([f"{s}.{f}" for f in fams] if s in per_family else [s])]


def test_a_registered_strategy_is_not_run_by_a_scale_that_does_not_list_it(freeze_first):
    from famlib.pipeline import plan

    params = load_params("smoke")
    assert "freeze_first" in registry.names() and "freeze_first" not in params.strategy_names
    assert not [st.id for st in plan(params) if "freeze_first" in st.id]


# ----------------------------------------------------------------------------------------------------
# A new strategy, end to end
# ----------------------------------------------------------------------------------------------------
def test_a_new_strategy_passes_config_validation_and_gets_its_layer_rule(freeze_first):
    params = _with_new(extra=["freeze_first_soup"])
    assert params.check_strategy("freeze_first") == "freeze_first"
    assert params.strategy_names == [*DEFAULTS[:5], "freeze_first", *DEFAULTS[5:], "freeze_first_soup"]
    assert model_id("freeze_first", "slavic") == "freeze_first.slavic"
    from famlib.figures import strategy_color, strategy_marker

    assert (strategy_color("freeze_first"), strategy_marker("freeze_first")) == ("#937860", "<")
    assert (strategy_color("freeze_first_soup"), strategy_marker("freeze_first_soup")) == ("#777", "o")  # none declared
    rule = rule_for("freeze_first")
    assert rule.trains and rule.frozen == ("first",)
    # its soup needs it: listed without its source, the scale is refused with the fix
    with pytest.raises(ConfigError, match=r"key 'strategies\[1\]' has invalid value 'freeze_first_soup'.*"
                                          r"add 'freeze_first' to strategies"):
        load_params("smoke", {"strategies": ["dense", "freeze_first_soup"]})


def test_a_new_strategy_flows_into_the_plan_and_the_posthoc_jobs(freeze_first):
    from famlib.pipeline import plan
    from famlib.surgery.posthoc import posthoc_jobs

    params = _with_new(extra=["freeze_first_soup"])
    steps = {st.id: st for st in plan(params)}
    for fam in params.families:
        train = steps[f"03_train_expert.freeze_first.{fam}"]
        assert train.parameters == {"scale": "smoke", "family": fam, "strategy": "freeze_first"}
        assert steps[f"05_evaluate.freeze_first.{fam}"].deps == (train.id, "05_evaluate.base")
        assert train.id in steps["04_posthoc_surgery"].deps
    assert steps["05_evaluate.freeze_first_soup"].deps == ("04_posthoc_surgery", "05_evaluate.base")
    assert "05_evaluate.freeze_first_soup" in steps["07_tables_and_figures"].deps
    soup = next(j for j in posthoc_jobs(params) if j.model_id == "freeze_first_soup")
    assert (soup.method, soup.inputs) == ("soup", ("freeze_first.slavic", "freeze_first.romance"))
    # the existing steps are all still there, in the same order
    old = [st.id for st in plan(load_params("smoke"))]
    assert [i for i in steps if i in set(old)] == old


MODULE = '''"""Layer Freezing of the last layer group: one module, nothing else written."""
from famlib.strategies.spec import Strategy

STRATEGY = Strategy(name="freeze_last_group", label="Freeze last", title="Layer Freezing of the last group",
                    per_family=True, training="family", data="family", frozen=("last",),
                    outside="trainable (only the last group is frozen)")
'''
SOUP_MODULE = '''from famlib.strategies.spec import Strategy

STRATEGIES = (Strategy(name="freeze_last_group_soup", label="FL soup", title="soup of the freeze_last_group experts",
                       per_family=False, surgery="soup", source="freeze_last_group",
                       surgery_groups=("first", "middle", "last", "outside"), outside="averaged with everything else"),)
'''


def test_a_strategy_module_is_all_a_new_strategy_needs(tmp_path, monkeypatch):
    """A module holding a ``STRATEGY`` in a strategies package is registered by :func:`registry.discover` (what
    famlib.strategies does with its own folder at import), the post-hoc one made from it after it whatever the
    module order, and it flows into the plan; the package's own modules are all registered already."""
    import importlib
    from pathlib import Path

    import famlib.strategies as package
    from famlib.pipeline import plan

    assert registry.discover(Path(package.__file__).parent, "famlib.strategies") == []  # all found at import
    own = sorted({m.stem for m in Path(package.__file__).parent.glob("*.py")} - registry.MACHINERY - {"__init__"})
    for name in own:  # every other module of the package is a strategy module
        module = importlib.import_module(f"famlib.strategies.{name}")
        assert getattr(module, "STRATEGY", None) or getattr(module, "STRATEGIES", None), name
    pkg = tmp_path / "my_strategies"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a_soup.py").write_text(SOUP_MODULE)  # sorts before its source's module
    (pkg / "freeze_last_group.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = registry.discover(pkg, "my_strategies")
        assert [s.name for s in found] == ["freeze_last_group", "freeze_last_group_soup"]
        assert registry.discover(pkg, "my_strategies") == []  # once only
        params = load_params("smoke", {"strategies": [*DEFAULTS, "freeze_last_group", "freeze_last_group_soup"]})
        steps = {st.id for st in plan(params)}
        assert {f"03_train_expert.freeze_last_group.{f}" for f in params.families} <= steps
        assert "05_evaluate.freeze_last_group_soup" in steps
        assert registry.get("freeze_last_group").frozen == ("last",)
    finally:
        for name in ("freeze_last_group_soup", "freeze_last_group"):
            if registry.is_known(name):
                registry.unregister(name)


def test_famlib_strategies_prints_the_registry(capsys, freeze_first):
    from famlib.cli import main

    assert main(["strategies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "label", "models", "trains", "regulariser", "data"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == registry.names()
    assert "Freeze first" in rows["freeze_first"] and "per family" in rows["freeze_first"]
    assert "middle, last, outside (first frozen)" in rows["freeze_first"]
    assert "first, last, outside (middle frozen)" in rows["freeze"]
    assert "Layer-Range L2-SP" in rows["l2sp"] and "dense mixture" in rows["dense"]
    assert "every freeze_first.<family>" in rows["freeze_first_soup"]

    assert main(["strategies", "--scale", "smoke", "--set", "strategies=[expert, soup]", "--format", "json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in shown] == ["base", "expert", "soup"]
    assert "FAMLIB_OVERRIDES" not in os.environ  # listing starts no kernel: nothing leaks to later notebooks
    assert shown[1] == {"name": "expert", "label": "Expert", "models": "per family", "trains": "everything",
                        "regulariser": "-", "data": "family data"}


def test_the_readme_shows_the_registry_as_famlib_strategies_prints_it():
    from famlib.config import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert registry.table_text() in readme, "README's `famlib strategies` table is out of date: paste its output"


@pytest.mark.slow
def test_a_new_strategy_trains_evaluates_and_shows_in_the_tables(freeze_first, smoke_corpus, smoke_base):
    from famlib.evaluate import evaluate_model
    from famlib.strategies.training import train_strategy
    from famlib.tables import build_tables

    params = _with_new()
    out = train_strategy(params, "freeze_first", "romance", smoke_corpus, progress=False)
    prov = json.loads((out / "famlib_provenance.json").read_text())
    assert (prov["strategy"], prov["family"]) == ("freeze_first", "romance")
    assert prov["parameters"]["first"]["trainable"] == 0 and prov["parameters"]["middle"]["frozen"] == 0
    base, tuned = load_file(str(smoke_base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    L, m, n = params.model.num_layers, params.layers.first, params.layers.last
    assert all((tuned[k] == v).all() for k, v in base.items() if group_of(k, L, m, n) == "first")
    assert any((tuned[k] != v).any() for k, v in base.items() if group_of(k, L, m, n) == "middle")

    quiet = dict(corpus=smoke_corpus, axes=["perplexity"], log=lambda *_: None)
    evaluate_model(params, "base", **quiet)
    rows = evaluate_model(params, "freeze_first.romance", **quiet).rows
    # the model of the romance family answers for its languages and the probe only (paper section 3.1)
    assert set(rows["language"]) == {"en", "es", "fr", "it", "ca"}
    assert set(rows["strategy"]) == {"freeze_first"} and set(rows["expert_family"]) == {"romance"}

    from famlib.evaluate.results import load_results

    tables = build_tables(params, load_results(params.scale))
    t2 = tables["table2"]
    assert "freeze_first" in t2.frame.columns
    assert t2.frame.at["romance", "freeze_first"] == t2.frame.at["romance", "freeze_first"]  # a number, not NaN
    header = next(line for line in t2.markdown().splitlines() if line.startswith("| |"))
    assert "| Freeze first |" in header  # the column's label is the one the strategy declares


# ----------------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------------
def test_unknown_strategy_names_list_the_known_ones_with_a_near_match(smoke_params):
    with pytest.raises(ConfigError, match=r"key 'strategy' has invalid value 'l2spp'; allowed: one of 'base', "
                                          r".*'l2sp'.*Did you mean 'l2sp'"):
        smoke_params.check_strategy("l2spp")
    with pytest.raises(ConfigError, match=r"smoke.yaml \(override strategies=.*key 'strategies\[1\]' has invalid "
                                          r"value 'frezee'.*'freeze_soup'.*Did you mean 'freeze'"):
        load_params("smoke", {"strategies": ["dense", "frezee"]})
    with pytest.raises(StrategyError, match=r"unknown strategy 'soop'; one of .*'expert_reverted'.*Did you mean 'soup'"):
        registry.get("soop")
    with pytest.raises(ModelIdError, match=r"unknown strategy 'exprt'.*Did you mean 'expert'"):
        model_id("exprt", "slavic")
    with pytest.raises(LayerError, match=r"no layer rule for strategy 'freez'.*'interpolation'.*Did you mean 'freeze'"):
        rule_for("freez")


@pytest.mark.parametrize("change, match", [
    ({"name": "freeze"}, r"'freeze' is already registered"),
    ({"name": "interpolation"}, r"reserved"),
    ({"name": "two words"}, r"name='two words'; allowed: a plain word"),
    ({"data": "dense"}, r"data='dense'; allowed: 'family'"),
    ({"training": "base"}, r"training='base'; allowed: 'dense' or 'family'"),
    ({"frozen": ("midle",)}, r"frozen=\('midle',\).*Did you mean 'middle'"),
    ({"frozen": ("first", "middle", "last", "outside")}, r"something must train"),
])
def test_contradictory_entries_are_refused(change, match):
    import dataclasses

    with pytest.raises(StrategyError, match=match):
        registry.register(dataclasses.replace(FREEZE_FIRST, **change))
    assert "freeze_first" not in registry.names()


def test_posthoc_entries_must_name_a_method_and_a_registered_trained_source():
    import dataclasses

    with pytest.raises(StrategyError, match=r"source 'frozen' is not a registered trained strategy.*Did you mean 'freeze'"):
        registry.register(dataclasses.replace(FREEZE_FIRST_SOUP, source="frozen"))
    with pytest.raises(StrategyError, match=r"surgery='average'; allowed: one of 'interpolate', 'revert', 'soup'"):
        registry.register(dataclasses.replace(FREEZE_FIRST_SOUP, source="freeze", surgery="average"))
    with pytest.raises(StrategyError, match=r"surgery_options=None; allowed: a function params .*needs alpha"):
        registry.register(dataclasses.replace(FREEZE_FIRST_SOUP, source="freeze", surgery="interpolate"))
    with pytest.raises(StrategyError, match=r"interpolate makes one model per model of its source"):
        registry.register(dataclasses.replace(FREEZE_FIRST_SOUP, source="freeze", surgery="interpolate",
                                              surgery_options=lambda p: {"alpha": 0.5}))
    with pytest.raises(StrategyError, match=r"a soup averages one model per family"):
        registry.register(dataclasses.replace(FREEZE_FIRST_SOUP, source="dense"))
    assert "freeze_first_soup" not in registry.names()
