"""The corpus stage: per-language text units with alignment keys and one deterministic split.

Offline scales read the registry sources (:mod:`famlib.data.sources`); every text (one Bible version,
one Quran translation, one UDHR version) becomes ``data/cache/corpus/<kind>-<name>.<key>.jsonl`` with one
unit per line: ``{"key", "group", "split", "text"}``. The split is made per *group* (Bible book, Quran
sura, UDHR article), identically for every language of a source, so no translation of an evaluation
verse is ever trained on. Files are keyed by everything they depend on (the source's sha256, the split
fractions, this module's format version) and rebuilt only when that changes.

The paper scale streams MADLAD-400 instead (:mod:`famlib.data.madlad`) through the same interface,
:class:`famlib.data.interface.Corpus`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from famlib.config import Params, SplitFractions
from famlib.data import sources
from famlib.errors import DataError, one_of
from famlib.data.interface import SPLIT_SALT, SPLITS, Corpus, check_split_name, default_cache_dir
from famlib.io import atomic_path, sha256_json

CORPUS_FORMAT = 1  # bump when the unit files' content changes for the same inputs


def assign_splits(kind: str, sizes: dict[str, int], fractions: SplitFractions) -> dict[str, str]:
    """Assign every group to a split, deterministically and independently of language.

    Groups are ordered by a salted sha256 of their name (a fixed pseudo-random order); walking that order,
    groups go to evaluation until their units reach ``fractions.evaluation`` of the total, then to
    validation up to ``fractions.validation``, the rest to train.
    """
    order = sorted(sizes, key=lambda g: hashlib.sha256(f"{SPLIT_SALT}:{kind}:{g}".encode()).hexdigest())
    total = sum(sizes.values())
    ev, va = fractions.evaluation * total, (fractions.evaluation + fractions.validation) * total
    out, cum = {}, 0
    for g in order:
        out[g] = "evaluation" if cum < ev - 1e-9 else "validation" if cum < va - 1e-9 else "train"
        cum += sizes[g]
    return out


@dataclass
class TextFile:
    language: str
    text_id: str
    path: Path


@dataclass
class OfflineCorpus(Corpus):
    """The offline scales' corpus (Bible, Quran, UDHR): which unit files hold each language's text."""

    params: Params
    cache_dir: Path
    files: dict[str, list[TextFile]] = field(default_factory=dict)  # language -> its texts, primary first
    manifest: dict = field(default_factory=dict)
    _loaded: dict = field(default_factory=dict, repr=False)  # path -> units, read once per process
    description = "offline corpus"

    def texts(self, lang: str) -> list[str]:
        return [tf.text_id for tf in self._files(lang)]

    def _files(self, lang: str) -> list[TextFile]:
        if lang not in self.files:
            raise DataError(f"no text for language {lang!r} in this corpus; {one_of(self.files)}")
        return self.files[lang]

    def units(self, lang: str, split: str, text_id: Optional[str] = None) -> Iterator[dict]:
        """Yield ``{"key", "group", "split", "text", "text_id"}`` of one language and split, in file order.

        ``text_id`` limits to one text (e.g. ``'bible:2'``); by default every text of the language.
        """
        check_split_name(split)
        for tf in self._files(lang):
            if text_id is not None and tf.text_id != text_id:
                continue
            for u in self._read(tf):
                if u["split"] == split:
                    yield u

    def _read(self, tf: TextFile) -> list[dict]:
        if tf.path not in self._loaded:
            with open(tf.path, encoding="utf-8") as fh:
                self._loaded[tf.path] = [dict(json.loads(line), text_id=tf.text_id) for line in fh]
        return self._loaded[tf.path]

    def stats(self):
        """A pandas DataFrame: family, language, role, text, split, units, words, bytes."""
        import pandas as pd

        rows = []
        for lang, tfs in self.files.items():
            fam = self.params.family_of(lang) or "probe"
            role = self.params.split_of(lang)
            for tf in tfs:
                counts = {s: [0, 0, 0] for s in SPLITS}
                for u in self._read(tf):
                    c = counts[u["split"]]
                    c[0] += 1
                    c[1] += len(u["text"].split())
                    c[2] += len(u["text"].encode("utf-8"))
                for s, (n, w, b) in counts.items():
                    rows.append(dict(family=fam, language=lang, role=role, text=tf.text_id, split=s,
                                     units=n, words=w, bytes=b))
        return pd.DataFrame(rows)

    def check_splits(self) -> str:
        """Verify that no group (book, sura, article) is in two splits and that every text of a source kind
        splits its groups the same way. Returns a one-line summary; raises DataError naming the offending text."""
        seen: dict[str, dict[str, str]] = defaultdict(dict)  # source kind -> group -> split
        n_units = 0
        for lang, tfs in self.files.items():
            for tf in tfs:
                kind = tf.text_id.split(":")[0]
                for u in self._read(tf):
                    n_units += 1
                    prev = seen[kind].setdefault(u["group"], u["split"])
                    if prev != u["split"]:
                        raise DataError(f"{tf.path}: group {u['group']} of {tf.text_id} ({lang}) is in split "
                                        f"{u['split']!r} here but {prev!r} in another text of the same source")
        groups = {k: sum(v == "evaluation" for v in g.values()) for k, g in seen.items()}
        return (f"OK: {n_units} units in {sum(len(v) for v in self.files.values())} texts; every group sits in one "
                f"split; evaluation groups per source: {groups}")

    def example(self, split: Optional[str] = None, max_langs: int = 8):
        """One verse in every language that has a Bible (the same verse, by its alignment key)."""
        import pandas as pd

        langs = [lang for lang in self.params.languages
                 if lang in self.files and self.texts(lang)[0].startswith("bible:")]
        if not langs:
            return pd.DataFrame(columns=["language", "key", "text"])
        split = split or "train"
        first = next(self.units(langs[0], split, self.texts(langs[0])[0]))
        rows = []
        for lang in langs[:max_langs]:
            for u in self.units(lang, split, self.texts(lang)[0]):
                if u["key"] == first["key"]:
                    rows.append({"language": lang, "key": u["key"], "text": u["text"]})
                    break
        return pd.DataFrame(rows)


def _text_file(cache_dir: Path, text_id: str, fractions: SplitFractions, art_sha: str) -> tuple[Path, str]:
    key = sha256_json({"format": CORPUS_FORMAT, "salt": SPLIT_SALT, "source": art_sha,
                       "evaluation": fractions.evaluation, "validation": fractions.validation})[:12]
    kind, name = sources.parse_text_id(text_id)
    return cache_dir / "corpus" / f"{kind}-{name}.{key}.jsonl", key


def build_offline_corpus(params: Params, cache_dir: Optional[Path] = None, downloader=None) -> OfflineCorpus:
    """Build (or reuse) the unit files of every language of ``params`` and return the corpus handle.

    Raises:
        ChecksumError: a downloaded source does not match its pinned sha256.
        DataError: a text id names something the source does not have.
    """
    cache_dir = Path(cache_dir or default_cache_dir())
    dl = {} if downloader is None else {"downloader": downloader}
    corpus = OfflineCorpus(params, cache_dir)
    roots: dict[str, Path] = {}
    assignments: dict[str, dict[str, str]] = {}
    manifest = {}
    for lang in params.languages:
        corpus.files[lang] = []
        for text_id in params.data.texts[lang]:
            kind, name = sources.parse_text_id(text_id)
            fractions = params.data.splits[kind]
            art = sources.ARTIFACTS[kind]
            path, key = _text_file(cache_dir, text_id, fractions, art.sha256)
            if not path.exists():
                if kind not in roots:
                    roots[kind] = sources.extracted(kind, cache_dir, **dl)
                akey = f"{kind}:{key}"
                if akey not in assignments:
                    assignments[akey] = assign_splits(kind, sources.GROUP_SIZES[kind](roots[kind]), fractions)
                split_of = assignments[akey]
                with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                    n = 0
                    for u in sources.READERS[kind](roots[kind], name):
                        fh.write(json.dumps({"key": u.key, "group": u.group, "split": split_of[u.group],
                                             "text": u.text}, ensure_ascii=False) + "\n")
                        n += 1
                    if n == 0:
                        raise DataError(f"text {text_id!r} (language {lang}) has no units")
            corpus.files[lang].append(TextFile(lang, text_id, path))
            manifest[f"{lang}/{text_id}"] = path.name
    corpus.manifest = manifest
    return corpus
