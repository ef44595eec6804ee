"""The paper scale's corpus: MADLAD-400 through ``datasets`` (streaming, per-language files, ``text``).

It implements :class:`famlib.data.interface.Corpus`, as the offline corpus does. The
split is made per document, by position in the language's stream: the first
``madlad.evaluation_documents`` documents are evaluation text (written once to the cache, never trained
on); each later document goes to validation with probability ``madlad.validation_fraction`` (a salted hash
of its index, so the same document always lands in the same split) and to train otherwise. Train and
validation are streamed, so the 25B-token budget never has to sit on disk as text.

``madlad.path`` is the hub id (``allenai/MADLAD-400``) or a local directory with the same layout
(``data/<lang>/<lang>_clean_*.jsonl.gz``); the tests use local JSONL files of that shape.

The files are read with ``datasets``' generic ``json`` builder, never through the repository itself: the hub
repository ships a loading script (``MADLAD-400.py``, named after the repository, as script datasets are),
and ``datasets`` >= 4 refuses any dataset that has one ("Dataset scripts are no longer supported"), with or
without ``data_files``. A local mirror is read the same way, so a copy of the script at its root (as a full
clone of the repository has) does not matter either.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from famlib.config import Params
from famlib.data.interface import SPLIT_SALT, Corpus, check_split_name
from famlib.errors import DataError, one_of
from famlib.io import atomic_path, sha256_json

MADLAD_FORMAT = 1


# The hub repository's file layout (https://huggingface.co/datasets/allenai/MADLAD-400/tree/main/data):
# data/<lang>/<lang>_clean_0000.jsonl.gz, _0001, ... and <lang>_noisy_NNNN.jsonl.gz, one folder per language
# (data/af holds af_clean_0000.jsonl.gz alone; data/fr fr_clean_0000, fr_clean_0001, ... of 3 GB each); its
# loading script builds the same names (data/{language}/{language}_{split}_{index:04d}.jsonl.gz).
# data.madlad.data_files, by default "data/{lang}/{lang}_{subset}_*.jsonl.gz", names them relative to the
# repository root (the newer data-v1p5/ folder is a different release and is not read). On the hub they are
# addressed through huggingface_hub's file system: hf://datasets/<repo id>[@<revision>]/<path in the repository>.
HUB_FILES = "hf://datasets/{repo}/{pattern}"
JSON_BUILDER = "json"  # datasets' packaged builder for JSON Lines (gzip inferred from the file name)


def data_files(params: Params, lang: str) -> str | list[str]:
    """The files of one language: a sorted list from a local mirror, or an ``hf://`` glob on the hub.

    Raises:
        DataError: ``data.madlad.path`` is a local path that is not a directory, or the mirror has no such files.
    """
    m = params.data.madlad
    pattern = m.data_files.format(lang=lang, subset=m.subset)
    local = Path(m.path).expanduser()
    if local.is_dir():
        files = sorted(str(p) for p in local.glob(pattern))
        if not files:
            raise DataError(f"{local}: no files match {pattern!r} for language {lang!r} (data.madlad.data_files)")
        return files
    if local.exists() or m.path.startswith(("/", ".", "~")) or m.path.count("/") != 1:
        raise DataError(f"data.madlad.path {m.path!r} is neither a local directory nor a hub id like "
                        "'allenai/MADLAD-400'")
    return HUB_FILES.format(repo=m.path, pattern=pattern)


def _stream(params: Params, lang: str) -> Iterator[str]:
    from datasets import load_dataset

    m = params.data.madlad
    files = data_files(params, lang)
    shown = files if isinstance(files, str) else m.data_files.format(lang=lang, subset=m.subset)
    try:
        ds = load_dataset(JSON_BUILDER, data_files=files, split="train", streaming=True)
    except Exception as exc:  # the hub unreachable, a missing language: say which and where
        raise DataError(f"MADLAD-400 {m.path!r}, language {lang!r}, files {shown!r}: {exc}") from exc
    for row in ds:
        if m.text_field not in row:
            raise DataError(f"MADLAD-400 {m.path!r} {lang}: rows have no field {m.text_field!r} "
                            f"(data.madlad.text_field); fields: {', '.join(row)}")
        # Kept verbatim: MADLAD stores line breaks as a literal backslash-n, and models trained on it emit
        # that literal, which is why the paper's FLORES rule also truncates at it.
        text = row[m.text_field].strip()
        if text:
            yield text


def _is_validation(lang: str, index: int, fraction: float) -> bool:
    h = hashlib.sha256(f"{SPLIT_SALT}:madlad:{lang}:{index}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


@dataclass
class MadladCorpus(Corpus):
    """MADLAD-400 per language: evaluation documents cached, train and validation streamed."""

    params: Params
    cache_dir: Path
    manifest: dict = field(default_factory=dict)
    streaming = True  # token packing takes documents in stream order instead of shuffling them all
    description = "MADLAD-400"

    def texts(self, lang: str) -> list[str]:
        return [f"madlad:{lang}"]

    def _eval_file(self, lang: str) -> Path:
        m = self.params.data.madlad
        key = sha256_json({"format": MADLAD_FORMAT, "path": m.path, "subset": m.subset, "files": m.data_files,
                           "n": m.evaluation_documents})[:12]
        return self.cache_dir / "corpus" / f"madlad-{lang}.{key}.jsonl"

    def units(self, lang: str, split: str, text_id: str | None = None) -> Iterator[dict]:
        check_split_name(split)
        if lang not in self.params.languages:
            raise DataError(f"language {lang!r} is not in {self.params.origin}; {one_of(self.params.languages)}")
        m = self.params.data.madlad
        if split == "evaluation":
            path = self._eval_file(lang)
            if not path.exists():
                with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                    for i, text in enumerate(_stream(self.params, lang)):
                        if i >= m.evaluation_documents:
                            break
                        fh.write(json.dumps({"key": f"M{i:09d}", "group": f"M{i:09d}", "split": "evaluation",
                                             "text": text}, ensure_ascii=False) + "\n")
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    yield dict(json.loads(line), text_id=f"madlad:{lang}")
            return
        want_val = split == "validation"
        for i, text in enumerate(_stream(self.params, lang)):
            if i < m.evaluation_documents:
                continue
            if _is_validation(lang, i, m.validation_fraction) == want_val:
                yield {"key": f"M{i:09d}", "group": f"M{i:09d}", "split": split, "text": text,
                       "text_id": f"madlad:{lang}"}

    def stats(self):
        """Evaluation text only: the training stream is not counted (it is read as it is trained on)."""
        import pandas as pd

        rows = []
        for lang in self.params.languages:
            units = list(self.units(lang, "evaluation"))
            rows.append(dict(family=self.params.family_of(lang) or "probe", language=lang, role=self.params.split_of(lang),
                             text=f"madlad:{lang}", split="evaluation", units=len(units),
                             words=sum(len(u["text"].split()) for u in units),
                             bytes=sum(len(u["text"].encode()) for u in units)))
        return pd.DataFrame(rows)

    def check_splits(self) -> str:
        """The split is by position, so it is checked on what is on disk: each language's evaluation file holds
        the first ``evaluation_documents`` documents of its stream, once each, in order (training skips exactly
        those indices). The stream itself is not read whole: at 5B tokens a family, that is the training. A
        missing evaluation file is written first (from the stream), so on a fresh cache this checks the file it
        has just written."""
        n = self.params.data.madlad.evaluation_documents
        for lang in self.params.languages:
            keys = [u["key"] for u in self.units(lang, "evaluation")]
            if keys != [f"M{i:09d}" for i in range(len(keys))] or len(keys) > n:
                raise DataError(f"{self._eval_file(lang)}: evaluation documents of {lang} are not the first "
                                f"{n} of the stream in order (got {len(keys)}, first keys {keys[:3]}); delete "
                                "the file to rebuild it")
        return (f"OK: {len(self.params.languages)} languages; evaluation = the first {n} documents of each "
                f"language's stream (cached, never trained on); validation = a hashed "
                f"{self.params.data.madlad.validation_fraction:g} of the rest, train = the remainder")

    def example(self, split: Optional[str] = None, max_langs: int = 8):
        """The opening of one document per language (MADLAD-400 is not aligned: they are unrelated texts)."""
        import pandas as pd

        rows = []
        for lang in self.params.languages[:max_langs]:
            u = next(self.units(lang, split or "evaluation"), None)
            if u is not None:
                rows.append({"language": lang, "key": u["key"], "text": u["text"][:200]})
        return pd.DataFrame(rows, columns=["language", "key", "text"])


def build_madlad_corpus(params: Params, cache_dir: Path) -> MadladCorpus:
    m = params.data.madlad
    manifest = {"format": MADLAD_FORMAT, "path": m.path, "subset": m.subset, "data_files": m.data_files,
                "evaluation_documents": m.evaluation_documents, "validation_fraction": m.validation_fraction,
                "languages": params.languages}
    return MadladCorpus(params, Path(cache_dir), manifest)
