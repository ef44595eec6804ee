"""The dose-response study (famlib.dose, notebook 08): its settings, its grid, and a real run at smoke scale."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from famlib import dose
from famlib.config import load_params
from famlib.errors import ConfigError

GRID = {"dose": {"family": "romance", "lrs": [1.0e-3, 1.0e-2], "steps": [4],
                 "strategies": ["expert", "freeze", "l2sp", "expert_reverted"], "languages": ["en", "es", "it"],
                 "axes": ["perplexity", "comprehension"]}}


def _with(**changes):
    return load_params("smoke", {"dose": {**GRID["dose"], **changes}})


def test_dose_settings_refuse_what_the_study_cannot_run():
    with pytest.raises(ConfigError, match=r"dose\.family.*romanse|dose\.family.*slavic"):
        _with(family="romanse")
    with pytest.raises(ConfigError, match=r"dose\.lrs\[1\].*positive"):
        _with(lrs=[1e-3, -1e-3])
    with pytest.raises(ConfigError, match=r"dose\.steps\[0\].*positive integer"):
        _with(steps=[0])
    with pytest.raises(ConfigError, match=r"dose\.strategies\[0\].*per-family strategy"):
        _with(strategies=["dense"])  # Dense trains every family at once: not a point of one family's study
    with pytest.raises(ConfigError, match=r"dose\.strategies\[0\].*source.*expert"):
        _with(strategies=["expert_reverted"])  # a revert of Expert points needs the Expert points
    with pytest.raises(ConfigError, match=r"dose\.languages\[0\].*ru"):
        _with(languages=["ru"])  # not the probe nor a Romance language
    with pytest.raises(ConfigError, match=r"dose\.languages.*training language"):
        _with(languages=["en", "it"])  # acquisition needs a training language
    with pytest.raises(ConfigError, match=r"dose\.axes.*perplexity"):
        _with(axes=["comprehension"])
    with pytest.raises(ConfigError, match=r"dose\.axes\[1\].*reasoning"):
        _with(axes=["perplexity", "reasonin"])
    with pytest.raises(ConfigError, match=r"dose\.axes.*each entry once"):
        _with(axes=["perplexity", "perplexity"])
    with pytest.raises(ConfigError, match=r"dose\.lrs\[0\].*finite"):
        _with(lrs=[float("inf")])
    with pytest.raises(ConfigError, match=r"dose\.lrs.*6 significant digits"):
        _with(lrs=[1e-4, 1.0000001e-4])  # the points' ids would collide
    with pytest.raises(ConfigError, match=r"dose\.strategies\[1\].*its own learning rate"):
        load_params("smoke", {"dose": {**GRID["dose"], "strategies": ["expert", "lora"]},
                              "lora": {"rank": 4, "alpha": 8, "lr": 1e-2}})
    with pytest.raises(ConfigError, match=r"dose.*known keys"):
        load_params("smoke", {"dose": {**GRID["dose"], "budget": [4]}})


def test_the_grid_trains_before_it_reverts_and_each_point_gets_its_own_settings():
    p = _with()
    points = dose.grid(p)
    assert len(points) == 2 * 1 * 4
    strategies = [pt.strategy for pt in points]
    for lr in (1e-3, 1e-2):  # within a dose, the Expert comes before the revert made of it
        mine = [pt.strategy for pt in points if pt.lr == lr]
        assert mine.index("expert") < mine.index("expert_reverted")
    assert len({pt.model for pt in points}) == len(points)
    assert points[0].model == "dose.expert.romance.lr0.001.s4" and strategies[0] == "expert"
    q = dose.point_params(p, points[1])
    assert q.training.family.lr == points[1].lr and q.training.family.max_steps == 4
    assert q.training.family.patience is None  # early stopping off by default: the budget is spent
    assert q.training.family.eval_every == 4  # one validation, at the end: the saved weights are the last step's
    assert dose.point_params(_with(early_stopping=True), points[1]).training.family.patience == p.training.family.patience
    assert q.training.dense == p.training.dense and q.l2sp == p.l2sp
    assert dose.study_languages(p) == ["en", "es", "it"]
    assert dose.study_languages(load_params("smoke", {"dose": {k: v for k, v in GRID["dose"].items()
                                                               if k != "languages"}})) == ["en", "es", "fr", "it", "ca"]
    with pytest.raises(Exception, match="no 'dose:' section"):
        dose.grid(load_params("tiny"))


def test_verdicts_follow_the_interval_and_the_direction_of_the_axis():
    from famlib.stats import Interval

    up = Interval(0.05, 0.01, 0.09, 0.95, 1000, 40)
    down = Interval(-0.05, -0.09, -0.01, 0.95, 1000, 40)
    spans = Interval(0.02, -0.01, 0.05, 0.95, 1000, 40)
    assert dose.verdict(up, "perplexity") == "forgets" and dose.verdict(down, "perplexity") == "gains"
    assert dose.verdict(up, "comprehension") == "gains" and dose.verdict(down, "comprehension") == "forgets"
    assert dose.verdict(spans, "perplexity") == "undecided" and dose.verdict(None, "perplexity") == "not measured"
    # a mitigation minus the Expert: lower bits per byte, or higher accuracy, is forgetting less
    assert dose.against_expert(down, "perplexity") == "less" and dose.against_expert(up, "comprehension") == "less"
    assert dose.against_expert(up, "perplexity") == "more" and dose.against_expert(spans, "translation") == "undecided"


@pytest.mark.slow
def test_the_study_runs_at_smoke_scale_and_reads_back(smoke_corpus, smoke_base, tmp_path, monkeypatch):
    import shutil

    from famlib.evaluate import evaluate_model
    from famlib.evaluate.results import load_results
    from famlib.naming import model_path

    runs = tmp_path / "runs"
    monkeypatch.setenv("FAMLIB_RUNS", str(runs))
    p = _with()
    shutil.copytree(smoke_base, model_path(p, "base"))  # the session's base, in this test's own runs folder
    evaluate_model(p, "base", corpus=smoke_corpus, axes=["perplexity", "comprehension"], languages=["en", "es", "it"],
                   log=lambda *_: None)
    table = dose.run_dose(p, corpus=smoke_corpus, log=lambda *_: None)
    points = dose.grid(p)
    assert set(table["model"]) == {pt.model for pt in points}
    # every point and split: perplexity on English, held-in Spanish and held-out Italian; comprehension on Spanish
    # and Italian only (the suite has no English comprehension task: a paraphrase always out-overlaps its distractors)
    assert len(table) == len(points) * (3 + 2)
    assert set(table["split"]) == {"probe", "held_in", "held_out"}
    assert set(map(tuple, table[["axis", "split"]].drop_duplicates().values)) == {
        ("perplexity", "probe"), ("perplexity", "held_in"), ("perplexity", "held_out"),
        ("comprehension", "held_in"), ("comprehension", "held_out")}
    assert ((table["low"] <= table["change"]) & (table["change"] <= table["high"])).all()
    for r in table.itertuples():
        assert r.verdict == dose.verdict(type("I", (), {"low": r.low, "high": r.high})(), r.axis)
        assert math.isclose(r.change, r.value - r.base, abs_tol=1e-9)
    by = table.drop_duplicates("model").set_index(["strategy", "lr"])
    for lr in (1e-3, 1e-2):
        assert by.loc[("freeze", lr), "drift_middle"] == 0.0  # frozen: not a bit moved
        assert by.loc[("expert_reverted", lr), "drift_middle"] == 0.0  # reverted exactly
        for g in ("first", "last"):  # everything else stays at the Expert's values
            assert by.loc[("expert_reverted", lr), f"drift_{g}"] == pytest.approx(by.loc[("expert", lr), f"drift_{g}"])
        assert by.loc[("expert", lr), "drift_middle"] > 0
    assert by.loc[("expert", 1e-2), "drift_layers"] > by.loc[("expert", 1e-3), "drift_layers"]  # the dose grows
    # mitigations are compared with the Expert at the same dose; the Expert is not compared with itself
    assert (table[table["strategy"] == "expert"]["vs_expert_verdict"] == "").all()
    forgetting = table[(table["strategy"] != "expert") & (table["split"] != "held_in")]["vs_expert_verdict"]
    assert forgetting.isin(["less", "more", "undecided"]).all()
    # the base sits in the dose collection at lr 0, and it is the base's own evaluation (reused, not redone)
    rows = load_results("smoke", "dose")
    assert set(rows[rows["model"] == "base"]["lr"].astype(float)) == {0.0}
    base_rows = load_results("smoke")
    b = base_rows[base_rows["model"] == "base"].set_index(["harness_task", "metric"])["value"]
    bd = rows[rows["model"] == "base"].set_index(["harness_task", "metric"])["value"]
    assert len(bd) and (b.loc[bd.index] == bd).all()
    # weights are removed once measured; a second run reads every point back and gives the same table
    assert not [q for q in (runs / "smoke" / "dose" / "models").iterdir() if q.is_dir()]
    said = []
    again = dose.run_dose(p, corpus=smoke_corpus, log=said.append)
    pd.testing.assert_frame_equal(again, table)
    assert not [m for m in said if m.endswith((": training", ": reverting"))], said  # read back, nothing redone
    assert not [m for m in said if re.match(r"\S+: (perplexity|comprehension), \d+ tasks", m)], said  # no evaluation re-run
    saved = pd.read_csv(runs / "smoke" / "dose" / "points.csv")
    assert len(saved) == len(table)
    # a setting the points read (an L2-SP lambda) changes their key: retrained and re-measured, not read back
    assert dose.point_key(p, points[0], "b") != dose.point_key(load_params("smoke", {**GRID, "l2sp.middle": 0.5}),
                                                                points[0], "b")
    assert dose.point_key(p, points[0], "b") == dose.point_key(_with(lrs=[1.0e-3, 1.0e-2, 3.0e-2]), points[0], "b")
    assert dose.point_key(p, points[0], "b") != dose.point_key(p, points[0], "another base")
    # figures, the onset table and the summary are computed from the table
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    from famlib import plots

    for name, fig in (("forgetting", dose.forgetting_figure(table)), ("tradeoff", dose.tradeoff_figure(table))):
        assert not getattr(fig, "famlib_empty", False)
        plots.save(fig, tmp_path / f"dose_{name}")
        assert (tmp_path / f"dose_{name}.png").stat().st_size > 10_000
    onset = dose.onset(table)
    assert set(onset["strategy"]) == {"expert", "freeze", "l2sp", "expert_reverted"}
    text = dose.summary(p, table)
    assert "8 points measured (8 in the grid)" in text and "freeze against the Expert" in text
    # held-in is acquisition: a mitigation there acquires more or less than the Expert, it does not forget less
    held = table[(table["split"] == "held_in") & (table["strategy"] != "expert")]["vs_expert_verdict"]
    assert held.isin(["acquires more", "acquires less", "undecided"]).all()
    assert not ((onset["split"] == "held-in") & (onset["strategy"] != "expert")).any()
    wide = dose.wide(table)
    assert len(wide) == len(points) and "English interval" in wide.columns
