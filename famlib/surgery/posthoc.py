"""The post-hoc models of a scale, built from its trained models (notebook 04).

Each post-hoc strategy of the scale (``params.strategy_names``) names its surgery method and source in the
registry (:mod:`famlib.strategies.posthoc`); from those, for the built-in ones:

- ``dense_reverted`` = revert(``dense``, ``base``), ``expert_reverted.<family>`` = revert(``expert.<family>``,
  ``base``): the groups ``famlib.strategies.rules.surgery_groups`` gives for those strategies (the middle group).
- ``soup`` = soup of every ``expert.<family>``; ``freeze_soup`` = soup of every ``freeze.<family>``
  (uniform, paper section 3.2).
- ``wise_ft.<family>`` = interpolate(``base``, ``expert.<family>``) with every group, outside ones included, at
  the params' ``wise_ft.alpha`` (whole-model interpolation toward the base, beyond the paper).

Each output records its inputs' sha256; rebuilding with unchanged inputs costs only the hashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from famlib.config import Params
from famlib.layers import LAYER_GROUPS, OUTSIDE
from famlib.strategies.rules import surgery_groups
from famlib.surgery.driver import apply
from famlib.surgery.errors import SurgeryError
from famlib.naming import model_id, model_path, parse_model_id
from famlib.strategies import registry


@dataclass(frozen=True)
class PosthocJob:
    """One post-hoc model: its id, the method, the input model ids (in role order) and the options."""

    model_id: str
    method: str
    inputs: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class PosthocResult:
    model_id: str
    status: str  # written | unchanged | missing inputs
    path: str
    detail: str = ""


class MissingModels(SurgeryError):
    """Trained models that the post-hoc models need are not there yet."""


def posthoc_jobs(params: Params) -> list[PosthocJob]:
    """The post-hoc models of ``params``' scale and what each is made of, in registry order.

    A ``revert`` strategy gives one job per model of its source (one per family for a per-family source),
    with the base as the second input; an ``interpolate`` one the same, with the base as the first input
    (the method's role order) and the strategy's ``surgery_options`` (alpha) from the params; a ``soup`` one
    job over every family's model of its source.
    """
    fams = list(params.families)
    jobs = []
    for entry in registry.strategies("posthoc"):
        if entry.name not in params.strategy_names:
            continue
        src = registry.get(entry.source)
        if entry.surgery == "revert":
            groups = {"groups": list(surgery_groups(entry.name))}
            for fam in (fams if entry.per_family else [None]):
                jobs.append(PosthocJob(model_id(entry.name, fam), "revert",
                                       (model_id(src.name, fam if src.per_family else None), "base"), dict(groups)))
        elif entry.surgery == "interpolate":
            changed = surgery_groups(entry.name)
            opts = {"groups": [g for g in changed if g in LAYER_GROUPS], **entry.surgery_options(params)}
            if OUTSIDE in changed:
                opts["outside"] = True
            for fam in (fams if entry.per_family else [None]):
                jobs.append(PosthocJob(model_id(entry.name, fam), "interpolate",
                                       ("base", model_id(src.name, fam if src.per_family else None)), dict(opts)))
        elif entry.surgery == "soup":
            jobs.append(PosthocJob(model_id(entry.name), "soup", tuple(model_id(src.name, f) for f in fams)))
        else:  # internal: Strategy.check admits only the methods above
            raise AssertionError(f"{entry.name}: no inputs rule for surgery {entry.surgery!r}")
    return jobs


def _how_to_make(mid: str) -> str:
    strategy, family = parse_model_id(mid)
    if strategy == "base":
        return "the base model (notebook 02_base_model)"
    return f"notebook 03_train_expert with strategy={strategy}" + (f", family={family}" if family else "")


def missing_inputs(params: Params, jobs: Optional[Sequence[PosthocJob]] = None) -> dict[str, list[str]]:
    """``{post-hoc model id: [lines naming each missing input, its path and what produces it]}``."""
    out: dict[str, list[str]] = {}
    for job in jobs if jobs is not None else posthoc_jobs(params):
        for mid in job.inputs:
            path = model_path(params, mid)
            if not (path / "config.json").is_file():
                out.setdefault(job.model_id, []).append(f"{mid} ({path}; made by {_how_to_make(mid)})")
    return out


def build_posthoc_models(params: Params, *, only: Optional[Sequence[str]] = None, skip_missing: bool = False,
                         overwrite: bool = False, log: Callable[[str], Any] = print) -> list[PosthocResult]:
    """Build (or keep, if unchanged) the reverted models and the soups of a scale.

    Args:
        params: the scale's parameters (layer split, families).
        only: model ids to build (default: all of :func:`posthoc_jobs`).
        skip_missing: build what can be built and report the rest as ``missing inputs`` instead of raising.
        overwrite: rebuild even when the inputs are unchanged.
        log: called with one line per model.

    Returns:
        One :class:`PosthocResult` per job.

    Raises:
        MissingModels: some inputs do not exist (unless ``skip_missing``); the message lists every one,
            with its path and the step that makes it.
        SurgeryError: the inputs cannot be combined (see :func:`famlib.surgery.apply`).
    """
    jobs = posthoc_jobs(params)
    if only is not None:
        known = {j.model_id for j in jobs}
        unknown = [m for m in only if m not in known]
        if unknown:
            raise SurgeryError(f"not a post-hoc model: {', '.join(unknown)}; known: {', '.join(known)}")
        jobs = [j for j in jobs if j.model_id in only]
    missing = missing_inputs(params, jobs)
    if missing and not skip_missing:
        lines = "\n".join(f"  {mid} needs: " + "; ".join(v) for mid, v in missing.items())
        raise MissingModels(f"{len(missing)} of {len(jobs)} post-hoc models cannot be built yet; missing inputs:\n{lines}")
    results = []
    for job in jobs:
        out = model_path(params, job.model_id)
        if job.model_id in missing:
            results.append(PosthocResult(job.model_id, "missing inputs", str(out), "; ".join(missing[job.model_id])))
            log(f"{job.model_id}: skipped, missing {', '.join(m.split(' ')[0] for m in missing[job.model_id])}")
            continue
        split = {} if job.method == "soup" else {"first": params.layers.first, "last": params.layers.last,
                                                 "num_layers": params.model.num_layers}
        res = apply(job.method, [model_path(params, m) for m in job.inputs], out, overwrite=overwrite,
                    extra={"model_id": job.model_id, "input_model_ids": list(job.inputs), "scale": params.scale,
                           "params": params.to_dict()},
                    **split, **job.options)
        detail = f"{job.method}({', '.join(job.inputs)})"
        results.append(PosthocResult(job.model_id, res.status, str(out), detail))
        log(f"{job.model_id}: {res.status} <- {detail}")
    return results


def posthoc_table(results: Sequence[PosthocResult]):
    """The results as a DataFrame (model id, status, what it was made of, path)."""
    import pandas as pd

    return pd.DataFrame([{"model": r.model_id, "status": r.status, "made of": r.detail, "path": r.path}
                         for r in results])
