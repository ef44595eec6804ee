"""famlib.summaries: the computed sentences each executed notebook ends with say what the inputs hold."""

from __future__ import annotations

import pandas as pd
import pytest

from famlib import summaries
from famlib.claims import Claim
from famlib.config import load_params


def test_claim_counts_name_each_verdict_and_its_claims():
    found = [Claim("C1", "t", "holds", "e"), Claim("C2", "t", "undecided", "e"), Claim("C3", "t", "holds", "e"),
             Claim("C4", "t", "not measured", "e")]
    text = summaries.tables_and_claims(found)
    assert text == ("Of the paper's 4 claims on this run: **holds** 2 (C1, C3); **undecided** 1 (C2); "
                    "**not measured** 1 (C4).")


def test_interpolation_names_the_group_that_moves_each_task_most():
    effects = pd.DataFrame([
        {"task": "comprehension", "split": "held_in", "direction": "", "group": "middle", "change": -0.08,
         "abs_change": 0.08, "monotonic": True},
        {"task": "comprehension", "split": "held_in", "direction": "", "group": "first", "change": -0.02,
         "abs_change": 0.02, "monotonic": False},
        {"task": "comprehension", "split": "base", "direction": "", "group": "last", "change": -0.5,
         "abs_change": 0.5, "monotonic": True},  # English: not the held-in mean
    ])
    text = summaries.interpolation(effects)
    assert "* comprehension: middle moves it most (-0.080, monotonic); first -0.020" in text
    assert "last" not in text
    assert summaries.interpolation(effects.iloc[:0]) == "No interpolation point was measured."


def test_data_prep_counts_languages_roles_and_megabytes():
    stats = pd.DataFrame([
        {"family": "probe", "language": "en", "role": "base", "text": "bible:1", "split": "train", "units": 5, "words": 9, "bytes": 2_000_000},
        {"family": "slavic", "language": "pl", "role": "held_in", "text": "bible:2", "split": "train", "units": 5, "words": 9, "bytes": 1_000_000},
        {"family": "slavic", "language": "pl", "role": "held_in", "text": "bible:2", "split": "evaluation", "units": 1, "words": 9, "bytes": 250_000},
    ])
    text = summaries.data_prep(load_params("smoke"), stats, "OK: 11 units; every group sits in one split")
    assert text == ("**smoke**: 2 languages (1 base, 1 held-in) in 2 texts; train 3.00 MB, validation 0.00 MB, "
                    "evaluation 0.25 MB. Split check: OK: 11 units.")


def test_group_effects_read_the_curves_the_figures_draw():
    """famlib.interpolation.group_effects (notebook 06 and its summary) is built on
    famlib.analysis.interpolation_curves: held-in means per language, English on its own, the shared Dense
    point (group "all", alpha 1) closing every group's curve. Values computed by hand."""
    from famlib.interpolation import group_effects

    rows = []
    at = {("first", 0.0): 0.60, ("first", 0.5): 0.58, ("middle", 0.0): 0.70, ("middle", 0.5): 0.62}
    for (group, alpha), v in at.items():
        for lang, shift in (("es", 0.0), ("it", 0.02)):
            rows.append({"group": group, "alpha": alpha, "language": lang, "value": v + shift, "split": "held_in"})
        rows.append({"group": group, "alpha": alpha, "language": "en", "value": v + 0.1, "split": "base"})
    for lang, v, split in (("es", 0.50, "held_in"), ("it", 0.52, "held_in"), ("en", 0.66, "base")):
        rows.append({"group": "all", "alpha": 1.0, "language": lang, "value": v, "split": split})
    df = pd.DataFrame(rows).assign(task="comprehension", metric="acc_mutual_info", primary=True, n=30,
                                   direction=None, language_family=lambda d: d["language"].map(
                                       {"es": "romance", "it": "romance", "en": "probe"}), model="m")
    eff = group_effects(df).set_index(["split", "group"])
    assert list(eff.index) == [("base", "first"), ("base", "middle"), ("held_in", "first"), ("held_in", "middle")]
    held = eff.loc[("held_in", "middle")]
    assert held["at_base"] == pytest.approx(0.71) and held["at_dense"] == pytest.approx(0.51)
    assert held["change"] == pytest.approx(-0.20) and held["monotonic"] and held["points"] == 3
    first = eff.loc[("held_in", "first")]
    assert first["change"] == pytest.approx(0.51 - 0.61) and first["monotonic"]
    assert eff.loc[("base", "middle"), "change"] == pytest.approx(0.66 - 0.80)
