"""Data stage: registry sources, the split corpus, and token sets for base pretraining and CPT."""

from famlib.data.corpus import SPLITS, Corpus, assign_splits, build_corpus, default_cache_dir

__all__ = ["SPLITS", "Corpus", "assign_splits", "build_corpus", "default_cache_dir"]
