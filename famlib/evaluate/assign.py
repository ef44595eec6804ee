"""Which model answers for which language, exactly as in the paper (section 3.1).

Per-family strategies (``per_family`` in :mod:`famlib.strategies.registry`: ``expert``, ``freeze``, ``l2sp``,
``expert_reverted``) have one model per family, and the model of a language's family answers for it: each
is evaluated on its family's training and held-out languages only. Single models (``base``, ``dense``,
``dense_reverted``, ``soup``, ``freeze_soup``) answer for every language. Every model is also evaluated on the probe language
(English), to measure what it forgot of the base language.

Model ids under ``runs/<scale>/models/``: ``<strategy>`` for a single model, ``<strategy>.<family>`` for a
per-family one (``expert.slavic``). A model directory's ``famlib_provenance.json`` may state ``strategy``
and ``family`` instead, which then win (for ids outside this scheme, e.g. interpolated models).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from famlib.config import Params
from famlib.errors import ConfigError
from famlib.naming import model_id, parse_model_id
from famlib.strategies import registry


def evaluation_languages(params: Params, strategy: str, family: Optional[str] = None) -> list[str]:
    """The languages a model of ``strategy`` (and ``family``) is evaluated on, probe first.

    Raises:
        ConfigError: an unknown strategy or family, a per-family strategy without a family, or a family
            given to a single-model strategy.
    """
    params.check_strategy(strategy)
    probe = params.probe_language
    if registry.get(strategy).per_family:
        if family is None:
            raise ConfigError(params.origin, "family", None, f"one of {', '.join(params.families)}",
                              f"'{strategy}' has one model per family and answers only for that family's languages")
        fam = params.families[params.check_family(family)]
        langs = [probe, *fam.train, *fam.held_out]
    else:
        if family is not None:
            raise ConfigError(params.origin, "family", family, "null",
                              f"'{strategy}' is a single model evaluated on every language; it has no family")
        langs = params.languages
    return list(dict.fromkeys(langs))


def answering_model(params: Params, strategy: str, language: str) -> str:
    """The model id that answers for ``language`` under ``strategy`` (``expert.slavic`` for ru)."""
    params.check_language(language)
    params.check_strategy(strategy)
    if registry.get(strategy).per_family:
        family = params.family_of(language)
        if family is None:  # the probe: every family's model is evaluated on it; none answers "for" it
            raise ConfigError(params.origin, "language", language, "a language of the family table",
                              f"'{language}' is the probe; every '{strategy}' model is evaluated on it")
        return model_id(strategy, family)
    return strategy


def model_identity(params: Params, model: str, model_dir: Optional[Path] = None, strategy: Optional[str] = None,
                   family: Optional[str] = None) -> tuple[str, Optional[str]]:
    """(strategy, family) of a model: given explicitly, else its provenance file, else parsed from its id.

    Raises:
        famlib.naming.ModelIdError: the id does not follow ``<strategy>`` / ``<strategy>.<family>`` and
            nothing else says; ConfigError: a family that is not in the params file.
    """
    if strategy is None and model_dir is not None:
        try:
            prov = json.loads((Path(model_dir) / "famlib_provenance.json").read_text())
        except (OSError, ValueError):
            prov = {}
        if registry.is_known(prov.get("strategy")):
            strategy, family = prov["strategy"], prov.get("family") or None
    if strategy is None:
        strategy, family = parse_model_id(model)  # raises ModelIdError naming what is allowed
    else:
        model_id(strategy, family)  # the same rules for an explicit identity
    if family is not None:
        params.check_family(family)
    return strategy, family


def model_languages(params: Params, model: str, model_dir: Optional[Path] = None) -> list[str]:
    """The languages the model with id ``model`` is evaluated on (probe first); see :func:`model_identity`."""
    return evaluation_languages(params, *model_identity(params, model, model_dir))
