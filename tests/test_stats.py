"""famlib.stats: cluster bootstrap intervals, McNemar, chrF statistics and the paired chrF test, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from sacrebleu.metrics import CHRF
from sacrebleu.significance import PairedTest

from famlib import stats as S

REFS = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog.",
        "Parameter alignment mitigates forgetting.", "Ein kleiner Test mit Umlauten: äöü.",
        "Short.", "Languages share items across the benchmark."]
HYPS_A = ["The cat sat on a mat.", "A quick brown fox jumped over the lazy dog.",
          "Parameter alignment reduces forgetting.", "Ein kleiner Test mit Umlauten.",
          "Short!", "Languages share the items of the benchmark."]
HYPS_B = ["A cat is on the mat.", "The fox is brown.", "Alignment of parameters.", "Ein Test.",
          "", "Items are shared."]


def _acc_cells(correct_by_cell, rename=lambda c, k: k):
    """{cell: bool array} -> accuracy Cells with keys k0..k{n-1} (optionally renamed per cell)."""
    return {c: ([rename(c, f"k{i}") for i in range(len(v))], S.accuracy_stats(v))
            for c, v in correct_by_cell.items()}


def _half_width(iv):
    return (iv.high - iv.low) / 2


# ------------------------------------------------------------------------------- known and degenerate intervals

def test_paired_accuracy_interval_matches_normal_approximation():
    rng = np.random.default_rng(1)
    n = 2000
    a = rng.random(n) < 0.7
    b = np.where(rng.random(n) < 0.8, a, rng.random(n) < 0.5)  # correlated with A, as two models are
    iv = S.paired_difference(_acc_cells({"x": a}), _acc_cells({"x": b}), metric="accuracy", iters=2000)
    d = a.astype(float) - b.astype(float)
    se = d.std(ddof=1) / math.sqrt(n)
    assert iv.estimate == pytest.approx(d.mean(), abs=1e-12)
    assert iv.low == pytest.approx(d.mean() - 1.96 * se, abs=0.25 * se)
    assert iv.high == pytest.approx(d.mean() + 1.96 * se, abs=0.25 * se)
    assert (iv.iters, iv.n_keys, iv.cells, iv.dropped, iv.level) == (2000, n, ("x",), 0, 0.95)


def test_identical_models_give_exactly_zero_interval():
    rng = np.random.default_rng(2)
    a = _acc_cells({"x": rng.random(300) < 0.6, "y": rng.random(300) < 0.4})
    iv = S.paired_difference(a, dict(a), metric="accuracy", iters=200)
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------- cluster property

def test_shared_keys_move_together_independent_keys_average_out():
    rng = np.random.default_rng(3)
    v = rng.random(800) < 0.5
    one = S.interval(_acc_cells({"x": v}), metric="accuracy", iters=2000)
    shared = S.interval(_acc_cells({"x": v, "y": v}), metric="accuracy", iters=2000)
    assert (shared.low, shared.high) == (one.low, one.high)  # same keys: the cells are the same cluster
    indep = S.interval(_acc_cells({"x": v, "y": v}, rename=lambda c, k: f"{c}:{k}"), metric="accuracy",
                       iters=2000)
    assert indep.n_keys == 1600
    assert _half_width(indep) / _half_width(one) == pytest.approx(1 / math.sqrt(2), rel=0.12)


def test_repeated_key_in_a_cell_counts_each_occurrence():
    cells = {"x": (["k0", "k0", "k1"], S.accuracy_stats([1, 1, 0]))}
    index = {"k0": 0, "k1": 1}
    got = S.cell_scores(cells, np.array([[1, 1], [2, 0], [0, 2], [0, 0]]), index, metric="accuracy")["x"]
    np.testing.assert_allclose(got[:3], [2 / 3, 1.0, 0.0])
    assert np.isnan(got[3])  # nothing drawn: NaN, not 0


def test_draws_with_an_empty_cell_are_dropped():
    # cell "x" has one key: about (1 - 1/K)^K = 1/e of the draws miss it
    cells = {"x": (["k0"], S.accuracy_stats([1])),
             "y": ([f"k{i}" for i in range(1, 5)], S.accuracy_stats([1, 0, 1, 0]))}
    iv = S.interval(cells, metric="accuracy", iters=500)
    assert 0.2 * 500 < iv.dropped < 0.5 * 500
    assert np.isfinite([iv.low, iv.high]).all()
    assert iv.estimate == pytest.approx((1 + 0.5) / 2)


def test_common_cells_only_and_grouped_mean():
    a = {c: ([f"k{i}" for i in range(4)], S.accuracy_stats(v))
         for c, v in {"ru": [1, 1, 1, 1], "uk": [1, 1, 0, 0], "es": [0, 0, 0, 0], "fr": [1, 0, 0, 0]}.items()}
    b = {c: a[c] for c in ("ru", "uk", "es")}
    agg = S.grouped_mean({"slavic": ["ru", "uk"], "romance": ["es", "fr"]})
    iv = S.paired_difference(a, b, agg, metric="accuracy", iters=50)
    assert iv.cells == ("ru", "uk", "es") and iv.estimate == 0.0
    single = S.interval(a, agg, metric="accuracy", iters=50)
    assert single.estimate == pytest.approx(((1 + 0.5) / 2 + (0 + 0.25) / 2) / 2)
    with pytest.raises(ValueError, match="share no cell"):
        S.paired_difference(a, {"de": a["ru"]}, metric="accuracy")


def test_difference_of_differences():
    a, b = _acc_cells({"x": [1, 1, 1, 0]}), _acc_cells({"x": [1, 0, 0, 0]})
    iv = S.contrast([(1, a), (-1, b), (-1, b), (1, b)], metric="accuracy", iters=100)
    plain = S.paired_difference(a, b, metric="accuracy", iters=100)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((plain.estimate, plain.low, plain.high))


def test_cells_from_frame_and_shape_errors():
    df = pd.DataFrame({"cell": ["ru", "ru", "es"], "key": [1, 2, 1], "correct": [1, 0, 1], "one": [1, 1, 1]})
    cells = S.cells_from_frame(df, ["correct", "one"])
    assert cells["ru"][0] == ["1", "2"] and cells["es"][1].tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError, match="lacks columns"):
        S.cells_from_frame(df, ["nats"])
    with pytest.raises(ValueError, match="needs"):
        S.interval(cells, metric="chrf")
    with pytest.raises(ValueError, match="unknown metric"):
        S.interval(cells, metric="bleu")


# ------------------------------------------------------------------------------- determinism

def test_same_seed_same_interval_other_seed_differs():
    rng = np.random.default_rng(4)
    a, b = _acc_cells({"x": rng.random(500) < 0.6}), _acc_cells({"x": rng.random(500) < 0.5})
    one, two = (S.paired_difference(a, b, metric="accuracy", iters=300, seed=7) for _ in range(2))
    other = S.paired_difference(a, b, metric="accuracy", iters=300, seed=8)
    assert one == two
    assert (other.low, other.high) != (one.low, one.high)
    w = S.bootstrap_weights(["a", "b", "c"], iters=5, seed=0)
    assert w.shape == (5, 3) and (w.sum(axis=1) == 3).all()
    with pytest.raises(ValueError, match="repeats"):
        S.bootstrap_weights(["a", "a"])


# ------------------------------------------------------------------------------- McNemar

def test_mcnemar_hand_computed():
    # 2 items A wrong / B right, 8 A right / B wrong, 5 concordant: p = 2 * (1 + 10 + 45) / 1024
    a = [0, 0] + [1] * 8 + [1, 1, 0, 0, 1]
    b = [1, 1] + [0] * 8 + [1, 1, 0, 0, 1]
    assert S.mcnemar(a, b) == (2, 8, pytest.approx(0.109375, abs=1e-15))
    assert S.mcnemar([1, 0], [1, 0]) == (0, 0, 1.0)
    assert S.mcnemar([0, 1], [1, 0])[2] == 1.0  # capped at 1
    # thousands of discordant pairs (C(2100, i) overflows a float): close to the normal approximation
    b01, b10, p = S.mcnemar([1] * 1100 + [0] * 1000, [0] * 1100 + [1] * 1000)
    z = (abs(b01 - b10) - 1) / math.sqrt(b01 + b10)
    assert (b01, b10) == (1000, 1100) and p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.05)


def test_mcnemar_keyed_aligns_and_names_missing_keys():
    a = {"q1": True, "q2": False, "q3": True}
    b = {"q3": False, "q1": True, "q2": True}
    assert S.mcnemar_keyed(a, b) == S.mcnemar([1, 0, 1], [1, 1, 0])
    with pytest.raises(ValueError, match=r"only in A \['q3'\].*only in B \['q9'\]"):
        S.mcnemar_keyed(a, {"q1": True, "q2": True, "q9": True})
    with pytest.raises(ValueError, match="aligned"):
        S.mcnemar([1, 0], [1])


# ------------------------------------------------------------------------------- metrics

def test_chrf_from_summed_stats_equals_corpus_chrf():
    st = S.chrf_stats(HYPS_A, REFS)
    assert st.shape == (len(REFS), S.METRICS["chrf"].n_stats)
    assert float(S.METRICS["chrf"].score(st.sum(0))) == pytest.approx(
        sacrebleu.corpus_chrf(HYPS_A, [REFS]).score, abs=1e-9)
    w = np.array([2, 0, 1, 3, 1, 0])
    rep = [i for i, k in enumerate(w) for _ in range(k)]
    expected = sacrebleu.corpus_chrf([HYPS_A[i] for i in rep], [[REFS[i] for i in rep]]).score
    assert float(S.METRICS["chrf"].score(w @ st)) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="must match"):
        S.chrf_stats(HYPS_A, REFS[:2])


def test_vectorised_chrf_matches_sacrebleu_on_edge_stats():
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 4, size=(300, 18)).astype(float)
    rows[:, 2::3] = np.minimum(rows[:, 2::3], np.minimum(rows[:, 0::3], rows[:, 1::3]))  # match <= hyp, ref
    rows[:5] = 0  # empty sums
    got = S.METRICS["chrf"].score(rows)
    expected = [CHRF()._compute_score_from_stats(list(r)).score for r in rows]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_bits_per_byte_and_accuracy_scores():
    ll, nb = np.array([-10.0, -3.5, -7.25]), np.array([4, 2, 9])
    st = S.bits_per_byte_stats(ll, nb)
    assert float(S.METRICS["bits_per_byte"].score(st.sum(0))) == pytest.approx(-ll.sum() / (math.log(2) * nb.sum()))
    assert S.METRICS["bits_per_byte"].lower_is_better and not S.METRICS["accuracy"].lower_is_better
    assert S.point_scores({"x": (["a", "b", "c"], st)}, metric="bits_per_byte")["x"] == pytest.approx(
        -ll.sum() / (math.log(2) * nb.sum()))
    assert float(S.METRICS["accuracy"].score(S.accuracy_stats([1, 0, 1, 1]).sum(0))) == 0.75
    with pytest.raises(ValueError, match="must match"):
        S.bits_per_byte_stats(ll, nb[:2])


def test_paired_bootstrap_chrf_delta_and_sacrebleu_p_value(monkeypatch):
    res = S.paired_bootstrap_chrf(HYPS_A, HYPS_B, REFS, iters=1000)
    ca, cb = sacrebleu.corpus_chrf(HYPS_A, [REFS]).score, sacrebleu.corpus_chrf(HYPS_B, [REFS]).score
    assert res.interval.estimate == pytest.approx(ca - cb, abs=1e-9)
    assert (res.score_a, res.score_b) == pytest.approx((ca, cb), abs=1e-9)
    assert res.interval.low <= res.interval.estimate <= res.interval.high
    assert res.p_value < 0.01  # B is far worse
    # a close system (p about 0.09): the same procedure and seed as sacrebleu's own test give the same p-value
    close = list(HYPS_A)
    close[1], close[2] = "A quick brown fox jumps over the dog.", "Parameter alignment mitigates forgetting"
    close[5] = "Languages share items across benchmarks."
    mine = S.paired_bootstrap_chrf(HYPS_A, close, REFS, iters=1000)
    monkeypatch.setenv("SACREBLEU_SEED", "12345")
    _, scores = PairedTest([("b", close), ("a", HYPS_A)], {"chrF": CHRF()}, [REFS], test_type="bs",
                           n_samples=1000)()
    theirs = scores["chrF2"][1].p_value  # sacrebleu names the metric by its signature
    assert 0.02 < theirs < 0.5 and mine.p_value == pytest.approx(theirs, abs=1e-12)


# ------------------------------------------------------------------------------- verdicts

def _iv(est, low, high):
    return S.Interval(est, low, high, 0.95, 1000, 100)


def test_verdicts_and_combine():
    assert S.verdict_greater(_iv(0.03, 0.01, 0.05)) == S.HOLDS
    assert S.verdict_greater(_iv(-0.03, -0.05, 0.0)) == S.FAILS  # high == margin excludes "> margin"
    assert S.verdict_greater(_iv(0.01, -0.01, 0.03)) == S.UNDECIDED
    assert S.verdict_greater(_iv(0.03, 0.01, 0.05), margin=0.02) == S.UNDECIDED
    assert S.verdict_greater(None) == S.NOT_MEASURED
    assert S.verdict_greater(_iv(float("nan"), 0.0, 1.0)) == S.NOT_MEASURED
    assert S.verdict_less(_iv(-0.03, -0.05, -0.01)) == S.HOLDS
    assert S.verdict_less(_iv(0.03, 0.0, 0.05)) == S.FAILS  # low == margin excludes "< margin"
    assert S.verdict_less(_iv(0.0, -0.01, 0.01)) == S.UNDECIDED
    H, F, U, N = S.HOLDS, S.FAILS, S.UNDECIDED, S.NOT_MEASURED
    assert S.combine([H, H]) == H
    assert S.combine([H, U]) == U
    assert S.combine([U, F, N]) == F
    assert S.combine([H, N, U]) == N
    with pytest.raises(ValueError, match="non-empty"):
        S.combine([])
    with pytest.raises(ValueError, match="non-empty"):
        S.combine(["maybe"])


def test_format_interval():
    assert S.format_interval(_iv(0.031, 0.012, 0.05)) == "+0.031 [+0.012, +0.050]"
    assert S.format_interval(_iv(-1.5, -2.25, -0.75), digits=1) == "-1.5 [-2.2, -0.8]"
