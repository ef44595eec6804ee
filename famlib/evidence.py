"""Paired evidence: the interval behind every difference that the tables, figures and claims report.

Every evaluation keeps per-item records (:mod:`famlib.evaluate.records`). Here they become, per model and
cell (a language, and for translation a direction), the per-item statistics of the axis's headline metric
(:mod:`famlib.stats`): PMI accuracy for famlib's multiple choice (lm-eval's accuracy for the paper's
Belebele and Global-PIQA and for BIG-bench's English row: :func:`famlib.evaluate.records.headline_correct`),
bits per byte for perplexity, corpus chrF for translation.

One cluster bootstrap per axis. The resampling unit is the item *key* (a verse, a chapter, a UDHR
paragraph): all languages and models that share a key are resampled together, so two strategies measured
on the same items are compared *paired*, and languages that share a Bible are not counted as independent
evidence. The key universe of an axis is every key in the collection's records, and the weights are drawn
once per axis from a fixed seed: every statistic of this object, however composed (a difference, a
contrast such as "recovers half of the loss", a range of an interpolation curve, a rank), is computed on
the same draws, so its interval is the percentile interval of that statistic over them. Same records and
seed, same intervals.

Which model answers a cell follows :mod:`famlib.tables`: a per-family strategy's model trained on the
language's family; a single model; for the probe language, every family model of a per-family strategy
pooled (the mean of their accuracies). An aggregate over *groups* (families, or families and the probe) is
the mean over groups of the mean over the group's cells, exactly as the tables average; a strategy that
lacks any cell of the groups has no value there (as the tables' "–").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from famlib import stats as S

METRIC = {"perplexity": "bits_per_byte", "comprehension": "accuracy", "reasoning": "accuracy", "translation": "chrf"}
DIRECTIONS = {"translation": ("en-xx", "xx-en")}
ITERS = 1000  # bootstrap draws: percentile intervals at 95 % move by about 0.1 s.e. between seeds
LEVEL = 0.95


@dataclass(frozen=True)
class Who:
    """Who answers: a strategy (its models chosen per cell) or one model id (the interpolation's points)."""

    strategy: Optional[str] = None
    model: Optional[str] = None

    def __str__(self) -> str:
        return self.strategy or f"model {self.model}"


def _who(x) -> Who:
    return x if isinstance(x, Who) else Who(strategy=str(x))


def item_stats(axis: str, records: list[dict]) -> np.ndarray:
    """Per-item statistics of an axis's headline metric (rows in record order)."""
    if axis == "perplexity":
        return S.bits_per_byte_stats([r["ll"] for r in records], [r["n_bytes"] for r in records])
    if axis == "translation":
        return S.chrf_stats([r["hypothesis"] for r in records], [r["reference"] for r in records])
    from famlib.evaluate.records import headline_correct

    return S.accuracy_stats([headline_correct(r) for r in records])


class Evidence:
    """Intervals for one scale's collection (``results`` or ``interpolation``)."""

    def __init__(self, params, results, collection: str = "results", *, iters: int = ITERS,
                 seed: Optional[int] = None, level: float = LEVEL):
        self.params, self.results, self.collection = params, results, collection
        self.iters, self.level = iters, level
        self.seed = params.seed if seed is None else seed
        self._cells: dict[str, dict] = {}  # axis -> (model, language, direction) -> (keys, stats)
        self._weights: dict[str, tuple[np.ndarray, dict]] = {}
        self._memo: dict = {}
        self._models = self._model_table(results)

    # ------------------------------------------------------------------------------------------------
    # Records
    # ------------------------------------------------------------------------------------------------
    @staticmethod
    def _model_table(results) -> dict:
        """model -> (strategy, expert_family), from the results' rows."""
        if results is None or len(results) == 0:
            return {}
        m = results[["model", "strategy", "expert_family"]].drop_duplicates("model")
        return {str(r.model): (str(r.strategy), str(r.expert_family)) for r in m.itertuples()}

    def _load(self, axis: str) -> dict:
        if axis in self._cells:
            return self._cells[axis]
        from famlib.evaluate.records import read_items

        cells: dict = {}
        r = self.results
        if r is not None and len(r):
            tasks = r[r["task"].astype(str) == axis][["model", "harness_task", "language", "direction"]].drop_duplicates()
            for t in tasks.itertuples():
                recs = read_items(self.params.scale, str(t.model), str(t.harness_task), self.collection)
                if not recs:
                    continue
                d = "" if not isinstance(t.direction, str) else t.direction
                cells[(str(t.model), str(t.language), d)] = ([str(x["key"]) for x in recs], item_stats(axis, recs))
        self._cells[axis] = cells
        return cells

    def _draw_weights(self, axis: str) -> tuple[np.ndarray, dict]:
        if axis not in self._weights:
            universe = sorted({k for keys, _ in self._load(axis).values() for k in keys})
            index = {k: i for i, k in enumerate(universe)}
            w = S.bootstrap_weights(universe, self.iters, self.seed) if universe else np.ones((self.iters, 0))
            self._weights[axis] = (w, index)
        return self._weights[axis]

    # ------------------------------------------------------------------------------------------------
    # Who answers which cell
    # ------------------------------------------------------------------------------------------------
    def models_for(self, who, language: str) -> list[str]:
        """The model(s) whose records answer ``language`` for ``who``."""
        from famlib.strategies.registry import get, is_known

        who = _who(who)
        if who.model is not None:
            return [who.model]
        mine = [m for m, (s, _) in self._models.items() if s == who.strategy]
        if not (is_known(who.strategy) and get(who.strategy).per_family):
            return mine
        if language == self.params.probe_language:
            return sorted(mine)  # every family model: the probe row pools them
        fam = self.params.family_of(language)
        return [m for m in mine if self._models[m][1] == fam]

    def cells(self, who, axis: str, languages: Sequence[str]) -> Optional[dict]:
        """``{(language, direction): (keys, stats)}`` of ``who`` on ``axis``; None if any cell is missing."""
        data = self._load(axis)
        out = {}
        for lang in languages:
            for d in DIRECTIONS.get(axis, ("",)):
                parts = [data[(m, lang, d)] for m in self.models_for(who, lang) if (m, lang, d) in data]
                if not parts:
                    return None
                out[(lang, d)] = ([k for keys, _ in parts for k in keys], np.concatenate([s for _, s in parts]))
        return out

    # ------------------------------------------------------------------------------------------------
    # Scopes
    # ------------------------------------------------------------------------------------------------
    def groups(self, split: str = "held_in", *, probe: bool = False, families: Optional[Sequence[str]] = None,
               exclude: Sequence[str] = ()) -> dict[str, list[str]]:
        """``{family: [its languages of split]}`` (plus ``{probe: [probe]}``), the tables' averaging groups."""
        p = self.params
        out = {}
        for fam in families or list(p.families):
            f = p.families[fam]
            langs = list(f.train if split == "held_in" else f.held_out)
            langs = [x for x in langs if x not in exclude]
            if langs:
                out[fam] = langs
        if probe:
            out[p.probe_language] = [p.probe_language]
        return out

    def present(self, whos: Sequence, axis: str, groups: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """``groups`` keeping only the languages where every ``who`` has records on ``axis`` (a language the
        suite or the harness skipped, as the paper scale's Belebele gaps, leaves the average instead of
        voiding it); groups left empty are dropped."""
        out = {}
        for g, langs in groups.items():
            kept = [x for x in langs if all(self.cells(w, axis, [x]) is not None for w in whos)]
            if kept:
                out[g] = kept
        return out

    # ------------------------------------------------------------------------------------------------
    # Draws and intervals
    # ------------------------------------------------------------------------------------------------
    def draws(self, who, axis: str, groups: Mapping[str, Sequence[str]]) -> Optional[tuple[float, np.ndarray]]:
        """(point estimate, bootstrap draws) of ``who``'s group-mean score; None when a cell is missing."""
        memo = (str(_who(who)), _who(who).model, axis, tuple((g, tuple(v)) for g, v in groups.items()))
        if memo not in self._memo:
            self._memo[memo] = self._draws(who, axis, groups)
        return self._memo[memo]

    def _draws(self, who, axis: str, groups: Mapping[str, Sequence[str]]) -> Optional[tuple[float, np.ndarray]]:
        langs = [x for g in groups.values() for x in g]
        cells = self.cells(who, axis, langs)
        if cells is None:
            return None
        by_group = {g: [c for c in cells if c[0] in set(v)] for g, v in groups.items()}
        agg = S.grouped_mean(by_group)
        metric = METRIC[axis]
        w, index = self._draw_weights(axis)
        point = agg({c: np.asarray([v]) for c, v in S.point_scores(cells, metric=metric).items()})
        return float(np.asarray(point)[0]), np.asarray(agg(S.cell_scores(cells, w, index, metric=metric)), dtype=float)

    def statistic(self, fn: Callable[..., np.ndarray], whos: Sequence, axis: str,
                  groups: Mapping[str, Sequence[str]]) -> Optional[S.Interval]:
        """Interval of ``fn(*scores)`` where each score is a ``who``'s group mean on ``axis``.

        ``fn`` works elementwise on numpy arrays (it is applied to the point estimates and to every draw).
        None when any ``who`` lacks a cell of ``groups``.
        """
        got = [self.draws(w, axis, groups) for w in whos]
        if any(g is None for g in got):
            return None
        point = float(fn(*[np.asarray(p) for p, _ in got]))
        values = np.asarray(fn(*[d for _, d in got]), dtype=float)
        kept = values[np.isfinite(values)]
        if kept.size == 0:
            return None
        low, high = np.quantile(kept, [(1 - self.level) / 2, (1 + self.level) / 2])
        n_keys = len(self._draw_weights(axis)[1])
        return S.Interval(point, float(low), float(high), self.level, self.iters, n_keys,
                          tuple(sorted(groups)), int(values.size - kept.size))

    def score(self, who, axis: str, groups) -> Optional[S.Interval]:
        """``who``'s score with its interval."""
        return self.statistic(lambda a: a, [who], axis, groups)

    def diff(self, a, b, axis: str, groups) -> Optional[S.Interval]:
        """score(a) - score(b), paired."""
        return self.statistic(lambda x, y: x - y, [a, b], axis, groups)


def resolved(iv: Optional[S.Interval], lower_is_better: bool = False) -> str:
    """``"better"`` / ``"worse"`` when the interval of a difference (a - b) excludes 0, else ``""``."""
    if iv is None or iv.low <= 0 <= iv.high:
        return ""
    return "better" if ((iv.high < 0) if lower_is_better else (iv.low > 0)) else "worse"


def for_results(params, results, collection: str = "results") -> Optional[Evidence]:
    """The scale's :class:`Evidence` at ``evaluation.bootstrap_iters`` draws; None for an empty frame. Build it
    once per notebook or report and pass it on: its draws and records are cached on the object."""
    if results is None or len(results) == 0:
        return None
    return Evidence(params, results, collection, iters=params.evaluation.bootstrap_iters)


def describe(iv: Optional[S.Interval], digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
    """``+0.031 [+0.012, +0.050]`` (times ``scale``, e.g. 100 for percentage points), or ``n/a``."""
    if iv is None:
        return "n/a"
    f = f"{{:+.{digits}f}}"
    return (f"{f.format(iv.estimate * scale)}{unit} [{f.format(iv.low * scale)}, {f.format(iv.high * scale)}]")
