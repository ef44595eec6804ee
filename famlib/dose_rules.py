"""The ``dose:`` section's rules and the study's vocabulary (:mod:`famlib.dose` runs the study).

Light on purpose: :func:`famlib.config.load_params` validates a params file's ``dose:`` section with
:func:`validate`, so this module never imports the config layer at run time (nor anything that does).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

from famlib.errors import near, one_of
from famlib.strategies.registry import get, is_known, names

if TYPE_CHECKING:
    from famlib.config import Params

AXES = ("perplexity", "comprehension", "reasoning", "translation")

__all__ = ["AXES", "own_lr", "study_kind", "study_languages", "validate"]


def validate(p: Params, fail: Callable[..., None]) -> None:
    """The ``dose:`` section's rules (called by :func:`famlib.config._validate`)."""
    d = p.dose
    if d.family not in p.families:
        fail("dose.family", d.family, one_of(p.families), near(d.family, p.families))
    if not d.lrs:
        fail("dose.lrs", [], "at least one peak learning rate, e.g. [2.0e-5, 1.0e-4, 5.0e-4]")
    for i, lr in enumerate(d.lrs):
        if not (lr > 0 and math.isfinite(lr)):
            fail(f"dose.lrs[{i}]", lr, "a positive, finite learning rate")
    if len({f"{lr:g}" for lr in d.lrs}) != len(d.lrs):  # the points' ids name the rate by :g
        fail("dose.lrs", list(d.lrs), "each learning rate once (distinct to 6 significant digits)")
    if not d.steps:
        fail("dose.steps", [], "at least one step budget, e.g. [46, 92]")
    for i, n in enumerate(d.steps):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            fail(f"dose.steps[{i}]", n, "a positive integer (optimiser steps)")
    if len(set(d.steps)) != len(d.steps):
        fail("dose.steps", list(d.steps), "each step budget once")
    allowed = [n for n in names() if study_kind(n) is not None and not own_lr(n)]
    if not d.strategies:
        fail("dose.strategies", [], f"some of {one_of(allowed)}")
    for i, name in enumerate(d.strategies):
        if not is_known(name) or study_kind(name) is None:
            fail(f"dose.strategies[{i}]", name, f"a per-family strategy: {one_of(allowed)}", near(name, allowed))
        entry = get(name)
        if own_lr(name):
            fail(f"dose.strategies[{i}]", name, f"a strategy trained at training.family's learning rate: {one_of(allowed)}",
                 f"'{name}' trains at its own learning rate (its adapter's settings), so the grid's would not reach it")
        if entry.kind == "posthoc" and entry.source not in d.strategies:
            fail(f"dose.strategies[{i}]", name, "post-hoc strategies whose source is listed too",
                 f"'{name}' is made from the '{entry.source}' points: add '{entry.source}' to dose.strategies")
        for section in entry.missing_sections(p):
            fail(section, None, f"a '{section}:' section (dose.strategies lists '{name}', which reads it)")
    if len(set(d.strategies)) != len(d.strategies):
        fail("dose.strategies", list(d.strategies), "each strategy once")
    if d.family in p.families:
        mine = study_languages(p, default=True)
        for i, lang in enumerate(d.languages or ()):
            if lang not in mine:
                fail(f"dose.languages[{i}]", lang, f"the probe or a language of family {d.family!r}: {one_of(mine)}",
                     near(lang, mine))
        if d.languages is not None and not any(x in p.families[d.family].train for x in d.languages):
            fail("dose.languages", list(d.languages),
                 f"at least one training language of {d.family!r} ({', '.join(p.families[d.family].train)}): "
                 "acquisition is measured there")
    for i, a in enumerate(d.axes):
        if a not in AXES:
            fail(f"dose.axes[{i}]", a, one_of(AXES), near(a, AXES))
    for key, values in (("dose.axes", d.axes), ("dose.languages", d.languages or ())):
        if len(set(values)) != len(values):
            fail(key, list(values), "each entry once")
    if "perplexity" not in d.axes:
        fail("dose.axes", list(d.axes), "a list that includes perplexity (acquisition is held-in bits per byte)")


def own_lr(name: str) -> bool:
    e = get(name)
    return e.adapter is not None and e.adapter.train_config is not None


def study_kind(name: str) -> Optional[str]:
    """``trained`` or ``posthoc`` for a strategy the study can hold (per family; a post-hoc one is a revert of
    one model), else None."""
    e = get(name)
    if not e.per_family:
        return None
    if e.kind == "trained":
        return "trained"
    if e.kind == "posthoc" and e.surgery == "revert":
        return "posthoc"
    return None


def study_languages(params: Params, default: bool = False) -> list[str]:
    """The evaluated languages: ``dose.languages``, or the probe, the family's training and held-out ones."""
    d = params.dose
    fam = params.families[d.family]
    every = list(dict.fromkeys([params.probe_language, *fam.train, *fam.held_out]))
    return every if default or d.languages is None else [x for x in every if x in d.languages]
