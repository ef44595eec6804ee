"""Model ids and where each model lives: ``runs/<scale>/models/<model_id>/``.

Single models are named by their strategy (``base``, ``dense``, ``dense_reverted``, ``soup``,
``freeze_soup``); per-family models by ``<strategy>.<family>`` (``expert.slavic``, ``freeze.romance``,
``l2sp.indic``, ``expert_reverted.germanic``). Which is which, the registry says
(:mod:`famlib.strategies.registry`, ``per_family``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from famlib.config import Params
from famlib.errors import FamlibError, near, one_of
from famlib.strategies import registry

class ModelIdError(FamlibError, ValueError):
    """A model id, strategy or family that does not name a model of the scale."""


_FAMILY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


def model_id(strategy: str, family: Optional[str] = None) -> str:
    """``model_id('expert', 'slavic')`` -> ``'expert.slavic'``; ``model_id('dense')`` -> ``'dense'``.

    Raises:
        ModelIdError: unknown strategy, a per-family strategy without a family, a family given to a
            single-model strategy, or a family name that is not a plain word.
    """
    if not registry.is_known(strategy):
        raise ModelIdError(registry.unknown_message(strategy))
    if registry.get(strategy).per_family:
        if not family:
            raise ModelIdError(f"strategy {strategy!r} has one model per family: pass the family")
        if not _FAMILY_RE.match(family):
            raise ModelIdError(f"family {family!r}: letters, digits, '_' and '-' only (it becomes a directory name)")
        return f"{strategy}.{family}"
    if family is not None:
        raise ModelIdError(f"strategy {strategy!r} is a single model for every family; got family={family!r}")
    return strategy


def parse_model_id(mid: str) -> tuple[str, Optional[str]]:
    """``'expert.slavic'`` -> ``('expert', 'slavic')``; ``'soup'`` -> ``('soup', None)``. Raises ModelIdError."""
    strategy, _, family = str(mid).partition(".")
    model_id(strategy, family or None)  # validates
    return strategy, family or None


def models_dir(params: Params) -> Path:
    """``runs/<scale>/models`` (``$FAMLIB_RUNS`` moves ``runs``)."""
    from famlib.paths import models_dir

    return models_dir(params.scale)


def model_path(params: Params, mid: str, *, must_exist: bool = False) -> Path:
    """``runs/<scale>/models/<model_id>``; a per-family id must name a family of ``params``.

    Raises:
        ModelIdError: a malformed id, or a family that is not in the params file.
        FamlibError: ``must_exist`` and there is no model directory (with ``config.json``) there; the message
            lists the models that are present.
    """
    _, family = parse_model_id(mid)
    if family is not None and family not in params.families:
        raise ModelIdError(f"model id {mid!r}: family {family!r} is not in {params.origin}; "
                           f"{one_of(params.families)}. {near(family, params.families)}".rstrip())
    from famlib.paths import model_dir

    path = model_dir(params.scale, mid)
    if must_exist and not (path / "config.json").exists():
        root = path.parent
        present = sorted(p.name for p in root.iterdir() if (p / "config.json").exists()) if root.exists() else []
        raise FamlibError(f"no model directory {path} (with config.json). Models present: "
                          f"{', '.join(present) or 'none'}. {near(mid, present)}".strip())
    return path


def all_model_ids(params: Params) -> list[str]:
    """Every model id of a scale: its strategies (``params.strategy_names``, registry order), families in params
    order."""
    out = []
    for s in params.strategy_names:
        if registry.get(s).per_family:
            out.extend(model_id(s, f) for f in params.families)
        else:
            out.append(model_id(s))
    return out
