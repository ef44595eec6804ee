"""Paired uncertainty for the differences the paper reports: cluster bootstrap, McNemar, chrF paired bootstrap.

A metric is "per-item statistics + a score of their sum", so any bootstrap resample is a weighted sum of the
per-item statistics: ``weights (iters x K) @ stats (K x d)``. Resampling draws the K distinct item keys with
replacement; every cell (language, or (language, direction)) that shares a key gets that key's weight, so the
languages answering the same item move together (a cluster bootstrap over items, not over cell rows).

Claims get one of four verdicts: ``holds`` (the interval lies on the claim's side), ``does not hold`` (the
interval excludes the claim), ``undecided`` (the interval spans the margin) and ``not measured``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from sacrebleu.metrics import CHRF

Cell = Hashable
# cell -> (item keys, per-item stats n x d); whoever builds it decides which model answers which cell.
Cells = Mapping[Cell, tuple[Sequence[str], np.ndarray]]
Aggregate = Callable[[Mapping[Cell, np.ndarray]], np.ndarray]

HOLDS, FAILS, UNDECIDED, NOT_MEASURED = "holds", "does not hold", "undecided", "not measured"

# sacrebleu.corpus_chrf's settings; the private methods are checked at import so a sacrebleu change fails loudly.
_CHRF = CHRF()
for _name in ("_extract_corpus_statistics", "_compute_score_from_stats"):
    if not hasattr(_CHRF, _name):
        raise ImportError(f"famlib.stats needs sacrebleu's CHRF.{_name}; the installed sacrebleu lacks it")


# ----------------------------------------------------------------------------------------------- metrics

@dataclass(frozen=True)
class Metric:
    """A metric as per-item statistics (``n_stats`` columns) and a vectorised score of their (weighted) sum."""

    name: str
    n_stats: int
    lower_is_better: bool
    score: Callable[[np.ndarray], np.ndarray]  # sums[..., n_stats] -> scores[...]


def _ratio(sums: np.ndarray) -> np.ndarray:
    """s0 / s1 over the last axis; NaN where the denominator is 0 (an empty resample)."""
    s = np.asarray(sums, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s[..., 1] != 0, s[..., 0] / s[..., 1], np.nan)


def _chrf_score(sums: np.ndarray) -> np.ndarray:
    """sacrebleu's default chrF (effective-order averaging) of summed [hyp, ref, match] stats, vectorised."""
    s = np.asarray(sums, dtype=float)
    hyp, ref, match = s[..., 0::3], s[..., 1::3], s[..., 2::3]
    seen = (hyp > 0) & (ref > 0)  # sacrebleu averages only the orders present on both sides
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.maximum(seen.sum(-1), 1)
        prec = np.where(seen, match / hyp, 0.0).sum(-1) / n
        rec = np.where(seen, match / ref, 0.0).sum(-1) / n
        f = _CHRF.beta ** 2
        denom = f * prec + rec
        return np.where(denom > 0, 100 * (1 + f) * prec * rec / denom, 0.0)


METRICS = {
    "accuracy": Metric("accuracy", 2, False, _ratio),
    "bits_per_byte": Metric("bits_per_byte", 2, True, _ratio),
    "chrf": Metric("chrf", 3 * _CHRF.order, False, _chrf_score),
}


def get_metric(metric: Union[str, Metric]) -> Metric:
    """The registered metric of that name (a Metric passes through). Raises: ValueError on an unknown name."""
    if isinstance(metric, Metric):
        return metric
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {sorted(METRICS)}")
    return METRICS[metric]


def accuracy_stats(correct: Sequence[bool]) -> np.ndarray:
    """Per-item accuracy stats: rows (correct, 1)."""
    c = np.asarray(correct, dtype=float).reshape(-1)
    return np.stack([c, np.ones_like(c)], axis=1)


def bits_per_byte_stats(loglik_nats: Sequence[float], n_bytes: Sequence[int]) -> np.ndarray:
    """Per-item stats (-loglik / ln 2, n_bytes). Raises: ValueError when the lengths differ."""
    ll, nb = np.asarray(loglik_nats, dtype=float).reshape(-1), np.asarray(n_bytes, dtype=float).reshape(-1)
    if ll.shape != nb.shape:
        raise ValueError(f"loglik_nats has {ll.size} items but n_bytes has {nb.size}; they must match")
    return np.stack([-ll / math.log(2), nb], axis=1)


def chrf_stats(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-sentence chrF stats (n x 18) as sacrebleu computes them, one reference per hypothesis.

    Raises: ValueError when the lengths differ (sacrebleu's zip would silently truncate).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references; they must match")
    if not hyps:
        return np.zeros((0, METRICS["chrf"].n_stats))
    return np.asarray([_chrf_pair(h, r) for h, r in zip(hyps, refs)], dtype=float)


@functools.lru_cache(maxsize=1 << 16)
def _chrf_pair(hyp: str, ref: str) -> tuple:
    """sacrebleu's statistics of one (hypothesis, reference) pair, memoised: models that write the same
    sentence (a copy of the source, an empty output, the layer interpolation's neighbouring points) and a
    collection read twice in one process cost one extraction per distinct pair."""
    return tuple(_CHRF._extract_corpus_statistics([hyp], [[ref]])[0])


# ----------------------------------------------------------------------------------------------- cells

def cells_from_frame(df: pd.DataFrame, stat_columns: Sequence[str], *, cell: str = "cell",
                     key: str = "key") -> dict:
    """Cells from a frame with one row per item: columns ``cell``, ``key`` and the stat columns.

    Raises: ValueError naming the missing columns.
    """
    missing = [c for c in [cell, key, *stat_columns] if c not in df.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; it has {list(df.columns)}")
    keys, stats = df[key].astype(str).to_numpy(), df[list(stat_columns)].to_numpy(dtype=float)
    return {c: (list(keys[i]), stats[i]) for c, i in df.groupby(cell, sort=False).indices.items()}


def _checked(cells: Cells, metric: Metric) -> dict:
    """cells with stats as float arrays, checked against the metric. Raises: ValueError on a bad shape."""
    out = {}
    for c, (keys, stats) in cells.items():
        stats = np.asarray(stats, dtype=float)
        if stats.ndim != 2 or stats.shape != (len(keys), metric.n_stats):
            raise ValueError(f"cell {c!r}: stats of shape {stats.shape} for {len(keys)} keys; "
                             f"{metric.name} needs ({len(keys)}, {metric.n_stats})")
        out[c] = (list(keys), stats)
    return out


def bootstrap_weights(keys_universe: Sequence[str], iters: int = 1000, seed: int = 0) -> np.ndarray:
    """Multinomial resampling counts (iters x K) of the K distinct keys, K draws each; PCG64(seed).

    Raises: ValueError on repeated keys or iters < 1.
    """
    k = len(keys_universe)
    if len(set(keys_universe)) != k:
        raise ValueError(f"keys_universe repeats keys ({k} given, {len(set(keys_universe))} distinct)")
    if iters < 1 or k < 1:
        raise ValueError(f"need iters >= 1 and at least one key; got iters={iters}, {k} keys")
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.multinomial(k, np.full(k, 1.0 / k), size=iters)


def cell_scores(cells: Cells, weights: np.ndarray, key_index: Mapping[str, int], *,
                metric: Union[str, Metric]) -> dict:
    """Per-cell scores of each resample: cell -> (iters,).

    A key repeated within a cell counts once per occurrence, each with the key's weight. A resample that draws
    none of a cell's keys gives that cell NaN, whatever the metric (aggregates then drop the whole draw).
    Raises: KeyError naming a key that key_index lacks.
    """
    m, w = get_metric(metric), np.asarray(weights, dtype=float)  # float: BLAS matmul, not numpy's int loop
    out = {}
    for c, (keys, stats) in _checked(cells, m).items():
        cw = w[:, [key_index[k] for k in keys]]  # iters x n; repeated keys repeat their column
        scores = m.score(cw @ stats)
        out[c] = np.where(cw.sum(axis=1) > 0, scores, np.nan)
    return out


def point_scores(cells: Cells, *, metric: Union[str, Metric]) -> dict:
    """Each cell's score on all its items (cell -> float), e.g. the corpus chrF of a language."""
    m = get_metric(metric)
    return {c: float(m.score(s.sum(axis=0))) for c, (_, s) in _checked(cells, m).items()}


# ----------------------------------------------------------------------------------------------- aggregates

def mean_of_cells(scores: Mapping[Cell, np.ndarray]) -> np.ndarray:
    """The mean over cells, per draw (a NaN cell makes the draw NaN)."""
    return np.mean(np.stack(list(scores.values())), axis=0)


def grouped_mean(groups: Mapping[Hashable, Sequence[Cell]]) -> Aggregate:
    """An aggregate: the mean over groups of the mean over their cells (e.g. mean of family means).

    Cells outside every group are ignored; a group none of whose cells is present is left out (the
    Interval's ``cells`` shows what was used). The aggregate raises ValueError when no group has a cell.
    """
    def aggregate(scores: Mapping[Cell, np.ndarray]) -> np.ndarray:
        means = [np.mean(np.stack([scores[c] for c in cs if c in scores]), axis=0)
                 for cs in groups.values() if any(c in scores for c in cs)]
        if not means:
            raise ValueError(f"no cell of any group {dict(groups)} is among the cells {list(scores)}")
        return np.mean(np.stack(means), axis=0)
    return aggregate


# ----------------------------------------------------------------------------------------------- intervals

@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval.

    ``iters`` draws were made; ``dropped`` of them had a cell with no drawn item and were left out of the
    percentiles. ``cells`` lists the cells common to every term, the only ones compared.
    """

    estimate: float
    low: float
    high: float
    level: float
    iters: int
    n_keys: int
    cells: tuple = ()
    dropped: int = 0


def contrast(terms: Sequence[tuple[float, Cells]], aggregate: Aggregate = mean_of_cells, *,
             metric: Union[str, Metric], iters: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """sum(coef * aggregate(cells)) over the terms, all resampled with the SAME key weights (paired).

    The key universe is the sorted union of the keys of the common cells. ``[(1, a), (-1, b)]`` is a
    difference, ``[(1, a), (-1, b), (-1, c), (1, d)]`` a difference of differences.
    Raises: ValueError when the terms share no cell, the level is outside (0, 1), or every draw is dropped.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    common = [c for c in terms[0][1] if all(c in cells for _, cells in terms)] if terms else []
    if not common:
        raise ValueError(f"the {len(terms)} terms share no cell; cells given: {[list(t[1]) for t in terms]}")
    used = [{c: cells[c] for c in common} for _, cells in terms]
    universe = sorted({k for cells in used for keys, _ in cells.values() for k in keys})
    index = {k: i for i, k in enumerate(universe)}

    def combined(weights: np.ndarray) -> np.ndarray:
        parts = [coef * np.asarray(aggregate(cell_scores(cells, weights, index, metric=metric)), dtype=float)
                 for (coef, _), cells in zip(terms, used)]
        return np.sum(parts, axis=0)

    estimate = float(combined(np.ones((1, len(universe))))[0])
    draws = combined(bootstrap_weights(universe, iters, seed))
    kept = draws[np.isfinite(draws)]
    if kept.size == 0:
        raise ValueError(f"all {iters} draws left some cell empty; the cells have too few keys")
    low, high = np.quantile(kept, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, float(low), float(high), level, iters, len(universe), tuple(common),
                    int(iters - kept.size))


def interval(a: Cells, aggregate: Aggregate = mean_of_cells, *, metric: Union[str, Metric], iters: int = 1000,
             seed: int = 0, level: float = 0.95) -> Interval:
    """One model's aggregate score with its cluster-bootstrap interval (see :func:`contrast`)."""
    return contrast([(1.0, a)], aggregate, metric=metric, iters=iters, seed=seed, level=level)


def paired_difference(a: Cells, b: Cells, aggregate: Aggregate = mean_of_cells, *, metric: Union[str, Metric],
                      iters: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """aggregate(a) - aggregate(b) with a paired cluster-bootstrap interval (see :func:`contrast`)."""
    return contrast([(1.0, a), (-1.0, b)], aggregate, metric=metric, iters=iters, seed=seed, level=level)


# ----------------------------------------------------------------------------------------------- tests

def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int, float]:
    """Exact two-sided McNemar test on aligned items.

    Returns: (b01, b10, p): b01 = A wrong and B right, b10 = A right and B wrong,
    p = min(1, 2 P(X <= min(b01, b10))) for X ~ Binomial(b01 + b10, 1/2); p = 1 without discordant pairs.
    Raises: ValueError when the lengths differ.
    """
    a, b = np.asarray(correct_a, dtype=bool).reshape(-1), np.asarray(correct_b, dtype=bool).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"correct_a has {a.size} items but correct_b has {b.size}; they must be aligned")
    b01, b10 = int(np.sum(~a & b)), int(np.sum(a & ~b))
    n = b01 + b10
    if n == 0:
        return b01, b10, 1.0
    # exact integers, one division: C(n, i) would overflow a float for a few thousand discordant pairs
    tail = sum(math.comb(n, i) for i in range(min(b01, b10) + 1)) / 2 ** n
    return b01, b10, min(1.0, 2 * tail)


def mcnemar_keyed(correct_a: Mapping[str, bool], correct_b: Mapping[str, bool]) -> tuple[int, int, float]:
    """:func:`mcnemar` on two {key: correct} dicts aligned by key. Raises: ValueError naming missing keys."""
    only_a, only_b = sorted(set(correct_a) - set(correct_b)), sorted(set(correct_b) - set(correct_a))
    if only_a or only_b:
        raise ValueError(f"keys must match: {len(only_a)} only in A {only_a[:10]}, "
                         f"{len(only_b)} only in B {only_b[:10]}")
    keys = sorted(correct_a)
    return mcnemar([correct_a[k] for k in keys], [correct_b[k] for k in keys])


@dataclass(frozen=True)
class PairedChrf:
    """chrF(A) - chrF(B) with its percentile interval (``interval.estimate`` is the delta) and p-value."""

    interval: Interval
    p_value: float
    score_a: float
    score_b: float


def paired_bootstrap_chrf(hyps_a: Sequence[str], hyps_b: Sequence[str], refs: Sequence[str], *,
                          iters: int = 1000, seed: int = 12345, level: float = 0.95) -> PairedChrf:
    """sacrebleu's paired bootstrap test (``sacrebleu --paired-bs``) for chrF of system A against B.

    sacrebleu's PairedTest reports each system's CI but not the delta's, so its procedure is reimplemented
    on the per-sentence stats: the same resample indices (``default_rng(seed).choice(n, (iters, n))``,
    12345 being sacrebleu's default seed) and the same p-value, (#{|d*| - mean|d*| > |d|} + 1) / (iters + 1).
    The interval is the percentile interval of the resampled deltas.
    Raises: ValueError when the three lists differ in length.
    """
    if not len(hyps_a) == len(hyps_b) == len(refs):
        raise ValueError(f"need aligned lists; got {len(hyps_a)}, {len(hyps_b)} hypotheses, {len(refs)} refs")
    sa, sb = chrf_stats(hyps_a, refs), chrf_stats(hyps_b, refs)
    n = len(refs)
    idx = np.random.default_rng(seed).choice(n, size=(iters, n), replace=True)
    # counts per resample: a weighted sum equals sacrebleu's sum over the gathered rows
    flat = (idx + n * np.arange(iters)[:, None]).ravel()
    counts = np.bincount(flat, minlength=iters * n).reshape(iters, n).astype(float)
    score_a, score_b = float(_chrf_score(sa.sum(0))), float(_chrf_score(sb.sum(0)))
    deltas = _chrf_score(counts @ sa) - _chrf_score(counts @ sb)
    centred = np.abs(deltas) - np.abs(deltas).mean()
    p = (np.sum(centred > abs(score_a - score_b)) + 1) / (iters + 1)
    low, high = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
    iv = Interval(score_a - score_b, float(low), float(high), level, iters, n)
    return PairedChrf(iv, float(p), score_a, score_b)


# ----------------------------------------------------------------------------------------------- verdicts

def _measured(iv: Optional[Interval]) -> bool:
    return iv is not None and all(math.isfinite(x) for x in (iv.estimate, iv.low, iv.high))


def verdict_greater(iv: Optional[Interval], margin: float = 0.0) -> str:
    """Claim "difference > margin": holds if low > margin, does not hold if high <= margin, else undecided."""
    if not _measured(iv):
        return NOT_MEASURED
    return HOLDS if iv.low > margin else FAILS if iv.high <= margin else UNDECIDED


def verdict_less(iv: Optional[Interval], margin: float = 0.0) -> str:
    """Claim "difference < margin": holds if high < margin, does not hold if low >= margin, else undecided."""
    if not _measured(iv):
        return NOT_MEASURED
    return HOLDS if iv.high < margin else FAILS if iv.low >= margin else UNDECIDED


def combine(verdicts: Iterable[str]) -> str:
    """A compound claim: does not hold if any part fails, else not measured if any part is, else holds if all
    hold, else undecided. Raises: ValueError on an empty list or an unknown verdict."""
    vs = list(verdicts)
    allowed = (HOLDS, FAILS, UNDECIDED, NOT_MEASURED)
    if not vs or any(v not in allowed for v in vs):
        raise ValueError(f"verdicts must be a non-empty list of {allowed}; got {vs}")
    for v in (FAILS, NOT_MEASURED, UNDECIDED):
        if v in vs:
            return v
    return HOLDS


def format_interval(iv: Interval, digits: int = 3) -> str:
    """The estimate and interval as text, e.g. "+0.031 [+0.012, +0.050]"."""
    return f"{iv.estimate:+.{digits}f} [{iv.low:+.{digits}f}, {iv.high:+.{digits}f}]"
